"""Residual DC protection, the 6 mA RDC-DD of IEC 62955 (RCD-01 to RCD-06, LED-12).

A trip is the contactor opening as the pilot box's contact sense sees it: the time of the last
line conductor to go dead at the vehicle connector, counted from the moment the injector's
level was applied (the injector call returns once the source-measure unit has confirmed it).
Every test here drives a residual current through the unit: hazardous.
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
    phase_pins,
    plug_and_ask,
    reclosed_at,
    require_closed,
    start_charging,
    wait_fault_reported,
    wait_opening,
)

# The smooth-DC test points of IEC 62955 (STANDARDS "Residual current"): each trip-time limit is
# defined at one residual current. 6 mA is the detector's rated threshold, kept in the limits
# data (rcd.threshold_ma) so that an override moves the test point with it.
TRIP_POINTS_MA = {"rcd.trip_60ma_max_s": 60.0, "rcd.trip_200ma_max_s": 200.0}
THRESHOLD_TRIP_TIME = "rcd.trip_6ma_max_s"

# How long the rig keeps a fault on (or off, vehicle still asking) to see that nothing recloses.
# An observation window, not a limit: long against every trip and reset time in the limits data.
FAULT_PERSISTS_WATCH_S = 60.0


def trip_point_ma(rig, time_key: str) -> float:
    """The residual current (mA) at which the trip-time limit `time_key` is defined."""
    return rig.limit("rcd.threshold_ma") if time_key == THRESHOLD_TRIP_TIME else TRIP_POINTS_MA[time_key]


def applicable_trip_time(rig, milliamps: float) -> str | None:
    """The trip-time limit that binds at `milliamps`: that of the highest test point at or below
    it (a current between two points must trip at least as fast as the lower point requires);
    None below the threshold, where IEC 62955 sets no trip time."""
    binding = [(trip_point_ma(rig, k), k) for k in (THRESHOLD_TRIP_TIME, *TRIP_POINTS_MA)]
    at_or_below = [(ma, k) for ma, k in binding if ma <= milliamps]
    return max(at_or_below)[1] if at_or_below else None


def late_watch_s(limit_s: float) -> float:
    """Watch past a trip-time limit, so a late trip is measured and shown instead of 'nothing'."""
    return 2 * limit_s + 1.0


def no_trip_watch_s(rig) -> float:
    """A detector that trips at a level does so within the threshold's trip time: watch twice that."""
    return 2 * rig.limit(THRESHOLD_TRIP_TIME)


def inject(rig, milliamps: float) -> float:
    """Step the residual DC to `milliamps`, with the sense log cleared; t0 = when it is applied."""
    rig.pilot.clear_sense_events()
    return applied(rig, lambda: rig.injector.set_current(milliamps / 1000.0))


def timed_trip(rig, milliamps: float, time_key: str) -> tuple[float, float | None]:
    """Inject `milliamps` into a charging unit and record the trip time against `time_key`."""
    pins = phase_pins(rig)
    require_closed(rig, pins)
    t0 = inject(rig, milliamps)
    opened = wait_opening(rig, pins, t0, t0 + late_watch_s(rig.limit(time_key)))
    rig.check_limit(f"trip time at {milliamps:g} mA smooth DC", None if opened is None else opened - t0,
                    high=time_key, resolution=rig.pilot.resolution_s)
    return t0, opened


def assert_no_trip(rig, t0: float, milliamps: float) -> None:
    opened = first_opening(rig, phase_pins(rig), t0)
    assert opened is None, (
        f"tripped at {milliamps:g} mA (t0 + {opened - t0:.3f} s): "
        f"{rig.source_of('rcd.no_trip_max_ma')} says no trip at or below that")


def check_trip_holds(rig, t0: float, situation: str, wrong: str) -> None:
    """Watched for FAULT_PERSISTS_WATCH_S in `situation`: no reclosing since the trip at t0, red LED."""
    rig.clock.sleep(FAULT_PERSISTS_WATCH_S, situation)
    again = reclosed_at(rig, t0)
    assert again is None, f"contactor closed again at t0 + {again - t0:.3f} s: {wrong}"
    expect_led(rig, "red_solid", situation)


def check_recovered(rig, why: str, what: str) -> None:
    """The trip acknowledged: ready (blue), and a new session charges."""
    expect_led(rig, "blue_solid", why)
    start_charging(rig)
    check_current_flows(rig, what)


def faults_since(rig, t0: float) -> list[dict]:
    return [m.payload for m in rig.central.history(action="StatusNotification", direction="in")
            if m.time >= t0 and m.payload.get("status") == "Faulted"]


# ----------------------------------------------------------------------------- trip times
@pytest.mark.hazardous
@pytest.mark.parametrize("time_key", [
    pytest.param(THRESHOLD_TRIP_TIME, marks=[pytest.mark.req("RCD-01"), pytest.mark.eol], id="6mA"),
    pytest.param("rcd.trip_60ma_max_s", marks=pytest.mark.req("RCD-02"), id="60mA"),
    pytest.param("rcd.trip_200ma_max_s", marks=pytest.mark.req("RCD-03"), id="200mA"),
])
def test_sudden_smooth_dc_trips_within_its_time(charging, time_key):
    rig = charging
    timed_trip(rig, trip_point_ma(rig, time_key), time_key)
    check_idle_current(rig, "after the residual-current trip")


