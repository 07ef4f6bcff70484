"""OCPP 1.6J conformance, charge-point side (issue 16, first cases): configuration (OCPP-03,
OCPP-04), heartbeat interval (OCPP-05) and Remote Trigger (OCPP-06), as far as the product
profile says the unit claims them ([ocpp] profiles, triggerable, readonly_keys)."""

from __future__ import annotations

import pytest

from rig.core.errors import ChargerFailure
from rig.instruments.central_system import call_error
from rig.instruments.central_system.messages import CallErrorReceived, CentralSystemTimeout
from rig.spec.steps import no_close_watch_s, transaction_id, wait_l1

UNKNOWN_KEY = "PlugStreamRig.NoSuchKey"  # a key no charge point has


def change(rig, key: str, value: str) -> str:
    return rig.central.call("ChangeConfiguration", {"key": key, "value": value}, cp_id=rig.cp_id)["status"]


def get(rig, keys: list[str] | None) -> dict:
    return rig.central.call("GetConfiguration", {"key": keys} if keys is not None else {}, cp_id=rig.cp_id)


@pytest.mark.req("OCPP-03")
def test_change_configuration_answers_each_case_as_ocpp_says(ready):
    rig = ready
    for key in rig.profile["ocpp"]["readonly_keys"]:
        before = [k["value"] for k in get(rig, [key])["configurationKey"]]
        assert change(rig, key, "2") == "Rejected", f"read-only {key}: a change must be Rejected"
        assert [k["value"] for k in get(rig, [key])["configurationKey"]] == before, f"read-only {key} changed"
    assert change(rig, UNKNOWN_KEY, "1") == "NotSupported", "a key the unit does not know: NotSupported"
    assert change(rig, "MeterValueSampleInterval", "fast") == "Rejected", "an interval that is not a number"
    rig.configure("MeterValueSampleInterval", "30")  # Accepted, restored after the test
    [reported] = get(rig, ["MeterValueSampleInterval"])["configurationKey"]
    assert reported["value"] == "30" and reported["readonly"] is False


@pytest.mark.req("OCPP-04")
def test_get_configuration_names_known_and_unknown_keys(ready):
    rig = ready
    readonly = rig.profile["ocpp"]["readonly_keys"]
    asked = ["HeartbeatInterval", readonly[0], UNKNOWN_KEY]
    reply = get(rig, asked)
    known = {k["key"]: k for k in reply.get("configurationKey", [])}
    assert set(known) == {"HeartbeatInterval", readonly[0]}, f"known keys {sorted(known)}"
    assert known[readonly[0]]["readonly"] is True and known["HeartbeatInterval"]["readonly"] is False
    assert reply.get("unknownKey") == [UNKNOWN_KEY], f"unknownKey {reply.get('unknownKey')}"
    everything = {k["key"] for k in get(rig, None)["configurationKey"]}
    assert {"HeartbeatInterval", "MeterValueSampleInterval", *readonly} <= everything
    assert "unknownKey" not in get(rig, None) or not get(rig, None)["unknownKey"]
    check_phase_rotation(rig)


ROTATIONS = {"NotApplicable", "Unknown", "RST", "RTS", "SRT", "STR", "TRS", "TSR"}  # OCPP 1.6 9.1


def check_phase_rotation(rig) -> None:
    """ConnectorPhaseRotation: '<connectorId>.<rotation>' entries (OCPP 1.6 9.1), connector 1 among
    them; a three-phase unit reports a rotation, a single-phase one NotApplicable."""
    [key] = get(rig, ["ConnectorPhaseRotation"])["configurationKey"]
    entries = dict(item.strip().split(".", 1) if "." in item else ("?", item.strip()) for item in key["value"].split(","))
    assert "?" not in entries and set(entries.values()) <= ROTATIONS, (
        f"ConnectorPhaseRotation {key['value']!r}: entries must read <connectorId>.<one of {sorted(ROTATIONS)}>")
    assert "1" in entries, f"ConnectorPhaseRotation {key['value']!r} has no entry for connector 1"
    three_phase = rig.profile["phases"] == 3
    expected = ROTATIONS - {"NotApplicable", "Unknown"} if three_phase else {"NotApplicable"}
    assert entries["1"] in expected, (f"ConnectorPhaseRotation of connector 1 is {entries['1']} on a "
                                      f"{rig.profile['phases']}-phase unit; expected one of {sorted(expected)}")


