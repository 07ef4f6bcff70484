"""The emulated charger's network and OCPP side: power-up and boot, connecting to the central
system, what it sends (BootNotification, Heartbeat, status, the transaction messages with their
offline queue). What the central system asks is answered in rig/sim/charger_operations.py. A
mixin of `EmulatedCharger` (rig/sim/charger.py), which holds the state it works on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from rig.sim import firmware_timing as T

#: OCPP CallError codes are the central system's verdict on a message: resending cannot help.
#: The client's own codes (timeout, connection lost, not connected) mean "try again later".
_RETRY_LATER = ("Timeout", "ConnectionClosed", "NotConnected")


def iso(when: datetime) -> str:
    """An OCPP timestamp (UTC, milliseconds) from the unit's real-time clock."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass
class QueuedMessage:
    """A transaction message waiting for the central system (offline: regs 7, sent on reconnect)."""

    action: str
    build: Callable[[], dict | None]  # the payload when sent (a StopTransaction learns its id late)
    on_result: Callable[[dict], None]
    failed_attempts: int = 0  # answered with a CallError so far (OCPP 1.6 edition 2 3.7)


class ChargerOcpp:
    """Mixin: the charger's boot, connection and OCPP messages."""

    # ------------------------------------------------------------------ power and boot
    def _power_on(self) -> None:
        self._power_epoch += 1
        self.powered = True
        self.booting = self.defect != "vehicle-seen-during-self-test"  # (the bug: takes pilot events while testing)
        self.registration, self.network_up = "none", False
        self.session, self.fault, self.fault_kind, self.status_sent = None, None, None, None
        self.finishing = False
        self.tx_in_flight = False
        self.firmware.power_cycled()
        self.modes.session_ended()
        self.rcd.powered_up()
        self.pen.powered_up()
        if not self.plant.earth_closed:
            with self.plant.change("contactor"):
                self.plant.earth_closed = True  # the PEN relay closes PE again at power-up
        self.cp_state = "A"
        self._set_generator("off")
        self._show("rainbow", "rainbow")
        self._later("boot", T.SELF_TEST_S, self._self_test_done)

    def _power_off(self) -> None:
        self._power_epoch += 1
        if self.client is not None:  # the connection dies with the supply: nothing goes out from here
            self.client.close()
        self.pen.powered_down()
        self.rcd.powered_down()
        for key in list(self._timers):
            self._cancel(key)
        self.powered = self.booting = False
        self.network_up = False
        self.registration = "none"
        if self.defect != "power-loss-transaction-left-open":  # (the bug: the transaction stays open for ever)
            # OCPP 1.6 StopTransaction reason PowerLoss: the unit keeps the stop (meter, time) through the loss in
            # its non-volatile queue and sends it once registered again; nothing goes out now. An
            # Inoperative scheduled for the transaction's end holds from here (kept like any lock)
            self.locked, self.lock_scheduled = self.locked or self.lock_scheduled, False
            self._stop_transaction("PowerLoss")
            for key in list(self._timers):
                self._cancel(key)
        with self.plant.change("contactor"):
            self.plant.line_closed = self.plant.neutral_closed = False
        self._set_generator("off")
        self._show("off", "solid")

    def _self_test_done(self) -> None:
        self.booting = False
        self._set_generator("steady")
        self.cp_state = self._read_cp()
        if self.cp_state != "A":
            self._plugged_in()  # a vehicle stayed plugged in through the power loss: a new session
        self._later("network", T.NETWORK_UP_S, self._network_up)
        self._update_led()

    def _network_up(self) -> None:
        net = getattr(self, "net", None)  # rig.sim.charger_network.UnitNetwork, when the rig is the network
        if net is None:
            self.network_up = True
            self._connect()
            return

        def ready() -> None:  # DHCP lease and NTP done (under plant.lock, on the clock)
            self.network_up = True
            self._connect()

        net.bring_up(ready)

    def _connect(self) -> None:
        if self.central_url is None:
            self._update_led()
            return
        from rig.sim.ocpp_client import OcppClient  # the transport; imported late to keep start-up light

        net = getattr(self, "net", None)
        if self.client is None:
            self.client = OcppClient(
                self.clock,
                self.loop,
                self.central_url,
                self.serial,
                on_call=self._on_ocpp_call,
                on_connected=self._on_connected,
                on_disconnected=self._on_disconnected,
                headers=net.client_headers() if net is not None else None,
            )
            self.client.observer = getattr(self, "frame_observer", None)
        if net is None:
            self.client.connect()
        else:  # resolve (and re-sync the clock if TLS failed on time), then TLS; no address: retry later
            from urllib.parse import urlsplit

            net.connect_ocpp(self.client, urlsplit(self.central_url).hostname,
                             on_fail=lambda: self._later("reconnect", T.RECONNECT_S, self._reconnect))
        self._update_led()

    def _on_connected(self) -> None:
        with self.plant.lock:
            self._send_boot_notification()
            if self.defect == "tx-sent-before-accepted":
                self._pump_tx()  # the bug: what it kept flushed at connect, before the BootNotification's answer
            self._update_led()
            if self.defect == "chatty-heartbeat":  # its own diagnostic heartbeat, whatever the interval
                from rig.sim.charger_network import CHATTY_HEARTBEAT_S, chatty_heartbeat

                def chatter() -> None:
                    self._send("DataTransfer", chatty_heartbeat(self.serial))
                    self._later("chatty-heartbeat", CHATTY_HEARTBEAT_S, chatter)

                self._later("chatty-heartbeat", CHATTY_HEARTBEAT_S, chatter)

    def _on_disconnected(self) -> None:
        with self.plant.lock:
            if self.registration != "accepted":
                self.registration = "none"  # an accepted unit stays registered across reconnects
            self.status_sent = None
            self._update_led()
            if self.powered:  # a firmware timer: a power cycle cancels it, as a reboot loses every timer
                self._later("reconnect", T.RECONNECT_S, self._reconnect)

    def _reconnect(self) -> None:
        """The retry timer fired (powered since it was armed, client made): connect unless another
        path (the link coming up) already has."""
        with self.plant.lock:
            if self.client.connected:
                return
            net = getattr(self, "net", None)
            if net is None:
                self.client.connect()
            elif self.network_up:
                self._connect()  # through the network stack: DNS, NTP if the clock is in doubt, TLS

    @property
    def online(self) -> bool:
        return self.client is not None and self.client.connected

    # ------------------------------------------------------------------ OCPP out
    def _send(self, action: str, payload: dict, on_result=None) -> None:
        if not self.online:
            return
        self.client.call(action, payload, on_result or (lambda _p: None), on_error=lambda *_: None)

    def _send_boot_notification(self) -> None:
        payload = {
            "chargePointVendor": self.profile["product"]["vendor"],
            "chargePointModel": self.model["ocpp_model"],
            "chargePointSerialNumber": self.serial,
            "firmwareVersion": self.firmware.version,
        }
        self._send("BootNotification", payload, self._on_boot_result)

    def _on_boot_result(self, payload: dict) -> None:
        with self.plant.lock:
            status, interval = payload.get("status"), int(payload.get("interval") or 0)
            self._set_rtc(payload.get("currentTime"))
            if status == "Accepted":
                self.registration = "accepted"
                self.config.values["HeartbeatInterval"] = str(interval)
                self.boot_heartbeat_s = interval
                if interval > 0:
                    self._later("heartbeat", interval, self._heartbeat)
                self._report_status(force=True)
                self._evaluate_cp()
                self._pump_tx()  # transaction messages kept while offline go out now, in order
            else:
                self.registration = "pending" if status == "Pending" else "rejected"
                if self.defect == "pending-sends-status":
                    self._report_status(force=True)  # the bug: reports as if it had been accepted
                retry = interval or T.DEFAULT_BOOT_RETRY_S
                self._later("boot-retry", retry, self._send_boot_notification)
            self._update_led()

    def _configured_heartbeat_s(self) -> int:
        interval = int(self.config.number("HeartbeatInterval", 0))
        if self.defect == "heartbeat-floor-10s" and interval > 0:
            return max(interval, 10)  # the bug: a floor of its own under the configured interval
        return interval

    def _heartbeat(self) -> None:
        self._send_heartbeat()
        interval = self._configured_heartbeat_s()
        if self.defect == "heartbeat-interval-ignored":
            interval = self.boot_heartbeat_s  # the bug: the interval of the BootNotification.conf, for ever
        if interval > 0:
            self._later("heartbeat", interval, self._heartbeat)

    def _send_heartbeat(self) -> None:
        self._send("Heartbeat", {}, self._on_heartbeat_result)

    def _on_heartbeat_result(self, payload: dict) -> None:
        with self.plant.lock:
            self._set_rtc(payload.get("currentTime"))

    # ------------------------------------------------------------------ transaction messages
    def _send_tx(self, action: str, build: Callable[[], dict | None], on_result=None) -> None:
        """Start/StopTransaction: kept in order while the central system cannot hear them."""
        if self.defect == "offline-queue-keeps-last" and action == "StartTransaction" and not self.online:
            self.tx_queue.clear()  # the bug: one slot per connector, a new session overwrites the last
        self.tx_queue.append(QueuedMessage(action, build, on_result or (lambda _p: None)))
        self._pump_tx()

    def _pump_tx(self) -> None:
        registered = self.registration == "accepted" or self.defect == "tx-sent-before-accepted"  # (the bug: any time)
        if self.tx_in_flight or not self.tx_queue or not self.online or not registered:
            return
        head = self.tx_queue[0]
        payload = head.build()
        if payload is None:  # nothing left to say (a stop for a start the central system refused)
            self.tx_queue.popleft()
            self._pump_tx()
            return
        self.tx_in_flight = self.defect != "tx-queue-resends-head"  # (the bug: sent again at every pump)

        def done(answer: dict) -> None:
            with self.plant.lock:
                self._tx_finished(head)
                head.on_result(answer)
                self._pump_tx()

        def failed(code: str, _description: str) -> None:
            with self.plant.lock:
                if code in _RETRY_LATER:
                    # kept: resent once connected and accepted again (the bug: the in-flight mark never cleared)
                    self.tx_in_flight = self.defect == "tx-stuck-after-lost-connection"
                    return
                self._tx_rejected(head)

        self.client.call(head.action, payload, done, on_error=failed)

    def _tx_rejected(self, head: QueuedMessage) -> None:
        """The central system answered a transaction message with a CallError (it failed to process
        it). OCPP 1.6 (edition 2) 3.7: try again after TransactionMessageRetryInterval x the failed attempts so
        far, up to TransactionMessageAttempts tries in all, then discard it; later transaction
        messages wait behind it, so their order holds."""
        head.failed_attempts += 1
        attempts = int(self.config.number("TransactionMessageAttempts", 3))
        given_up = head.failed_attempts >= attempts and self.defect != "tx-message-retried-for-ever"
        if self.defect == "tx-message-dropped-on-error" or given_up:
            self._tx_finished(head)
            self._pump_tx()
            return
        wait = self.config.number("TransactionMessageRetryInterval", 60) * head.failed_attempts

        def retry() -> None:
            self.tx_in_flight = False
            self._pump_tx()

        self._later("tx-retry", wait, retry)  # tx_in_flight stays set: nothing overtakes it

    def _tx_finished(self, head: QueuedMessage) -> None:
        self.tx_in_flight = False
        if self.tx_queue and self.tx_queue[0] is head:
            self.tx_queue.popleft()

    # ------------------------------------------------------------------ status
    def _report_status(self, force: bool = False) -> None:
        status = self._connector_status()
        if self.defect == "no-preparing-status" and status == "Preparing":
            status = "Available"
        self.status = status
        may_send = self.registration == "accepted" or (
            self.defect == "pending-sends-status" and self.registration == "pending")
        if not may_send or (status == self.status_sent and not force):
            return
        self.status_sent = status
        self._send(
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": self.fault or "NoError",
                "status": status,
                "timestamp": iso(self.rtc_now()),
            },
        )

    def _connector_status(self) -> str:
        if self.fault:
            return "Faulted"
        if self.locked:
            return self.profile["lock"]["locked_status"]
        if self.cp_state == "A":
            return "Finishing" if self.finishing else "Available"
        if self.contactor_closed:
            return "Charging"
        if self.session and self._waiting() is not None:
            return "SuspendedEVSE"  # the unit, not the vehicle, is holding the energy back
        if self.session and self.session.start_requested_sent:
            return "SuspendedEV" if self.generator_on_pwm else "SuspendedEVSE"
        return "Preparing"

    def _waiting(self) -> str | None:
        """Why a plugged-in vehicle is held back although nothing is wrong: the mode's waits
        ("delay", "peak", "schedule", "sense", "done") or a firmware installation ("firmware")."""
        if self.session is None or self.cp_state == "A" or self.fault or self.session.stopped:
            return None
        if self.firmware.installing:
            return "firmware"
        if self._blocked_reason() is not None:
            return None
        reason = self.modes.waiting_reason()
        return reason if reason in ("delay", "peak", "schedule", "sense", "done") else None
