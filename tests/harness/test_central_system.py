"""The rig's OCPP 1.6J central system against the emulated charger's OCPP client.

Both ends are the real code over a real loopback websocket; the only stand-in is `MiniCharger`,
a few lines of charge-point behaviour on top of the real client (the emulated charger proper is
tested elsewhere). In real time, with a raw websocket peer standing in for a misbehaving real
charger, and the OCPP-J framing: test_central_system_wire.py.
"""

from __future__ import annotations

import json
import socket

import pytest

from rig.core.aio import LoopThread
from rig.core.clock import VirtualClock
from rig.core.errors import InstrumentError, RigFault
from rig.instruments.central_system import (
    IN,
    OUT,
    CallErrorReceived,
    CentralSystem,
    CentralSystemTimeout,
    InvalidOcppMessage,
    accept,
    call_error,
    custom,
    delay,
    drop,
    pending,
    reject,
)
from rig.sim.ocpp_client import CONNECTION_CLOSED, NOT_CONNECTED, TIMEOUT

from tests.harness.mini_charger import BOOT, MiniCharger, status

@pytest.fixture
def clock():
    return VirtualClock(seed=7)


@pytest.fixture
def bench_loop():
    loop = LoopThread("bench").start()
    yield loop
    loop.stop()


@pytest.fixture
def cs(clock, bench_loop):  # bench_loop first: the charger's end outlives the central system
    central = CentralSystem("central", {"host": "127.0.0.1", "port": 0, "heartbeat_s": 300}, clock).open()
    yield central
    central.close()


@pytest.fixture
def charger(clock, bench_loop, cs):
    return MiniCharger(clock, bench_loop, cs.url_for("CP1"), auto=False)


def booted(charger: MiniCharger, cs: CentralSystem) -> MiniCharger:
    charger.client.connect()
    cs.wait_connected(5)
    return charger


# -- boot notification scripts -------------------------------------------------------------------


def test_default_boot_is_accepted_with_the_heartbeat_interval(clock, cs, charger):
    charger.auto = True
    charger.client.connect()
    message = cs.wait_for("BootNotification", timeout=5)
    clock.sleep(0)  # settle: the answer is handled

    cs.assert_valid(message)
    assert message.payload == BOOT and message.time == 0.0
    assert charger.results("BootNotification") == [
        ("result", "BootNotification", 0.0,
         {"status": "Accepted", "currentTime": "2026-01-05T06:00:00.000Z", "interval": 300})
    ]
    assert cs.subprotocol("CP1") == "ocpp1.6"
    boots = cs.history(action="BootNotification")
    assert [(m.direction, m.message_type, m.valid) for m in boots] == [(IN, "Call", True), (OUT, "CallResult", True)]
    assert boots[0].unique_id == boots[1].unique_id


def test_scripted_boot_answers_are_used_in_order_then_the_default(clock, cs, charger):
    cs.script("BootNotification", pending(20), reject(interval=40))
    booted(charger, cs)
    for _ in range(3):
        charger.send("BootNotification", BOOT)
        clock.sleep(1)

    answers = [(r[3]["status"], r[3]["interval"]) for r in charger.results("BootNotification")]
    assert answers == [("Pending", 20), ("Rejected", 40), ("Accepted", 300)]
    assert all(m.valid for m in cs.history())


def test_a_charger_retries_at_the_pending_interval(clock, cs, charger):
    charger.auto = True
    cs.script("BootNotification", pending(10), reject(interval=25))
    charger.client.connect()
    clock.sleep(40)

    boots = [m.time for m in cs.history("BootNotification", direction=IN)]
    assert boots == [0.0, 10.0, 35.0]
    assert cs.wait_for("StatusNotification", timeout=1).time == 35.0


