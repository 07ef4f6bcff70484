"""Control-pilot faults and pauses, IEC 61851-1 Annex A (CP-07 to CP-10).

A pause (the charger withdraws its offer while the vehicle still asks) must end in an open
contactor within cp.pause_open_max_s; a vehicle whose diode is missing or shorted, a pilot
shorted to PE (state E) or a vehicle asking for ventilation (state D, which a residential unit
does not provide) must never get energy. Shorting the diode or CP to PE is hazardous.
"""

from __future__ import annotations

import pytest

from rig.product import cp as cpmath
from rig.spec.steps import (
    check_idle_current,
    first_sense_edge,
    l1_intervals,
    no_close_watch_s,
    phase_pins,
    reclosed_at,
    require_closed,
    wait_error_reported,
    wait_opening,
)

# The vehicle's on-board charger draws as soon as it gets power: the least a charger may offer.
EV_DRAW_A = cpmath.MIN_OFFERED_A
CP_SAMPLE_EVERY_S = 0.05  # CP sampling interval when watching the offer (plus the 20 ms window)
#: the offer withdrawn this long after the vehicle asks: after a unit has seen state C, before most
#: close (a test condition; a unit that closed sooner must open as in any pause)
WITHDRAW_AFTER_ASK_S = 0.1


def timed_open(rig, t0: float, limit_key: str, what: str) -> float:
    """Record when the last line conductor opened after `t0`, against `limit_key`."""
    limit = rig.limit(limit_key)
    opened = wait_opening(rig, phase_pins(rig), t0, t0 + 2 * limit + 1.0)
    rig.check_limit(what, None if opened is None else opened - t0, high=limit_key, resolution=rig.pilot.resolution_s)
    return opened


def plug_in_asking(rig) -> float:
    """Vehicle plugged in (B) with its load ready to draw; returns the clock time of the plug-in."""
    rig.pilot.clear_sense_events()
    rig.ev.draw(EV_DRAW_A)
    rig.ev.plug_in()
    return rig.clock.now()


def assert_never_closed(rig, since: float, what: str) -> None:
    closed = first_sense_edge(rig, "sense_l1", True, since)
    assert closed is None, f"{what}: contactor closed at t = {closed:.3f} s ({closed - since:.3f} s after the start)"
    check_idle_current(rig, what)


# ----------------------------------------------------------------------------- CP-07
@pytest.mark.req("CP-07")
def test_pause_while_the_ev_stays_in_c_stops_pwm_and_opens_within_6s(charging):
    rig = charging
    require_closed(rig, phase_pins(rig))
    rig.pilot.clear_sense_events()
    rig.configure(rig.profile["ocpp"]["config_site_limit"], 0)
    t0 = rig.clock.now()
    timed_open(rig, t0, "cp.pause_open_max_s", "contactor open after the site limit dropped to 0 (EV in C)")
    m = rig.pilot.measure_cp()
    assert not m.pwm, f"contactor open after the pause, yet PWM still offers (duty {m.duty})"
    check_idle_current(rig, "paused, vehicle still in C")
    rig.clock.sleep(no_close_watch_s(rig), "paused, the vehicle keeps asking")
    again = reclosed_at(rig, t0)
    assert again is None, f"contactor closed again at t0 + {again - t0:.3f} s with the site limit still 0"


@pytest.mark.req("CP-07")
def test_an_offer_withdrawn_as_the_vehicle_asks_leaves_no_energy_on(ready):
    """The vehicle asks (C) and at that moment the offer is withdrawn (site limit 0 A). Whether
    or not the contactor closed in between, it is open within cp.pause_open_max_s of the
    withdrawal and stays open while nothing is offered. Found as a surviving mutant (charger.py,
    the close that follows state C): a unit that closed on the request after its offer had gone
    and, with no pause under way, never opened again."""
    rig = ready
    plug_in_asking(rig)
    rig.clock.sleep(1.0, "vehicle plugged in")
    rig.ev.request_power()
    rig.clock.sleep(WITHDRAW_AFTER_ASK_S, "the unit sees the request")
    rig.configure(rig.profile["ocpp"]["config_site_limit"], 0)
    t0 = rig.clock.now()
    limit = rig.limit("cp.pause_open_max_s")
    rig.clock.sleep(limit + no_close_watch_s(rig), "the offer withdrawn, the vehicle keeps asking")
    live = l1_intervals(rig, t0, rig.clock.now())
    ended = 0.0 if not live else None if rig.pilot.sense().l1 else live[-1][1] - t0
    rig.check("energy off after the offer was withdrawn as the vehicle asked", ended, "s", 0.0, limit,
              rig.source_of("cp.pause_open_max_s"), resolution=rig.pilot.resolution_s)
    spans = [(round(a - t0, 3), round(b - t0, 3)) for a, b in live]
    assert len(live) <= 1, f"L1 live again after the offer was withdrawn: {spans} s after the withdrawal"
    check_idle_current(rig, "the offer withdrawn, the vehicle asking")


