"""Steps shared by spec tests: timing events seen by the pilot box's contact sense."""

from __future__ import annotations

from rig.product import cp as cpmath
from rig.core.errors import ChargerFailure


def wait_output_live(rig, live: bool, timeout_s: float) -> float | None:
    """Clock time at which L1 at the vehicle connector became `live` (contact sense), or None."""
    return rig.clock.wait_until(lambda: rig.pilot.sense().l1 == live, timeout_s, poll=0.01)


def first_sense_edge(rig, pin: str, value: bool, after_s: float) -> float | None:
    """Time of the first recorded edge of sense `pin` to `value` at or after `after_s`; None only
    once the box confirms its log is complete (a lost edge is a rig fault, not a unit that never
    switched)."""
    for t, name, v in rig.pilot.sense_events():
        if name == pin and v == value and t >= after_s:
            return t
    for t, name, v in rig.pilot.confirmed_sense_events():  # a notification may have come meanwhile
        if name == pin and v == value and t >= after_s:
            return t
    return None


# --- safety functions: sessions, trips and reports ---------------------------------------------


def start_charging(rig) -> None:
    """The `charging` fixture as a step, for tests that need a fresh session more than once
    (hypothesis examples, resumes after a trip): plug in, ask for power, draw what is offered."""
    rig.ev.plug_in()
    rig.clock.sleep(1.0, "vehicle plugged in")
    rig.ev.request_power()
    if wait_output_live(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0) is None:
        raise ChargerFailure("contactor did not close after the vehicle asked for power (state C)")
    rig.ev.follow_pwm()
    rig.clock.sleep(1.0, "charging settles")


def reboot(rig) -> None:
    """Power-cycle the unit and wait until it has booted, registered and reported its connector.

    `rig.await_ready()` alone is not enough after a power cycle: the BootNotification of the
    previous boot is still in the central system's history. So wait for a new one first.
    """
    mark = rig.central.mark()
    rig.power_cycle()
    boot = rig.central.wait_for(
        "BootNotification", timeout=rig.limit("boot.self_test_max_s") + rig.limit("boot.accept_max_s"), after=mark)
    rig.await_ready()
    rig.central.wait_for("StatusNotification", timeout=rig.limit("boot.accept_max_s"), after=boot)


def phase_pins(rig) -> list[str]:
    """Contact-sense pins of the line conductors the unit switches: L1, or L1-L3 on three-phase units."""
    return [f"sense_l{i + 1}" for i in range(rig.profile["phases"])]


def pen_pins(rig) -> list[str]:
    """What a PEN trip must disconnect (PEN-01): every line, neutral, and protective earth unless
    the profile says this variant keeps PE (PEN-07, the export variant)."""
    pins = phase_pins(rig) + ["sense_n"]
    if rig.profile["safety"]["pen_opens_earth"]:
        pins.append("sense_pe")
    return pins


def require_closed(rig, pins: list[str]) -> None:
    """Precondition of a trip test: every pin in `pins` reads live / continuous now."""
    sense = rig.pilot.sense()
    open_now = [pin for pin in pins if getattr(sense, pin.removeprefix("sense_")) is not True]
    if open_now:
        raise ChargerFailure(f"charging, yet {', '.join(open_now)} not closed at the vehicle connector: {sense}")


def last_opening(rig, pins: list[str], after_s: float) -> float | None:
    """Time at which the last of `pins` opened (each one's first falling edge at or after
    `after_s`), or None if one of them has not opened: a disconnection is only as good as its
    last conductor."""
    edges = [first_sense_edge(rig, pin, False, after_s) for pin in pins]
    return None if None in edges else max(edges)


def first_opening(rig, pins: list[str], after_s: float) -> float | None:
    """Time at which the first of `pins` opened at or after `after_s`, or None: did anything trip?"""
    edges = [t for t in (first_sense_edge(rig, pin, False, after_s) for pin in pins) if t is not None]
    return min(edges) if edges else None


def wait_opening(rig, pins: list[str], after_s: float, until_s: float) -> float | None:
    """Wait (at most until clock time `until_s`) for every pin in `pins` to open after `after_s`;
    the time of the last opening, or None. The edge times come from the pins, not the polling."""
    rig.clock.wait_until(lambda: last_opening(rig, pins, after_s) is not None,
                         max(0.0, until_s - rig.clock.now()), poll=0.01, reason="waiting for the trip")
    return last_opening(rig, pins, after_s)


