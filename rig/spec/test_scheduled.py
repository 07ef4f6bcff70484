"""Scheduled Charging (MODE-05, LED-09; the window's end as a stop, MODE-09).

Windows are UK local time, every day, and may wrap midnight (profile [ocpp].config_schedule_windows).
The test computes where each window lies on the calendar itself (zoneinfo), lets virtual time run
through them with a vehicle asking all along, and compares the L1 contact-sense intervals with
the windows: energy only inside, on at each opening, off at each closing, within the limits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from rig.bench.rig import SAFE_DWELL_S
from rig.spec.steps import (change_configuration, check_energy_intervals, clock_at, expect_led, l1_intervals,
                              latest_status, plug_and_ask, set_mode, sleep_until, uk_time, unplug, window_instants)

MONDAY = (2026, 1, 12)
SUNDAY = (2026, 1, 11)

# a failing example on the rig is reported as found: shrinking would replay hours of simulated charging
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


# ----------------------------------------------------------------------------- the expected intervals
def check_energy_follows_windows(rig, windows: str, asked_s: float, asked_at: datetime, until: datetime) -> None:
    """L1 intervals between the request and `until` against the windows open in that time."""
    allowed = [(clock_at(rig, s), clock_at(rig, e)) for s, e in window_instants(windows, asked_at, until)]
    check_energy_intervals(rig, allowed, asked_s, clock_at(rig, until), f"MODE-05 windows {windows!r}")


def run_schedule(rig, windows: str, plug_at: datetime, until: datetime) -> None:
    set_mode(rig, "Scheduled")
    rig.configure(rig.profile["ocpp"]["config_schedule_windows"], windows)
    rig.set_time(plug_at)
    asked_at = rig.time.now()
    asked_s = plug_and_ask(rig)
    sleep_until(rig, until, "through the schedule")
    check_energy_follows_windows(rig, windows, asked_s, asked_at, until)


def check_waiting_for_a_window(rig, since_s: float, what: str) -> None:
    """Blue pulsing, SuspendedEVSE, no PWM: the vehicle waits for the schedule (LED-09)."""
    assert not rig.pilot.sense().l1, f"{what}: energy outside the windows"
    m = rig.pilot.measure_cp()
    assert not m.pwm, f"{what}: PWM on while waiting for a window: {m}"
    expect_led(rig, "blue_pulsing", f"{what}: waiting for the selected schedule")
    status = latest_status(rig)
    assert status == "SuspendedEVSE", f"{what}: expected SuspendedEVSE while waiting for a window, last status {status}"


# ----------------------------------------------------------------------------- fixed cases
@pytest.mark.req("MODE-05", "MODE-09", "LED-09")
def test_energy_only_inside_windows_on_at_opening_off_at_closing(ready):
    rig = ready
    windows = "00:30-01:30,02:00-02:30"
    set_mode(rig, "Scheduled")
    rig.configure(rig.profile["ocpp"]["config_schedule_windows"], windows)
    rig.set_time(uk_time(*MONDAY, 0, 5))
    asked_at = rig.time.now()
    asked_s = plug_and_ask(rig)
    rig.clock.sleep(rig.limit("ocpp.status_report_max_s"))
    check_waiting_for_a_window(rig, asked_s, "00:05, first window at 00:30")
    sleep_until(rig, uk_time(*MONDAY, 1, 45), "through the first window")
    check_waiting_for_a_window(rig, asked_s, "01:45, between the windows")
    until = uk_time(*MONDAY, 3, 0)
    sleep_until(rig, until, "through the second window")
    check_energy_follows_windows(rig, windows, asked_s, asked_at, until)


@pytest.mark.req("MODE-05")
@pytest.mark.parametrize("evening", [MONDAY, SUNDAY], ids=["monday-into-tuesday", "sunday-into-monday"])
def test_window_wrapping_midnight(ready, evening):
    """Every day's window, also across the week's end (Sunday's window runs on into Monday)."""
    run_schedule(ready, "23:00-01:00", uk_time(*evening, 22, 30), uk_time(*evening[:2], evening[2] + 1, 1, 30))


@pytest.mark.req("MODE-05")
def test_windows_follow_uk_local_time_across_the_clock_change(ready):
    """29 March 2026: 00:15 GMT is 00:15 UTC, 03:00 BST is 02:00 UTC."""
    run_schedule(ready, "00:15-00:45,03:00-03:30", uk_time(2026, 3, 28, 23, 50), uk_time(2026, 3, 29, 4, 0))


@pytest.mark.req("MODE-05", "LED-09")
def test_no_windows_never_charges(ready):
    """ScheduleWindows = "": a vehicle asking from midnight to noon gets nothing, and the LED says it waits."""
    rig = ready
    set_mode(rig, "Scheduled")
    rig.configure(rig.profile["ocpp"]["config_schedule_windows"], "")
    rig.set_time(uk_time(*MONDAY, 0, 0))
    asked_s = plug_and_ask(rig)
    sleep_until(rig, uk_time(*MONDAY, 12, 0), "half a day with no window")
    assert l1_intervals(rig, asked_s, rig.clock.now()) == [], "energy with no schedule window at all"
    check_waiting_for_a_window(rig, asked_s, "no windows")


@pytest.mark.req("MODE-05")
@pytest.mark.parametrize("value", ["25:00-26:00", "10:00", "ten-eleven", "10:00-11:00;12:00-13:00", "10:60-11:00"])
def test_malformed_windows_rejected(ready, value):
    status = change_configuration(ready, ready.profile["ocpp"]["config_schedule_windows"], value)
    assert status == "Rejected", f"ScheduleWindows = {value!r} answered {status}"


# ----------------------------------------------------------------------------- explored
QUARTERS = st.integers(min_value=0, max_value=95)  # a window edge on a 15-minute grid
DAYS = [(2026, 1, 12), (2026, 3, 30), (2026, 7, 4)]  # a GMT Monday, a BST Monday, a BST Saturday


@st.composite
def schedules(draw):
    windows = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        start = draw(QUARTERS)
        length = draw(st.integers(min_value=1, max_value=8))
        windows.append(f"{start // 4:02d}:{start % 4 * 15:02d}-{(start + length) % 96 // 4:02d}:"
                       f"{(start + length) % 96 % 4 * 15:02d}")
    return ",".join(windows)


@pytest.mark.req("MODE-05")
@settings(max_examples=4, deadline=None, derandomize=True, database=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(windows="23:45-00:15,00:15-01:00", day=(2026, 1, 12), plug_quarter=92)
@given(windows=schedules(), day=st.sampled_from(DAYS), plug_quarter=QUARTERS)
def test_schedules_explored(ready, windows, day, plug_quarter):
    """Random windows (1-3, 15 min to 2 h, wrapping allowed) and a plug-in time; three hours of a
    vehicle asking: energy exactly in the windows (merged where they touch)."""
    rig = ready
    rig.safe_state()
    rig.clock.sleep(SAFE_DWELL_S, "unit settles: the previous example unplugged")
    plug_at = uk_time(*day, plug_quarter // 4, plug_quarter % 4 * 15) + timedelta(minutes=5)
    run_schedule(rig, windows, plug_at, plug_at + timedelta(hours=3))
    unplug(rig)