def test_delayed_answer_arrives_exactly_after_the_virtual_delay(clock, cs, charger):
    cs.script("BootNotification", delay(7.5, pending(10)))
    booted(charger, cs)
    clock.sleep(3)
    charger.send("BootNotification", BOOT)

    clock.sleep(7.4)
    assert charger.results("BootNotification") == []
    clock.sleep(1)
    ((_, _, answered_at, payload),) = charger.results("BootNotification")
    assert answered_at == 3 + 7.5
    assert payload == {"status": "Pending", "currentTime": "2026-01-05T06:00:10.500Z", "interval": 10}
    assert [m.time for m in cs.history("BootNotification")] == [3.0, 10.5]


def test_dropped_call_times_out_at_the_clients_virtual_timeout(clock, cs, charger):
    cs.script("Heartbeat", drop())
    booted(charger, cs)
    clock.sleep(2)
    charger.send("Heartbeat", {}, timeout_s=12)
    clock.sleep(30)

    ((_, action, at, code, _text),) = charger.kinds("error")
    assert (action, at, code) == ("Heartbeat", 14.0, TIMEOUT)
    assert [(m.direction, m.message_type) for m in cs.history("Heartbeat")] == [(IN, "Call")]


def test_scripted_call_error_reaches_the_charger(clock, cs, charger):
    cs.script("Authorize", call_error("SecurityError", "not today"))
    booted(charger, cs)
    charger.send("Authorize", {"idTag": "TAG1"})
    clock.sleep(1)

    assert charger.kinds("error") == [("error", "Authorize", 0.0, "SecurityError", "not today")]
    (answer,) = cs.history("Authorize", direction=OUT)
    assert (answer.message_type, answer.error_code, answer.valid) == ("CallError", "SecurityError", True)


def test_status_replies_per_action_and_transaction_ids(clock, cs, charger):
    cs.script("Authorize", reject(), reject(status="Blocked"), accept())
    cs.script("DataTransfer", reject())
    cs.script("StartTransaction", custom({"transactionId": 99, "idTagInfo": {"status": "Expired"}}))
    booted(charger, cs)
    for _ in range(3):
        charger.send("Authorize", {"idTag": "TAG1"})
    charger.send("DataTransfer", {"vendorId": "PlugStream"})
    start = {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": "2025-01-01T00:00:00Z"}
    for _ in range(3):
        charger.send("StartTransaction", start)
    charger.send("StopTransaction", {"transactionId": 1, "meterStop": 10, "timestamp": "2025-01-01T00:01:00Z"})
    charger.send("MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": "2025-01-01T00:00:30Z", "sampledValue": [{"value": "230.1", "measurand": "Voltage"}]}]})
    clock.sleep(1)

    assert [r[3]["idTagInfo"]["status"] for r in charger.results("Authorize")] == ["Invalid", "Blocked", "Accepted"]
    assert charger.results("DataTransfer")[0][3] == {"status": "Rejected"}
    assert [r[3]["transactionId"] for r in charger.results("StartTransaction")] == [99, 1, 2]
    assert charger.results("StopTransaction")[0][3] == {"idTagInfo": {"status": "Accepted"}}
    assert charger.results("MeterValues")[0][3] == {}


def test_scripts_that_make_no_sense_are_refused_at_once(cs):
    with pytest.raises(ValueError, match="Pending is a BootNotification status"):
        cs.script("Heartbeat", pending(5))
    with pytest.raises(ValueError, match="no status to reject"):
        cs.script("StatusNotification", reject())
    with pytest.raises(ValueError, match="interval only belongs"):
        cs.script("Authorize", accept(interval=5))
    with pytest.raises(ValueError, match="not an OCPP 1.6 CallError code"):
        call_error("Oops")
    with pytest.raises(TypeError):
        cs.script("Heartbeat", {"currentTime": "x"})