# ----------------------------------------------------------------------------- CP-08
@pytest.mark.hazardous
@pytest.mark.req("CP-08")
def test_missing_diode_contactor_never_closes_and_fault_reported(ready):
    rig = ready
    code = rig.profile["safety"]["diode_error_code"]
    rig.pilot.set_diode(False)
    t0 = plug_in_asking(rig)
    rig.clock.sleep(1.0, "vehicle without diode plugged in")
    rig.ev.request_power()
    watch = no_close_watch_s(rig)
    rig.clock.sleep(watch, "vehicle without diode asks for power")
    assert_never_closed(rig, t0, f"vehicle diode shorted, {watch:g} s in state C")
    wait_error_reported(rig, code, t0, rig.limit("ocpp.status_report_max_s"))


@pytest.mark.hazardous
@pytest.mark.req("CP-08")
def test_missing_diode_withdraws_the_offer_from_the_vehicle(ready):
    """The fault is reported to the vehicle too: the charger stops offering current on CP (no PWM)
    and holds that for at least cp.fault_state_f_min_s, the least time IEC 61851-1 gives a fault
    state on the pilot. (STANDARDS names that state F, CP at -12 V; the test asks only that the
    offer is withdrawn, so a unit that parks CP at a steady level passes as well.)
    The run without PWM is timed from the last sample with PWM before it to the first sample with
    PWM after it: the charger gets the benefit of the sampling interval, stated as the resolution."""
    rig = ready
    rig.pilot.set_diode(False)
    plugged = plug_in_asking(rig)
    runs: list[float] = []
    started, previous = None, plugged
    end = plugged + no_close_watch_s(rig)
    asked = False
    while rig.clock.now() < end:
        if not asked and rig.clock.now() >= plugged + 1.0:
            rig.ev.request_power()
            asked = True
        offering = rig.pilot.measure_cp().pwm
        now = rig.clock.now()
        if not offering and started is None:
            started = previous
        elif offering and started is not None:
            runs.append(now - started)
            started = None
        previous = now
        rig.clock.sleep(CP_SAMPLE_EVERY_S)
    if started is not None:
        runs.append(rig.clock.now() - started)
    longest = max(runs) if runs else None
    rig.check_limit("longest time CP offers no current, vehicle diode shorted", longest,
                    low="cp.fault_state_f_min_s", resolution=CP_SAMPLE_EVERY_S + 0.02)


# ----------------------------------------------------------------------------- CP-09
@pytest.mark.hazardous
@pytest.mark.req("CP-09")
def test_state_e_while_charging_opens_and_reports_a_fault(charging):
    rig = charging
    code = rig.profile["safety"]["state_e_error_code"]
    require_closed(rig, phase_pins(rig))
    rig.pilot.clear_sense_events()
    rig.pilot.set_state("E")
    t0 = rig.clock.now()
    timed_open(rig, t0, "cp.unplug_open_max_s", "contactor open after CP was shorted to PE (state E)")
    wait_error_reported(rig, code, t0, rig.limit("ocpp.status_report_max_s"))
    rig.clock.sleep(no_close_watch_s(rig), "CP stays shorted to PE")
    again = reclosed_at(rig, t0)
    assert again is None, f"contactor closed again at t0 + {again - t0:.3f} s with CP still shorted to PE"
    check_idle_current(rig, "in state E")


@pytest.mark.hazardous
@pytest.mark.req("CP-09")
def test_state_e_when_plugged_in_never_charges_and_reports_a_fault(ready):
    rig = ready
    code = rig.profile["safety"]["state_e_error_code"]
    since = plug_in_asking(rig)
    rig.clock.sleep(1.0, "vehicle plugged in")
    rig.pilot.set_state("E")
    t0 = rig.clock.now()
    watch = no_close_watch_s(rig)
    rig.clock.sleep(watch, "CP shorted to PE")
    assert_never_closed(rig, since, f"state E, {watch:g} s")
    wait_error_reported(rig, code, t0, rig.limit("ocpp.status_report_max_s"))


# ----------------------------------------------------------------------------- CP-10
@pytest.mark.req("CP-10")
def test_state_d_from_plugged_in_never_charges(ready):
    rig = ready
    since = plug_in_asking(rig)
    rig.clock.sleep(1.0, "vehicle plugged in")
    rig.pilot.set_state("D")
    watch = no_close_watch_s(rig)
    rig.clock.sleep(watch, "vehicle asks for ventilation (state D)")
    assert_never_closed(rig, since, f"state D, {watch:g} s")


@pytest.mark.req("CP-10")
def test_state_d_while_charging_opens_and_stays_open(charging):
    """The pilot box goes C -> B -> D (relays that open switch first, as a vehicle does), and D is
    no request a residential unit serves: the C -> B open time applies."""
    rig = charging
    require_closed(rig, phase_pins(rig))
    rig.pilot.clear_sense_events()
    rig.pilot.set_state("D")
    t0 = rig.clock.now()
    timed_open(rig, t0, "cp.contactor_open_c_to_b_max_s", "contactor open after C -> D")
    rig.clock.sleep(no_close_watch_s(rig), "vehicle stays in state D")
    again = reclosed_at(rig, t0)
    assert again is None, f"contactor closed again at t0 + {again - t0:.3f} s in state D"
    check_idle_current(rig, "in state D")