@pytest.mark.req("OCPP-05")
@pytest.mark.parametrize("interval_s", [1, 60, 900])  # the shortest OCPP allows; shorter, longer than the boot's 300 s
def test_heartbeats_follow_a_changed_interval(ready, interval_s):
    rig = ready
    tolerance = rig.limit("ocpp.heartbeat_interval_tolerance_s")
    rig.configure("HeartbeatInterval", str(interval_s))
    changed = rig.clock.now()
    rig.clock.sleep(3 * interval_s + tolerance)
    beats = [m.time for m in rig.central.history(action="Heartbeat", direction="in") if m.time > changed]
    assert len(beats) >= 3, f"{len(beats)} heartbeats in {3 * interval_s} s at HeartbeatInterval {interval_s} s"
    gaps = [b - a for a, b in zip([changed] + beats, beats)]
    wrong = [round(g, 1) for g in gaps if abs(g - interval_s) > tolerance]
    assert not wrong, f"heartbeat gaps {[round(g, 1) for g in gaps]} s, expected {interval_s} +- {tolerance} s"


#: the heartbeat interval of the test below, and when, after a heartbeat, another key is changed:
#: two thirds of the way, so a timer restarted by the change shows as a gap of 1.67 intervals
OTHER_KEY_INTERVAL_S = 60
OTHER_KEY_AFTER_S = 40.0


@pytest.mark.req("OCPP-05")
def test_changing_another_key_leaves_the_heartbeats_on_their_interval(ready):
    """HeartbeatInterval 60 s; 40 s after a heartbeat another key (MeterValueSampleInterval) is
    changed: the next heartbeat still comes 60 s after the last, not 60 s after the change. Found
    as a surviving mutant (charger_operations.py, the heartbeat restarted by a ChangeConfiguration):
    a unit that restarts its heartbeat timer on every configuration change."""
    rig = ready
    tolerance = rig.limit("ocpp.heartbeat_interval_tolerance_s")
    rig.configure("HeartbeatInterval", str(OTHER_KEY_INTERVAL_S))
    changed = rig.clock.now()
    rig.clock.sleep(OTHER_KEY_INTERVAL_S + tolerance, "the first heartbeat at the new interval")
    beats = [m.time for m in rig.central.history(action="Heartbeat", direction="in") if m.time > changed]
    assert beats, f"no heartbeat {OTHER_KEY_INTERVAL_S} s after HeartbeatInterval was set to {OTHER_KEY_INTERVAL_S} s"
    last = beats[-1]
    rig.clock.sleep(max(0.0, last + OTHER_KEY_AFTER_S - rig.clock.now()))
    rig.configure("MeterValueSampleInterval", "30")
    rig.clock.sleep(max(0.0, last + 2 * OTHER_KEY_INTERVAL_S + tolerance - rig.clock.now()), "heartbeats go on")
    after = [m.time for m in rig.central.history(action="Heartbeat", direction="in") if m.time > last]
    assert after, f"no heartbeat in {2 * OTHER_KEY_INTERVAL_S} s after the one at {last:.1f} s"
    gap = after[0] - last
    assert abs(gap - OTHER_KEY_INTERVAL_S) <= tolerance, (
        f"after MeterValueSampleInterval was changed {OTHER_KEY_AFTER_S:g} s after a heartbeat, the next came "
        f"{gap:.1f} s after it; expected {OTHER_KEY_INTERVAL_S} +- {tolerance} s (HeartbeatInterval unchanged)")

