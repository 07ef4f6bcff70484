"""Energy delivery as the reference meter sees it (MTR-01 to MTR-03)."""

from __future__ import annotations

import pytest

from rig.spec.steps import wait_output_live


@pytest.mark.eol
@pytest.mark.req("MTR-01")
def test_phases_and_rated_current(charging):
    rig = charging
    phases = rig.profile["phases"]
    currents = rig.meter.currents()
    margin = rig.limit("mtr.phase_current_margin_a")
    idle = rig.limit("mtr.idle_current_max_a")
    for i, amps in enumerate(currents):
        if i < phases:
            rig.check(f"L{i + 1} current at full offer", amps, "A", rig.limit("mtr.phase_current_max_a") * 0.9,
                      rig.limit("mtr.phase_current_max_a") + margin,
                      f"{rig.source_of('mtr.phase_current_max_a')} (up to 32 A on each of {phases} phase(s))")
        else:
            rig.check(f"L{i + 1} current (phase not used by a {phases}-phase unit)", amps, "A", None, idle,
                      rig.source_of("mtr.idle_current_max_a"))
    assert len([a for a in currents if a > idle]) == phases


@pytest.mark.req("MTR-02")
def test_no_current_whenever_not_charging(ready):
    rig = ready
    idle = "mtr.idle_current_max_a"
    rig.ev.draw(16.0)  # the on-board charger would draw if it were given power
    rig.clock.sleep(1.0)
    for i, amps in enumerate(rig.meter.currents()):
        rig.check_limit(f"L{i + 1} current, no vehicle", amps, high=idle)
    rig.ev.plug_in()
    rig.clock.sleep(3.0, "vehicle plugged in, not asking for power")
    for i, amps in enumerate(rig.meter.currents()):
        rig.check_limit(f"L{i + 1} current in state B", amps, high=idle)
    rig.ev.request_power()
    assert wait_output_live(rig, True, rig.limit("cp.contactor_close_max_s") + 1) is not None, "never charged"
    rig.ev.stop_requesting()
    rig.clock.sleep(1.0, "vehicle stopped asking")
    for i, amps in enumerate(rig.meter.currents()):
        rig.check_limit(f"L{i + 1} current after C->B", amps, high=idle)


@pytest.mark.req("MTR-03", "CP-06")
@pytest.mark.parametrize("limit_a", [16, 10])
def test_delivered_current_follows_offered_current(ready, limit_a):
    rig = ready
    rig.configure(rig.profile["ocpp"]["config_current_limit"], limit_a)
    rig.ev.plug_in()
    rig.clock.sleep(1.0)
    rig.ev.request_power()
    assert wait_output_live(rig, True, rig.limit("cp.contactor_close_max_s") + 1) is not None, "never charged"
    offered = rig.ev.follow_pwm()
    rig.clock.sleep(2.0, "charging settles")
    tol = rig.limit("mtr.current_tolerance_a")
    rig.check("offered current vs configured limit", offered, "A", limit_a - tol, limit_a + tol,
              "CP-06: offered = min(rating, configured limit, site limit, cable)")
    for i in range(rig.profile["phases"]):
        rig.check_limit(f"L{i + 1} current vs offered {offered:g} A", rig.meter.currents()[i] - offered,
                        low=None, high="mtr.current_tolerance_a", unit="A")
        rig.check(f"L{i + 1} current not below offered {offered:g} A", rig.meter.currents()[i] - offered, "A",
                  -tol, None, rig.source_of("mtr.current_tolerance_a"))
