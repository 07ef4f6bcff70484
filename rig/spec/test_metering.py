"""Energy delivery as the reference meter sees it (MTR-01 to MTR-03)."""

from __future__ import annotations

import pytest

from rig.core.errors import ChargerFailure
from rig.spec.steps import plug_and_ask, unplug, wait_output_live


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


@pytest.mark.req("MTR-04")
def test_energy_reported_over_ocpp_agrees_with_the_reference_meter(ready):
    """One session at the rated current: meterStop - meterStart of the transaction against the
    reference meter's import over the same session (read before plug-in and after the contactor
    opened, so both see exactly the energy that flowed)."""
    rig = ready
    before_kwh = rig.meter.snapshot().import_kwh
    mark = rig.central.mark()
    plug_and_ask(rig)
    rig.clock.sleep(rig.limit("mtr.ocpp_energy_session_s"), "charging session for the energy comparison")
    rig.ev.stop_requesting()
    if wait_output_live(rig, False, rig.limit("cp.contactor_open_c_to_b_max_s") + 1.0) is None:
        raise ChargerFailure("the contactor did not open when the vehicle stopped asking for power")
    after_kwh = rig.meter.snapshot().import_kwh
    unplug(rig)
    start = rig.central.wait_for("StartTransaction", timeout=5.0, after=mark)
    stop = rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=mark)
    reported_wh = stop.payload["meterStop"] - start.payload["meterStart"]
    reference_wh = (after_kwh - before_kwh) * 1000.0
    assert reference_wh > 1000.0, f"the session delivered only {reference_wh:.0f} Wh: nothing to compare"
    error_pct = 100.0 * abs(reported_wh - reference_wh) / reference_wh
    resolution = 100.0 / reference_wh  # OCPP meter values are whole Wh
    rig.check_limit(f"energy over OCPP ({reported_wh} Wh) against the reference meter ({reference_wh:.0f} Wh), "
                    "regulation", error_pct, high="mtr.ocpp_energy_agreement_pct", resolution=resolution)
    rig.check_limit("the same, product target", error_pct, high="mtr.ocpp_energy_target_pct", resolution=resolution)