def test_unknown_and_unhandled_actions_get_call_errors(clock, cs, charger):
    booted(charger, cs)
    charger.send("Foo", {}, validate=False)
    charger.send("ReserveNow", {"connectorId": 1, "expiryDate": "2025-01-01T00:00:00Z", "idTag": "T",
                                "reservationId": 1})
    clock.sleep(1)
    assert [(e[1], e[3]) for e in charger.kinds("error")] == [("Foo", "NotImplemented"), ("ReserveNow", "NotSupported")]
    foo = cs.history("Foo", direction=IN)[0]
    assert not foo.valid and "no action 'Foo'" in foo.error


# -- history and validation ------------------------------------------------------------------------


def test_invalid_payload_is_flagged_in_the_history(clock, cs, charger):
    booted(charger, cs)
    with pytest.raises(ValueError, match="not valid OCPP 1.6"):
        charger.send("StatusNotification", status("Sleeping"))
    charger.send("StatusNotification", status("Sleeping"), validate=False)
    charger.send("StatusNotification", status("Available"))

    bad = cs.wait_for("StatusNotification", timeout=1)
    good = cs.wait_for("StatusNotification", after=bad, timeout=1)
    assert not bad.valid and "status" in bad.error and "Sleeping" in bad.error
    with pytest.raises(InvalidOcppMessage, match="not valid OCPP 1.6") as failure:
        cs.assert_valid(bad)
    assert isinstance(failure.value, AssertionError)
    assert cs.assert_valid(good) is good
    assert bad.raw == json.dumps([2, bad.unique_id, "StatusNotification", status("Sleeping")], separators=(",", ":"))
    # the rig still answers, so the charger's flow goes on and the test decides
    assert len(charger.results("StatusNotification")) == 2


def test_history_filters_and_mark(clock, cs, charger):
    booted(charger, cs)
    charger.send("Heartbeat", {})
    clock.sleep(1)
    mark = cs.mark()
    charger.send("Heartbeat", {})
    clock.sleep(1)

    assert [m.time for m in cs.history("Heartbeat", direction=IN)] == [0.0, 1.0]
    assert [m.direction for m in cs.history("Heartbeat")] == [IN, OUT, IN, OUT]
    assert cs.wait_for("Heartbeat", after=mark, timeout=1).time == 1.0
    assert cs.history()[mark].index == mark


# -- waiting -------------------------------------------------------------------------------------


def test_wait_for_a_payload_condition(clock, cs, charger):
    booted(charger, cs)
    charger.send("StatusNotification", status("Available"))
    clock.call_later(4, lambda: charger.send("StatusNotification", status("Preparing")))
    clock.call_later(9, lambda: charger.send("StatusNotification", status("Charging")))

    message = cs.wait_for("StatusNotification", lambda p: p["status"] == "Charging", timeout=20)
    assert message.time == 9.0 and message.payload["status"] == "Charging"
    assert cs.wait_for("StatusNotification", since=3.0, timeout=0).payload["status"] == "Preparing"
    # a condition that trips over the payload is simply not met
    with pytest.raises(CentralSystemTimeout, match="StatusNotification matching the condition"):
        cs.wait_for("StatusNotification", lambda p: p["nope"], timeout=0.1)


def test_wait_for_after_a_clock_time(clock, cs, charger):
    booted(charger, cs)
    charger.send("Heartbeat", {})
    clock.sleep(2)
    mark = clock.now()
    charger.send("Heartbeat", {})
    assert cs.wait_for("Heartbeat", after=mark, timeout=1).time == 2.0
    assert cs.wait_for("Heartbeat", after=0.0, timeout=1).time == 0.0


def test_wait_for_timeout_is_a_charger_failure_that_lists_what_arrived(clock, cs, charger):
    charger.auto = True
    booted(charger, cs)
    clock.sleep(1)
    started = clock.now()

    with pytest.raises(CentralSystemTimeout) as failure:
        cs.wait_for("StartTransaction", timeout=30)
    text = str(failure.value)
    assert isinstance(failure.value, AssertionError)
    assert "did not send StartTransaction within 30 s" in text
    assert "BootNotification" in text and "StatusNotification" in text
    assert clock.now() == pytest.approx(started + 30)


