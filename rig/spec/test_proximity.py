"""Proximity pilot on the Type 2 socket variants (PP-01 to PP-03).

The cable's PP resistor codes its rating; the unit must never offer more than the cable can
carry, refuse a cable it cannot read, and stop when PP is lost mid-session. Tethered variants
do not use PP, so these tests apply to socket variants only. The resistances are the pilot
box's PP ladder (rig/data/rigs/*.toml [pilot.pp_ladder]).
"""

from __future__ import annotations

import pytest

from rig.spec.steps import (
    check_idle_current,
    check_offered_duty,
    first_sense_edge,
    no_close_watch_s,
    phase_pins,
    reclosed_at,
    require_closed,
    wait_opening,
    wait_output_live,
)

# Cable coding, STANDARDS "Proximity pilot" (IEC 61851-1 / IEC 62196 Type 2) [S]: nominal PP
# resistance -> cable rating in A. 100 ohm codes 63 A on three phases and 70 A on one phase.
# 3300 ohm is above the 13 A band (1100-2460 ohm) but below 4.5 kohm, where STANDARDS says to take
# the lower rating: 13 A (rig/product/cp.py cable_rating_for_pp reads the bands the same way).
CABLE_RATING_A = {1500.0: 13.0, 680.0: 20.0, 220.0: 32.0, 100.0: {3: 63.0, 1: 70.0}, 3300.0: 13.0}

# No valid cable (STANDARDS: below 60 ohm or above 4.5 kohm, or PP open): never charge.
NOT_A_CABLE = [None, 47.0, 10000.0]


def cable_rating(rig, ohms: float) -> float:
    rating = CABLE_RATING_A[ohms]
    return rating[rig.profile["phases"]] if isinstance(rating, dict) else rating


@pytest.mark.req("PP-01", "CP-06")
@pytest.mark.connector("socket")
@pytest.mark.parametrize("ohms", list(CABLE_RATING_A), ids=lambda o: f"{o:g}ohm")
def test_offered_current_never_exceeds_the_cable_rating(ready, ohms):
    rig = ready
    cable = cable_rating(rig, ohms)
    expected = min(rig.profile["rated_current_a"], cable)
    rig.ev.plug_in(cable_ohms=ohms)
    rig.clock.sleep(1.0, "vehicle plugged in with the cable")
    m = rig.pilot.measure_cp()
    assert m.pwm, f"no PWM offered with a valid {cable:g} A cable ({ohms:g} ohm)"
    check_offered_duty(rig, m, expected, f"with a {cable:g} A cable (state B)")
    rig.ev.request_power()
    assert wait_output_live(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0) is not None, (
        f"no charging with a valid {cable:g} A cable ({ohms:g} ohm)")
    rig.ev.follow_pwm()
    rig.clock.sleep(1.0, "charging settles")
    check_offered_duty(rig, rig.pilot.measure_cp(), expected, f"with a {cable:g} A cable (state C)")
    source = f"{ohms:g} ohm codes {cable:g} A (STANDARDS PP bands) + {rig.source_of('mtr.current_tolerance_a')}"
    for i, amps in enumerate(rig.meter.currents()[: rig.profile["phases"]]):
        rig.check(f"L{i + 1} current with a {cable:g} A cable", amps, "A", None,
                  cable + rig.limit("mtr.current_tolerance_a"), source)


@pytest.mark.req("PP-02")
@pytest.mark.connector("socket")
@pytest.mark.parametrize("ohms", NOT_A_CABLE, ids=lambda o: "open" if o is None else f"{o:g}ohm")
def test_pp_open_or_out_of_every_band_never_charges(ready, ohms):
    rig = ready
    what = "PP open" if ohms is None else f"PP {ohms:g} ohm"
    rig.pilot.clear_sense_events()
    rig.ev.draw(rig.profile["rated_current_a"])
    since = rig.clock.now()
    rig.pilot.set_pp(ohms)
    rig.pilot.set_state("B")
    rig.clock.sleep(1.0, "vehicle plugged in")
    m = rig.pilot.measure_cp()
    assert not m.pwm, f"{what}: PWM offered (duty {m.duty}, {m.offered_current_a} A) without a valid cable"
    rig.ev.request_power()
    watch = no_close_watch_s(rig)
    rig.clock.sleep(watch, f"{what}, vehicle asks for power")
    closed = first_sense_edge(rig, "sense_l1", True, since)
    assert closed is None, f"{what}: contactor closed {closed - since:.3f} s after the plug-in"
    check_idle_current(rig, what)


@pytest.mark.req("PP-03")
@pytest.mark.connector("socket")
def test_pp_lost_during_charging_stops_within_100ms(charging):
    rig = charging
    pins = phase_pins(rig)
    require_closed(rig, pins)
    rig.pilot.clear_sense_events()
    rig.pilot.set_pp(None)
    t0 = rig.clock.now()
    limit = rig.limit("pp.loss_stop_max_s")
    opened = wait_opening(rig, pins, t0, t0 + 2 * limit + 1.0)
    rig.check_limit("contactor open after PP was lost", None if opened is None else opened - t0,
                    high="pp.loss_stop_max_s", resolution=rig.pilot.resolution_s)
    rig.clock.sleep(no_close_watch_s(rig), "PP stays open, the vehicle keeps asking")
    again = reclosed_at(rig, t0)
    assert again is None, f"contactor closed again at t0 + {again - t0:.3f} s with PP open"
    check_idle_current(rig, "with PP lost")
