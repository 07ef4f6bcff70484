"""Plug & Charge (MODE-04) and connector status over OCPP (OCPP-01)."""

from __future__ import annotations

import pytest

from rig.spec.steps import (configuration_keys, latest_status, sent_since, transaction_id, wait_l1,
                            wait_output_live)


@pytest.mark.eol
@pytest.mark.req("MODE-04")
def test_plug_and_charge_starts_by_itself(ready):
    rig = ready
    rig.configure(rig.profile["ocpp"]["config_charging_mode"], "PlugAndCharge")
    mark = rig.clock.now()
    rig.ev.plug_in()
    rig.ev.draw(16.0)
    rig.clock.sleep(0.5)
    rig.ev.request_power()
    closed = wait_output_live(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0)
    assert closed is not None, "Plug & Charge: no charging after the vehicle was connected and ready"
    rig.clock.sleep(1.0)
    assert max(rig.meter.currents()) > rig.limit("mtr.idle_current_max_a"), "contactor closed but no current"
    remote = [m for m in rig.central.history(direction="out") if m.action == "RemoteStartTransaction" and m.time >= mark]
    assert not remote, "the rig sent RemoteStartTransaction: the start was not automatic"
    start = rig.central.wait_for("StartTransaction", timeout=5.0, after=mark)
    assert start.payload["connectorId"] == 1


def statuses_since(rig, mark: float) -> list[str]:
    return [m.payload["status"] for m in rig.central.history(action="StatusNotification", direction="in")
            if m.time >= mark]


@pytest.mark.req("OCPP-01")
def test_connector_status_follows_a_session(ready):
    rig = ready
    mark = rig.clock.now()
    settle = rig.limit("ocpp.status_report_max_s")
    rig.ev.plug_in()
    rig.clock.sleep(settle)
    rig.ev.request_power()
    rig.ev.draw(16.0)
    rig.clock.sleep(settle)
    rig.ev.stop_requesting()
    rig.clock.sleep(settle)
    rig.ev.unplug()
    rig.clock.sleep(settle)
    seen = statuses_since(rig, mark)
    expected = ["Preparing", "Charging", "SuspendedEV", "Finishing", "Available"]
    it = iter(seen)
    missing = [s for s in expected if s not in it]  # in order; a mode's wait may add SuspendedEVSE
    assert not missing, f"status sequence {seen} lacks {missing} (in order {expected})"
    # OCPP 1.6 section 4.9 (connector status transitions): at unplug after a transaction the
    # connector goes exactly Charging/Suspended -> Finishing -> Available, nothing between
    last_session_status = max(i for i, s in enumerate(seen) if s in ("Charging", "SuspendedEV", "SuspendedEVSE"))
    assert seen[last_session_status + 1:] == ["Finishing", "Available"], (
        f"after the session the connector went {seen[last_session_status + 1:]}, not Finishing then Available")
    for m in rig.central.history(action="StatusNotification", direction="in"):
        rig.central.assert_valid(m)


@pytest.mark.req("OCPP-01", "CP-07")
def test_charger_suspends_when_site_limit_drops_to_zero(charging):
    rig = charging
    mark = rig.clock.now()
    rig.configure(rig.profile["ocpp"]["config_site_limit"], 0)
    rig.clock.sleep(rig.limit("cp.pause_open_max_s") + 1.0)
    m = rig.pilot.measure_cp()
    assert not m.pwm, "PWM still on after the site limit dropped to zero"
    assert not rig.pilot.sense().l1, "contactor still closed after the pause limit"
    seen = statuses_since(rig, mark)
    assert "SuspendedEVSE" in seen, f"expected SuspendedEVSE while the charger pauses, saw {seen}"


RESUME_WATCH_S = 30.0  # how long the test waits for the unit to charge again (a test condition, not a limit)


@pytest.mark.req("OCPP-01", "OCPP-02", "CP-07")
def test_a_paused_session_resumes_in_the_same_transaction(charging):
    """The site limit drops to 0 A (the unit pauses, SuspendedEVSE) and comes back: the vehicle
    charges again in the same transaction. A suspension is a state of the transaction (OCPP 1.6
    4.9: SuspendedEVSE, then Charging), not its end: no StopTransaction and no new StartTransaction
    until the vehicle leaves, whose StopTransaction closes the transaction the session began with.
    Found as a surviving mutant (charger.py, the start of a transaction tied to the offer's start):
    a unit that opens a transaction at every resume bills one session twice and never stops the first."""
    rig = charging
    tx = transaction_id(rig, rig.central.history(action="StartTransaction", direction="in")[-1].time)
    key = rig.profile["ocpp"]["config_site_limit"]
    got = configuration_keys(rig, key)
    mark = rig.clock.now()
    rig.configure(key, 0)
    opened = wait_l1(rig, False, rig.limit("cp.pause_open_max_s") + 1.0, poll_s=0.05)
    assert opened is not None, "still live after the site limit dropped to 0 A (CP-07)"
    resumed = rig.clock.now()
    rig.configure(key, got[0]["value"])
    closed = wait_l1(rig, True, RESUME_WATCH_S, poll_s=0.05)
    assert closed is not None, f"no energy {RESUME_WATCH_S:.0f} s after the site limit came back to {got[0]['value']} A"
    rig.clock.sleep(rig.limit("ocpp.status_report_max_s"), "the resumed session's reports")
    moved = [(m.action, m.payload) for m in sent_since(rig, ("StartTransaction", "StopTransaction"), mark)]
    assert not moved, f"pausing and resuming one session sent {moved}: the suspension is part of transaction {tx}"
    assert latest_status(rig, resumed) == "Charging", (
        f"resumed: last status {latest_status(rig, resumed)!r}, statuses {statuses_since(rig, mark)}")
    unplugged = rig.clock.now()
    rig.ev.unplug()
    stop = rig.central.wait_for("StopTransaction", timeout=rig.limit("ocpp.status_report_max_s"), after=unplugged)
    assert stop.payload["transactionId"] == tx, f"StopTransaction {stop.payload}: the session's transaction is {tx}"