def reclosed_at(rig, after_s: float) -> float | None:
    """Time L1 became live again at or after `after_s`, or None: reclosing shows on L1 first."""
    return first_sense_edge(rig, "sense_l1", True, after_s)


def check_idle_current(rig, what: str) -> None:
    """No current on any phase (MTR-02 level): the meter agrees the contactor is open."""
    for i, amps in enumerate(rig.meter.currents()):
        rig.check_limit(f"L{i + 1} current {what}", amps, high="mtr.idle_current_max_a")


def check_current_flows(rig, what: str) -> None:
    """Current on every phase the unit uses: the session is delivering energy again."""
    idle = rig.limit("mtr.idle_current_max_a")
    for i, amps in enumerate(rig.meter.currents()[: rig.profile["phases"]]):
        rig.check(f"L{i + 1} current {what}", amps, "A", idle, None,
                  f"above {rig.source_of('mtr.idle_current_max_a')}: energy flows")


def led_watch_s(rig) -> float:
    """How long to watch the LED for a state: two of the classifier's observation windows."""
    return 2 * rig.profile["led"]["waveforms"]["window_s"]


def expect_led(rig, state: str, why: str) -> None:
    seen = rig.wait_for_led(state, led_watch_s(rig))
    assert seen.state == state, f"{why}: expected {state}, saw {seen.explain()}"


def wait_fault_reported(rig, error_code: str, after_s: float, timeout_s: float):
    """The StatusNotification Faulted with `error_code` sent at or after clock time `after_s`."""
    return rig.central.wait_for(
        "StatusNotification",
        predicate=lambda p: p["status"] == "Faulted" and p["errorCode"] == error_code,
        timeout=timeout_s,
        after=float(after_s),
    )


def wait_error_reported(rig, error_code: str, after_s: float, timeout_s: float):
    """A StatusNotification carrying `error_code` (whatever the status) at or after `after_s`."""
    return rig.central.wait_for(
        "StatusNotification", predicate=lambda p: p["errorCode"] == error_code, timeout=timeout_s, after=float(after_s)
    )


def no_close_watch_s(rig) -> float:
    """How long to watch for a contactor that must never close. A unit that would close does so
    within cp.contactor_close_max_s of state C (CP-03); three times that and a second more
    leaves no doubt (10 s with the default limits)."""
    return 3 * rig.limit("cp.contactor_close_max_s") + 1.0


def check_offered_duty(rig, m, amps: float, what: str) -> None:
    """The PWM duty offers `amps` (IEC 61851-1: D = I / 0.6) within cp.duty_tolerance_pct."""
    tol = rig.limit("cp.duty_tolerance_pct")
    want = cpmath.duty_for_current(amps) * 100
    rig.check(f"duty offering {amps:g} A {what}", None if m.duty is None else m.duty * 100, "%", want - tol,
              want + tol, f"IEC 61851-1 D = I/0.6; {rig.source_of('cp.duty_tolerance_pct')}",
              resolution=m.resolution_s * 1e5)


# --- charging modes, calendar time, DataTransfer (issue 4) ----------------------------------------

UK_ZONE = "Europe/London"


def uk_time(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0):
    """A tz-aware datetime in UK local time (GMT or BST as the date says)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(UK_ZONE))


def clock_at(rig, when) -> float:
    """The rig clock time (s) at which the served calendar time reaches `when` (tz-aware)."""
    return rig.clock.now() + (when - rig.time.now()).total_seconds()


def sleep_until(rig, when, reason: str = "waiting for a calendar time") -> float:
    """Let time run until the served calendar reaches `when`; returns that clock time."""
    at = clock_at(rig, when)
    rig.clock.sleep(max(0.0, at - rig.clock.now()), reason)
    return at


def set_mode(rig, mode: str) -> None:
    """Select a charging mode (PlugStream.ChargingMode), restored after the test."""
    assert mode in rig.profile["charging"]["modes"], f"{mode} is not a documented mode"
    rig.configure(rig.profile["ocpp"]["config_charging_mode"], mode)


def configuration_keys(rig, key: str) -> list[dict]:
    """GetConfiguration of one key: the unit's configurationKey entries (empty when it lacks the key)."""
    return rig.central.call("GetConfiguration", {"key": [key]}, cp_id=rig.cp_id)["configurationKey"]


def change_configuration(rig, key: str, value) -> str:
    """ChangeConfiguration without the restore bookkeeping: the unit's answer status."""
    return rig.central.call("ChangeConfiguration", {"key": key, "value": str(value)}, cp_id=rig.cp_id)["status"]


