"""OCPP 1.6J Smart Charging, charge-point side, judged where it matters: the current the unit
offers the vehicle on the control pilot (PWM duty, IEC 61851-1), measured after each change
(OCPP-14..17). GetCompositeSchedule is checked against the same measurement, so a unit whose
answer and behaviour disagree fails. The unit claims limits in amperes (profile [ocpp] profiles;
ChargingScheduleAllowedChargingRateUnit = Current)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from rig.instruments import ocppj
from rig.instruments.central_system.messages import CallErrorReceived
from rig.spec.steps import (check_no_energy, check_offered_duty, clock_at, configuration_keys, plug_and_ask, set_mode,
                            transaction_id, unplug, wait_l1)

def schedule_profile(pid: int, purpose: str, stack: int, periods: list[tuple[int, float]], kind: str = "Absolute",
                     start: datetime | None = None, **extra) -> dict:
    """A csChargingProfiles in amperes: periods are (startPeriod s, limit A)."""
    schedule: dict = {"chargingRateUnit": "A",
                      "chargingSchedulePeriod": [{"startPeriod": s, "limit": float(a)} for s, a in periods]}
    if start is not None:
        schedule["startSchedule"] = ocppj.iso_time(start)
    return {"chargingProfileId": pid, "stackLevel": stack, "chargingProfilePurpose": purpose,
            "chargingProfileKind": kind, "chargingSchedule": schedule, **extra}


def set_profile(rig, connector: int, profile: dict) -> str:
    payload = {"connectorId": connector, "csChargingProfiles": profile}
    return rig.central.call("SetChargingProfile", payload, cp_id=rig.cp_id)["status"]


def install(rig, connector: int, profile: dict) -> None:
    status = set_profile(rig, connector, profile)
    assert status == "Accepted", f"SetChargingProfile {profile['chargingProfilePurpose']} id " \
                                 f"{profile['chargingProfileId']} on connector {connector}: {status}"


def clear(rig, **which) -> str:
    return rig.central.call("ClearChargingProfile", which, cp_id=rig.cp_id)["status"]


def rated(rig) -> float:
    return rig.profile["rated_current_a"]


def offers_at(rig, when_s: float, amps: float, what: str) -> None:
    """At clock time `when_s` plus ocpp.charging_profile_apply_max_s the pilot offers `amps`
    (below 6 A: no PWM at all, IEC 61851-1: nothing may be offered)."""
    rig.clock.sleep(max(0.0, when_s + rig.limit("ocpp.charging_profile_apply_max_s") - rig.clock.now()), what)
    m = rig.pilot.measure_cp()
    if amps < 6.0:
        assert not m.pwm, f"{what}: a limit of {amps:g} A must stop the offer; the pilot offers {m.offered_current_a} A"
        return
    assert m.pwm, f"{what}: no PWM on the pilot, expected an offer of {amps:g} A"
    check_offered_duty(rig, m, amps, f"({what})")


def still_offers_before(rig, when_s: float, amps: float, what: str) -> None:
    """Just before a period starts (one apply-time early), the previous limit still holds."""
    rig.clock.sleep(max(0.0, when_s - rig.limit("ocpp.charging_profile_apply_max_s") - rig.clock.now()), what)
    m = rig.pilot.measure_cp()
    assert m.pwm, f"{what}: no PWM on the pilot, expected {amps:g} A still"
    check_offered_duty(rig, m, amps, f"({what})")


@pytest.fixture
def no_profiles(rig):
    """Charging profiles are non-volatile in the unit: none before the test, none left after it."""
    clear(rig)
    yield rig
    if rig.central.connected(rig.cp_id):
        clear(rig)


@pytest.mark.req("OCPP-14")
def test_the_offer_follows_each_period_of_the_schedule(charging, no_profiles):
    rig = charging
    periods = [(0, 16), (120, 10), (240, 20), (360, 0)]  # 0 A: the vehicle is to be paused
    t0 = rig.clock.now()
    install(rig, 0, schedule_profile(1, "TxDefaultProfile", 0, periods, start=rig.time.now()))
    offers_at(rig, t0, 16, "first period")
    for (_, before), (start, amps) in zip(periods, periods[1:]):
        still_offers_before(rig, t0 + start, before, f"before the period from {start} s")
        offers_at(rig, t0 + start, amps, f"the period from {start} s")
    assert clear(rig, id=1) == "Accepted"
    offers_at(rig, rig.clock.now(), rated(rig), "after ClearChargingProfile")


PERIOD_STEP_S = 10  # the periods of the longest schedule start this far apart (a test condition)


def declared(rig, key: str) -> int:
    got = configuration_keys(rig, key)
    assert len(got) == 1 and got[0]["value"].isdigit(), f"{key}: {got} (OCPP 1.6 9.4: an integer the unit reports)"
    return int(got[0]["value"])


@pytest.mark.req("OCPP-14")
def test_a_schedule_of_the_most_periods_declared_is_followed_to_its_end_and_one_more_is_rejected(charging,
                                                                                               no_profiles):
    """ChargingScheduleMaxPeriods is the unit's own figure (OCPP 1.6 9.4): a schedule with that many
    periods is Accepted and followed to its last period; one period more is Rejected, not cut short
    (OCPP 1.6 5.16: a profile the unit cannot hold). Found by mutation (measurement 9): nothing held
    the unit to the figure it reports."""
    rig = charging
    most = declared(rig, "ChargingScheduleMaxPeriods")
    low = rated(rig) / 2
    periods = [(i * PERIOD_STEP_S, rated(rig)) for i in range(most - 1)] + [((most - 1) * PERIOD_STEP_S, low)]
    t0 = rig.clock.now()
    install(rig, 1, schedule_profile(31, "TxDefaultProfile", 0, periods, start=rig.time.now()))
    offers_at(rig, t0 + periods[-1][0], low, f"period {most} of {most}, the last the unit says it can hold")
    longer = periods + [(most * PERIOD_STEP_S, rated(rig))]
    status = set_profile(rig, 1, schedule_profile(32, "TxDefaultProfile", 1, longer, start=rig.time.now()))
    assert status == "Rejected", f"a schedule of {most + 1} periods (ChargingScheduleMaxPeriods {most}): {status}"
    offers_at(rig, rig.clock.now(), low, "after the Rejected longer schedule, the installed one still holds")


@pytest.mark.req("OCPP-15")
def test_as_many_profiles_as_declared_are_kept_each_taking_over_when_the_one_above_is_cleared(charging,
                                                                                              no_profiles):
    """MaxChargingProfilesInstalled is the unit's own figure (OCPP 1.6 9.4): that many
    TxDefaultProfiles, one per stack level, each a different limit, are all kept. The highest
    stack level rules (OCPP 1.6 3.13.2); cleared from the top one by one, each next one takes
    over, down to the first installed, which a unit keeping fewer than it reports has dropped.
    What a unit answers for one more than its figure OCPP 1.6 does not say: not judged."""
    rig = charging
    count = declared(rig, "MaxChargingProfilesInstalled")
    levels = declared(rig, "ChargeProfileMaxStackLevel") + 1
    if count > levels:  # a limitation of this test's design, not of the unit: a harness error
        raise RuntimeError(f"this test puts one profile on each stack level: {count} profiles, {levels} levels")
    step = (rated(rig) - 6.0) / count
    limits = [round(6.0 + k * step, 1) for k in range(count)]  # stack level k offers limits[k]
    for k, amps in enumerate(limits):
        install(rig, 1, schedule_profile(50 + k, "TxDefaultProfile", k, [(0, amps)]))
    offers_at(rig, rig.clock.now(), limits[-1], f"{count} profiles kept, stack level {count - 1} rules")
    for k in range(count - 1, 0, -1):
        assert clear(rig, id=50 + k) == "Accepted", f"ClearChargingProfile id {50 + k} (stack level {k})"
        offers_at(rig, rig.clock.now(), limits[k - 1], f"stack level {k} cleared, level {k - 1} of {count} takes over")


@pytest.mark.req("OCPP-14")
def test_a_relative_schedule_counts_from_the_start_of_the_session(ready, no_profiles):
    """OCPP 1.6 7.12 Relative: periods count from a start point of the session the unit decides
    (plug-in or the transaction's start, both allowed here), not from each moment it looks."""
    rig = ready
    plugged = rig.clock.now()
    asked = plug_and_ask(rig)
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s") + 5.0, after=plugged)
    assert wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05) is not None, "no energy"
    rig.ev.follow_pwm()
    rig.clock.sleep(60.0, "a minute into the session")
    change_s = int(rig.clock.now() - plugged) + 120  # two minutes from now, counted from the session's start
    install(rig, 1, schedule_profile(41, "TxDefaultProfile", 0, [(0, 16), (change_s, 10)], kind="Relative"))
    offers_at(rig, rig.clock.now(), 16, "a Relative profile's first period")
    still_offers_before(rig, plugged + change_s, 16, f"before {change_s} s into the session")
    offers_at(rig, max(start.time, asked) + change_s, 10, f"{change_s} s into the session: the second period")
    unplug(rig)