@pytest.mark.hazardous
@pytest.mark.req("RCD-04")
@pytest.mark.parametrize("margins_below", [0, 1], ids=["at-3mA", "just-below"])
def test_residual_dc_at_or_below_3ma_does_not_trip(charging, margins_below):
    rig = charging
    milliamps = rig.limit("rcd.no_trip_max_ma") - margins_below * rig.limit("rcd.boundary_margin_ma")
    require_closed(rig, phase_pins(rig))
    t0 = inject(rig, milliamps)
    rig.clock.sleep(no_trip_watch_s(rig), f"{milliamps:g} mA residual DC, watching for a trip")
    assert_no_trip(rig, t0, milliamps)
    check_current_flows(rig, f"with {milliamps:g} mA residual DC")
    faulted = faults_since(rig, t0)
    assert not faulted, f"no trip at {milliamps:g} mA, yet the unit reported {faulted}"


@pytest.mark.hazardous
@pytest.mark.req("RCD-05", "RCD-04")
def test_slowly_rising_dc_trips_by_the_time_it_reaches_6ma(charging):
    """IEC 62955 9.9.2.2: DC rising slowly from zero. The SMU ramps by itself (no PC latency);
    the current at the trip is the ramp's level when the last line opened."""
    rig = charging
    rate = rig.limit("rcd.ramp_rate_ma_per_s")
    threshold = rig.limit("rcd.threshold_ma")
    stop_ma = 2 * threshold  # the ramp goes on past the threshold: a late trip is still measured
    pins = phase_pins(rig)
    require_closed(rig, pins)
    rig.pilot.clear_sense_events()
    before = rig.clock.now()
    rig.injector.ramp(rate / 1000.0, stop_ma / 1000.0)
    t0 = rig.clock.now()
    opened = wait_opening(rig, pins, t0, t0 + stop_ma / rate + rig.limit(THRESHOLD_TRIP_TIME))
    at_trip = None if opened is None else rate * (opened - t0)
    # t0 is taken after the ramp was armed: the level at the trip may be higher by at most the
    # arming time times the rate; that, and the edge resolution, is the resolution.
    rig.check("residual current when the contactor opened (ramp)", at_trip, "mA",
              rig.limit("rcd.no_trip_max_ma"), threshold,
              f"{rig.source_of('rcd.no_trip_max_ma')}; {rig.source_of('rcd.threshold_ma')}; "
              f"ramp {rate:g} mA/s per {rig.source_of('rcd.ramp_rate_ma_per_s')}",
              resolution=rate * (rig.pilot.resolution_s + (t0 - before)))


# ----------------------------------------------------------------------------- what a trip does
@pytest.mark.hazardous
@pytest.mark.req("RCD-06", "LED-12")
def test_trip_opens_shows_red_reports_ground_failure_and_never_recloses_while_fault_persists(charging):
    rig = charging
    code = rig.profile["safety"]["rcd_error_code"]
    t0, opened = timed_trip(rig, trip_point_ma(rig, "rcd.trip_60ma_max_s"), "rcd.trip_60ma_max_s")
    check_idle_current(rig, "after the residual-current trip")
    expect_led(rig, "red_solid", "residual-current trip, fault still present")
    report = wait_fault_reported(rig, code, t0, rig.limit("ocpp.status_report_max_s"))
    rig.check_limit(f"Faulted/{code} reported after the trip", report.time - opened,
                    high="ocpp.status_report_max_s", resolution=rig.pilot.resolution_s)
    rig.clock.sleep(FAULT_PERSISTS_WATCH_S, "residual current stays on, vehicle still asking for power")
    again = reclosed_at(rig, t0)
    assert again is None, f"contactor closed again at t0 + {again - t0:.3f} s while the residual current persisted"
    check_idle_current(rig, f"{FAULT_PERSISTS_WATCH_S:g} s into the persisting fault")
    expect_led(rig, "red_solid", f"{FAULT_PERSISTS_WATCH_S:g} s into the persisting fault")


@pytest.mark.hazardous
@pytest.mark.req("RCD-06", "LED-12")
def test_trip_holds_until_the_fault_is_gone_and_acknowledged_then_the_unit_recovers(charging):
    """The profile's reset convention ([safety] rcd_reset): "unplug" = the trip holds until the
    residual current is gone AND the vehicle has been unplugged; then the unit charges again."""
    rig = charging
    convention = rig.profile["safety"]["rcd_reset"]
    if convention != "unplug":
        raise ValueError(f"profile [safety] rcd_reset = {convention!r}: this suite knows only 'unplug'")
    t0, opened = timed_trip(rig, trip_point_ma(rig, "rcd.trip_60ma_max_s"), "rcd.trip_60ma_max_s")
    rig.injector.off()
    gone = rig.clock.now()
    rig.clock.sleep(FAULT_PERSISTS_WATCH_S, "residual current gone, vehicle still plugged in and asking")
    again = reclosed_at(rig, t0)
    assert again is None, (
        f"contactor closed again {again - gone:.3f} s after the residual current stopped, without the "
        f"vehicle being unplugged (profile rcd_reset = 'unplug')")
    expect_led(rig, "red_solid", "residual-current trip not yet acknowledged by unplugging")
    rig.ev.unplug()
    rig.clock.sleep(SAFE_DWELL_S, "vehicle unplugged: the acknowledgement")
    check_recovered(rig, "trip acknowledged, fault gone, no vehicle: ready", "in a new session after the acknowledged trip")