def data_transfer(rig, message_key: str, data=None) -> dict:
    """DataTransfer to the unit's vendor; `message_key` names the messageId in the profile's [ocpp]."""
    import json

    ocpp = rig.profile["ocpp"]
    payload = {"vendorId": ocpp["vendor_id"], "messageId": ocpp[message_key]}
    if data is not None:
        payload["data"] = data if isinstance(data, str) else json.dumps(data)
    return rig.central.call("DataTransfer", payload, cp_id=rig.cp_id)


def plug_and_ask(rig, amps: float | None = None) -> float:
    """Plug in, ask for power (state C) and let the vehicle draw `amps` (default: the model's
    rating) whenever the contactor is closed; returns the clock time of the request."""
    rig.ev.plug_in()
    rig.clock.sleep(1.0, "vehicle plugged in")
    rig.ev.draw(amps if amps is not None else rig.profile["rated_current_a"])
    rig.ev.request_power()
    return rig.clock.now()


def unplug(rig, dwell_s: float = 2.0) -> None:
    """Unplug and let the unit return to Available before the next session."""
    rig.ev.unplug()
    rig.clock.sleep(dwell_s, "vehicle unplugged")


def wait_l1(rig, live: bool, timeout_s: float, poll_s: float = 0.5) -> float | None:
    """Exact time of the L1 contact-sense edge to `live` (from the pin's timestamp; the poll only
    decides how often to look), or None within `timeout_s`. Cheap for long waits."""
    return rig.pilot.wait_sense("sense_l1", live, timeout_s, poll_s)


def l1_intervals(rig, since_s: float, until_s: float) -> list[tuple[float, float]]:
    """(closed, opened) intervals of L1 at the vehicle connector between two clock times, from
    the recorded sense edges; an interval still open at `until_s` ends there."""
    state, opened_at = None, None
    out: list[tuple[float, float]] = []
    for t, pin, value in rig.pilot.confirmed_sense_events():
        if pin != "sense_l1" or t > until_s:
            continue
        if value and state is not True:
            opened_at = max(t, since_s)
        elif not value and state is True and t >= since_s:
            out.append((opened_at, t))
        state = value
    if state is True:
        out.append((opened_at, until_s))
    return [(a, b) for a, b in out if b >= since_s]


def latest_status(rig, since_s: float | None = None) -> str | None:
    """The connector status of the last StatusNotification (connector 1) from the unit."""
    msgs = [m for m in rig.central.history(action="StatusNotification", direction="in")
            if m.message_type == "Call" and m.payload.get("connectorId") == 1
            and (since_s is None or m.time >= since_s)]
    return msgs[-1].payload["status"] if msgs else None


def lock(rig, locked: bool) -> None:
    """ChangeAvailability on the profile's connector: Inoperative locks, Operative unlocks."""
    kind = "Inoperative" if locked else "Operative"
    reply = rig.central.call("ChangeAvailability", {"connectorId": rig.profile["lock"]["connector_id"], "type": kind},
                             cp_id=rig.cp_id)
    assert reply["status"] in ("Accepted", "Scheduled"), f"ChangeAvailability {kind} answered {reply}"


