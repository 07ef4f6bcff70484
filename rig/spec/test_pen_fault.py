"""PEN-fault protection, BS 7671:2018+A1:2020 722.411.4.1(iv) (PEN-01 to PEN-06, LED-12).

Outside pen.v_min..pen.v_max line-neutral, the unit must disconnect line(s), neutral and
protective earth from the vehicle within pen.trip_max_s, ride through anything shorter than
pen.ride_through_s, stay open while the supply is out of range, reset itself after
pen.reset_after_s of normal supply (resuming an interrupted session) and, after pen.max_resumes
automatic resumes, lock out on the next trip until it is power-cycled.

A trip is timed from the moment the AC source confirms the new level (the source times its own
excursions) to the LAST of those conductors opening at the vehicle connector (pilot box contact
sense): a disconnection is only complete when every conductor is open. Every test here disturbs
the supply: hazardous. Each test starts from a power cycle, because automatic resumes are
counted (PEN-05) and an earlier test's trips must not use up this test's budget.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rig.bench.rig import SAFE_DWELL_S
from rig.spec.steps import (
    applied,
    check_current_flows,
    check_idle_current,
    expect_led,
    first_opening,
    pen_pins,
    reboot,
    reclosed_at,
    require_closed,
    start_charging,
    wait_fault_reported,
    wait_opening,
)

# side -> (direction out of the window, the window edge, the profile's OCPP error code key)
SIDES = {
    "over": (+1, "pen.v_max", "pen_over_error_code"),
    "under": (-1, "pen.v_min", "pen_under_error_code"),
}
EPS_S = 1e-9  # float noise when comparing durations built from limits


@pytest.fixture
def pen_ready(ready):
    """A unit fresh from a power cycle: no trip pending, the full budget of automatic resumes.
    Afterwards the same again, so no PEN trip, reset timer or lockout outlives the test."""
    reboot(ready)
    yield ready
    ready.safe_state()
    reboot(ready)


@pytest.fixture
def pen_charging(pen_ready):
    start_charging(pen_ready)
    return pen_ready


# ----------------------------------------------------------------------------- steps
def volts_for(rig, side: str, margins: float) -> float:
    """`margins` boundary-margin steps beyond the window edge on `side` (negative: inside)."""
    sign, edge, _ = SIDES[side]
    return rig.limit(edge) + sign * margins * rig.limit("pen.boundary_margin_v")


def error_code(rig, side: str) -> str:
    return rig.profile["safety"][SIDES[side][2]]


def trip_excursion_s(rig) -> float:
    """Long enough that the unit must trip: pen.trip_max_s plus the source's timing margin."""
    return rig.limit("pen.trip_max_s") + rig.limit("pen.boundary_margin_s")


def late_until(rig, t0: float) -> float:
    """Watch to twice the trip limit, so a late trip is measured and shown, not just 'nothing'."""
    return t0 + 2 * rig.limit("pen.trip_max_s")


def disturb(rig, volts: float, seconds: float | None, phase: int | None = None) -> float:
    """An excursion of `seconds` (timed by the source), or with seconds=None a step that stays.
    Contact sense log cleared first; returns t0, the clock time the level is confirmed."""
    require_closed(rig, pen_pins(rig))
    rig.pilot.clear_sense_events()
    if seconds is None:
        return applied(rig, lambda: rig.source.set_voltage(volts, phase))
    return applied(rig, lambda: rig.source.excursion(volts, seconds, phase))


def check_trip_time(rig, t0: float, opened: float | None, what: str) -> None:
    rig.check_limit(f"{what}: line, neutral and earth open", None if opened is None else opened - t0,
                    high="pen.trip_max_s", resolution=rig.pilot.resolution_s)


def timed_trip(rig, volts: float, seconds: float | None, what: str, phase: int | None = None) -> tuple[float, float]:
    t0 = disturb(rig, volts, seconds, phase)
    opened = wait_opening(rig, pen_pins(rig), t0, late_until(rig, t0))
    check_trip_time(rig, t0, opened, what)
    return t0, opened