@pytest.mark.req("OCPP-06")
def test_trigger_message_sends_what_is_claimed_and_refuses_the_rest(ready):
    rig = ready
    reply_max = rig.limit("ocpp.trigger_reply_max_s")
    for message in rig.profile["ocpp"]["triggerable"]:
        mark = rig.clock.now()
        status = rig.central.call("TriggerMessage", {"requestedMessage": message}, cp_id=rig.cp_id)["status"]
        assert status == "Accepted", f"TriggerMessage {message}: {status}, but the unit claims it"
        try:
            rig.central.wait_for(message, timeout=reply_max, after=mark)
        except CentralSystemTimeout as exc:  # Accepted and nothing sent: the unit's failure (a rig fault stays one)
            raise ChargerFailure(f"TriggerMessage {message} Accepted but no {message} within {reply_max} s") from exc
        rig.await_ready()  # a triggered BootNotification re-registers the unit
    for message in rig.profile["ocpp"]["not_triggerable"]:
        status = rig.central.call("TriggerMessage", {"requestedMessage": message}, cp_id=rig.cp_id)["status"]
        assert status == "NotImplemented", f"TriggerMessage {message}: {status}; the unit does not claim it"


@pytest.mark.req("OCPP-07")
@pytest.mark.parametrize("kind", ["Soft", "Hard"])
def test_reset_during_a_transaction_stops_it_first(charging, kind):
    rig = charging
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s"))
    mark = rig.clock.now()
    reply = rig.central.call("Reset", {"type": kind}, cp_id=rig.cp_id)
    assert reply["status"] == "Accepted", f"Reset {kind}: {reply}"
    boot = rig.central.wait_for("BootNotification", timeout=rig.limit("ocpp.reset_reboot_max_s"), after=mark)
    stops = [m for m in rig.central.history(action="StopTransaction", direction="in") if m.time >= mark]
    assert stops, f"Reset {kind} during a transaction: no StopTransaction at all"
    stop = stops[0]
    assert stop.payload["reason"] == f"{kind}Reset", f"StopTransaction reason {stop.payload['reason']!r}"
    assert stop.time <= mark + rig.limit("ocpp.reset_stop_max_s") and stop.time < boot.time, (
        f"StopTransaction {stop.time - mark:.1f} s after Reset, the restart's BootNotification at "
        f"{boot.time - mark:.1f} s: it must come first, within {rig.limit('ocpp.reset_stop_max_s')} s")
    assert start.time < mark
    rig.await_ready()


@pytest.mark.req("OCPP-08")
def test_unplugging_stops_the_transaction_as_ev_disconnected(ready):
    rig = ready
    [key] = get(rig, ["StopTransactionOnEVSideDisconnect"])["configurationKey"]
    assert key["value"].lower() == "true", f"StopTransactionOnEVSideDisconnect = {key['value']}"
    mark = rig.clock.now()
    rig.ev.plug_in()
    rig.clock.sleep(1.0)
    rig.ev.request_power()
    rig.ev.draw(16.0)
    transaction_id(rig, mark)
    rig.clock.sleep(2.0)
    unplugged = rig.clock.now()
    rig.ev.unplug()
    stop = rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=unplugged)
    assert stop.payload.get("reason") == "EVDisconnected", f"stop reason {stop.payload.get('reason')!r}"


@pytest.mark.req("OCPP-09", "OCPP-07")
def test_remote_stop_stops_only_the_transaction_id(charging):
    """Only the running transaction's id is stopped, once: an ended transaction is not one the unit
    has (a second RemoteStop is Rejected), and a Reset afterwards has nothing left to stop."""
    rig = charging
    starts = rig.central.history(action="StartTransaction", direction="in")
    tx = transaction_id(rig, starts[-1].time)  # the charging fixture's
    mark = rig.clock.now()
    other = rig.central.call("RemoteStopTransaction", {"transactionId": tx + 1000}, cp_id=rig.cp_id)
    assert other["status"] == "Rejected", f"RemoteStop of a transaction the unit does not have: {other}"
    rig.clock.sleep(rig.limit("ocpp.status_report_max_s"))
    assert not [m for m in rig.central.history(action="StopTransaction", direction="in") if m.time >= mark], \
        "a RemoteStop for another transaction stopped this one"
    assert rig.central.call("RemoteStopTransaction", {"transactionId": tx}, cp_id=rig.cp_id)["status"] == "Accepted"
    stop = rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=mark)
    assert stop.payload["transactionId"] == tx and stop.payload.get("reason") == "Remote", stop.payload
    again = rig.central.call("RemoteStopTransaction", {"transactionId": tx}, cp_id=rig.cp_id)
    assert again["status"] == "Rejected", f"RemoteStop of transaction {tx}, already stopped: {again}"
    reset = rig.clock.now()
    assert rig.central.call("Reset", {"type": "Soft"}, cp_id=rig.cp_id)["status"] == "Accepted"
    rig.central.wait_for("BootNotification", timeout=rig.limit("ocpp.reset_reboot_max_s"), after=reset)
    rig.await_ready()
    stops = [m.payload for m in rig.central.history(action="StopTransaction", direction="in") if m.time >= mark]
    assert len(stops) == 1, f"transaction {tx} stopped more than once: {stops}"