def composite(rig, duration_s: int, connector: int = 1) -> dict:
    reply = rig.central.call("GetCompositeSchedule", {"connectorId": connector, "duration": duration_s,
                                                      "chargingRateUnit": "A"}, cp_id=rig.cp_id)
    assert reply["status"] == "Accepted", f"GetCompositeSchedule: {reply}"
    return reply


def composite_limit_at(schedule: dict, t_s: float) -> float | None:
    """The limit a GetCompositeSchedule answer gives `t_s` seconds after its scheduleStart."""
    periods = [p for p in schedule["chargingSchedulePeriod"] if p["startPeriod"] <= t_s]
    return periods[-1]["limit"] if periods else None


@pytest.mark.req("OCPP-15")
@pytest.mark.parametrize("duration_s", [600, 900])  # ending where a period starts, and after it
def test_the_composite_schedule_follows_each_coming_period(charging, no_profiles, duration_s):
    rig = charging
    periods = [(0, 16), (300, 10), (600, 20)]
    # the schedule starts at the unit's own "now" in whole seconds (its first answer says when), so
    # that asked again at once the 600 s case ends exactly where the third period starts
    profile_start = ocppj.parse_time(composite(rig, 60)["scheduleStart"])
    install(rig, 1, schedule_profile(42, "TxDefaultProfile", 0, periods, start=profile_start))
    reply = composite(rig, duration_s)
    schedule = reply["chargingSchedule"]
    whole_unit = composite(rig, duration_s, connector=0)  # OCPP 1.6 5.7: connector 0 is the whole charge point
    assert whole_unit["chargingSchedule"]["chargingSchedulePeriod"], f"GetCompositeSchedule of connector 0: {whole_unit}"
    offset = (ocppj.parse_time(reply["scheduleStart"]) - profile_start).total_seconds()
    late = [p["startPeriod"] for p in schedule["chargingSchedulePeriod"] if p["startPeriod"] >= duration_s]
    assert not late, f"periods starting at {late} s, at or after the {duration_s} s asked for: {schedule}"
    margin = rig.limit("ocpp.charging_profile_apply_max_s")
    for t in range(0, duration_s, 30):  # sampled away from the boundaries: the answer is in whole seconds
        if any(abs(t + offset - s) <= margin for s, _ in periods):
            continue
        wanted = [a for s, a in periods if s <= t + offset][-1]
        got = composite_limit_at(schedule, t)
        assert got is not None and abs(got - wanted) < 0.05, (
            f"GetCompositeSchedule gives {got} A at {t} s after its start, the installed schedule {wanted} A: {schedule}")


