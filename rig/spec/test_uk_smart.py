"""UK Smart Charge Points Regulations mode: the random delay (MODE-01, MODE-02, LED-08) and the
default weekday peak hours in UK local time (MODE-03).

A delay is measured as the time from the vehicle asking for power (state C) to L1 going live at
the vehicle connector (contact sense, exact edge time), minus the unit's fixed start latency.
That latency is unknown to the documents, so the tests measure it with RandomDelayMaxS = 0, and
judge whole seconds by the fractional parts of the measured times agreeing with each other.
Calendar times are chosen with rig.set_time() in UK local time; numbers come from the limits data.
"""

from __future__ import annotations

import pytest

from rig.spec import stats
from rig.spec.steps import (change_configuration, check_offered_duty, clock_at, data_transfer, first_sense_edge,
                              latest_status, plug_and_ask, set_mode, sleep_until, uk_time, unplug, wait_l1)

SATURDAY = uk_time(2026, 1, 10, 0, 0)  # a weekend in GMT: no peak hours apply
MONDAY = (2026, 1, 12)  # weekdays in GMT (UK local = UTC)
BST_MONDAY = (2026, 3, 30)  # the first Monday after the clock went forward (29 March 2026)
LONG_POLL_S = 5.0  # how often long waits look; edge times come from the pin, not the poll
RATES_A = (16.0, 10.0, 8.0)  # MaxCurrentA values switched between, then a site limit below both


# ----------------------------------------------------------------------------- helpers
def delay_max_key(rig) -> str:
    return rig.profile["ocpp"]["config_random_delay_max"]


def top_s(rig) -> int:
    """The documented default maximum of the random delay (SI 2021/1467 reg 11)."""
    return int(rig.limit("mode.random_delay_max_s"))


def start_timeout_s(rig, max_delay_s: float) -> float:
    return max_delay_s + rig.limit("cp.contactor_close_max_s") + 1.0


def one_start(rig, max_delay_s: float) -> float | None:
    """One session: seconds from asking for power to L1 live (None: not within the largest
    allowed delay plus the contactor's close time), then unplugged."""
    asked = plug_and_ask(rig)
    closed = wait_l1(rig, True, start_timeout_s(rig, max_delay_s), poll_s=LONG_POLL_S)
    unplug(rig)
    return None if closed is None else closed - asked


def measure_latency(rig) -> list[float]:
    """The unit's fixed start latency, with RandomDelayMaxS = 0 (restored after the test)."""
    rig.configure(delay_max_key(rig), 0)
    out = []
    for i in range(int(rig.limit("mode.delay_latency_calibrations"))):
        t = one_start(rig, 0)
        assert t is not None, "RandomDelayMaxS = 0: no energy within the contactor's close time of asking"
        rig.check(f"start latency with no random delay (session {i + 1})", t, "s", 0.0,
                  rig.limit("cp.contactor_close_max_s"), rig.source_of("cp.contactor_close_max_s"),
                  resolution=rig.pilot.resolution_s)
        out.append(t)
    return out


def start_times(rig, sessions: int, max_delay_s: float, what: str) -> list[float]:
    measured = []
    for i in range(sessions):
        t = one_start(rig, max_delay_s)
        assert t is not None, (f"{what}, session {i + 1}: no energy within {start_timeout_s(rig, max_delay_s):g} s "
                               f"of asking: the random delay exceeds {max_delay_s:g} s")
        measured.append(t)
    return measured


def check_delays_in_range(rig, delays: list[float], max_delay_s: float, source: str) -> None:
    slack = rig.limit("mode.delay_fraction_spread_max_s")
    rig.check("shortest random delay", min(delays), "s", -slack, None, source, resolution=rig.pilot.resolution_s)
    rig.check("longest random delay", max(delays), "s", None, max_delay_s + slack, source,
              resolution=rig.pilot.resolution_s)


