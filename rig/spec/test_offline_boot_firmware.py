"""Offline behaviour (OFF-01, OFF-02, LED-03), BootNotification Pending / Rejected (BOOT-02),
the critical firmware update (FW-01, LED-04) and transaction messages (OCPP-02)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from rig.instruments.central_system import delay, drop, pending, reject
from rig.spec.sense_reference import parse_utc, utc_iso
from rig.spec.steps import (check_idle_current, expect_led, first_sense_edge, latest_status, plug_and_ask, reboot,
                              sent_since, set_mode, transaction_id_of, unplug, wait_l1)

NEW_FIRMWARE = "PS-FW 4.3.0"
SLOW_ANSWER_S = 20.0  # a central system this slow to answer a StartTransaction (a test condition, not a limit)
BOOT_RETRY_S = 40  # the interval the central system gives with Pending / Rejected
SAMPLE_INTERVAL_S = 10  # MeterValueSampleInterval set: short, so several samples fall in the watch


def served_time_at(rig, clock_s: float) -> datetime:
    """The calendar time the rig served at clock time `clock_s`."""
    return rig.time.now() - timedelta(seconds=rig.clock.now() - clock_s)


@pytest.fixture
def offline_capable(ready):
    """The unit, with the central system listening again after the test whatever happened, so a
    failed offline test does not leave the next test without a central system."""
    yield ready
    ready.central.start_listening()  # a no-op when it already listens
    ready.await_ready(ready.limit("offline.reconnect_max_s"))


def go_offline(rig) -> float:
    rig.central.stop_listening()
    return rig.clock.now()


def come_back(rig) -> None:
    rig.central.start_listening()
    rig.central.wait_connected(timeout=rig.limit("offline.reconnect_max_s"), cp_id=rig.cp_id)
    rig.await_ready(rig.limit("offline.reconnect_max_s"))


def energy_wh_between(rig, start_msg, stop_msg) -> int:
    return stop_msg.payload["meterStop"] - start_msg.payload["meterStart"]


def check_transaction_energy(rig, start_msg, stop_msg, meter_kwh: float) -> None:
    """OCPP-02: meterStart and meterStop present, ordered, and their difference is the energy the
    reference meter saw (within the larger of a share and a floor)."""
    assert "meterStart" in start_msg.payload and "meterStop" in stop_msg.payload
    delivered_wh = energy_wh_between(rig, start_msg, stop_msg)
    meter_wh = meter_kwh * 1000.0
    tol = max(meter_wh * rig.limit("ocpp.transaction_energy_tolerance_pct") / 100,
              rig.limit("ocpp.transaction_energy_floor_wh"))
    rig.check("meterStop - meterStart vs reference meter", delivered_wh - meter_wh, "Wh", -tol, tol,
              f"OCPP-02; {rig.source_of('ocpp.transaction_energy_tolerance_pct')}; "
              f"{rig.source_of('ocpp.transaction_energy_floor_wh')}")


# ----------------------------------------------------------------------------- offline
@pytest.mark.req("OFF-01", "LED-03", "OCPP-02")
def test_offline_plug_and_charge_still_charges_and_reports_later(offline_capable):
    rig = offline_capable
    set_mode(rig, "PlugAndCharge")
    lost = go_offline(rig)
    seen = rig.wait_for_led("white_pulsing", rig.limit("offline.led_max_s"))
    rig.check("white pulsing after the central system went away", rig.clock.now() - lost
              if seen.state == "white_pulsing" else None, "s", 0.0, rig.limit("offline.led_max_s"),
              f"LED-03; {rig.source_of('offline.led_max_s')}")
    kwh0 = rig.meter.energy_kwh()
    asked = plug_and_ask(rig)
    closed = wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05)
    rig.check("energy offline after asking (Plug & Charge)", None if closed is None else closed - asked, "s", 0.0,
              rig.limit("cp.contactor_close_max_s"), f"OFF-01 regs 7; {rig.source_of('cp.contactor_close_max_s')}",
              resolution=rig.pilot.resolution_s)
    rig.ev.follow_pwm()
    expect_led(rig, "white_pulsing", "offline while charging (white pulsing outranks green pulsing)")
    rig.clock.sleep(600.0, "charging offline")
    rig.ev.stop_requesting()
    opened = wait_l1(rig, False, rig.limit("cp.contactor_open_c_to_b_max_s") + 1.0, poll_s=0.05)
    assert opened is not None, "offline: still live after the vehicle stopped asking"
    unplug(rig)
    kwh = rig.meter.energy_kwh() - kwh0
    back = rig.clock.now()
    come_back(rig)
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("offline.reconnect_max_s"), after=back)
    stop = rig.central.wait_for("StopTransaction", timeout=rig.limit("offline.reconnect_max_s"), after=start)
    tol = rig.limit("offline.timestamp_tolerance_s")
    for msg, clock_s, what in ((start, closed, "StartTransaction"), (stop, opened, "StopTransaction")):
        stamp = parse_utc(msg.payload["timestamp"])
        rig.check(f"queued {what} timestamp vs when it happened",
                  (stamp - served_time_at(rig, clock_s)).total_seconds(), "s", -tol, tol,
                  f"OFF-01 sent on reconnect with the original time; {rig.source_of('offline.timestamp_tolerance_s')}")
        rig.central.assert_valid(msg)
    check_transaction_energy(rig, start, stop, kwh)
    assert lost < asked


def offline_session(rig, charge_s: float) -> tuple[float, float]:
    """One Plug & Charge session while the central system is away: (energy on, energy off) clock times."""
    asked = plug_and_ask(rig)
    closed = wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05)
    assert closed is not None, f"offline session asked at {asked:.1f} s: no energy (OFF-01)"
    rig.ev.follow_pwm()
    rig.clock.sleep(charge_s, "charging offline")
    rig.ev.stop_requesting()
    opened = wait_l1(rig, False, rig.limit("cp.contactor_open_c_to_b_max_s") + 1.0, poll_s=0.05)
    assert opened is not None, "offline: still live after the vehicle stopped asking"
    unplug(rig)
    return closed, opened


@pytest.mark.req("OCPP-10", "OFF-01")
def test_a_transaction_started_offline_is_sampled_once_the_central_system_numbers_it(offline_capable):
    """A Plug & Charge session starts while the central system is away and is still charging when
    it is back. Once the queued StartTransaction is answered the transaction has its id, and the
    sampled MeterValues follow at MeterValueSampleInterval with that id (OCPP 1.6 3.16, 9.1): a unit
    that arms its sampling only for a start answered at once never meters an offline start."""
    rig = offline_capable
    set_mode(rig, "PlugAndCharge")
    rig.configure("MeterValueSampleInterval", str(SAMPLE_INTERVAL_S))
    go_offline(rig)
    plug_and_ask(rig)
    assert wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05) is not None, \
        "offline Plug & Charge: no energy (OFF-01)"
    rig.ev.follow_pwm()
    rig.clock.sleep(60.0, "charging offline")
    back = rig.clock.now()
    come_back(rig)
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("offline.reconnect_max_s"), after=back)
    given = transaction_id_of(rig, start)
    answered = next(m.time for m in rig.central.history(action="StartTransaction", direction="out")
                    if m.message_type == "CallResult" and m.unique_id == start.unique_id)
    tolerance = rig.limit("ocpp.meter_values_interval_tolerance_s")
    rig.clock.sleep(max(0.0, answered + 3 * SAMPLE_INTERVAL_S + tolerance - rig.clock.now()), "sampled MeterValues")
    sampled = [m for m in sent_since(rig, "MeterValues", back) if "transactionId" in m.payload]
    assert sampled, (f"no sampled MeterValues {3 * SAMPLE_INTERVAL_S} s after the central system numbered the "
                     f"offline transaction {given} (MeterValueSampleInterval {SAMPLE_INTERVAL_S})")
    assert {m.payload["transactionId"] for m in sampled} == {given}, [m.payload for m in sampled]
    gaps = [b - a for a, b in zip([answered] + [m.time for m in sampled], [m.time for m in sampled])]
    assert len(sampled) >= 3 and all(abs(g - SAMPLE_INTERVAL_S) <= tolerance for g in gaps), (
        f"sampled MeterValues {[round(g, 1) for g in gaps]} s apart from the answer on, "
        f"MeterValueSampleInterval {SAMPLE_INTERVAL_S} s; {rig.source_of('ocpp.meter_values_interval_tolerance_s')}")


@pytest.mark.req("OCPP-02", "OCPP-20")
def test_a_power_loss_stops_the_transaction_and_the_vehicle_still_plugged_in_starts_a_new_one(charging):
    """The supply fails while the vehicle charges; it stays plugged in and asking. Once the unit
    is registered again, the interrupted transaction is stopped with reason PowerLoss (OCPP 1.6
    StopTransaction.req, Reason), its meterStop no less than its meterStart; the energy after power-up belongs
    to a new transaction, started after that stop (Plug & Charge: no energy without one). Found
    by mutation (measurement 10: a unit that, after the self-test, took the vehicle still plugged
    in for no vehicle charged with no transaction); the emulated unit itself left the interrupted
    transaction open until then."""
    rig = charging
    set_mode(rig, "PlugAndCharge")
    start = sent_since(rig, "StartTransaction", 0.0)[-1]
    tx = transaction_id_of(rig, start)
    mark = rig.clock.now()
    reboot(rig)
    closed = wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05)
    assert closed is not None, "Plug & Charge: the vehicle still plugged in got no energy after power-up"
    rig.clock.wait_until(lambda: len(sent_since(rig, ("StartTransaction", "StopTransaction"), mark)) >= 2,
                         rig.limit("ocpp.status_report_max_s"), poll=0.5, reason="the stop, then the new start")
    sent = sent_since(rig, ("StartTransaction", "StopTransaction"), mark)
    assert [m.action for m in sent] == ["StopTransaction", "StartTransaction"], (
        f"after a power loss while charging the unit sent {[(m.action, m.payload) for m in sent]}: expected the "
        f"interrupted transaction {tx} stopped (PowerLoss), then a new one started")
    stop, new_start = sent
    assert stop.payload["transactionId"] == tx and stop.payload.get("reason") == "PowerLoss", stop.payload
    assert stop.payload["meterStop"] >= start.payload["meterStart"], (stop.payload, start.payload)
    assert transaction_id_of(rig, new_start) != tx, f"the new session reuses transaction {tx}"


@pytest.mark.req("OCPP-20")
def test_two_offline_sessions_are_delivered_whole_and_in_order(offline_capable):
    rig = offline_capable
    set_mode(rig, "PlugAndCharge")
    go_offline(rig)
    sessions = [offline_session(rig, 120.0), offline_session(rig, 60.0)]
    back = rig.clock.now()
    come_back(rig)
    rig.clock.wait_until(lambda: len(sent_since(rig, ("StartTransaction", "StopTransaction"), back)) >= 4,
                         rig.limit("offline.reconnect_max_s"), poll=0.5, reason="queued transaction messages")
    delivered = sent_since(rig, ("StartTransaction", "StopTransaction"), back)
    assert [m.action for m in delivered] == ["StartTransaction", "StopTransaction"] * 2, (
        f"after two offline sessions the unit delivered {[m.action for m in delivered]}, expected each session's "
        f"StartTransaction then StopTransaction, oldest first")
    tol = rig.limit("offline.timestamp_tolerance_s")
    for (start, stop), (closed, opened) in zip(zip(delivered[::2], delivered[1::2]), sessions):
        given = transaction_id_of(rig, start)
        assert stop.payload["transactionId"] == given, (
            f"StopTransaction {stop.payload} after a StartTransaction the central system numbered {given}")
        for msg, clock_s in ((start, closed), (stop, opened)):
            rig.check(f"queued {msg.action} timestamp vs when it happened",
                      (parse_utc(msg.payload["timestamp"]) - served_time_at(rig, clock_s)).total_seconds(), "s",
                      -tol, tol, f"OCPP-20; {rig.source_of('offline.timestamp_tolerance_s')}")


@pytest.mark.req("OCPP-20")
def test_a_stop_while_the_start_is_unanswered_follows_the_answer_with_its_transaction_id(ready):
    """Online, but the central system slow to answer StartTransaction: the session ends before the
    answer comes. The queue holds: one StartTransaction, then one StopTransaction carrying the
    transactionId that answer gave (OCPP 1.6 3.7: transaction messages in order, none lost)."""
    rig = ready
    set_mode(rig, "PlugAndCharge")
    rig.central.script("StartTransaction", delay(SLOW_ANSWER_S))
    mark = rig.clock.now()
    plug_and_ask(rig)
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s") + 5.0, after=mark)
    unplug(rig)  # the session ends while the start waits for its answer
    rig.clock.sleep(SLOW_ANSWER_S + rig.limit("ocpp.status_report_max_s"), "the answer, then the queued stop")
    sent = sent_since(rig, ("StartTransaction", "StopTransaction"), mark)
    assert [m.action for m in sent] == ["StartTransaction", "StopTransaction"], (
        f"a session that ended while its StartTransaction was unanswered: the unit sent {[m.action for m in sent]}")
    given = transaction_id_of(rig, start)
    assert sent[1].payload["transactionId"] == given, f"StopTransaction {sent[1].payload}, the start was given {given}"


@pytest.mark.req("OCPP-20")
def test_a_stop_cut_off_by_a_lost_connection_is_sent_again_once_back(offline_capable):
    """The StopTransaction is on its way when the connection drops, unanswered: the unit cannot
    know it arrived, so (OCPP 1.6 3.7: transaction messages are delivered, none lost) it sends it
    again once the central system is back, with the same transactionId."""
    rig = offline_capable
    set_mode(rig, "PlugAndCharge")
    mark = rig.clock.now()
    plug_and_ask(rig)
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=mark)
    rig.central.script("StopTransaction", drop())  # this connection never answers it
    ended = rig.clock.now()
    unplug(rig)
    first = rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=ended)
    go_offline(rig)
    rig.clock.sleep(5.0, "the connection gone with the StopTransaction unanswered")
    back = rig.clock.now()
    come_back(rig)
    rig.clock.wait_until(lambda: sent_since(rig, "StopTransaction", back), rig.limit("offline.reconnect_max_s"),
                         poll=0.5, reason="the unanswered StopTransaction sent again")
    again = sent_since(rig, "StopTransaction", back)
    given = transaction_id_of(rig, start)
    assert again, f"the StopTransaction cut off by the lost connection ({first.payload}) was never sent again"
    assert again[0].payload["transactionId"] == given, f"StopTransaction sent again as {again[0].payload}, given {given}"


@pytest.mark.req("OCPP-12", "OCPP-20")
def test_a_late_invalid_answer_for_an_ended_session_leaves_the_next_one_charging(ready):
    """A session ends while its StartTransaction is unanswered, and the next vehicle is charging
    when the answer comes, Invalid. It answers the transaction that has ended: that one is stopped
    (one StopTransaction with its transactionId) and the new session charges on
    (StopTransactionOnInvalidId concerns the transaction the answer is for, OCPP 1.6 4.8, 9.1)."""
    rig = ready
    set_mode(rig, "PlugAndCharge")
    rig.configure("StopTransactionOnInvalidId", "true")
    rig.central.script("StartTransaction", delay(SLOW_ANSWER_S, reject()))
    mark = rig.clock.now()
    plug_and_ask(rig)
    start = rig.central.wait_for("StartTransaction", timeout=rig.limit("ocpp.status_report_max_s") + 5.0, after=mark)
    unplug(rig)
    plug_and_ask(rig)
    closed = wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05)
    assert closed is not None, "the next vehicle got no energy"
    rig.ev.follow_pwm()
    rig.clock.sleep(SLOW_ANSWER_S + rig.limit("ocpp.status_report_max_s"), "the late Invalid answer, then the queue")
    opened = first_sense_edge(rig, "sense_l1", False, closed)
    assert opened is None, (f"energy off {opened - closed:.1f} s into the next session: the late Invalid answer "
                            "for the session before was applied to it")
    given = transaction_id_of(rig, start)
    stops = sent_since(rig, "StopTransaction", mark)
    assert [m.payload["transactionId"] for m in stops] == [given], (
        f"StopTransactions {[m.payload for m in stops]}: expected one, for the ended transaction {given}")


@pytest.mark.req("OFF-02", "LED-03")
def test_offline_manual_cannot_start(offline_capable):
    rig = offline_capable
    set_mode(rig, "Manual")
    go_offline(rig)
    asked = plug_and_ask(rig)
    expect_led(rig, "white_pulsing", "offline, Manual, vehicle asking")
    rig.clock.sleep(rig.limit("offline.no_start_watch_s"), "offline in Manual mode")
    closed = first_sense_edge(rig, "sense_l1", True, asked)
    assert closed is None, f"offline in Manual mode: L1 went live at {closed:.3f} s without a start command"
    check_idle_current(rig, "offline in Manual mode")
    come_back(rig)
    rig.clock.sleep(rig.limit("ocpp.status_report_max_s"), "back online")
    assert first_sense_edge(rig, "sense_l1", True, asked) is None, "Manual: energy on reconnect without a start command"


# ----------------------------------------------------------------------------- boot
def check_only_boots_between(rig, first, second) -> None:
    """Between two BootNotifications the unit sent nothing of its own (answers to the central
    system's calls are allowed)."""
    calls = [m for m in rig.central.history(direction="in")
             if first.index < m.index < second.index and m.message_type == "Call"]
    assert not calls, f"BOOT-02 the unit sent {[m.action for m in calls]} while not accepted"


def wait_boot(rig, mark):
    """The unit's BootNotification after a power cycle made at central-system mark `mark`."""
    return rig.central.wait_for("BootNotification", timeout=rig.limit("boot.self_test_max_s")
                                + rig.limit("boot.accept_max_s"), after=mark)


def wait_boot_retry(rig, first):
    """The next BootNotification after `first`, answered Pending or Rejected with BOOT_RETRY_S."""
    return rig.central.wait_for("BootNotification", timeout=BOOT_RETRY_S + rig.limit("boot.retry_tolerance_s") + 1,
                                after=first)


@pytest.mark.req("BOOT-02", "LED-05")
@pytest.mark.parametrize("answer", ["Pending", "Rejected"])
def test_boot_pending_or_rejected_white_solid_and_only_retries(ready, answer):
    rig = ready
    reply = pending(BOOT_RETRY_S) if answer == "Pending" else reject(BOOT_RETRY_S)
    rig.central.script("BootNotification", reply)
    mark = rig.central.mark()
    rig.power_cycle()
    first = wait_boot(rig, mark)
    rig.clock.sleep(rig.limit("ocpp.status_report_max_s"))
    expect_led(rig, "white_solid", f"BootNotification {answer}")
    if answer == "Pending":  # the central system may still configure a pending unit
        got = rig.central.call("GetConfiguration", {"key": [rig.profile["ocpp"]["config_charging_mode"]]},
                               cp_id=rig.cp_id)
        assert got.get("configurationKey"), f"GetConfiguration while Pending answered {got}"
    second = wait_boot_retry(rig, first)
    rig.check(f"next BootNotification after {answer}", second.time - first.time, "s",
              BOOT_RETRY_S - rig.limit("boot.retry_tolerance_s"), BOOT_RETRY_S + rig.limit("boot.retry_tolerance_s"),
              f"BOOT-02 interval {BOOT_RETRY_S} s; {rig.source_of('boot.retry_tolerance_s')}")
    check_only_boots_between(rig, first, second)
    blue = rig.wait_for_led("blue_solid", rig.limit("boot.accept_max_s"))
    assert blue.state == "blue_solid", f"accepted at last: expected blue solid, saw {blue.explain()}"


@pytest.mark.req("BOOT-02", "OCPP-20")
def test_a_stop_kept_through_a_power_loss_waits_until_the_boot_is_accepted(charging):
    """The supply fails while the vehicle charges, and the unit comes back to a central system
    that answers its BootNotification Pending. The StopTransaction (PowerLoss) it kept through the
    loss is a request like any other: BOOT-02 allows nothing but the next BootNotification until
    it is accepted, and then the stop goes out (OCPP-20). Found by mutation (measurement 15: no test
    had a transaction message kept while a boot was Pending); a unit that flushes what it kept as
    soon as it is connected fails here."""
    rig = charging
    tx = transaction_id_of(rig, sent_since(rig, "StartTransaction", 0.0)[-1])
    rig.central.script("BootNotification", pending(BOOT_RETRY_S))
    mark = rig.central.mark()
    rig.power_cycle()
    first = wait_boot(rig, mark)
    second = wait_boot_retry(rig, first)
    check_only_boots_between(rig, first, second)
    stop = rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=second)
    assert stop.payload["transactionId"] == tx and stop.payload.get("reason") == "PowerLoss", (
        f"after the acceptance: expected transaction {tx} stopped (PowerLoss), got {stop.payload}")