def assert_no_trip(rig, t0: float, what: str) -> None:
    opened = first_opening(rig, pen_pins(rig), t0)
    assert opened is None, f"{what}: the unit tripped at t0 + {opened - t0:.3f} s; it must not"
    faulted = [m.payload for m in rig.central.history(action="StatusNotification", direction="in")
               if m.time >= t0 and m.payload.get("status") == "Faulted"]
    assert not faulted, f"{what}: no trip, yet the unit reported {faulted}"


def check_resumed(rig, normal_at: float, tripped_at: float, what: str) -> None:
    """The session resumes pen.reset_after_s after the supply came back (not sooner, give or take
    the source's timing margin), plus at most the B2->C2 close time; then energy flows."""
    reset, margin = rig.limit("pen.reset_after_s"), rig.limit("pen.boundary_margin_s")
    latest = reset + rig.limit("cp.contactor_close_max_s") + margin
    rig.clock.sleep(max(0.0, normal_at + latest + 1.0 - rig.clock.now()), "normal supply: waiting for the reset")
    again = reclosed_at(rig, tripped_at)
    rig.check(f"{what}: contactor recloses after normal supply returned", None if again is None else again - normal_at,
              "s", reset - margin, latest,
              f"{rig.source_of('pen.reset_after_s')}; {rig.source_of('pen.boundary_margin_s')}; "
              f"then {rig.source_of('cp.contactor_close_max_s')}", resolution=rig.pilot.resolution_s)
    check_current_flows(rig, f"{what}: session resumed")


# ----------------------------------------------------------------------------- PEN-01, PEN-02
@pytest.mark.hazardous
@pytest.mark.req("PEN-01")
@pytest.mark.parametrize("side", SIDES)
def test_supply_outside_the_window_disconnects_line_neutral_and_earth_within_5s(pen_charging, side):
    rig = pen_charging
    volts = volts_for(rig, side, 1)
    timed_trip(rig, volts, trip_excursion_s(rig), f"{volts:g} V for {trip_excursion_s(rig):g} s")
    check_idle_current(rig, f"after the PEN trip at {volts:g} V")


@pytest.mark.hazardous
@pytest.mark.req("PEN-01")
@pytest.mark.parametrize("side", SIDES)
def test_supply_just_inside_the_window_does_not_trip(pen_charging, side):
    rig = pen_charging
    volts = volts_for(rig, side, -1)
    t0 = disturb(rig, volts, None)
    rig.clock.sleep(3 * rig.limit("pen.trip_max_s"), f"supply held at {volts:g} V, inside the window")
    assert_no_trip(rig, t0, f"supply held at {volts:g} V")
    check_current_flows(rig, f"with the supply at {volts:g} V")


@pytest.mark.hazardous
@pytest.mark.req("PEN-02")
@pytest.mark.parametrize("depth", [1, 10], ids=["just-outside", "far-outside"])
@pytest.mark.parametrize("side", SIDES)
def test_excursion_shorter_than_4s_does_not_trip(pen_charging, side, depth):
    rig = pen_charging
    volts = volts_for(rig, side, depth)
    seconds = rig.limit("pen.ride_through_s") - rig.limit("pen.boundary_margin_s")
    t0 = disturb(rig, volts, seconds)
    # a unit that counted the excursion as a fault would have opened by pen.trip_max_s after it began
    rig.clock.sleep(seconds + rig.limit("pen.trip_max_s"), f"{seconds:g} s at {volts:g} V, then normal")
    assert_no_trip(rig, t0, f"{seconds:g} s excursion to {volts:g} V")
    check_current_flows(rig, f"after a {seconds:g} s excursion to {volts:g} V")


#: an in-window supply step this long before the excursion: shorter than any trip delay, so a unit
#: that armed its trip timer at the step would trip during the excursion (a test condition)
STEP_BEFORE_EXCURSION_S = 2.0