@pytest.mark.req("OCPP-15")
def test_stacking_purposes_and_the_composite_schedule(charging, no_profiles):
    rig = charging
    tx = transaction_id(rig, rig.central.history(action="StartTransaction", direction="in")[-1].time)
    mark = rig.clock.now()
    install(rig, 1, schedule_profile(11, "TxDefaultProfile", 0, [(0, 20)]))
    install(rig, 1, schedule_profile(12, "TxDefaultProfile", 1, [(0, 14)]))
    offers_at(rig, mark, 14, "two TxDefaultProfiles: stackLevel 1 over 0")
    mark = rig.clock.now()  # OCPP 1.6 5.16: the same stackLevel and purpose replaces, not adds
    install(rig, 1, schedule_profile(10, "TxDefaultProfile", 1, [(0, 8)]))
    offers_at(rig, mark, 8, "a new TxDefaultProfile at stackLevel 1 replaces the 14 A one")
    install(rig, 1, schedule_profile(12, "TxDefaultProfile", 1, [(0, 14)]))
    mark = rig.clock.now()
    mark = rig.clock.now()
    install(rig, 1, schedule_profile(13, "TxProfile", 0, [(0, 24)], transactionId=tx))
    offers_at(rig, mark, 24, "a TxProfile replaces the TxDefaultProfiles, also upward")
    mark = rig.clock.now()
    install(rig, 0, schedule_profile(14, "ChargePointMaxProfile", 0, [(0, 10)]))
    offers_at(rig, mark, 10, "ChargePointMaxProfile 10 A caps the TxProfile's 24 A")
    check_composite(rig, 10)
    assert clear(rig, chargingProfilePurpose="ChargePointMaxProfile") == "Accepted"
    offers_at(rig, rig.clock.now(), 24, "cap cleared")
    assert clear(rig, id=999) == "Unknown", "ClearChargingProfile of an id the unit does not have"
    wrong_tx = schedule_profile(15, "TxProfile", 2, [(0, 8)], transactionId=tx + 1000)
    assert set_profile(rig, 1, wrong_tx) == "Rejected", "a TxProfile for a transaction the unit does not have"
    cap_on_connector = schedule_profile(16, "ChargePointMaxProfile", 1, [(0, 8)])
    assert set_profile(rig, 1, cap_on_connector) == "Rejected", "a ChargePointMaxProfile on connector 1 (only 0)"
    offers_at(rig, rig.clock.now(), 24, "after the two Rejected profiles")
    check_stack_level_bounds(rig)
    check_unclaimed_rate_unit_refused(rig)
    check_empty_schedule_refused(rig)
    offers_at(rig, rig.clock.now(), 24, "after the refused profiles")