@pytest.mark.hazardous
@pytest.mark.req("RCD-06", "LED-12")
def test_unplugging_while_the_fault_persists_does_not_acknowledge_the_trip(charging):
    """Unplugging is the acknowledgement only once the residual current is gone: a vehicle plugged
    in again while it still flows must not be charged."""
    rig = charging
    t0, _ = timed_trip(rig, trip_point_ma(rig, "rcd.trip_60ma_max_s"), "rcd.trip_60ma_max_s")
    rig.ev.unplug()
    rig.clock.sleep(SAFE_DWELL_S, "vehicle unplugged, the residual current still on")
    plug_and_ask(rig)
    check_trip_holds(rig, t0, "plugged in again and asking, the residual current still on",
                     "unplugging acknowledged the trip while the residual current persisted")


@pytest.mark.hazardous
@pytest.mark.req("RCD-06", "LED-12")
def test_the_fault_going_after_the_unplug_completes_the_acknowledgement(charging):
    """rcd_reset "unplug" is two conditions, not an order: unplugged while the residual current
    still flows, and the current stopping afterwards, the unit is ready again without a second
    unplug (a unit that looks for the fault only at the unplug event stays red until power-cycled)."""
    rig = charging
    timed_trip(rig, trip_point_ma(rig, "rcd.trip_60ma_max_s"), "rcd.trip_60ma_max_s")
    rig.ev.unplug()
    rig.clock.sleep(SAFE_DWELL_S, "vehicle unplugged, the residual current still on")
    expect_led(rig, "red_solid", "unplugged while the residual current persists: the trip holds")
    rig.injector.off()
    rig.clock.sleep(SAFE_DWELL_S, "residual current gone, the vehicle already unplugged")
    check_recovered(rig, "unplugged earlier and now the fault is gone: trip acknowledged, ready",
                    "in a new session after the trip acknowledged in the other order")


@pytest.mark.hazardous
@pytest.mark.req("RCD-06", "LED-12")
def test_a_fault_that_persists_through_a_power_loss_is_seen_again_at_power_up(charging):
    """"No reclosing while the fault persists" holds across a loss of supply: the supply comes back
    with the residual current still flowing and the vehicle still asking, and the unit must not
    charge (to the detector the current appears suddenly at power-up, so RCD-01..03's times hold)."""
    rig = charging
    t0, _ = timed_trip(rig, trip_point_ma(rig, "rcd.trip_60ma_max_s"), "rcd.trip_60ma_max_s")
    rig.power_cycle()
    check_trip_holds(rig, t0, "supply back, residual current still on, vehicle still asking",
                     "after the power loss, while the residual current persisted")


# ----------------------------------------------------------------------------- around the thresholds
BOUNDARIES = ["rcd.no_trip_max_ma", "rcd.threshold_ma", "rcd.trip_60ma_max_s", "rcd.trip_200ma_max_s"]


def boundary_ma(rig, key: str) -> float:
    return rig.limit(key) if key.endswith("_ma") else trip_point_ma(rig, key)


@pytest.mark.hazardous
@pytest.mark.req("RCD-01", "RCD-02", "RCD-03", "RCD-04")
@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
# the corners always run: the highest level that must not trip, the lowest that must
@example(boundary="rcd.no_trip_max_ma", margins=0)
@example(boundary="rcd.threshold_ma", margins=0)
@given(boundary=st.sampled_from(BOUNDARIES), margins=st.integers(min_value=-2, max_value=2))
def test_residual_currents_around_the_thresholds(ready, boundary, margins):
    """A level `margins` boundary-margin steps from a boundary: at or below rcd.no_trip_max_ma no
    trip; at or above the threshold a trip within the time of the highest test point at or below
    the level; in between (above 3 mA, below 6 mA) either is allowed."""
    rig = ready
    milliamps = boundary_ma(rig, boundary) + margins * rig.limit("rcd.boundary_margin_ma")
    rig.safe_state()
    rig.clock.sleep(SAFE_DWELL_S, "unit settles in the safe state: residual current gone, unplugged")
    start_charging(rig)
    time_key = applicable_trip_time(rig, milliamps)
    if time_key is not None:
        timed_trip(rig, milliamps, time_key)
        return
    require_closed(rig, phase_pins(rig))
    t0 = inject(rig, milliamps)
    rig.clock.sleep(no_trip_watch_s(rig), f"{milliamps:g} mA residual DC")
    if milliamps <= rig.limit("rcd.no_trip_max_ma"):
        assert_no_trip(rig, t0, milliamps)
