"""Control pilot, IEC 61851-1 Annex A: levels, PWM, and contactor timing (CP-01 to CP-06)."""

from __future__ import annotations

import pytest

from rig.product import cp as cpmath
from rig.spec.steps import (
    applied,
    change_configuration,
    check_idle_current,
    configuration_keys,
    first_sense_edge,
    no_close_watch_s,
)


@pytest.mark.eol
@pytest.mark.req("CP-01")
def test_state_a_steady_plus_12v_no_pwm_contactor_open(ready):
    rig = ready
    m = rig.pilot.measure_cp()
    rig.check_limit("CP high level in state A", m.high_v, low="cp.state_a_high_min_v", high="cp.state_a_high_max_v")
    assert not m.pwm, f"PWM present in state A ({m.frequency_hz} Hz, duty {m.duty})"
    assert not rig.pilot.sense().l1, "contactor closed in state A"


@pytest.mark.eol
@pytest.mark.req("CP-02", "CP-06")
def test_state_b_pwm_1khz_minus_12v_duty_for_offered_current(ready):
    rig = ready
    rig.ev.plug_in()
    rig.clock.sleep(1.0, "vehicle plugged in")
    m = rig.pilot.measure_cp()
    assert m.pwm, "no PWM in state B with charging permitted"
    rig.check_limit("PWM frequency in state B", m.frequency_hz, low="cp.pwm_freq_min_hz", high="cp.pwm_freq_max_hz",
                    resolution=m.resolution_s * m.frequency_hz**2)
    rig.check_limit("CP low level in state B", m.low_v, low="cp.low_level_min_v", high="cp.low_level_max_v")
    rig.check_limit("CP high level in state B", m.high_v, low="cp.state_b_high_min_v", high="cp.state_b_high_max_v")
    expected = min(rig.profile["rated_current_a"], rig.profile.get("tethered_cable_a") or 32.0)
    check_duty(rig, m, expected)
    assert not rig.pilot.sense().l1, "contactor closed in state B"


def check_duty(rig, m, amps: float) -> None:
    tol = rig.limit("cp.duty_tolerance_pct")
    want = cpmath.duty_for_current(amps) * 100
    rig.check(f"duty for {amps:g} A", m.duty * 100, "%", want - tol, want + tol,
              f"IEC 61851-1 D = I/0.6; {rig.source_of('cp.duty_tolerance_pct')}", resolution=m.resolution_s * 1e5)


@pytest.mark.req("CP-06")
@pytest.mark.parametrize("configured_a, site_a", [(16, 32), (32, 10), (20, 13), (6, 32)])
def test_offered_current_is_the_lowest_limit(ready, configured_a, site_a):
    rig = ready
    keys = rig.profile["ocpp"]
    rig.configure(keys["config_current_limit"], configured_a)
    rig.configure(keys["config_site_limit"], site_a)
    rig.ev.plug_in()
    rig.clock.sleep(1.0, "vehicle plugged in")
    m = rig.pilot.measure_cp()
    expected = min(rig.profile["rated_current_a"], configured_a, site_a, rig.profile.get("tethered_cable_a") or 32.0)
    assert m.pwm, "no PWM offered"
    check_duty(rig, m, expected)


LIMIT_KEPT_A = 10.0  # the limit set before the bad values: what the offer must still be
NOT_A_CURRENT = ("-1", "-0.5", "NaN", "ten")  # values a current limit in amperes, 0 or more, cannot take


@pytest.mark.req("CP-06")
@pytest.mark.parametrize("key_name", ["config_current_limit", "config_site_limit"])
def test_a_current_limit_that_is_not_a_current_is_rejected_and_the_offer_stays(ready, key_name):
    """MaxCurrentA and SiteLimitA take a number of amperes, 0 or more: 0 is Accepted (the lowest
    limit: nothing offered), a negative, NaN or a word is Rejected (OCPP 1.6 5.3: a value the key
    cannot take) and leaves the limit as it was. Found as a surviving mutant (charging_modes.py,
    the check of a current limit): a unit that took -1 A or NaN and then offered nothing, or
    anything, until an installer noticed."""
    rig = ready
    key = rig.profile["ocpp"][key_name]
    rig.configure(key, "0")  # the lowest limit (nothing offered) is a current: Accepted, or a ChargerFailure
    rig.configure(key, LIMIT_KEPT_A)
    answers = {bad: change_configuration(rig, key, bad) for bad in NOT_A_CURRENT}
    assert all(a == "Rejected" for a in answers.values()), f"{key}: {answers} (a current in A, 0 or more, only)"
    got = configuration_keys(rig, key)
    assert [float(k["value"]) for k in got] == [LIMIT_KEPT_A], f"{key} reads {got} after the Rejected values"
    rig.ev.plug_in()
    rig.clock.sleep(1.0, "vehicle plugged in")
    m = rig.pilot.measure_cp()
    assert m.pwm, f"no PWM with {key} = {LIMIT_KEPT_A} A after the Rejected values"
    check_duty(rig, m, min(rig.profile["rated_current_a"], LIMIT_KEPT_A))