def merge_intervals(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, with touching or overlapping spans joined (the unit has no reason to open between)."""
    merged: list[list[float]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def check_energy_intervals(rig, allowed: list[tuple[float, float]], asked_s: float, until_s: float, what: str,
                           last_may_end_early: bool = False) -> None:
    """L1 live intervals between `asked_s` and `until_s` against the `allowed` spans (clock times,
    merged): energy only inside them (mode.window_early_max_s before an opening, mode.window_stop_max_s
    after a closing), and in each one: on at its opening (or the request) within
    mode.window_start_max_s, off at its closing within mode.window_stop_max_s. With
    `last_may_end_early`, the last span may end sooner (a Sense target reached)."""
    expected = [(max(s, asked_s), min(e, until_s)) for s, e in merge_intervals(allowed) if e > asked_s and s < until_s]
    actual = l1_intervals(rig, asked_s, until_s)
    early, start_max = rig.limit("mode.window_early_max_s"), rig.limit("mode.window_start_max_s")
    stop_max = rig.limit("mode.window_stop_max_s")
    source = "; ".join(rig.source_of(k) for k in ("mode.window_early_max_s", "mode.window_start_max_s",
                                                   "mode.window_stop_max_s"))
    spans = [(round(s, 3), round(e, 3)) for s, e in expected]
    for a, b in actual:
        assert any(s - early <= a and b <= e + stop_max for s, e in expected), (
            f"{what}: energy outside the allowed times: L1 live {a:.3f}..{b:.3f} s, allowed {spans} ({source})")
    for i, (s, e) in enumerate(expected):
        mine = [(a, b) for a, b in actual if s - early <= a <= e]
        assert mine, f"{what}: no energy in {s:.3f}..{e:.3f} s (vehicle asking); allowed {spans}, L1 live {actual}"
        rig.check(f"{what}: start after the opening at {s:.0f} s", mine[0][0] - s, "s", -early, start_max, source,
                  resolution=rig.pilot.resolution_s)
        early_end = last_may_end_early and i == len(expected) - 1
        if e < until_s and not early_end:
            rig.check(f"{what}: stop after the closing at {e:.0f} s", mine[-1][1] - e, "s", 0.0, stop_max, source,
                      resolution=rig.pilot.resolution_s)


def parse_windows(text: str) -> list[tuple[int, int]]:
    """'HH:MM-HH:MM,...' -> [(start minute of day, end minute of day)]."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        a, b = part.split("-")
        out.append(tuple(int(x.split(":")[0]) * 60 + int(x.split(":")[1]) for x in (a, b)))
    return out


def window_instants(windows: str, first, last) -> list[tuple]:
    """Every opening of every window between two calendar times, as UTC instants, merged where
    windows touch or overlap (the unit has no reason to open between them)."""
    from datetime import datetime, timedelta, timezone
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(UK_ZONE)
    spans = []
    day = (first - timedelta(days=1)).date()
    while day <= last.date():
        for a, b in parse_windows(windows):
            start = datetime(day.year, day.month, day.day, tzinfo=zone) + timedelta(minutes=a)
            end_day = day + timedelta(days=1) if b <= a else day
            end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=zone) + timedelta(minutes=b)
            spans.append((_wall(start), _wall(end)))
        day += timedelta(days=1)
    merged: list[list[datetime]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged if e > first.astimezone(timezone.utc) and s < last.astimezone(timezone.utc)]


def _wall(local):
    """A local wall time built by timedelta arithmetic, to UTC (folds resolved as zoneinfo does)."""
    from datetime import timezone

    naive = local.replace(tzinfo=None)
    return naive.replace(tzinfo=local.tzinfo).astimezone(timezone.utc)


def applied(rig, stimulus) -> float:
    """Apply a stimulus through an instrument (`stimulus()`); return when it took effect, as well as
    the rig can tell: the middle of the call. The instrument acts somewhere between the command
    leaving and its acknowledgement arriving; on a real bench that is a network round trip of 1-2 ms,
    and stamping either end biased every timing by it (measured against the device's ground truth
    with benchmarks/realtime_accuracy.py: -1.8 ms on the PEN trip, +1.2 ms on unplug). On the
    emulated bench the call takes no virtual time: both ends are the same instant."""
    before = rig.clock.now()
    stimulus()
    return (before + rig.clock.now()) / 2


def transaction_id(rig, after_s: float) -> int:
    """The transactionId the central system gave the unit's StartTransaction (sent at or after `after_s`)."""
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=after_s)
    return transaction_id_of(rig, start)


def transaction_id_of(rig, start) -> int:
    """The transactionId in the central system's answer to this StartTransaction message (matched by
    its unique id: several queued starts can share one clock instant)."""
    answers = [m for m in rig.central.history(action="StartTransaction", direction="out")
               if m.message_type == "CallResult" and m.unique_id == start.unique_id]
    assert answers and "transactionId" in (answers[0].payload or {}), \
        f"no StartTransaction.conf with a transactionId for {start.unique_id}"
    return answers[0].payload["transactionId"]


def sent_since(rig, actions: str | tuple[str, ...], since_s: float) -> list:
    """What the unit sent of `actions` at or after clock time `since_s`, in order."""
    wanted = (actions,) if isinstance(actions, str) else actions
    return [m for m in rig.central.history(direction="in") if m.action in wanted and m.time >= since_s]


def check_no_energy(rig, since_s: float, what: str) -> None:
    """Nothing started since `since_s`: watched long enough for a unit that would close to have
    closed (no_close_watch_s), no L1 edge and no StartTransaction."""
    rig.clock.sleep(no_close_watch_s(rig), what)
    closed = first_sense_edge(rig, "sense_l1", True, since_s)
    assert closed is None, f"{what}: L1 went live {closed - since_s:.2f} s later"
    starts = sent_since(rig, "StartTransaction", since_s)
    assert not starts, f"{what}: StartTransaction {starts[0].payload}"