def check_empty_schedule_refused(rig) -> None:
    """A schedule without periods (schema-valid: the 1.6 schema sets no minimum) has no limit to
    apply: not Accepted, whether as Rejected or as a CallError about the payload."""
    empty = schedule_profile(20, "TxDefaultProfile", 4, [])
    try:
        status = set_profile(rig, 1, empty)
    except CallErrorReceived as err:
        assert err.code in PAYLOAD_ERRORS, f"SetChargingProfile without periods: CallError {err.code}"
        return
    assert status == "Rejected", f"SetChargingProfile without periods: {status}"


#: CallErrors that say "this payload cannot be honoured" (OCPP-J 4.2.3)
PAYLOAD_ERRORS = {"FormationViolation", "PropertyConstraintViolation", "OccurenceConstraintViolation",
                  "OccurrenceConstraintViolation", "TypeConstraintViolation"}


def check_unclaimed_rate_unit_refused(rig) -> None:
    """A schedule in W from a unit that claims only Current (ChargingScheduleAllowedChargingRateUnit)
    is Rejected, not applied as if it were amperes."""
    got = rig.central.call("GetConfiguration", {"key": ["ChargingScheduleAllowedChargingRateUnit"]}, cp_id=rig.cp_id)
    claimed = {u.strip() for k in got.get("configurationKey", []) for u in k["value"].split(",")}
    assert "Current" in claimed, f"ChargingScheduleAllowedChargingRateUnit {sorted(claimed)}: the rig drives Current"
    if "Power" in claimed:
        return  # the unit claims W as well: nothing to refuse
    in_watts = schedule_profile(19, "TxDefaultProfile", 3, [(0, 2000)])
    in_watts["chargingSchedule"]["chargingRateUnit"] = "W"
    assert set_profile(rig, 1, in_watts) == "Rejected", "a schedule in W, which the unit does not claim"