@pytest.mark.hazardous
@pytest.mark.req("PEN-02")
@pytest.mark.parametrize("side", SIDES)
def test_an_excursion_soon_after_an_in_window_step_is_ridden_through(pen_charging, side):
    """The supply steps to a level just inside the window, and 2 s later an excursion just outside
    it, shorter than pen.ride_through_s, follows: ridden through like any other. Found as a
    surviving mutant (charger_safety.py, the PEN watch arming its trip delay at any supply change):
    a unit whose delay ran from the in-window step tripped 2.5 s into the excursion."""
    rig = pen_charging
    disturb(rig, volts_for(rig, side, -1), None)
    rig.clock.sleep(STEP_BEFORE_EXCURSION_S, "supply stepped inside the window")
    volts = volts_for(rig, side, 1)
    seconds = rig.limit("pen.ride_through_s") - rig.limit("pen.boundary_margin_s")
    t0 = disturb(rig, volts, seconds)
    rig.clock.sleep(seconds + rig.limit("pen.trip_max_s"), f"{seconds:g} s at {volts:g} V, then inside the window")
    assert_no_trip(rig, t0 - STEP_BEFORE_EXCURSION_S, f"a {seconds:g} s excursion to {volts:g} V "
                   f"{STEP_BEFORE_EXCURSION_S:g} s after a step inside the window")
    check_current_flows(rig, f"after a {seconds:g} s excursion to {volts:g} V")

# ----------------------------------------------------------------------------- PEN-03
@pytest.mark.hazardous
@pytest.mark.req("PEN-03", "LED-12")
@pytest.mark.parametrize("side", SIDES)
def test_while_tripped_red_faulted_and_no_reclosing_while_out_of_range(pen_charging, side):
    rig = pen_charging
    volts, code = volts_for(rig, side, 1), error_code(rig, side)
    t0, opened = timed_trip(rig, volts, None, f"supply stepped to {volts:g} V")
    check_idle_current(rig, f"after the PEN trip at {volts:g} V")
    expect_led(rig, "red_solid", f"PEN trip, supply still at {volts:g} V")
    report = wait_fault_reported(rig, code, t0, rig.limit("ocpp.status_report_max_s"))
    rig.check_limit(f"Faulted/{code} reported after the trip", report.time - opened,
                    high="ocpp.status_report_max_s", resolution=rig.pilot.resolution_s)
    hold = 2 * rig.limit("pen.reset_after_s")
    rig.clock.sleep(hold, f"supply held out of range at {volts:g} V, vehicle still asking")
    again = reclosed_at(rig, t0)
    assert again is None, f"contactor closed again at t0 + {again - t0:.3f} s with the supply still at {volts:g} V"
    check_idle_current(rig, f"{hold:g} s out of range")
    expect_led(rig, "red_solid", f"{hold:g} s out of range at {volts:g} V")


# ----------------------------------------------------------------------------- PEN-04
@pytest.mark.hazardous
@pytest.mark.req("PEN-04", "PEN-03", "LED-12", "LED-05")
@pytest.mark.parametrize("side", SIDES)
def test_idle_unit_resets_to_ready_after_30s_of_normal_supply(pen_ready, side):
    """No vehicle: the trip shows as red and Faulted; pen.reset_after_s after the supply is back
    the unit reports Available and shows ready (blue solid: the manual's LED table governs over
    the PEN page's 'green', see REQUIREMENTS)."""
    rig = pen_ready
    volts, code, seconds = volts_for(rig, side, 1), error_code(rig, side), trip_excursion_s(rig)
    t0 = applied(rig, lambda: rig.source.excursion(volts, seconds))
    normal_at = t0 + seconds
    fault = wait_fault_reported(rig, code, t0, rig.limit("pen.trip_max_s") + rig.limit("ocpp.status_report_max_s"))
    rig.check("idle unit: PEN fault reported", fault.time - t0, "s", None,
              rig.limit("pen.trip_max_s") + rig.limit("ocpp.status_report_max_s"),
              f"{rig.source_of('pen.trip_max_s')} + {rig.source_of('ocpp.status_report_max_s')}")
    expect_led(rig, "red_solid", "idle unit, PEN trip not yet reset")
    reset, margin = rig.limit("pen.reset_after_s"), rig.limit("pen.boundary_margin_s")
    report_max = rig.limit("ocpp.status_report_max_s")
    available = rig.central.wait_for(
        "StatusNotification", predicate=lambda p: p["status"] == "Available",
        timeout=max(0.0, normal_at + reset + report_max + 1.0 - rig.clock.now()), after=fault)
    rig.check("idle unit: Available again after normal supply returned", available.time - normal_at, "s",
              reset - margin, reset + report_max,
              f"{rig.source_of('pen.reset_after_s')}; {rig.source_of('pen.boundary_margin_s')}; "
              f"reported within {rig.source_of('ocpp.status_report_max_s')}")
    expect_led(rig, "blue_solid", "PEN trip reset, no vehicle: ready")


