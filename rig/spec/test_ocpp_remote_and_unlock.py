"""OCPP 1.6J conformance, Core profile: remote start and its authorization (OCPP-11), an idTag the
central system refuses at StartTransaction (OCPP-12), and UnlockConnector (OCPP-13). The cases
the OCA test tool runs and vendors most often ask about: a remote start on a connector the unit
does not have, "authorize first" (AuthorizeRemoteTxRequests), a DeAuthorized transaction that
keeps delivering energy, and a socket unlocked under load."""

from __future__ import annotations

import pytest

from rig.instruments.central_system import delay, reject
from rig.spec.steps import (check_no_energy, first_sense_edge, l1_intervals, plug_and_ask,
                            sent_since, set_mode, transaction_id, transaction_id_of, wait_fault_reported,
                            wait_l1)

GOOD_TAG, BAD_TAG = "RIG-OWNER", "RIG-STOLEN-CARD"
SLOW_ANSWER_S = 20.0  # a central system this slow to answer a StartTransaction (a test condition, not a limit)
TRIP_RESIDUAL_MA = 60.0  # a residual DC current every good unit trips on (IEC 62955's 60 mA test point)
SAMPLE_INTERVAL_S = 10  # MeterValueSampleInterval set: short, so several samples would be due in the watch


def remote_start(rig, payload: dict) -> str:
    return rig.central.call("RemoteStartTransaction", payload, cp_id=rig.cp_id)["status"]


def check_energy_off(rig, since_s: float, what: str) -> None:
    """Energy at the connector ended within cp.pause_open_max_s of `since_s` and is off now (it
    may have come on after `since_s` first: a unit closes on the vehicle's request before the
    answer that stops it arrives)."""
    limit = rig.limit("cp.pause_open_max_s")
    rig.clock.sleep(max(0.0, since_s + limit + 1.0 - rig.clock.now()), what)
    spans = l1_intervals(rig, since_s, rig.clock.now())
    ended = None if rig.pilot.sense().l1 else (max(0.0, spans[-1][1] - since_s) if spans else 0.0)
    rig.check(what, ended, "s", 0.0, limit, rig.source_of("cp.pause_open_max_s"), resolution=rig.pilot.resolution_s)


@pytest.mark.req("OCPP-11")
def test_remote_start_refuses_a_connector_it_lacks_and_starts_without_one(ready):
    rig = ready
    set_mode(rig, "Manual")
    plug_and_ask(rig)
    mark = rig.clock.now()
    status = remote_start(rig, {"connectorId": 2, "idTag": GOOD_TAG})
    assert status == "Rejected", f"RemoteStartTransaction on connector 2 of a one-connector unit: {status}"
    check_no_energy(rig, mark, "after a Rejected remote start on connector 2")
    sent = rig.clock.now()
    status = remote_start(rig, {"idTag": GOOD_TAG})
    assert status == "Accepted", f"RemoteStartTransaction without a connectorId: {status}"
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=sent)
    assert start.payload["connectorId"] == 1 and start.payload["idTag"] == GOOD_TAG, start.payload
    assert wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05) is not None, \
        "no energy after an Accepted remote start"
    again = remote_start(rig, {"connectorId": 1, "idTag": GOOD_TAG})
    assert again == "Rejected", f"a second RemoteStartTransaction while the transaction runs: {again}"


@pytest.mark.hazardous
@pytest.mark.req("OCPP-11")
def test_remote_start_is_rejected_while_the_unit_is_faulted(ready):
    """OCPP 1.6 5.11: the answer says whether the unit is able to start a transaction. Tripped by a
    residual DC current (RCD-06; injecting it is hazardous) while a vehicle waits for a remote start
    it is not: Rejected, and no transaction and no energy follow."""
    rig = ready
    set_mode(rig, "Manual")  # the vehicle waits for a remote start: no transaction yet
    plug_and_ask(rig)
    mark = rig.clock.now()
    rig.injector.set_current(TRIP_RESIDUAL_MA / 1000.0)
    wait_fault_reported(rig, rig.profile["safety"]["rcd_error_code"], mark,
                        rig.limit("rcd.trip_60ma_max_s") + rig.limit("ocpp.status_report_max_s"))
    status = remote_start(rig, {"connectorId": 1, "idTag": GOOD_TAG})
    assert status == "Rejected", (
        f"RemoteStartTransaction while faulted (residual-current trip): {status}; OCPP 1.6 5.11: the "
        f"answer says whether the unit is able to start a transaction")
    check_no_energy(rig, mark, "after a remote start while faulted")