def test_wait_for_timeout_with_nothing_received(clock, cs):
    with pytest.raises(CentralSystemTimeout, match="it sent: nothing"):
        cs.wait_for("BootNotification", timeout=5)
    with pytest.raises(CentralSystemTimeout, match="no charge point connected"):
        cs.wait_connected(2)


# -- calls from the central system -----------------------------------------------------------------


def test_central_call_is_answered_by_the_chargers_on_call(clock, cs, charger):
    booted(charger, cs)
    clock.sleep(5)
    answer = cs.call("ChangeConfiguration", {"key": "PlugStream.MaxCurrentA", "value": "16"})

    assert answer == {"status": "Accepted"}
    assert charger.calls == [("ChangeConfiguration", {"key": "PlugStream.MaxCurrentA", "value": "16"})]
    assert clock.now() == 5.0  # an immediate answer costs no clock time
    out, back = cs.history("ChangeConfiguration")
    assert (out.direction, out.message_type, back.direction, back.message_type) == (OUT, "Call", IN, "CallResult")
    assert out.unique_id == back.unique_id and back.valid


def test_central_call_errors(clock, cs, charger):
    booted(charger, cs)
    with pytest.raises(CallErrorReceived) as failure:
        cs.call("GetConfiguration", {})
    assert failure.value.code == "NotSupported" and isinstance(failure.value, AssertionError)

    with pytest.raises(ValueError, match="not valid OCPP 1.6"):
        cs.call("ChangeConfiguration", {"key": "K", "value": 16})
    assert [action for action, _ in charger.calls] == ["GetConfiguration"]

    # sent anyway: the client refuses it with the matching CallError and never bothers the charger
    with pytest.raises(CallErrorReceived) as failure:
        cs.call("ChangeConfiguration", {"key": "K", "value": 16}, validate=False)
    assert failure.value.code == "TypeConstraintViolation"
    assert [action for action, _ in charger.calls] == ["GetConfiguration"]
    assert not cs.history("ChangeConfiguration", direction=OUT)[-1].valid

    with pytest.raises(AssertionError, match="charge point CP9 not connected"):
        cs.call("Reset", {"type": "Soft"}, cp_id="CP9")


def test_an_emulator_bug_in_an_answer_is_a_rig_fault_not_a_verdict(clock, cs, charger):
    booted(charger, cs)
    charger.answers["ChangeConfiguration"] = {"status": "Maybe"}
    with pytest.raises(RigFault, match="invalid OCPP 1.6") as fault:
        cs.call("ChangeConfiguration", {"key": "K", "value": "1"})
    assert not isinstance(fault.value, AssertionError)
    assert cs.history("ChangeConfiguration", direction=IN)[0].error_code == "InternalError"


# -- connections ---------------------------------------------------------------------------------


def test_disconnect_from_the_rig_side_and_reconnect(clock, cs, charger):
    cs.script("Heartbeat", drop())
    charger.auto = True
    booted(charger, cs)
    clock.sleep(2)
    charger.send("Heartbeat", {})
    clock.sleep(1)

    assert cs.disconnect("CP1") is True
    # disconnect() settles: the charger has already noticed, at the same clock time
    rig_closed = "closed with code 1000 (disconnected by the test rig)"
    assert charger.kinds("disconnected") == [("disconnected", 3.0, rig_closed)]
    assert ("error", "Heartbeat", 3.0, CONNECTION_CLOSED) == charger.kinds("error")[0][:4]
    assert not charger.client.connected and not cs.connected("CP1")
    assert cs.disconnect("CP1") is False

    clock.sleep(10)
    charger.client.connect()
    assert cs.wait_connected(5) == "CP1"
    clock.sleep(0)
    assert [m.time for m in cs.history("BootNotification", direction=IN)] == [0.0, 13.0]
    assert [(e.kind, e.time) for e in cs.events()] == [("connected", 0.0), ("disconnected", 3.0), ("connected", 13.0)]