@pytest.mark.req("OCPP-10")
def test_meter_values_follow_the_sample_interval_and_zero_sends_none(charging):
    rig = charging
    tolerance = rig.limit("ocpp.meter_values_interval_tolerance_s")
    tx = transaction_id(rig, rig.central.history(action="StartTransaction", direction="in")[-1].time)
    interval = 30
    rig.configure("MeterValueSampleInterval", str(interval))
    rig.clock.sleep(interval + tolerance)  # the interval in force when the change came runs out first
    mark = rig.clock.now()
    rig.clock.sleep(4 * interval + tolerance)
    sampled = [m for m in rig.central.history(action="MeterValues", direction="in") if m.time > mark]
    assert len(sampled) >= 4, f"{len(sampled)} MeterValues in {4 * interval} s at MeterValueSampleInterval {interval}"
    gaps = [b.time - a.time for a, b in zip(sampled, sampled[1:])]
    assert all(abs(g - interval) <= tolerance for g in gaps), f"MeterValues gaps {[round(g, 1) for g in gaps]} s"
    assert all(m.payload.get("transactionId") == tx for m in sampled), "sampled MeterValues without the transaction"
    assert all(m.payload.get("connectorId") == 1 for m in sampled), "sampled MeterValues for another connector"
    rig.configure("MeterValueSampleInterval", "0")
    rig.clock.sleep(interval + tolerance)  # at most the one already due
    quiet = rig.clock.now()
    rig.clock.sleep(3 * 60.0)
    late = [m for m in rig.central.history(action="MeterValues", direction="in") if m.time > quiet]
    assert not late, f"{len(late)} sampled MeterValues with MeterValueSampleInterval 0 (OCPP: none)"


RETRY_INTERVAL_S, ATTEMPTS = 20, 3  # TransactionMessageRetryInterval and TransactionMessageAttempts set


def stop_with_failed_tries(rig, failures: int, watch_s: float) -> list:
    """Retry settings as above, `failures` StopTransaction answers scripted as CallErrors, a remote
    stop of the running transaction, `watch_s` of waiting: the StopTransaction tries the unit made.
    Never more failures scripted than tries asked for: a script outliving the test would fail the next."""
    rig.configure("TransactionMessageRetryInterval", str(RETRY_INTERVAL_S))
    rig.configure("TransactionMessageAttempts", str(ATTEMPTS))
    tx = transaction_id(rig, rig.central.history(action="StartTransaction", direction="in")[-1].time)
    for _ in range(failures):
        rig.central.script("StopTransaction", call_error("InternalError", "the central system's database is down"))
    mark = rig.clock.now()
    assert rig.central.call("RemoteStopTransaction", {"transactionId": tx}, cp_id=rig.cp_id)["status"] == "Accepted"
    rig.clock.sleep(watch_s)
    return [m for m in rig.central.history(action="StopTransaction", direction="in") if m.time >= mark]


@pytest.mark.req("OCPP-18")
def test_a_transaction_message_the_central_system_failed_is_retried_with_growing_waits(charging):
    rig = charging
    tolerance = rig.limit("ocpp.transaction_retry_tolerance_s")
    watch_s = RETRY_INTERVAL_S * sum(range(ATTEMPTS)) + 3 * tolerance + rig.limit("ocpp.status_report_max_s")
    tries = stop_with_failed_tries(rig, ATTEMPTS - 1, watch_s)  # the last try is answered as usual
    assert len(tries) == ATTEMPTS, (f"{len(tries)} StopTransaction tries after {ATTEMPTS - 1} CallErrors with "
                                    f"TransactionMessageAttempts {ATTEMPTS}, expected {ATTEMPTS}")
    assert all(t.payload == tries[0].payload for t in tries), "a retried StopTransaction changed its content"
    gaps = [round(b.time - a.time, 1) for a, b in zip(tries, tries[1:])]
    expected = [RETRY_INTERVAL_S * n for n in range(1, ATTEMPTS)]  # TransactionMessageRetryInterval x failed attempts
    assert all(abs(g - e) <= tolerance for g, e in zip(gaps, expected)), f"retries after {gaps} s, expected {expected} s"