@pytest.mark.req("OCPP-11")
def test_remote_start_is_authorized_first_when_the_unit_is_told_to(ready):
    rig = ready
    set_mode(rig, "Manual")
    rig.configure("AuthorizeRemoteTxRequests", "true")
    plug_and_ask(rig)
    rig.central.script("Authorize", reject())  # the central system says the card is Invalid
    mark = rig.clock.now()
    assert remote_start(rig, {"connectorId": 1, "idTag": BAD_TAG}) == "Accepted"
    check_no_energy(rig, mark, "remote start of an idTag Authorize called Invalid")
    asked = [m.payload.get("idTag") for m in sent_since(rig, "Authorize", mark)]
    assert asked == [BAD_TAG], f"AuthorizeRemoteTxRequests true: Authorize.req for {asked}, expected [{BAD_TAG}]"
    sent = rig.clock.now()
    assert remote_start(rig, {"connectorId": 1, "idTag": GOOD_TAG}) == "Accepted"
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=sent)
    authorized = [m for m in sent_since(rig, "Authorize", sent) if m.payload.get("idTag") == GOOD_TAG]
    assert authorized and authorized[0].time <= start.time, "StartTransaction without Authorize.req first"
    assert start.payload["idTag"] == GOOD_TAG, start.payload


@pytest.mark.req("OCPP-11")
def test_remote_start_goes_straight_to_the_transaction_when_the_unit_is_not_told_to_authorize(ready):
    """AuthorizeRemoteTxRequests false (OCPP 1.6 5.11): the unit tries to start the transaction at
    once, with no Authorize.req for the remote start's idTag."""
    rig = ready
    set_mode(rig, "Manual")
    rig.configure("AuthorizeRemoteTxRequests", "false")
    plug_and_ask(rig)
    sent = rig.clock.now()
    assert remote_start(rig, {"connectorId": 1, "idTag": GOOD_TAG}) == "Accepted"
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=sent)
    asked = [m.payload.get("idTag") for m in sent_since(rig, "Authorize", sent)]
    assert not asked, f"AuthorizeRemoteTxRequests false, yet Authorize.req for {asked} before the remote start"
    assert start.payload["idTag"] == GOOD_TAG, start.payload


@pytest.mark.req("OCPP-12")
def test_an_idtag_refused_at_start_stops_the_transaction(ready):
    rig = ready
    rig.central.script("StartTransaction", reject())  # idTagInfo Invalid, with a transactionId
    mark = rig.clock.now()
    plug_and_ask(rig)
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s") + 5.0, after=mark)
    tx = transaction_id(rig, start.time)
    check_energy_off(rig, start.time, "energy off after StartTransaction.conf Invalid")
    stop = rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=start.time)
    assert stop.payload["transactionId"] == tx and stop.payload.get("reason") == "DeAuthorized", stop.payload
    later = rig.clock.now()
    check_no_energy(rig, later, "after the DeAuthorized stop")


@pytest.mark.req("OCPP-12", "OCPP-10")
def test_an_idtag_refused_at_start_without_stop_on_invalid_id_keeps_the_transaction_and_stops_energy(ready):
    """StopTransactionOnInvalidId false (OCPP 1.6 4.8): only energy delivery stops; the transaction
    stays open until it ends another way (here: unplugging), and an open transaction is sampled at
    MeterValueSampleInterval like any (OCPP-10; found by mutation, measurement 10: a unit that
    armed its sampling only for an Accepted idTag)."""
    rig = ready
    rig.configure("StopTransactionOnInvalidId", "false")
    rig.configure("MeterValueSampleInterval", str(SAMPLE_INTERVAL_S))
    rig.central.script("StartTransaction", reject())
    mark = rig.clock.now()
    plug_and_ask(rig)
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s") + 5.0, after=mark)
    tx = transaction_id(rig, start.time)
    check_energy_off(rig, start.time, "energy off after StartTransaction.conf Invalid (StopTransactionOnInvalidId false)")
    later = rig.clock.now()
    check_no_energy(rig, later, "the refused idTag's transaction, still open")
    stops = sent_since(rig, "StopTransaction", start.time)
    assert not stops, (f"StopTransactionOnInvalidId false, yet the unit stopped transaction {tx}: "
                       f"{stops[0].payload}; OCPP 1.6 4.8 keeps it open and stops only the energy")
    rig.clock.sleep(max(0.0, start.time + 3 * SAMPLE_INTERVAL_S + rig.limit("ocpp.meter_values_interval_tolerance_s")
                        - rig.clock.now()), "the open transaction's sampled MeterValues")
    sampled = [m for m in sent_since(rig, "MeterValues", start.time) if m.payload.get("transactionId") == tx]
    assert len(sampled) >= 2, (f"{len(sampled)} sampled MeterValues for the open transaction {tx} in "
                               f"{3 * SAMPLE_INTERVAL_S} s at MeterValueSampleInterval {SAMPLE_INTERVAL_S} s")
    unplugged = rig.clock.now()
    rig.ev.unplug()
    stop = rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=unplugged)
    assert stop.payload["transactionId"] == tx, stop.payload