# ----------------------------------------------------------------------------- firmware
def firmware_location(rig, version: str) -> str:
    """Where the unit can fetch `version`: the rig's own firmware server when the rig is the
    unit's network (the image signed by the rig's authority), else a modelled location."""
    if getattr(rig, "network", None) is not None:
        from rig.network import SETUP_HOST

        return f"https://{SETUP_HOST}{rig.network.firmware.publish(version)}"
    return f"https://setup.invalid/firmware/{version.replace(' ', '-')}.bin"


def expected_version(rig, url: str) -> str:
    fw = rig.profile["firmware"]
    match = re.search(fw["file_name_pattern"], url)
    assert match, f"test data: {url} does not match the profile's firmware file name pattern"
    return f"{fw['version_prefix']} {match.group('version')}"


def fw_status(rig, status: str, after, timeout_s: float):
    return rig.central.wait_for("FirmwareStatusNotification", predicate=lambda p: p["status"] == status,
                                timeout=timeout_s, after=after)


@pytest.mark.req("FW-01", "LED-04")
def test_critical_firmware_update_purple_pauses_then_resumes(charging):
    rig = charging
    retrieve_in_s = 60.0
    retrieve = rig.time.now() + timedelta(seconds=retrieve_in_s)
    sent = rig.clock.now()
    location = firmware_location(rig, NEW_FIRMWARE)
    rig.central.call("UpdateFirmware", {"location": location, "retrieveDate": utc_iso(retrieve)}, cp_id=rig.cp_id)
    budget = rig.limit("fw.update_max_s")
    downloading = fw_status(rig, "Downloading", sent, retrieve_in_s + rig.limit("fw.retrieve_late_max_s") + 1)
    rig.check("download start after retrieveDate", downloading.time - (sent + retrieve_in_s), "s",
              -rig.limit("mode.window_early_max_s"), rig.limit("fw.retrieve_late_max_s"),
              rig.source_of("fw.retrieve_late_max_s"))
    fw_status(rig, "Downloaded", downloading, budget)
    installing = fw_status(rig, "Installing", downloading, budget)
    opened = wait_l1(rig, False, rig.limit("fw.pause_open_max_s") + 1.0, poll_s=0.05)
    rig.check("charging paused after Installing", None if opened is None else opened - installing.time, "s",
              None, rig.limit("fw.pause_open_max_s"), f"FW-01; {rig.source_of('fw.pause_open_max_s')}",
              resolution=rig.pilot.resolution_s)
    m = rig.pilot.measure_cp()
    assert not m.pwm, f"installing: PWM still offered: {m}"
    expect_led(rig, "purple_solid", "critical firmware update installing")
    assert latest_status(rig) == "SuspendedEVSE", f"installing: expected SuspendedEVSE, got {latest_status(rig)}"
    fw_status(rig, "Installed", installing, budget)
    boot = rig.central.wait_for("BootNotification", timeout=budget, after=installing)
    assert boot.payload.get("firmwareVersion") == expected_version(rig, location), (
        f"after the update the unit reports firmwareVersion {boot.payload.get('firmwareVersion')!r}")
    rig.check("whole update", boot.time - sent, "s", None, retrieve_in_s + budget, rig.source_of("fw.update_max_s"))
    resumed = wait_l1(rig, True, rig.limit("fw.resume_max_s"), poll_s=0.5)
    rig.check("session resumes after the update (same vehicle, not re-plugged)",
              None if resumed is None else resumed - boot.time, "s", 0.0, rig.limit("fw.resume_max_s"),
              f"FW-01; {rig.source_of('fw.resume_max_s')}", resolution=rig.pilot.resolution_s)
    expect_led(rig, "green_pulsing", "charging again after the update")


