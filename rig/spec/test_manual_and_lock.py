"""Manual mode (MODE-08), the ways a session ends (MODE-09), lock and unlock (LOCK-01, LOCK-02,
LED-10, LED-11). Locking is ChangeAvailability on connector 0 (profile [lock])."""

from __future__ import annotations

import pytest

from rig.spec.steps import (check_idle_current, expect_led, first_sense_edge, latest_status, lock,
                              no_close_watch_s, plug_and_ask, reboot, set_mode, transaction_id, unplug,
                              wait_l1)


FAULT_MA = 60.0  # the IEC 62955 test point whose trip time is rcd.trip_60ma_max_s


def remote_start(rig) -> None:
    reply = rig.central.call("RemoteStartTransaction", {"connectorId": 1, "idTag": "RIG-OWNER"}, cp_id=rig.cp_id)
    assert reply["status"] == "Accepted", f"RemoteStartTransaction answered {reply}"


def remote_stop(rig, tx: int) -> None:
    reply = rig.central.call("RemoteStopTransaction", {"transactionId": tx}, cp_id=rig.cp_id)
    assert reply["status"] == "Accepted", f"RemoteStopTransaction answered {reply}"


def check_opens(rig, since_s: float, limit_key: str, what: str) -> None:
    opened = wait_l1(rig, False, rig.limit(limit_key) + 1.0, poll_s=0.05)
    rig.check(what, None if opened is None else opened - since_s, "s", 0.0, rig.limit(limit_key),
              rig.source_of(limit_key), resolution=rig.pilot.resolution_s)


def check_never_closes(rig, since_s: float, what: str, watch_s: float | None = None) -> None:
    rig.clock.sleep(watch_s if watch_s is not None else no_close_watch_s(rig), what)
    closed = first_sense_edge(rig, "sense_l1", True, since_s)
    assert closed is None, f"{what}: L1 went live at {closed:.3f} s"
    check_idle_current(rig, what)


# ----------------------------------------------------------------------------- Manual
@pytest.mark.req("MODE-08", "MODE-09")
def test_manual_no_energy_until_remote_start_and_remote_stop_ends_it(ready):
    rig = ready
    set_mode(rig, "Manual")
    asked = plug_and_ask(rig)
    check_never_closes(rig, asked, "Manual, vehicle asking, no start command")
    sent = rig.clock.now()
    remote_start(rig)
    closed = wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05)
    rig.check("energy after RemoteStartTransaction", None if closed is None else closed - sent, "s", 0.0,
              rig.limit("cp.contactor_close_max_s"), f"MODE-08; {rig.source_of('cp.contactor_close_max_s')}",
              resolution=rig.pilot.resolution_s)
    tx = transaction_id(rig, sent)
    rig.clock.sleep(2.0, "charging")
    stop_sent = rig.clock.now()
    remote_stop(rig, tx)
    check_opens(rig, stop_sent, "cp.pause_open_max_s", "energy ends after RemoteStopTransaction")
    rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=stop_sent)


# ----------------------------------------------------------------------------- MODE-09: every stop
def stop_by_vehicle(rig) -> tuple[float, str]:
    rig.ev.stop_requesting()
    return rig.clock.now(), "cp.contactor_open_c_to_b_max_s"


def stop_by_remote(rig) -> tuple[float, str]:
    tx = transaction_id(rig, 0.0 if not rig.central.history(action="StartTransaction") else
                        rig.central.history(action="StartTransaction", direction="in")[-1].time)
    t = rig.clock.now()
    remote_stop(rig, tx)
    return t, "cp.pause_open_max_s"


def stop_by_site_limit(rig) -> tuple[float, str]:
    rig.configure(rig.profile["ocpp"]["config_site_limit"], 0)
    return rig.clock.now(), "cp.pause_open_max_s"


#: an energy manager that repeats its limit this often (a period of its own, not a product figure):
#: shorter than the pause the unit waits before opening under load, so a wait that restarts at
#: every update never ends
LIMIT_REPEAT_S = 2.0