@pytest.mark.req("OCPP-13")
@pytest.mark.connector("socket")
def test_unlock_on_a_socket_stops_the_transaction_first(charging):
    rig = charging
    tx = transaction_id(rig, sent_since(rig, "StartTransaction", 0.0)[-1].time)
    mark = rig.clock.now()
    status = rig.central.call("UnlockConnector", {"connectorId": 1}, cp_id=rig.cp_id)["status"]
    assert status == "Unlocked", f"UnlockConnector on a socket variant: {status}"
    check_energy_off(rig, mark, "energy off after UnlockConnector")
    stop = rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=mark)
    assert stop.payload["transactionId"] == tx and stop.payload.get("reason") == "UnlockCommand", stop.payload
    # the bench senses no lock actuator: on a real bench the operator tries the plug (the OCA tool's
    # manual step); the emulated rig answers for its emulated operator
    released = rig.operator.yes_no("Pull the test plug out of the unit's socket and put it back: did the socket's "
                                   "lock let it go?", emulated=True)
    assert released, "UnlockConnector answered Unlocked, but the operator could not pull the test plug out"


@pytest.mark.req("OCPP-13")
@pytest.mark.connector("socket")
def test_unlock_with_no_vehicle_is_answered_and_stops_nothing(ready):
    """No vehicle, no transaction: UnlockConnector still gets an UnlockConnector.conf (OCPP 1.6 5.18:
    Unlocked or UnlockFailed on a socket; a CallError is no answer), and no StopTransaction follows."""
    rig = ready
    mark = rig.clock.now()
    status = rig.central.call("UnlockConnector", {"connectorId": 1}, cp_id=rig.cp_id)["status"]
    assert status in ("Unlocked", "UnlockFailed"), f"UnlockConnector with no vehicle on a socket variant: {status}"
    rig.clock.sleep(rig.limit("ocpp.status_report_max_s"), "anything the unlock sends")
    assert not sent_since(rig, "StopTransaction", mark), "a StopTransaction after unlocking an empty socket"


@pytest.mark.req("OCPP-13")
@pytest.mark.connector("tethered")
def test_unlock_on_a_tethered_unit_is_not_supported(charging):
    rig = charging
    mark = rig.clock.now()
    status = rig.central.call("UnlockConnector", {"connectorId": 1}, cp_id=rig.cp_id)["status"]
    assert status == "NotSupported", f"UnlockConnector on a tethered cable (no lock): {status}"
    rig.clock.sleep(rig.limit("cp.pause_open_max_s") + 1.0, "charging goes on")
    assert not sent_since(rig, "StopTransaction", mark), "a NotSupported unlock stopped the transaction"
    assert first_sense_edge(rig, "sense_l1", False, mark) is None, "energy stopped after a NotSupported unlock"


@pytest.mark.req("OCPP-10", "OCPP-13", "OCPP-20")
@pytest.mark.connector("socket")
def test_a_transaction_unlocked_before_its_start_is_answered_is_not_sampled_afterwards(ready):
    """The central system is slow to answer StartTransaction, and the socket is unlocked meanwhile:
    the transaction ends (UnlockCommand) before the unit knows its id, with the vehicle still
    plugged in. When the answer comes, the queued StopTransaction follows with that id, and no
    sampled MeterValues: they are taken during a transaction (OCPP 1.6 3.16, 9.1
    MeterValueSampleInterval), and this one has ended. Found as a surviving mutant (the sampling
    timer's check that the transaction still runs, charger_metering.py): a unit that arms its
    sampling on the late answer reports a transaction that is over, every interval, for as long as
    the vehicle stays."""
    rig = ready
    set_mode(rig, "PlugAndCharge")
    rig.configure("MeterValueSampleInterval", str(SAMPLE_INTERVAL_S))
    rig.central.script("StartTransaction", delay(SLOW_ANSWER_S))
    mark = rig.clock.now()
    plug_and_ask(rig)
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s") + 5.0, after=mark)
    status = rig.central.call("UnlockConnector", {"connectorId": 1}, cp_id=rig.cp_id)["status"]
    assert status == "Unlocked", f"UnlockConnector on a socket variant while the start was unanswered: {status}"
    rig.clock.sleep(SLOW_ANSWER_S + rig.limit("ocpp.status_report_max_s") + 3 * SAMPLE_INTERVAL_S
                    + rig.limit("ocpp.meter_values_interval_tolerance_s"), "the late answer, the queued stop, and after")
    given = transaction_id_of(rig, start)
    stops = [(m.payload["transactionId"], m.payload.get("reason")) for m in sent_since(rig, "StopTransaction", mark)]
    assert stops == [(given, "UnlockCommand")], (
        f"StopTransactions {stops}: expected one, for transaction {given}, reason UnlockCommand")
    sampled = [m.payload for m in sent_since(rig, "MeterValues", mark) if "transactionId" in m.payload]
    assert not sampled, (f"{len(sampled)} sampled MeterValues after the transaction ended, first {sampled[0]}: "
                         f"the unit samples transaction {given}, unlocked before its StartTransaction was answered")