def check_whole_seconds(rig, measured: list[float]) -> None:
    """Whole-second delays plus one fixed latency: every measured time has the same fractional part."""
    spread = stats.circular_spread([t % 1.0 for t in measured])
    rig.check("spread of the fractional parts of the measured start times", spread, "s", None,
              rig.limit("mode.delay_fraction_spread_max_s"),
              f"MODE-01 whole seconds; {rig.source_of('mode.delay_fraction_spread_max_s')}",
              resolution=rig.pilot.resolution_s)


def check_some_delay(rig, delays: list[float], what: str) -> None:
    """Several fresh delays at a relevant time: not all of them can be (nearly) zero."""
    rig.check(f"longest of {len(delays)} random delays {what}", max(delays), "s",
              rig.limit("mode.edge_delay_min_any_s"), None,
              f"MODE-01 a fresh random delay at each relevant time; {rig.source_of('mode.edge_delay_min_any_s')}",
              resolution=rig.pilot.resolution_s)


# ----------------------------------------------------------------------------- MODE-01: the distribution
@pytest.mark.req("MODE-01")
def test_random_delay_is_uniform_over_whole_seconds_0_to_600(ready):
    """The delay at the start of charging, judged as a distribution over many sessions.

    Sample size: mode.delay_sample_size = 28 sessions, chi-square against uniform 0..600 s in
    mode.delay_gof_bins = 5 equal-probability bins at significance mode.delay_gof_alpha = 0.001.
    28 is the smallest n whose exact power (every way 28 sessions fall into 5 bins enumerated,
    tests/harness/test_spec_stats.py) reaches mode.delay_power_min = 0.99 against a delay capped
    at 300 s (drawn over 0..300 s: power 1.0; clamped min(U(0..600), 300): power 1.0) and an
    always-0 delay (power 1.0); with 27 the clamped cap is caught only 99.48 % / the 0..300 draw
    93.8 % of the time. A good unit fails with probability 0.00098 (exact size). Whole seconds and
    the 0..600 s range are judged on every session, the fit on the binned whole seconds.
    """
    rig = ready
    set_mode(rig, "UKSmart")
    rig.set_time(SATURDAY)
    top = top_s(rig)
    measured = start_times(rig, int(rig.limit("mode.delay_sample_size")), top, "default maximum")
    latency = measure_latency(rig)
    check_whole_seconds(rig, measured + latency)
    base = sorted(latency)[len(latency) // 2]
    delays = [t - base for t in measured]
    check_delays_in_range(rig, delays, top, rig.source_of("mode.random_delay_max_s"))
    whole = [round(d) for d in delays]
    rig.check_limit("resolution of the random delay (common step of the delays)", stats.lattice_step(whole),
                    high="mode.delay_lattice_max_s")
    fit = stats.chi_square_uniformity(whole, 0, top, int(rig.limit("mode.delay_gof_bins")))
    rig.check("uniformity of the random delay (chi-square p-value)", fit.p_value, "", rig.limit("mode.delay_gof_alpha"),
              None, f"MODE-01 uniform 0..{top} s; {fit.explain()}; {rig.source_of('mode.delay_gof_alpha')}")


@pytest.mark.req("MODE-01", "LED-08")
def test_waiting_on_the_delay_shows_green_circle_suspended_and_no_pwm(ready):
    """While the delay runs: green circle, SuspendedEVSE, no PWM, contactor open. A session whose
    delay ends before the LED has been watched proves nothing, so another session is tried."""
    rig = ready
    set_mode(rig, "UKSmart")
    rig.set_time(SATURDAY)
    watch = 2 * rig.profile["led"]["waveforms"]["window_s"]
    for _ in range(int(rig.limit("mode.delay_obeyed_samples"))):
        asked = plug_and_ask(rig)
        rig.clock.sleep(rig.limit("ocpp.status_report_max_s"), "delay running")
        m = rig.pilot.measure_cp()
        seen = rig.wait_for_led("green_circle", watch)
        status = latest_status(rig)
        still_waiting = first_sense_edge(rig, "sense_l1", True, asked) is None
        if still_waiting:
            assert not m.pwm, f"PWM on while waiting on the random delay: {m}"
            what = "waiting on the random delay"
            assert seen.state == "green_circle", f"{what}: expected green circle, saw {seen.explain()}"
            assert status == "SuspendedEVSE", f"{what}: expected SuspendedEVSE, last status {status}"
            return
        unplug(rig)
    pytest.fail("every session's delay ended within a few seconds: cannot watch the wait (and a 0..600 s delay "
                "should not do that)")


# ----------------------------------------------------------------------------- MODE-02: maximum and override
@pytest.mark.req("MODE-02")
def test_delay_maximum_settable_0_to_1800_only(ready):
    rig = ready
    key = delay_max_key(rig)
    limit = int(rig.limit("mode.random_delay_limit_s"))
    for good in (0, limit, top_s(rig)):
        rig.configure(key, good)
        got = rig.central.call("GetConfiguration", {"key": [key]}, cp_id=rig.cp_id)["configurationKey"]
        assert [k["value"] for k in got] == [str(good)], f"{key} = {good} accepted but reads back {got}"
    for bad in (limit + 1, -1, "600.5", "ten"):
        status = change_configuration(rig, key, bad)
        assert status == "Rejected", f"{key} = {bad!r} answered {status}: only whole seconds 0..{limit} may be set"


@pytest.mark.req("MODE-02", "MODE-01")
def test_changed_delay_maximum_is_obeyed(ready):
    """A smaller maximum (60 s): every delay inside it. The largest (1800 s): every delay inside
    it and, over mode.delay_obeyed_samples sessions, at least one beyond the old 600 s."""
    rig = ready
    set_mode(rig, "UKSmart")
    rig.set_time(SATURDAY)
    latency = measure_latency(rig)
    base = sorted(latency)[len(latency) // 2]
    sessions = int(rig.limit("mode.delay_obeyed_samples"))
    small = top_s(rig) // 10
    rig.configure(delay_max_key(rig), small)
    measured = start_times(rig, sessions, small, f"RandomDelayMaxS = {small}")
    check_delays_in_range(rig, [t - base for t in measured], small, "MODE-02 the changed maximum is obeyed")
    large = int(rig.limit("mode.random_delay_limit_s"))
    rig.configure(delay_max_key(rig), large)
    long_ones = []
    for _ in range(sessions):
        long_ones += start_times(rig, 1, large, f"RandomDelayMaxS = {large}")
        if long_ones[-1] - base > top_s(rig):
            break
    check_delays_in_range(rig, [t - base for t in long_ones], large, "MODE-02 the changed maximum is obeyed")
    rig.check(f"longest delay with RandomDelayMaxS = {large}", max(long_ones) - base, "s", top_s(rig), None,
              f"MODE-02 a raised maximum is used: P(all {sessions} uniform 0..{large} draws <= {top_s(rig)}) "
              f"= {(1 / 3) ** sessions:.1e}", resolution=rig.pilot.resolution_s)


@pytest.mark.req("MODE-02")
def test_owner_override_ends_the_delay(ready):
    rig = ready
    set_mode(rig, "UKSmart")
    rig.set_time(SATURDAY)
    rig.configure(delay_max_key(rig), int(rig.limit("mode.random_delay_limit_s")))
    for _ in range(int(rig.limit("mode.delay_obeyed_samples"))):
        plug_and_ask(rig)
        rig.clock.sleep(rig.limit("ocpp.status_report_max_s"), "delay running")
        if rig.pilot.sense().l1:
            unplug(rig)  # this delay was short: try a session that is still waiting
            continue
        reply = data_transfer(rig, "datatransfer_skip_delay")
        assert reply.get("status") == "Accepted", f"SkipRandomDelay answered {reply}"
        sent = rig.clock.now()
        closed = wait_l1(rig, True, rig.limit("mode.override_start_max_s") + 1.0, poll_s=0.05)
        rig.check("energy after the owner's override", None if closed is None else closed - sent, "s", 0.0,
                  rig.limit("mode.override_start_max_s"), rig.source_of("mode.override_start_max_s"),
                  resolution=rig.pilot.resolution_s)
        return
    pytest.fail("no session was still waiting on its delay: cannot try the override")


# ----------------------------------------------------------------------------- MODE-01: other relevant times
@pytest.mark.req("MODE-01", "MODE-03")
def test_fresh_delay_when_the_evening_peak_ends(ready):
    """A vehicle waiting through the 16:00-22:00 peak starts at 22:00 plus a fresh random delay,
    on mode.edge_delay_samples weekdays."""
    rig = ready
    set_mode(rig, "UKSmart")
    delays = []
    for day in range(int(rig.limit("mode.edge_delay_samples"))):
        rig.set_time(uk_time(*MONDAY[:2], MONDAY[2] + day, 21, 50))
        plug_and_ask(rig)
        peak_end = clock_at(rig, uk_time(*MONDAY[:2], MONDAY[2] + day, 22, 0))
        closed = wait_l1(rig, True, peak_end - rig.clock.now() + start_timeout_s(rig, top_s(rig)), poll_s=LONG_POLL_S)
        assert closed is not None, f"no energy within {top_s(rig)} s (+ close time) of the 22:00 peak end"
        rig.check("energy before the 22:00 peak end", closed - peak_end, "s", -rig.limit("mode.window_early_max_s"),
                  None, f"MODE-03 no charging starts in a peak; {rig.source_of('mode.window_early_max_s')}",
                  resolution=rig.pilot.resolution_s)
        delays.append(closed - peak_end)
        unplug(rig)
    check_delays_in_range(rig, delays, top_s(rig) + rig.limit("cp.contactor_close_max_s"),
                          f"MODE-01 peak end + delay; {rig.source_of('mode.random_delay_max_s')} + contactor close")
    check_some_delay(rig, delays, "at the 22:00 peak end")


@pytest.mark.req("MODE-01")
def test_fresh_delay_before_stopping_when_the_evening_peak_starts(ready):
    """Charging at 16:00 on a weekday stops after a fresh random delay (a rate decrease)."""
    rig = ready
    set_mode(rig, "UKSmart")
    delays = []
    stop_allow = top_s(rig) + rig.limit("mode.window_stop_max_s")
    for day in range(int(rig.limit("mode.edge_delay_samples"))):
        rig.set_time(uk_time(*MONDAY[:2], MONDAY[2] + day, 15, 30))
        plug_and_ask(rig)
        started = wait_l1(rig, True, start_timeout_s(rig, top_s(rig)), poll_s=LONG_POLL_S)
        assert started is not None, "no energy off-peak"
        rig.ev.follow_pwm()
        peak = clock_at(rig, uk_time(*MONDAY[:2], MONDAY[2] + day, 16, 0))
        rig.clock.sleep(peak - rig.clock.now() - 1.0, "charging until the peak")
        assert rig.pilot.sense().l1, "charging stopped before the 16:00 peak"
        opened = wait_l1(rig, False, stop_allow + 1.0, poll_s=LONG_POLL_S)
        assert opened is not None, f"still charging {stop_allow:g} s after the 16:00 peak started"
        delays.append(opened - peak)
        unplug(rig)
    check_delays_in_range(rig, delays, stop_allow,
                          f"MODE-01 peak start + delay; {rig.source_of('mode.random_delay_max_s')} + "
                          f"{rig.source_of('mode.window_stop_max_s')}")
    check_some_delay(rig, delays, "at the 16:00 peak start")


def offer_change_bounds(rig, old_a: float, timeout_s: float) -> tuple[float, float | None]:
    """(last clock time the PWM still offered `old_a`, first time it offered something else or
    None). Polled finely for the first seconds (a missing delay shows there), coarsely after."""
    tol = rig.limit("mtr.current_tolerance_a")
    fine_s = 2 * rig.limit("mode.edge_delay_min_any_s")
    start = last_old = rig.clock.now()
    while rig.clock.now() - start <= timeout_s:
        m = rig.pilot.measure_cp()
        if m.offered_current_a is None or abs(m.offered_current_a - old_a) > tol:
            return last_old, rig.clock.now()
        last_old = rig.clock.now()
        rig.clock.sleep(1.0 if last_old - start < fine_s else fine_s, "waiting for the new rate")
    return last_old, None


@pytest.mark.req("MODE-01")
def test_fresh_delay_when_the_current_limit_changes(ready):
    """A new MaxCurrentA while charging is applied after a fresh random delay, the old rate until
    then; a site limit (load balancing) is applied at once."""
    rig = ready
    set_mode(rig, "UKSmart")
    rig.set_time(SATURDAY)
    key = rig.profile["ocpp"]["config_current_limit"]
    rates = RATES_A[:2]
    rig.configure(key, rates[0])
    plug_and_ask(rig, rates[0])
    assert wait_l1(rig, True, start_timeout_s(rig, top_s(rig)), poll_s=LONG_POLL_S) is not None, "no energy"
    rig.clock.sleep(rig.limit("cp.duty_follow_s"), "charging settles")
    delays = []
    for i in range(int(rig.limit("mode.edge_delay_samples"))):
        old, new = rates[i % 2], rates[(i + 1) % 2]
        rig.configure(key, new)
        sent = rig.clock.now()
        last_old, at = offer_change_bounds(rig, old, top_s(rig) + rig.limit("cp.duty_follow_s"))
        assert at is not None, f"MaxCurrentA {old:g} -> {new:g} A: the offer did not change within the delay's maximum"
        check_offered_duty(rig, rig.pilot.measure_cp(), new, f"after MaxCurrentA {old:g} -> {new:g} A")
        delays.append(last_old - sent)  # the old rate held at least this long
        rig.ev.draw(new)
    check_delays_in_range(rig, delays, top_s(rig) + rig.limit("cp.duty_follow_s"),
                          f"MODE-01 rate change + delay; {rig.source_of('mode.random_delay_max_s')}")
    check_some_delay(rig, delays, "at a rate change")
    site = rig.profile["ocpp"]["config_site_limit"]
    current = rates[len(delays) % 2]
    lower = RATES_A[2]
    rig.configure(site, lower)
    _, at = offer_change_bounds(rig, current, rig.limit("cp.duty_follow_s"))
    assert at is not None, (f"site limit {lower:g} A not applied within {rig.limit('cp.duty_follow_s'):g} s: "
                            "load balancing is exempt from the random delay (regs 11)")


@pytest.mark.req("MODE-01", "CP-06")
def test_another_key_changed_while_charging_leaves_the_offer_alone(ready):
    """Only a change of the rate is a relevant time (reg 11): a change of another key
    (MeterValueSampleInterval) while charging in UK Smart leaves the offer at MaxCurrentA, at once
    and after the longest delay, and the energy on."""
    rig = ready
    set_mode(rig, "UKSmart")
    rig.set_time(SATURDAY)
    rate = RATES_A[0]
    rig.configure(rig.profile["ocpp"]["config_current_limit"], rate)
    plug_and_ask(rig, rate)
    closed = wait_l1(rig, True, start_timeout_s(rig, top_s(rig)), poll_s=LONG_POLL_S)
    assert closed is not None, "no energy"
    rig.clock.sleep(rig.limit("cp.duty_follow_s"), "charging settles")
    rig.configure("MeterValueSampleInterval", "30")
    for wait_s, when in ((rig.limit("cp.duty_follow_s"), "just after"), (top_s(rig), "the longest delay after")):
        rig.clock.sleep(wait_s, f"MeterValueSampleInterval changed: {when}")
        check_offered_duty(rig, rig.pilot.measure_cp(), rate, f"MaxCurrentA {rate:g} A, {when} another key changed")
    assert first_sense_edge(rig, "sense_l1", False, closed) is None, "energy off after another key changed"


# ----------------------------------------------------------------------------- MODE-03: peak hours
def check_waits_for(rig, opens_at, what: str) -> float:
    """Plugged in and asking before `opens_at` (a UK datetime): no energy before it, energy within
    the delay's maximum after it. Returns the delay seen."""
    asked = plug_and_ask(rig)
    start = clock_at(rig, opens_at)
    closed = wait_l1(rig, True, start - rig.clock.now() + start_timeout_s(rig, top_s(rig)), poll_s=LONG_POLL_S)
    assert closed is not None, f"{what}: no energy within {top_s(rig)} s (+ close time) of {opens_at:%a %H:%M %Z}"
    rig.check(f"{what}: energy before {opens_at:%H:%M %Z}", closed - start, "s",
              -rig.limit("mode.window_early_max_s"), None,
              f"MODE-03 no start in a peak (UK local time); {rig.source_of('mode.window_early_max_s')}",
              resolution=rig.pilot.resolution_s)
    rig.check(f"{what}: start after {opens_at:%H:%M %Z}", closed - start, "s", None,
              top_s(rig) + rig.limit("cp.contactor_close_max_s"),
              f"MODE-03 next allowed window + delay; {rig.source_of('mode.random_delay_max_s')}",
              resolution=rig.pilot.resolution_s)
    assert closed >= asked
    unplug(rig)
    return closed - start


@pytest.mark.req("MODE-03")
def test_no_start_in_the_morning_peak_waits_until_11(ready):
    rig = ready
    set_mode(rig, "UKSmart")
    rig.set_time(uk_time(*MONDAY, 8, 30))
    check_waits_for(rig, uk_time(*MONDAY, 11, 0), "Monday 08:30 GMT")


@pytest.mark.req("MODE-03")
def test_no_start_in_the_evening_peak_waits_until_22(ready):
    rig = ready
    set_mode(rig, "UKSmart")
    rig.set_time(uk_time(*MONDAY[:2], MONDAY[2] + 1, 16, 5))
    check_waits_for(rig, uk_time(*MONDAY[:2], MONDAY[2] + 1, 22, 0), "Tuesday 16:05 GMT")


@pytest.mark.req("MODE-03")
@pytest.mark.parametrize("hour", [9, 17])
def test_weekend_has_no_peak_hours(ready, hour):
    rig = ready
    set_mode(rig, "UKSmart")
    rig.set_time(uk_time(2026, 1, 10, hour, 0))
    check_waits_for(rig, uk_time(2026, 1, 10, hour, 0), f"Saturday {hour:02d}:00")


@pytest.mark.req("MODE-03")
def test_peak_hours_follow_uk_local_time_across_the_clock_change(ready):
    """The unit's clock runs across the change to BST (01:00 UTC, 29 March 2026), then is put at
    Monday 08:30 BST, inside the morning peak (07:30 UTC is not); 21:30 BST waits for 22:00 BST,
    not 22:00 UTC."""
    rig = ready
    set_mode(rig, "UKSmart")
    rig.set_time(uk_time(2026, 3, 29, 0, 50))
    sleep_until(rig, uk_time(2026, 3, 29, 2, 10), "across the clock change (01:00 GMT -> 02:00 BST)")
    rig.set_time(uk_time(*BST_MONDAY, 8, 30))
    check_waits_for(rig, uk_time(*BST_MONDAY, 11, 0), "Monday 08:30 BST")
    sleep_until(rig, uk_time(*BST_MONDAY, 21, 30), "into the evening peak")
    check_waits_for(rig, uk_time(*BST_MONDAY, 22, 0), "Monday 21:30 BST")


@pytest.mark.req("MODE-03")
def test_owner_can_move_or_remove_the_peak_hours(ready):
    rig = ready
    set_mode(rig, "UKSmart")
    key = rig.profile["ocpp"]["config_peak_hours"]
    rig.configure(key, "12:00-13:00")
    rig.set_time(uk_time(*MONDAY, 12, 10))
    check_waits_for(rig, uk_time(*MONDAY, 13, 0), "owner's peak 12:00-13:00, Monday 12:10")
    rig.configure(key, "")
    rig.set_time(uk_time(*MONDAY, 17, 0))
    check_waits_for(rig, uk_time(*MONDAY, 17, 0), "no peak hours, Monday 17:00")


@pytest.mark.req("MODE-03")
def test_owner_peak_hours_across_midnight_hold_back_after_midnight_of_a_weekday_night(ready):
    """An owner's peak 23:00-01:00 does not hold a vehicle back at Sunday 00:20 and holds one at
    Tuesday 00:20 back until 01:00. Both follow from either reading of a window across midnight
    (the night that starts on a peak day, or those hours on a peak day), so neither is assumed: a
    unit that looks at the wrong yesterday, or ends the window at midnight, is caught."""
    rig = ready
    set_mode(rig, "UKSmart")
    rig.configure(rig.profile["ocpp"]["config_peak_hours"], "23:00-01:00")
    rig.set_time(uk_time(2026, 1, 11, 0, 20))
    check_waits_for(rig, uk_time(2026, 1, 11, 0, 20), "owner's peak 23:00-01:00, Sunday 00:20")
    rig.set_time(uk_time(*MONDAY[:2], MONDAY[2] + 1, 0, 20))
    check_waits_for(rig, uk_time(*MONDAY[:2], MONDAY[2] + 1, 1, 0), "owner's peak 23:00-01:00, Tuesday 00:20")


@pytest.mark.req("MODE-03")
def test_owner_peak_hours_ending_off_the_hour_are_followed_to_the_minute(ready):
    """Peak hours that end at 10:45 release the vehicle at 10:45 (+ its delay), not at the next
    whole hour: the unit must wake at the edge itself (a surviving mutant woke 20 min early, found
    itself still in the peak and slept to the hour)."""
    rig = ready
    set_mode(rig, "UKSmart")
    rig.configure(rig.profile["ocpp"]["config_peak_hours"], "08:15-10:45")
    rig.set_time(uk_time(*MONDAY, 9, 0))
    check_waits_for(rig, uk_time(*MONDAY, 10, 45), "owner's peak 08:15-10:45, Monday 09:00")


@pytest.mark.req("MODE-03")
def test_owner_peak_hours_starting_off_the_hour_stop_charging_from_their_start(ready):
    """Peak hours that start at 16:10 stop a charging vehicle from 16:10 (+ a fresh delay), not at
    the next whole hour: a surviving mutant computed the start edge an hour early, found itself
    not yet in the peak and slept to the hourly wake-up at 17:00."""
    rig = ready
    set_mode(rig, "UKSmart")
    rig.configure(rig.profile["ocpp"]["config_peak_hours"], "16:10-21:50")
    rig.set_time(uk_time(*MONDAY, 15, 30))
    plug_and_ask(rig)
    assert wait_l1(rig, True, start_timeout_s(rig, top_s(rig)), poll_s=LONG_POLL_S) is not None, "no energy at 15:30"
    rig.ev.follow_pwm()
    peak = clock_at(rig, uk_time(*MONDAY, 16, 10))
    rig.clock.sleep(peak - rig.clock.now() - 1.0, "charging until the owner's peak")
    assert rig.pilot.sense().l1, "charging stopped before the 16:10 peak"
    stop_allow = top_s(rig) + rig.limit("mode.window_stop_max_s")
    opened = wait_l1(rig, False, stop_allow + 1.0, poll_s=LONG_POLL_S)
    rig.check("energy off after the owner's peak start at 16:10", None if opened is None else opened - peak, "s",
              0.0, stop_allow, f"MODE-03 owner's peak hours; {rig.source_of('mode.random_delay_max_s')} + "
              f"{rig.source_of('mode.window_stop_max_s')}", resolution=rig.pilot.resolution_s)
    unplug(rig)