@pytest.mark.req("OCPP-18")
def test_a_transaction_message_failed_at_every_try_is_dropped_after_the_last(charging):
    """The other side of the limit: the central system fails every try. After
    TransactionMessageAttempts tries the unit discards the message (OCPP 1.6 3.7) and sends it no
    more, however long it is watched (here past the wait a further try would have had)."""
    rig = charging
    tolerance = rig.limit("ocpp.transaction_retry_tolerance_s")
    watch_s = RETRY_INTERVAL_S * sum(range(ATTEMPTS + 1)) + 3 * tolerance + rig.limit("ocpp.status_report_max_s")
    tries = stop_with_failed_tries(rig, ATTEMPTS, watch_s)
    assert len(tries) == ATTEMPTS, (f"{len(tries)} StopTransaction tries, every one failed, with "
                                    f"TransactionMessageAttempts {ATTEMPTS}: expected {ATTEMPTS}, then none")


@pytest.mark.req("OCPP-21")
def test_sampled_meter_values_carry_exactly_the_configured_measurands(charging):
    rig = charging
    wanted = {"Energy.Active.Import.Register": "Wh", "Current.Import": "A"}  # OCPP 1.6 7 (UnitOfMeasure)
    assert change(rig, "MeterValuesSampledData", "Energy.Active.Import.Register,NoSuch.Measurand") == "Rejected", \
        "MeterValuesSampledData with a measurand that does not exist"
    rig.configure("MeterValuesSampledData", ",".join(wanted))
    interval = 10
    rig.configure("MeterValueSampleInterval", str(interval))
    rig.clock.sleep(60.0 + rig.limit("ocpp.meter_values_interval_tolerance_s"), "the old interval runs out")
    mark = rig.clock.now()
    rig.clock.sleep(3 * interval + rig.limit("ocpp.meter_values_interval_tolerance_s"), "sampled MeterValues")
    sampled = [m for m in rig.central.history(action="MeterValues", direction="in") if m.time > mark]
    assert len(sampled) >= 3, f"{len(sampled)} MeterValues in {3 * interval} s at MeterValueSampleInterval {interval}"
    amps = sum(rig.meter.currents()[: rig.profile["phases"]]) / rig.profile["phases"]
    for m in sampled:
        [value] = m.payload["meterValue"]
        got = {v.get("measurand", "Energy.Active.Import.Register"): v for v in value["sampledValue"]}
        assert sorted(got) == sorted(wanted) and len(value["sampledValue"]) == len(wanted), (
            f"sampled measurands {[v.get('measurand') for v in value['sampledValue']]}, configured {list(wanted)}")
        assert all(got[k].get("unit", "Wh") == unit for k, unit in wanted.items()), value["sampledValue"]
        rig.check("Current.Import in MeterValues vs the reference meter (phase average)",
                  float(got["Current.Import"]["value"]), "A", amps - rig.limit("mtr.current_tolerance_a"),
                  amps + rig.limit("mtr.current_tolerance_a"), f"OCPP-21; {rig.source_of('mtr.current_tolerance_a')}")


def availability(rig, connector: int, kind: str) -> str:
    return rig.central.call("ChangeAvailability", {"connectorId": connector, "type": kind}, cp_id=rig.cp_id)["status"]


def wait_status(rig, status: str, after: float) -> None:
    rig.central.wait_for("StatusNotification", predicate=lambda p: p["status"] == status,
                         timeout=rig.limit("ocpp.status_report_max_s"), after=after)