def stop_by_repeated_site_limit(rig) -> tuple[float, str]:
    t = rig.clock.now()
    for _ in range(int(rig.limit("cp.pause_open_max_s") // LIMIT_REPEAT_S) + 1):
        rig.configure(rig.profile["ocpp"]["config_site_limit"], 0)
        rig.clock.sleep(LIMIT_REPEAT_S, "the site limit of 0 A sent again")
    return t, "cp.pause_open_max_s"


def stop_by_lock(rig) -> tuple[float, str]:
    t = rig.clock.now()
    lock(rig, True)
    return t, "lock.stop_max_s"


STOPS = {"vehicle stops asking": stop_by_vehicle, "remote stop": stop_by_remote,
         "site limit 0": stop_by_site_limit, "site limit 0 repeated": stop_by_repeated_site_limit,
         "lock": stop_by_lock}


@pytest.mark.req("MODE-09")
@pytest.mark.parametrize("how", sorted(STOPS))
def test_each_stop_ends_energy(charging, how):
    """Plug & Charge session ended by the vehicle, the user (RemoteStop), the site limit, a lock.
    (The schedule's end: test_scheduled.py; a fault: the RCD/PEN tests and the one below.)"""
    rig = charging
    if how == "lock" and rig.profile["lock"]["during_transaction"] != "stop":
        pytest.skip("the product profile says a lock waits for the transaction's end (OCPP-22 checks that)")
    t0, limit_key = STOPS[how](rig)
    check_opens(rig, t0, limit_key, f"energy ends after: {how}")
    rig.clock.sleep(1.0)
    check_idle_current(rig, f"after: {how}")
    if how == "lock":
        lock(rig, False)


@pytest.mark.hazardous
@pytest.mark.req("MODE-09")
def test_a_fault_ends_energy(charging):
    """A residual DC fault (60 mA) ends the session within the trip time (RCD-02's limit)."""
    rig = charging
    t0 = rig.clock.now()
    rig.injector.set_current(FAULT_MA / 1000.0)
    check_opens(rig, t0, "rcd.trip_60ma_max_s", "energy ends after a 60 mA residual DC fault")
    rig.injector.off()


# ----------------------------------------------------------------------------- lock
@pytest.mark.req("LOCK-01", "LED-10", "LED-11")
def test_locked_unit_never_delivers_energy_orange_solid_then_pulsing(ready):
    rig = ready
    lock(rig, True)
    expect_led(rig, "orange_solid", "locked, no vehicle")
    rig.clock.sleep(rig.limit("ocpp.status_report_max_s"))
    status = latest_status(rig)
    want = rig.profile["lock"]["locked_status"]
    assert status == want, f"locked: expected {want}, last status {status}"
    asked = plug_and_ask(rig)
    expect_led(rig, "orange_pulsing", "locked, vehicle plugged in and asking")
    check_never_closes(rig, asked, "locked, vehicle asking")
    m = rig.pilot.measure_cp()
    assert not m.pwm, f"locked: PWM offered to the vehicle: {m}"
    lock(rig, False)


@pytest.mark.req("LOCK-01", "LED-10")
def test_lock_survives_a_power_cycle(ready):
    rig = ready
    lock(rig, True)
    reboot(rig)
    expect_led(rig, "orange_solid", "locked, after a power cycle")
    asked = plug_and_ask(rig)
    check_never_closes(rig, asked, "locked, after a power cycle, vehicle asking")
    unplug(rig)
    lock(rig, False)


@pytest.mark.req("LOCK-02", "LOCK-01")
@pytest.mark.parametrize("mode", ["PlugAndCharge", "Manual"])
def test_unlock_returns_to_the_selected_mode(ready, mode):
    """Unlocked with a vehicle asking: Plug & Charge starts by itself; Manual waits for a start."""
    rig = ready
    set_mode(rig, mode)
    lock(rig, True)
    asked = plug_and_ask(rig)
    check_never_closes(rig, asked, "locked")
    unlocked = rig.clock.now()
    lock(rig, False)
    if mode == "PlugAndCharge":
        closed = wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05)
        rig.check("energy after unlocking (Plug & Charge)", None if closed is None else closed - unlocked, "s", 0.0,
                  rig.limit("cp.contactor_close_max_s"), f"LOCK-02; {rig.source_of('cp.contactor_close_max_s')}",
                  resolution=rig.pilot.resolution_s)
        expect_led(rig, "green_pulsing", "unlocked, charging")
    else:
        check_never_closes(rig, unlocked, "unlocked in Manual mode, no start command")
        remote_start(rig)
        assert wait_l1(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0, poll_s=0.05) is not None, \
            "unlocked in Manual mode: no energy after RemoteStartTransaction"