def check_stack_level_bounds(rig) -> None:
    """ChargeProfileMaxStackLevel as the unit reports it: that level is Accepted, one more Rejected."""
    got = rig.central.call("GetConfiguration", {"key": ["ChargeProfileMaxStackLevel"]}, cp_id=rig.cp_id)
    [key] = got.get("configurationKey") or [{"value": "missing"}]
    assert key["value"].isdigit(), f"ChargeProfileMaxStackLevel {key['value']!r}: a Smart Charging unit reports it"
    top = int(key["value"])
    assert set_profile(rig, 1, schedule_profile(17, "TxDefaultProfile", top, [(0, 32)])) == "Accepted", \
        f"a TxDefaultProfile at stackLevel {top}, the unit's ChargeProfileMaxStackLevel"
    assert set_profile(rig, 1, schedule_profile(18, "TxDefaultProfile", top + 1, [(0, 32)])) == "Rejected", \
        f"a TxDefaultProfile at stackLevel {top + 1}, above the unit's ChargeProfileMaxStackLevel {top}"


def check_composite(rig, amps: float) -> None:
    schedule = composite(rig, 600)["chargingSchedule"]
    first = schedule["chargingSchedulePeriod"][0]
    assert schedule["chargingRateUnit"] == "A" and first["startPeriod"] == 0, schedule
    assert abs(first["limit"] - amps) < 0.05, f"GetCompositeSchedule says {first['limit']} A now, the pilot offers {amps} A"


@pytest.mark.req("OCPP-16")
def test_a_daily_profile_recurs_and_an_expired_one_stops_limiting(charging, no_profiles):
    rig = charging
    t0, now = rig.clock.now(), rig.time.now()
    daily = schedule_profile(21, "TxDefaultProfile", 0, [(0, 12)], kind="Recurring", start=now + timedelta(seconds=60),
                             recurrencyKind="Daily")
    daily["chargingSchedule"]["duration"] = 120
    install(rig, 0, daily)
    expiring = schedule_profile(22, "TxDefaultProfile", 5, [(0, 8)], validTo=ocppj.iso_time(now + timedelta(seconds=30)))
    install(rig, 0, expiring)
    offers_at(rig, t0, 8, "a valid stackLevel 5 profile")
    offers_at(rig, t0 + 30, rated(rig), "its validTo passed (the daily one not yet begun)")
    offers_at(rig, t0 + 60, 12, "the daily profile's window")
    offers_at(rig, t0 + 180, rated(rig), "after the daily window")
    # the next day without waiting one: the rig serves a calendar a minute before the next window
    # and the unit adopts it (on a real bench too: a day-long test would never fit a nightly run)
    next_window = now + timedelta(days=1, seconds=60)
    rig.set_time(next_window - timedelta(seconds=60))
    window_at = clock_at(rig, next_window)
    still_offers_before(rig, window_at, rated(rig), "the next day, before the window")
    offers_at(rig, window_at, 12, "the daily window, the next day")
    offers_at(rig, window_at + 120, rated(rig), "after the next day's window")


@pytest.mark.req("OCPP-16")
def test_a_profile_valid_from_a_coming_time_limits_only_from_then(charging, no_profiles):
    """validFrom (OCPP 1.6 7.8): before it the profile does not limit; from it, it does."""
    rig = charging
    t0, now = rig.clock.now(), rig.time.now()
    coming = schedule_profile(23, "TxDefaultProfile", 0, [(0, 10)], validFrom=ocppj.iso_time(now + timedelta(seconds=60)))
    install(rig, 0, coming)
    offers_at(rig, t0, rated(rig), "a profile installed before its validFrom")
    still_offers_before(rig, t0 + 60, rated(rig), "just before the profile's validFrom")
    offers_at(rig, t0 + 60, 10, "from the profile's validFrom")