@pytest.mark.hazardous
@pytest.mark.req("PEN-04")
@pytest.mark.parametrize("side", SIDES)
def test_interrupted_session_resumes_after_30s_of_normal_supply(pen_charging, side):
    rig = pen_charging
    volts, seconds = volts_for(rig, side, 1), trip_excursion_s(rig)
    t0, opened = timed_trip(rig, volts, seconds, f"{volts:g} V for {seconds:g} s")
    check_resumed(rig, t0 + seconds, opened, f"after {volts:g} V")


# ----------------------------------------------------------------------------- PEN-05
@pytest.mark.hazardous
@pytest.mark.req("PEN-05", "PEN-04", "LED-12")
def test_after_10_resumes_the_next_trip_locks_out_until_power_cycled(pen_charging):
    rig = pen_charging
    volts, seconds = volts_for(rig, "over", 1), trip_excursion_s(rig)
    resumes = int(rig.limit("pen.max_resumes"))
    for n in range(1, resumes + 1):
        t0, opened = timed_trip(rig, volts, seconds, f"trip {n}")
        check_resumed(rig, t0 + seconds, opened, f"resume {n} of {resumes}")
    t0, opened = timed_trip(rig, volts, seconds, f"trip {resumes + 1}")
    hold = 2 * rig.limit("pen.reset_after_s")
    rig.clock.sleep(hold, "normal supply after the trip that must lock out")
    again = reclosed_at(rig, opened)
    assert again is None, (
        f"trip {resumes + 1}: contactor closed again {again - (t0 + seconds):.3f} s after normal supply "
        f"returned; after {resumes} automatic resumes the unit must lock out ({rig.source_of('pen.max_resumes')})")
    check_idle_current(rig, "while locked out")
    expect_led(rig, "red_solid", f"locked out, {hold:g} s of normal supply after trip {resumes + 1}")
    reboot(rig)
    # cleared = a usable unit again: not red, ready once the vehicle is unplugged, and it charges.
    # (Whether a unit starts a session by itself for a vehicle that stayed in C through the power
    # cycle is not this requirement's business, so the vehicle re-plugs.)
    rig.ev.unplug()
    rig.clock.sleep(SAFE_DWELL_S, "vehicle unplugged after the power cycle")
    expect_led(rig, "blue_solid", "lockout cleared by the power cycle, no vehicle: ready")
    start_charging(rig)
    check_current_flows(rig, "after the power cycle that cleared the lockout")


# ----------------------------------------------------------------------------- PEN-06
@pytest.mark.hazardous
@pytest.mark.req("PEN-06", "PEN-01")
@pytest.mark.models("PS22", "PS22-S", "PS22-E")
@pytest.mark.parametrize("phase", [1, 2, 3])
@pytest.mark.parametrize("side", SIDES)
def test_excursion_on_any_one_phase_trips(pen_charging, side, phase):
    rig = pen_charging
    volts, seconds = volts_for(rig, side, 1), trip_excursion_s(rig)
    timed_trip(rig, volts, seconds, f"L{phase} at {volts:g} V for {seconds:g} s", phase=phase)
    check_idle_current(rig, f"after the PEN trip on L{phase}")


