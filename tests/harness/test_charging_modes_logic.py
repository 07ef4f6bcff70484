"""The emulated charger's mode rules (rig/sim/charging_modes.py), without a bench.

These pin the reference behaviour the spec suite judges a unit against: the random delay's range
and whole seconds, weekday peaks in UK local time across both 2026 clock changes (29 March and
25 October), daily windows that wrap midnight, and the Sense planner's rule.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from rig.sim import charging_modes as M

UTC = timezone.utc
PEAKS = "08:00-11:00,16:00-22:00"
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]


def uk(y, mo, d, h, mi=0, s=0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=M.UK)


def utc(y, mo, d, h, mi=0, s=0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def peaks() -> M.DailyWindows:
    return M.DailyWindows.parse(PEAKS, WEEKDAYS)


# ------------------------------------------------------------------ random delay
def test_delay_maximum_accepts_whole_seconds_0_to_1800():
    assert M.parse_random_delay_max("0") == 0
    assert M.parse_random_delay_max("600") == 600
    assert M.parse_random_delay_max("1800") == 1800


@pytest.mark.parametrize("bad", ["1801", "-1", "600.0", "6e2", "", "abc", "60 0"])
def test_delay_maximum_rejects_anything_else(bad):
    with pytest.raises(ValueError):
        M.parse_random_delay_max(bad)


def test_delay_draw_is_whole_seconds_over_the_full_range():
    """The charger draws rng.randint(0, max): both ends reachable, nothing outside."""
    rng = random.Random(7)
    draws = [rng.randint(0, 600) for _ in range(20000)]
    assert min(draws) == 0 and max(draws) == 600
    assert all(isinstance(d, int) for d in draws)


# ------------------------------------------------------------------ windows
def test_windows_parse_and_wrap_over_midnight():
    ws = M.parse_windows("00:30-04:30, 23:00-02:00")
    assert ws == [M.Window(30, 270), M.Window(1380, 120)]
    assert not ws[0].wraps and ws[1].wraps
    assert M.parse_windows("") == [] and M.parse_windows("  ") == []


@pytest.mark.parametrize("bad", ["24:00-01:00", "8:00-11:00", "08:00-08:00", "08:00", "08:00-11:00,",
                                 "08:60-09:00", "08:00_11:00", "a-b"])
def test_malformed_windows_are_refused(bad):
    with pytest.raises(ValueError):
        M.parse_windows(bad)


def test_daily_window_edges_are_exact():
    w = M.DailyWindows.parse("13:00-14:00")
    assert not w.contains(uk(2026, 1, 7, 12, 59, 59))
    assert w.contains(uk(2026, 1, 7, 13, 0, 0))
    assert w.contains(uk(2026, 1, 7, 13, 59, 59))
    assert not w.contains(uk(2026, 1, 7, 14, 0, 0))
    assert w.next_edge(uk(2026, 1, 7, 12, 0)) == uk(2026, 1, 7, 13, 0)
    assert w.next_edge(uk(2026, 1, 7, 13, 0)) == uk(2026, 1, 7, 14, 0)  # strictly after


def test_wrapping_window_covers_both_sides_of_midnight():
    w = M.DailyWindows.parse("23:00-02:00")
    assert w.contains(uk(2026, 1, 7, 23, 30)) and w.contains(uk(2026, 1, 8, 1, 59))
    assert not w.contains(uk(2026, 1, 8, 2, 0)) and not w.contains(uk(2026, 1, 7, 22, 59))
    assert w.next_edge(uk(2026, 1, 7, 23, 30)) == uk(2026, 1, 8, 2, 0)


def test_no_windows_never_contain_and_have_no_edge():
    w = M.DailyWindows.parse("")
    assert not w.contains(uk(2026, 1, 7, 12)) and w.next_edge(uk(2026, 1, 7, 12)) is None


# ------------------------------------------------------------------ peak hours
@pytest.mark.parametrize("when, expected", [
    (uk(2026, 1, 5, 7, 59, 59), False),   # Monday before the morning peak
    (uk(2026, 1, 5, 8, 0), True),
    (uk(2026, 1, 5, 10, 59, 59), True),
    (uk(2026, 1, 5, 11, 0), False),
    (uk(2026, 1, 5, 15, 59, 59), False),
    (uk(2026, 1, 5, 16, 0), True),
    (uk(2026, 1, 5, 21, 59, 59), True),
    (uk(2026, 1, 5, 22, 0), False),
    (uk(2026, 1, 9, 17, 0), True),        # Friday
    (uk(2026, 1, 10, 9, 0), False),       # Saturday
    (uk(2026, 1, 11, 17, 0), False),      # Sunday
])
def test_weekday_peaks_in_winter(when, expected):
    assert peaks().contains(when) is expected


def test_peaks_follow_bst_after_the_spring_clock_change():
    """29 March 2026 01:00 UTC the UK moves to BST: 16:00 local is 15:00 UTC from Monday 30 March."""
    p = peaks()
    assert p.contains(utc(2026, 3, 30, 15, 0))       # 16:00 BST
    assert not p.contains(utc(2026, 3, 30, 14, 59))  # 15:59 BST
    assert p.contains(utc(2026, 3, 30, 20, 59))      # 21:59 BST
    assert not p.contains(utc(2026, 3, 30, 21, 0))   # 22:00 BST
    # the Friday before: still GMT
    assert not p.contains(utc(2026, 3, 27, 15, 59)) and p.contains(utc(2026, 3, 27, 16, 0))


def test_peaks_follow_gmt_after_the_autumn_clock_change():
    """25 October 2026 01:00 UTC the UK returns to GMT: on Monday 26 October 08:00 local = 08:00 UTC."""
    p = peaks()
    assert p.contains(utc(2026, 10, 23, 7, 0))        # Friday 08:00 BST
    assert not p.contains(utc(2026, 10, 26, 7, 30))   # Monday 07:30 GMT
    assert p.contains(utc(2026, 10, 26, 8, 0))


def test_next_peak_edge_across_the_clock_change():
    p = peaks()
    # Friday 27 March 22:00 GMT -> the next peak starts Monday 30 March 08:00 BST = 07:00 UTC
    assert p.next_edge(utc(2026, 3, 27, 22, 0)) is not None
    edges, t = [], utc(2026, 3, 27, 22, 0)
    while t < utc(2026, 3, 30, 12, 0):
        t = p.next_edge(t)
        edges.append(t)
    starts = [e for e in edges if p.contains(e) and not p.contains(e - timedelta(seconds=1))]
    assert starts[0] == utc(2026, 3, 30, 7, 0)


def test_in_utc_evaluation_is_an_hour_off_in_summer():
    wrong = M.DailyWindows.parse(PEAKS, WEEKDAYS, timezone.utc)
    when = utc(2026, 6, 1, 15, 30)  # Monday 16:30 BST: a peak
    assert peaks().contains(when) and not wrong.contains(when)


def test_wrapping_peak_belongs_to_the_day_it_starts():
    p = M.DailyWindows.parse("22:00-02:00", WEEKDAYS)
    assert p.contains(uk(2026, 1, 9, 23, 0))       # Friday night
    assert p.contains(uk(2026, 1, 10, 1, 0))       # ... into Saturday morning
    assert not p.contains(uk(2026, 1, 10, 23, 0))  # Saturday night: no peak
    assert not p.contains(uk(2026, 1, 5, 1, 0))    # Monday 01:00 belongs to Sunday night


def test_spring_gap_edge_is_not_lost():
    """A window edge inside the skipped hour (01:30 on 29 March) still happens once."""
    w = M.DailyWindows.parse("01:30-03:00")
    edge = w.next_edge(utc(2026, 3, 29, 0, 0))
    assert edge is not None and utc(2026, 3, 29, 0, 0) < edge <= utc(2026, 3, 29, 2, 0)
    assert M.next_utc_hour(utc(2026, 3, 29, 0, 10)) == utc(2026, 3, 29, 1, 0)


# ------------------------------------------------------------------ Sense
START = utc(2026, 1, 5, 18, 0)


def tariff(prices, start=START):
    return [M.TariffSlot(start + timedelta(minutes=30 * i), float(p)) for i, p in enumerate(prices)]


def test_plan_picks_cheapest_slots_before_ready_by_with_partial_remainder():
    slots = tariff([30, 25, 10, 12, 9, 40, 8, 7, 20, 22])
    plan = M.plan_sense(slots, 25.0, utc(2026, 1, 5, 22, 30), utc(2026, 1, 5, 17, 50), 22.08)
    assert plan.feasible
    assert plan.slots == (utc(2026, 1, 5, 20, 0), utc(2026, 1, 5, 21, 0), utc(2026, 1, 5, 21, 30))
    slot_kwh = 11.04
    remainder = 25.0 - 2 * slot_kwh
    assert plan.estimated_cost_p == pytest.approx(7 * slot_kwh + 8 * slot_kwh + 9 * remainder)
    assert plan.charge_now_cost_p == pytest.approx(30 * slot_kwh + 25 * slot_kwh + 10 * remainder)
    assert plan.estimated_cost_p <= plan.charge_now_cost_p


def test_plan_ties_prefer_earlier_slots_and_boundary_counts():
    slots = tariff([5, 5, 5, 5])
    plan = M.plan_sense(slots, 7.0, utc(2026, 1, 5, 20, 0), START, 7.36)
    assert plan.slots == (START, START + M.SLOT)  # 18:00 itself is a candidate: planned at a boundary


def test_plan_skips_slot_already_started():
    slots = tariff([1, 50, 50])
    plan = M.plan_sense(slots, 3.0, utc(2026, 1, 5, 19, 30), START + timedelta(minutes=1), 7.36)
    assert plan.slots == (START + M.SLOT,)


def test_plan_infeasible_takes_every_candidate():
    slots = tariff([10, 20, 30])
    plan = M.plan_sense(slots, 50.0, utc(2026, 1, 5, 19, 0), START, 7.36)
    assert not plan.feasible and plan.slots == (START, START + M.SLOT)
    assert plan.estimated_cost_p == pytest.approx(plan.charge_now_cost_p)


def test_ignoring_ready_by_picks_late_slots():
    slots = tariff([20, 20, 1])
    good = M.plan_sense(slots, 3.0, utc(2026, 1, 5, 19, 0), START, 7.36)
    bad = M.plan_sense(slots, 3.0, utc(2026, 1, 5, 19, 0), START, 7.36, respect_ready_by=False)
    assert good.slots == (START,) and bad.slots == (START + 2 * M.SLOT,)


def test_plan_slot_edges():
    plan = M.SensePlan((START, START + 2 * M.SLOT), 7.36, 0, 0, True)
    assert plan.charging_at(START) and not plan.charging_at(START + M.SLOT)
    assert plan.next_edge(START, ends=True) == START + M.SLOT
    assert plan.next_edge(START + 3 * M.SLOT, ends=True) is None
    assert json.loads(json.dumps(plan.as_data()))["slots"] == ["2026-01-05T18:00:00Z", "2026-01-05T19:00:00Z"]


def test_half_hour_boundary_at_or_after():
    assert M.next_half_hour(START) == START
    assert M.next_half_hour(START + timedelta(microseconds=1)) == START + M.SLOT
    assert M.next_half_hour(utc(2026, 1, 5, 18, 45)) == utc(2026, 1, 5, 19, 0)


@pytest.mark.parametrize("data", [
    "not json", "[]", json.dumps({"slots": None}), json.dumps({"slots": [{"start": "2026-01-05T18:00:00", "price": 1}]}),
    json.dumps({"slots": [{"start": "2026-01-05T18:10:00Z", "price": 1}]}),
    json.dumps({"slots": [{"start": "2026-01-05T18:00:00Z", "price": "1"}]}),
    json.dumps({"slots": [{"start": "2026-01-05T18:00:00Z", "price": 1}, {"start": "2026-01-05T18:00:00Z", "price": 2}]}),
])
def test_malformed_tariffs_are_refused(data):
    with pytest.raises((ValueError, TypeError)):
        M.parse_tariff(data)


def test_an_empty_tariff_withdraws_the_tariff_data():
    assert M.parse_tariff(json.dumps({"slots": []})) == []


def test_tariff_and_target_parse():
    t = M.parse_tariff(json.dumps({"slots": [{"start": "2026-01-05T18:30:00Z", "price": -2.5},
                                             {"start": "2026-01-05T18:00:00+00:00", "price": 24.5}]}))
    assert [s.start for s in t] == [START, START + M.SLOT] and t[1].price == -2.5
    target = M.parse_target(json.dumps({"energy_kwh": 12, "ready_by": "2026-01-06T07:00:00Z"}))
    assert target == M.SenseTarget(12.0, utc(2026, 1, 6, 7, 0))
    with pytest.raises(ValueError):
        M.parse_target(json.dumps({"energy_kwh": 0, "ready_by": "2026-01-06T07:00:00Z"}))