@pytest.mark.req("OCPP-19")
def test_firmware_status_notifications_come_in_order_and_a_bad_image_fails(ready):
    rig = ready
    budget = rig.limit("fw.update_max_s")
    sent = rig.clock.now()
    location = firmware_location(rig, NEW_FIRMWARE)
    rig.central.call("UpdateFirmware", {"location": location, "retrieveDate": utc_iso(rig.time.now())}, cp_id=rig.cp_id)
    new_version = expected_version(rig, location)
    rig.central.wait_for("BootNotification", predicate=lambda p: p.get("firmwareVersion") == new_version,
                         timeout=budget, after=sent)  # the restart with the new version ends the sequence
    statuses = [m.payload["status"] for m in rig.central.history(action="FirmwareStatusNotification", direction="in")
                if m.time >= sent]
    assert statuses == ["Downloading", "Downloaded", "Installing", "Installed"], (
        f"FirmwareStatusNotification sequence {statuses}; OCPP 1.6 FirmwareStatus: Downloading, Downloaded, "
        f"Installing, Installed, each once, before the restart")
    rig.await_ready()
    mark = rig.central.mark()  # an index, not a time: the boot above may share this instant: the boot above may share this instant
    bad = location.rsplit("/", 1)[0] + "/not-a-plugstream-image.txt"
    rig.central.call("UpdateFirmware", {"location": bad, "retrieveDate": utc_iso(rig.time.now())}, cp_id=rig.cp_id)
    fw_status(rig, "DownloadFailed", mark, budget)
    rig.clock.sleep(rig.limit("ocpp.status_report_max_s"), "nothing installs after DownloadFailed")
    after = [m.payload["status"] for m in rig.central.history(action="FirmwareStatusNotification", direction="in")
             if m.index >= mark]
    assert after == ["Downloading", "DownloadFailed"], f"an image that cannot be fetched: {after}"
    assert not [m for m in rig.central.history(action="BootNotification", direction="in") if m.index >= mark], \
        "the unit restarted after a failed download"


# ----------------------------------------------------------------------------- OCPP-02
@pytest.mark.req("OCPP-02")
def test_session_messages_valid_and_meter_readings_match_the_meter(ready):
    rig = ready
    set_mode(rig, "PlugAndCharge")
    mark = rig.central.mark()
    kwh0 = rig.meter.energy_kwh()
    plug_and_ask(rig)
    assert wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05) is not None, "never charged"
    rig.ev.follow_pwm()
    rig.clock.sleep(900.0, "charging")
    rig.ev.stop_requesting()
    rig.clock.sleep(1.0)
    unplug(rig, rig.limit("ocpp.status_report_max_s"))
    kwh = rig.meter.energy_kwh() - kwh0
    start = rig.central.wait_for("StartTransaction", timeout=1.0, after=mark)
    stop = rig.central.wait_for("StopTransaction", timeout=1.0, after=start)
    for m in rig.central.history()[mark:]:
        if m.direction == "in":
            rig.central.assert_valid(m)
    assert stop.payload["transactionId"] is not None
    rig.check("meterStop - meterStart", energy_wh_between(rig, start, stop), "Wh", 0.0, None,
              "OCPP-02 meterStop >= meterStart")
    check_transaction_energy(rig, start, stop, kwh)
