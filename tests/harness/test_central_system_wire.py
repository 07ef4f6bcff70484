"""The rig's central system in real time, against peers that misbehave as only a real charger can
(a bare websocket that never answers, answers garbage or offers no subprotocol), and the OCPP-J
framing and schema codes it judges them by. The virtual-time tests: test_central_system.py."""

from __future__ import annotations

import json
import threading
import time

import pytest
from websockets.sync.client import connect as raw_connect

from rig.core.aio import LoopThread
from rig.core.clock import RealClock
from rig.instruments import ocppj
from rig.instruments.central_system import IN, CentralSystem, CentralSystemTimeout, InvalidOcppMessage, accept, delay, drop
from rig.sim.ocpp_client import TIMEOUT
from tests.harness.mini_charger import BOOT, MiniCharger


# -- real time -----------------------------------------------------------------------------------


@pytest.fixture
def real():
    clock = RealClock()
    loop = LoopThread("bench").start()
    central = CentralSystem("central", {"host": "127.0.0.1", "port": 0}, clock).open()
    yield clock, loop, central
    central.close()
    loop.stop()


def test_works_in_real_time(real):
    clock, loop, central = real
    central.script("BootNotification", delay(0.2, accept()))
    charger = MiniCharger(clock, loop, central.url_for("CP-REAL"), "CP-REAL", auto=True)
    charger.client.connect()
    boot = central.wait_for("BootNotification", timeout=5)
    central.wait_for("StatusNotification", timeout=5)
    ((_, _, answered_at, payload),) = charger.results("BootNotification")
    assert answered_at - boot.time >= 0.2
    assert payload["status"] == "Accepted" and payload["currentTime"].endswith("Z")
    assert central.call("ChangeConfiguration", {"key": "K", "value": "1"}, timeout=5) == {"status": "Accepted"}
    charger.send("Heartbeat", {}, timeout_s=0.2)
    central.script("Heartbeat", drop())
    charger.send("Heartbeat", {}, timeout_s=0.2)
    time.sleep(0.4)
    assert [e[3] for e in charger.kinds("error")] == [TIMEOUT]


def test_a_raw_charger_that_never_answers_or_answers_garbage(real):
    """Faults the well-behaved client cannot produce, from a bare websocket (real time)."""
    clock, _loop, central = real
    with raw_connect(central.url_for("RAW"), subprotocols=["ocpp1.6"]) as ws:
        central.wait_connected(2)
        with pytest.raises(CentralSystemTimeout, match="did not answer Reset within 0.2 s"):
            central.call("Reset", {"type": "Soft"}, timeout=0.2)
        ws.recv(timeout=2)  # the Reset, unanswered

        def answer_badly():
            call = json.loads(ws.recv(timeout=2))
            ws.send(json.dumps([3, call[1], {"status": "Maybe"}]))

        helper = threading.Thread(target=answer_badly)
        helper.start()
        with pytest.raises(InvalidOcppMessage, match="answered ChangeConfiguration with invalid OCPP 1.6"):
            central.call("ChangeConfiguration", {"key": "K", "value": "1"}, timeout=2)
        helper.join()

        ws.send('[2,"g1","Heartbeat"]')  # a Call with three elements
        error = json.loads(ws.recv(timeout=2))
        assert error[:3] == [4, "g1", "FormationViolation"]
        ws.send("not json")
        ws.send('[3,"nobody",{}]')
        ws.send('[2,"h1","Heartbeat",{}]')
        assert json.loads(ws.recv(timeout=2))[:2] == [3, "h1"]
    garbage = [m for m in central.history(direction=IN) if not m.valid]
    assert [m.message_type for m in garbage] == ["CallResult", "Invalid", "Invalid", "CallResult"]
    assert "answers no call" in garbage[-1].error


def test_a_charger_that_offers_no_subprotocol_is_let_in_and_seen(real):
    _clock, _loop, central = real
    with raw_connect(central.url_for("NOSUB")):
        central.wait_connected(2)
        assert central.subprotocol("NOSUB") is None


# -- framing helpers -----------------------------------------------------------------------------


def test_frame_codec_and_validation_codes():
    frame = ocppj.decode(ocppj.encode_call("1", "Heartbeat", {}))
    assert (frame.kind, frame.unique_id, frame.action, frame.payload) == (ocppj.CALL, "1", "Heartbeat", {})
    error = ocppj.decode(ocppj.encode_error("2", "GenericError", "x"))
    assert (error.error_code, error.error_description, error.error_details) == ("GenericError", "x", {})
    for text, code in [("{}", "FormationViolation"), ("[5,\"1\"]", "PropertyConstraintViolation"),
                       ("[2,1,\"A\",{}]", "FormationViolation"), (b"[]", "FormationViolation")]:
        with pytest.raises(ocppj.FrameError) as bad:
            ocppj.decode(text)
        assert bad.value.code == code

    assert ocppj.validate(ocppj.CALL, "BootNotification", BOOT) is None
    assert ocppj.validate(ocppj.CALL, "BootNotification", {"chargePointVendor": "x" * 21,
                                                           "chargePointModel": "m"}).code == "TypeConstraintViolation"
    missing_vendor = ocppj.validate(ocppj.CALL, "BootNotification", {"chargePointModel": "m"})
    assert missing_vendor.code == "OccurenceConstraintViolation"
    assert ocppj.validate(ocppj.CALL_RESULT, "Heartbeat", {"currentTime": "2025-01-01 10:00"}).code == \
        "TypeConstraintViolation"
    assert ocppj.validate(ocppj.CALL_RESULT, "Heartbeat", {"currentTime": "2025-01-01T10:00:00+01:00"}) is None
    profile_period = {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.1}]}}}
    assert ocppj.validate(ocppj.CALL, "SetChargingProfile", profile_period) is None