def test_client_call_while_offline_is_reported(clock, cs, charger):
    charger.send("Heartbeat", {})
    clock.sleep(0)
    assert charger.kinds("error")[0][:4] == ("error", "Heartbeat", 0.0, NOT_CONNECTED)


def test_charger_side_close_is_seen_by_the_central_system(clock, cs, charger):
    booted(charger, cs)
    clock.sleep(1)
    charger.client.close()
    clock.sleep(0)
    assert not cs.connected() and not charger.client.connected
    assert cs.events()[-1].kind == "disconnected" and cs.events()[-1].time == 1.0
    assert charger.kinds("disconnected")[0][1] == 1.0


def test_central_system_unreachable_then_back(clock, cs, charger):
    booted(charger, cs)
    port = cs.port
    cs.stop_listening()
    assert charger.kinds("disconnected")[0][2].startswith("closed with code 1001")

    charger.client.connect()
    clock.sleep(0)
    assert not charger.client.connected
    assert "cannot connect" in charger.kinds("disconnected")[1][2]

    cs.start_listening()
    assert cs.port == port
    charger.client.connect()
    cs.wait_connected(5)
    assert charger.client.connected


def test_port_in_use_is_an_instrument_error(clock):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        central = CentralSystem("central", {"host": "127.0.0.1", "port": port}, clock)
        with pytest.raises(InstrumentError, match=f"central: cannot listen on 127.0.0.1:{port}"):
            central.open()
        central.close()


# -- determinism -------------------------------------------------------------------------------


def run_scenario(seed: int) -> list:
    clock = VirtualClock(seed=seed)
    loop = LoopThread("bench").start()
    central = CentralSystem("central", {"host": "127.0.0.1", "port": 0, "heartbeat_s": 60}, clock).open()
    try:
        central.script("BootNotification", pending(10), delay(3, accept()))
        central.script("Heartbeat", delay(2.5), drop(), call_error("InternalError", "busy"))
        charger = MiniCharger(clock, loop, central.url_for("CP1"), auto=True)
        charger.client.connect()
        clock.sleep(100)
        central.call("ChangeConfiguration", {"key": "PlugStream.MaxCurrentA", "value": "10"})
        charger.send("StatusNotification", status("Preparing"))
        central.disconnect()
        clock.sleep(5)
        charger.client.connect()
        clock.sleep(200)
        return central.history() + [tuple(e) for e in charger.log]
    finally:
        central.close()
        loop.stop()


def test_same_script_same_history_including_timestamps():
    first = run_scenario(3)
    second = run_scenario(3)
    assert len(first) > 30
    assert first == second


def test_an_answer_one_test_scripted_and_never_used_does_not_answer_the_next(tmp_path):
    """Each test starts with the central system answering as usual: a StartTransaction refusal the
    first test scripted (and never used) must not refuse the second test's session."""
    from tests.harness.plugin_runs import run_pytest, write_test

    probe = write_test(tmp_path, """
        from rig.instruments.central_system import reject
        from rig.spec.steps import plug_and_ask, set_mode, wait_l1

        def test_scripts_a_refusal_and_never_uses_it(rig):
            rig.await_ready()
            rig.central.script("StartTransaction", reject())

        def test_charges_on_after_its_start(rig):
            rig.await_ready()
            set_mode(rig, "PlugAndCharge")
            mark = rig.clock.now()
            plug_and_ask(rig)
            assert wait_l1(rig, True, 10.0) is not None
            rig.central.wait_for("StartTransaction", timeout=10.0, after=mark)
            rig.clock.sleep(10.0)
            assert rig.pilot.sense().l1, "the session was refused by an answer scripted in the test before"
    """)
    run = run_pytest([str(probe), "-p", "no:randomly"], tmp_path / "run")
    assert run.returncode == 0 and "2 passed" in run.output, run.output[-3000:]