@pytest.mark.req("OCPP-22")
def test_change_availability_idle_and_during_a_transaction(ready):
    rig = ready
    lock = rig.profile["lock"]
    assert availability(rig, 2, "Inoperative") == "Rejected", "ChangeAvailability for connector 2 (the unit has one)"
    for kind, status in (("Inoperative", lock["locked_status"]), ("Operative", "Available")):
        mark = rig.clock.now()
        assert availability(rig, lock["connector_id"], kind) == "Accepted", f"ChangeAvailability {kind}, idle"
        wait_status(rig, status, mark)
    rig.ev.plug_in()
    rig.clock.sleep(1.0)
    rig.ev.request_power()
    rig.ev.draw(16.0)
    tx = transaction_id(rig, rig.clock.now() - 1.0)
    assert rig.pilot.sense().l1 or wait_l1(rig, True, no_close_watch_s(rig)) is not None, "no energy flows"
    mark = rig.clock.now()  # OCPP 1.6 5.2: the state asked is the state it is in: Accepted, nothing changes
    assert availability(rig, lock["connector_id"], "Operative") == "Accepted", "Operative to an operative unit"
    rig.clock.sleep(rig.limit("lock.stop_max_s") + 1.0, "Operative asked of an operative unit while it charges")
    assert rig.pilot.sense().l1, "Operative asked of a charging unit that was already operative, and energy stopped"
    assert not [m for m in rig.central.history(action="StopTransaction", direction="in") if m.time >= mark], \
        "Operative asked of a charging unit that was already operative, and the transaction was stopped"
    mark = rig.clock.now()
    answer = availability(rig, lock["connector_id"], "Inoperative")
    if lock["during_transaction"] == "stop":  # the manual's lock: energy off at once (timed by MODE-09)
        assert answer == "Accepted", f"Inoperative during a transaction, profile says the lock stops it: {answer}"
        wait_status(rig, lock["locked_status"], mark)
        return
    assert answer == "Scheduled", f"Inoperative during a transaction (OCPP 1.6 5.2): {answer}, expected Scheduled"
    rig.clock.sleep(rig.limit("lock.stop_max_s") + 1.0, "the transaction runs on")
    assert rig.pilot.sense().l1, "Scheduled, yet energy stopped before the transaction ended"
    assert not [m for m in rig.central.history(action="StopTransaction", direction="in") if m.time >= mark], \
        "Scheduled, yet the transaction was stopped"
    stopped = rig.clock.now()
    assert rig.central.call("RemoteStopTransaction", {"transactionId": tx}, cp_id=rig.cp_id)["status"] == "Accepted"
    wait_status(rig, lock["locked_status"], stopped)


#: a valid request of each message a unit may not claim (schema-valid OCPP 1.6)
UNCLAIMED_REQUESTS = {
    "GetDiagnostics": {"location": "ftp://rig.invalid/diagnostics/"},
    "SendLocalList": {"listVersion": 1, "updateType": "Full", "localAuthorizationList": [{"idTag": "RIG-OWNER"}]},
    "GetLocalListVersion": {},
    "ReserveNow": {"connectorId": 1, "expiryDate": "2030-01-01T00:00:00Z", "idTag": "RIG-OWNER", "reservationId": 1},
    "CancelReservation": {"reservationId": 1},
}


@pytest.mark.req("OCPP-23")
def test_messages_of_unclaimed_profiles_are_not_implemented(ready):
    rig = ready
    for action in rig.profile["ocpp"]["not_implemented"]:
        try:
            reply = rig.central.call(action, UNCLAIMED_REQUESTS[action], cp_id=rig.cp_id)
        except CallErrorReceived as err:
            assert err.code == "NotImplemented", f"{action}: CallError {err.code}, expected NotImplemented"
            continue
        raise AssertionError(f"{action} answered {reply}: the unit does not claim its profile (NotImplemented)")


@pytest.mark.req("OCPP-24")
def test_clear_cache_is_answered_as_core_requires(ready):
    rig = ready
    cache = get(rig, ["AuthorizationCacheEnabled"]).get("configurationKey") or []
    enabled = bool(cache) and cache[0]["value"].lower() == "true"
    try:
        status = rig.central.call("ClearCache", {}, cp_id=rig.cp_id)["status"]
    except CallErrorReceived as err:
        raise AssertionError(f"ClearCache, a Core message, answered CallError {err.code}") from err
    allowed = {"Accepted"} if enabled else {"Accepted", "Rejected"}
    assert status in allowed, f"ClearCache {status} with AuthorizationCacheEnabled {'true' if enabled else 'absent/false'}"