# ----------------------------------------------------------------------------- around the edges
@pytest.mark.hazardous
@pytest.mark.req("PEN-01", "PEN-02")
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
# the corners always run: just outside and just too short; just outside and long enough; just inside
@example(side="over", depth=1, time_edge="pen.ride_through_s", steps=-1)
@example(side="under", depth=1, time_edge="pen.trip_max_s", steps=1)
@example(side="over", depth=-1, time_edge="pen.trip_max_s", steps=2)
@given(
    side=st.sampled_from(sorted(SIDES)),
    depth=st.integers(min_value=-2, max_value=3),
    time_edge=st.sampled_from(["pen.ride_through_s", "pen.trip_max_s"]),
    steps=st.integers(min_value=-2, max_value=2),
)
def test_excursions_around_the_voltage_and_time_edges(pen_ready, side, depth, time_edge, steps):
    """An excursion `depth` voltage-margin steps beyond the window edge (<= 0: inside or on it),
    lasting `steps` time-margin steps from 4 s or 5 s. Outside by a margin for at least
    pen.trip_max_s plus a margin: must trip within pen.trip_max_s. Inside by a margin, or shorter
    than pen.ride_through_s minus a margin: must not trip. In between either is allowed, but a
    trip must still be complete within pen.trip_max_s of the excursion's start."""
    rig = pen_ready
    volts = volts_for(rig, side, depth)
    seconds = rig.limit(time_edge) + steps * rig.limit("pen.boundary_margin_s")
    margin = rig.limit("pen.boundary_margin_s")
    must_trip = depth >= 1 and seconds >= rig.limit("pen.trip_max_s") + margin - EPS_S
    must_not = depth <= -1 or seconds <= rig.limit("pen.ride_through_s") - margin + EPS_S
    rig.safe_state()
    reboot(rig)  # examples share the unit: a power cycle clears any trip and the resume count
    start_charging(rig)
    what = f"{seconds:g} s at {volts:g} V"
    t0 = disturb(rig, volts, seconds)
    if must_trip:
        check_trip_time(rig, t0, wait_opening(rig, pen_pins(rig), t0, late_until(rig, t0)), what)
        return
    rig.clock.sleep(seconds + rig.limit("pen.trip_max_s"), what)
    if must_not:
        assert_no_trip(rig, t0, what)
    elif first_opening(rig, pen_pins(rig), t0) is not None:
        check_trip_time(rig, t0, wait_opening(rig, pen_pins(rig), t0, rig.clock.now()), f"{what} (trip allowed)")


# ----------------------------------------------------------------------------- PEN-07
@pytest.mark.hazardous
@pytest.mark.req("PEN-07")
@pytest.mark.models("PS22-E")
@pytest.mark.parametrize("side", SIDES)
def test_export_variant_opens_line_and_neutral_keeps_earth_and_reports(pen_charging, side):
    """The -E (export) variant: a PEN trip opens line and neutral within the PEN-01 time and reports
    the fault, and protective earth to the vehicle stays closed throughout."""
    rig = pen_charging
    assert not rig.profile["safety"]["pen_opens_earth"], "test data: PEN-07 is about the variant that keeps PE"
    require_closed(rig, ["sense_pe"])
    volts, seconds = volts_for(rig, side, 1), trip_excursion_s(rig)
    t0, _opened = timed_trip(rig, volts, seconds, f"-E variant, {volts:g} V for {seconds:g} s")
    rig.clock.sleep(rig.limit("pen.trip_max_s"), "watching protective earth after the trip")
    earth_opened = first_opening(rig, ["sense_pe"], t0)
    assert earth_opened is None, (f"the export variant opened protective earth at t0 + {earth_opened - t0:.3f} s; "
                                  "PEN-07: it never does")
    wait_fault_reported(rig, error_code(rig, side), t0, rig.limit("pen.trip_max_s") + rig.limit("ocpp.status_report_max_s"))