@pytest.mark.req("OCPP-16")
def test_a_weekly_profile_recurs_after_a_week_and_not_after_a_day(charging, no_profiles):
    """recurrencyKind Weekly (OCPP 1.6 7.10): the window comes back 7 days after startSchedule, not
    on the days between. Started 7 days ago (less a minute), so the week's return is a minute away."""
    rig = charging
    t0, now = rig.clock.now(), rig.time.now()
    first = now - timedelta(days=7) + timedelta(seconds=60)
    weekly = schedule_profile(24, "TxDefaultProfile", 0, [(0, 12)], kind="Recurring", start=first,
                              recurrencyKind="Weekly")
    weekly["chargingSchedule"]["duration"] = 120
    install(rig, 0, weekly)
    still_offers_before(rig, t0 + 60, rated(rig), "a week after the weekly profile's start, before its window")
    offers_at(rig, t0 + 60, 12, "the weekly window, a week after its start")
    offers_at(rig, t0 + 180, rated(rig), "after the weekly window")
    # a day later, where a daily profile would return: the calendar served a minute before it
    a_day_on = first + timedelta(days=8)
    rig.set_time(a_day_on - timedelta(seconds=60))
    offers_at(rig, clock_at(rig, a_day_on) + 30, rated(rig), "8 days after the start: no weekly window on that day")


@pytest.mark.req("OCPP-15")
def test_a_composite_schedule_for_a_connector_the_unit_lacks_is_rejected(ready, no_profiles):
    """OCPP 1.6 5.7: a charge point that cannot report the schedule asked for, for instance of an
    unknown connector, answers Rejected: connector 2 of a one-connector unit."""
    rig = ready
    reply = rig.central.call("GetCompositeSchedule", {"connectorId": 2, "duration": 600, "chargingRateUnit": "A"},
                             cp_id=rig.cp_id)
    assert reply["status"] == "Rejected", f"GetCompositeSchedule of connector 2 of a one-connector unit: {reply}"


@pytest.mark.req("OCPP-17")
def test_a_remote_start_profile_limits_its_transaction_and_ends_with_it(ready, no_profiles):
    rig = ready
    set_mode(rig, "Manual")
    plug_and_ask(rig)
    # OCPP 1.6 5.11: a remote start's profile SHALL be a TxProfile; another purpose cannot be
    # honoured as asked, so the start is refused rather than run without the limit
    wrong = schedule_profile(30, "TxDefaultProfile", 0, [(0, 10)], kind="Relative")
    mark = rig.clock.now()
    reply = rig.central.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "RIG-OWNER",
                                                        "chargingProfile": wrong}, cp_id=rig.cp_id)
    assert reply["status"] == "Rejected", f"RemoteStartTransaction with a TxDefaultProfile: {reply}"
    check_no_energy(rig, mark, "after a remote start refused for its profile's purpose")
    tx_profile = schedule_profile(31, "TxProfile", 0, [(0, 10)], kind="Relative")
    sent = rig.clock.now()
    reply = rig.central.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "RIG-OWNER",
                                                        "chargingProfile": tx_profile}, cp_id=rig.cp_id)
    assert reply["status"] == "Accepted", f"RemoteStartTransaction with a TxProfile: {reply}"
    assert wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05) is not None, \
        "no energy after the remote start"
    offers_at(rig, sent, 10, "the remote start's TxProfile")
    tx = transaction_id(rig, sent)
    stop = rig.central.call("RemoteStopTransaction", {"transactionId": tx}, cp_id=rig.cp_id)
    assert stop["status"] == "Accepted", stop
    rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=sent)
    # OCPP 1.6 3.13.2: a TxProfile needs a running transaction; the ended one, or none, is Rejected
    late = schedule_profile(32, "TxProfile", 0, [(0, 8)], transactionId=tx)
    assert set_profile(rig, 1, late) == "Rejected", "a TxProfile for the transaction that just ended"
    unplug(rig)
    no_tx = schedule_profile(33, "TxProfile", 0, [(0, 8)])
    assert set_profile(rig, 1, no_tx) == "Rejected", "a TxProfile with no vehicle and no transaction"
    plug_and_ask(rig)
    again = rig.clock.now()
    assert rig.central.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "RIG-OWNER"},
                            cp_id=rig.cp_id)["status"] == "Accepted"
    assert wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05) is not None, \
        "no energy after the second remote start"
    offers_at(rig, again, rated(rig), "the next transaction, started without a profile")