@pytest.mark.eol
@pytest.mark.req("CP-03")
def test_contactor_closes_within_3s_of_state_c_and_never_in_b(ready):
    rig = ready
    rig.ev.plug_in()
    rig.ev.draw(10.0)  # an on-board charger that would draw at once if the contactor closed
    rig.pilot.clear_sense_events()
    rig.clock.sleep(5.0, "vehicle waits in state B")
    early = first_sense_edge(rig, "sense_l1", True, 0.0)
    assert early is None, f"contactor closed in state B at t={early:.3f} s, before the vehicle asked for power"
    t0 = applied(rig, rig.ev.request_power)
    limit = rig.limit("cp.contactor_close_max_s")
    rig.clock.sleep(limit + 1.0, "waiting for the contactor")
    closed = first_sense_edge(rig, "sense_l1", True, t0)
    rig.check_limit("contactor close after B->C", None if closed is None else closed - t0,
                    high="cp.contactor_close_max_s", resolution=rig.pilot.resolution_s)


#: the vehicle's pilot contact drops out this long after it asks (C -> A) and is back, plugged in and
#: not asking (B), after the gap: a bouncing connector, both inside the close time of any unit
BOUNCE_AFTER_ASK_S = 0.1
BOUNCE_GAP_S = 0.05


@pytest.mark.req("CP-03")
def test_a_request_cut_short_by_a_pilot_contact_bounce_never_closes_in_b(ready):
    """The vehicle asks (C), its pilot contact drops out (A) and comes back as plugged in and not
    asking (B): whatever the unit started for the request, the contactor does not close from the
    drop-out on. Found as a surviving mutant (charger.py, the close that follows state C): a close
    armed by the request, not cancelled by the drop-out, and let through in state B."""
    rig = ready
    rig.ev.plug_in()
    rig.ev.draw(10.0)  # an on-board charger that would draw at once if the contactor closed
    rig.clock.sleep(5.0, "vehicle waits in state B")
    rig.pilot.clear_sense_events()
    rig.ev.request_power()
    rig.clock.sleep(BOUNCE_AFTER_ASK_S, "the unit sees the request")
    dropped = applied(rig, lambda: rig.pilot.set_state("A"))
    rig.clock.sleep(BOUNCE_GAP_S, "pilot contact lost")
    rig.pilot.set_state("B")
    rig.clock.sleep(no_close_watch_s(rig), "plugged in again, not asking")
    closed = first_sense_edge(rig, "sense_l1", True, dropped)
    assert closed is None, (f"contactor closed {closed - dropped:.3f} s after the pilot contact dropped out, "
                            "with the vehicle back in state B, not asking")
    check_idle_current(rig, "pilot contact back in state B")

@pytest.mark.eol
@pytest.mark.req("CP-04")
def test_contactor_opens_within_100ms_of_c_to_b(charging):
    rig = charging
    rig.pilot.clear_sense_events()
    t0 = applied(rig, rig.ev.stop_requesting)
    rig.clock.sleep(1.0, "after C->B")
    opened = first_sense_edge(rig, "sense_l1", False, t0)
    rig.check_limit("contactor open after C->B", None if opened is None else opened - t0,
                    high="cp.contactor_open_c_to_b_max_s", resolution=rig.pilot.resolution_s)


@pytest.mark.req("CP-05")
@pytest.mark.parametrize("from_state", ["C", "B"])
def test_unplug_opens_contactor_and_stops_pwm_within_100ms(charging, from_state):
    rig = charging
    if from_state == "B":
        rig.ev.stop_requesting()
        rig.clock.sleep(1.0)
    rig.pilot.clear_sense_events()
    t0 = applied(rig, rig.ev.unplug)
    limit = rig.limit("cp.unplug_open_max_s")
    rig.clock.sleep(limit)
    m = rig.pilot.measure_cp(window_s=0.02)
    assert not m.pwm, f"PWM still running {limit * 1000:.0f} ms after unplug (duty {m.duty})"
    if from_state == "C":
        opened = first_sense_edge(rig, "sense_l1", False, t0)
        rig.check_limit("contactor open after unplug", None if opened is None else opened - t0,
                        high="cp.unplug_open_max_s", resolution=rig.pilot.resolution_s)
    else:
        assert not rig.pilot.sense().l1, "contactor closed after unplug from B"
