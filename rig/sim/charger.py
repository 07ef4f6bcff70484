"""The emulated PlugStream charger: the firmware's behaviour, as the documents describe it.

It sees the world only through the `Plant` (supply, pilot circuit, residual current) and its
OCPP connection to the rig's central system, exactly as a real unit does; the rig can only see it
through the emulated instruments. Its two simulation-only powers are the virtual clock and an
optional injected defect (rig/sim/defects.py).

Threading: plant subscribers are called in whichever thread changed the plant; they only
schedule work on the virtual clock. All state changes happen in clock callbacks (the test thread)
or OCPP handlers (the bench loop thread), always under `plant.lock`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from rig.product import cp as cpmath
from rig.core.clock import DEFAULT_EPOCH, VirtualClock
from rig.sim import charging_modes as M
from rig.sim import firmware_timing as T
from rig.sim.charger_firmware import FirmwareUpdater
from rig.sim.charger_modes import ModeController
from rig.sim.charger_safety import PenProtection, ResidualCurrentDetector
from rig.sim.defects import Defect
from rig.sim.plant import Generator, LedShown, Plant

#: virtual t = 0 on the emulated bench's calendar (a Monday, 06:00 UTC)
BENCH_EPOCH = DEFAULT_EPOCH

FIRMWARE_VERSION = "PS-FW 4.2.1-sim"

#: OCPP CallError codes are the central system's verdict on a message: resending cannot help.
#: The client's own codes (timeout, connection lost, not connected) mean "try again later".
_RETRY_LATER = ("Timeout", "ConnectionClosed", "NotConnected")


def iso(when: datetime) -> str:
    """An OCPP timestamp (UTC, milliseconds) from the unit's real-time clock."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@dataclass
class Session:
    """One plug-in to unplug."""

    transaction_id: int | None = None
    start_requested: bool = False  # Manual mode: RemoteStartTransaction received
    start_requested_sent: bool = False  # StartTransaction sent for this session
    stopped: bool = False
    id_tag: str = ""
    start_wh: int = 0  # the unit's own energy register at plug-in (Sense counts from here)
    meter_start_wh: int = 0  # StartTransaction.meterStart


@dataclass
class QueuedMessage:
    """A transaction message waiting for the central system (offline: regs 7, sent on reconnect)."""

    action: str
    build: Callable[[], dict | None]  # the payload when sent (a StopTransaction learns its id late)
    on_result: Callable[[dict], None]


@dataclass
class Config:
    """The unit's OCPP configuration store (standard and vendor keys of the product profile)."""

    values: dict[str, str] = field(default_factory=dict)
    readonly: set[str] = field(default_factory=set)

    def number(self, key: str, default: float) -> float:
        try:
            return float(self.values.get(key, default))
        except ValueError:
            return default


class EmulatedCharger:
    def __init__(
        self,
        plant: Plant,
        clock: VirtualClock,
        loop,
        model: dict,
        profile: dict,
        serial: str,
        defect: Defect | None = None,
    ):
        self.plant, self.clock, self.loop = plant, clock, loop
        self.model, self.profile, self.serial = model, profile, serial
        self.defect = defect.name if defect else None
        self.ocpp_keys = profile["ocpp"]
        self.config = self._factory_config()
        self.central_url: str | None = None
        self.client = None  # rig.sim.ocpp_client.OcppClient, made on first connect
        # firmware state
        self.powered = False
        self.booting = False
        self.network_up = False
        self.registration = "none"  # none | pending | rejected | accepted
        self.cp_state = "A"
        self.charging_permitted = False
        self.session: Session | None = None
        self.status = "Unavailable"
        self.status_sent: str | None = None
        self.fault: str | None = None  # OCPP errorCode while a safety function holds the unit
        self.fault_kind: str | None = None  # rcd | pen | diode | state_e
        self.finishing = False  # between unplug and Available
        self._timers: dict[str, object] = {}
        self._power_epoch = 0  # bumps on every power cycle: stale callbacks check it
        self.safety = profile["safety"]
        self.rcd = ResidualCurrentDetector(self)
        self.pen = PenProtection(self)
        # non-volatile: survive power cycles
        self.locked = False  # ChangeAvailability Inoperative on connector 0
        self.rtc_offset = timedelta(0)  # battery-backed real-time clock, relative to the bench calendar
        self.tx_queue: deque[QueuedMessage] = deque()
        self.tx_in_flight = False
        self.modes = ModeController(self)
        self.firmware = FirmwareUpdater(self, FIRMWARE_VERSION)
        plant.subscribe(self._on_plant_change)

    # ------------------------------------------------------------------ configuration
    def _factory_config(self) -> Config:
        k = self.ocpp_keys
        cfg = Config(
            {
                "HeartbeatInterval": "0",
                "MeterValueSampleInterval": "60",
                "NumberOfConnectors": "1",
                "ConnectorPhaseRotation": "RST" if self.model["phases"] == 3 else "R",
                k["config_charging_mode"]: self.profile["charging"]["default_mode"],
                k["config_current_limit"]: f"{self.model['rated_current_a']:g}",
                k["config_site_limit"]: f"{self.model['rated_current_a']:g}",
                k["config_random_delay_max"]: str(
                1800 if self.defect == "delay-default-1800" else self.profile["charging"]["random_delay_max_s"]
            ),
                k["config_peak_hours"]: self.profile["charging"]["peak_hours"],
                k["config_schedule_windows"]: self.profile["charging"]["schedule_windows"],
            },
            readonly={"NumberOfConnectors", "ConnectorPhaseRotation"},
        )
        return cfg

    @property
    def mode(self) -> str:
        return self.config.values[self.ocpp_keys["config_charging_mode"]]

    def offered_current_a(self, plan: bool = False) -> float:
        """min(model rating, configured limit, site limit, cable rating): CP-06.

        plan=True (Sense planning without a vehicle): an unknown cable does not limit."""
        limits = [self.model["rated_current_a"]]
        if self.defect != "ignores-current-limit":
            limits.append(self.modes.effective_max_current_a())
            limits.append(self.config.number(self.ocpp_keys["config_site_limit"], 32))
        cable = self.cable_rating_a()
        if cable is None:
            if plan:
                return max(0.0, min(limits))
            return 0.0  # no valid cable coded on PP: nothing may be offered
        if self.defect != "pp-rating-ignored":
            limits.append(cable)
        return max(0.0, min(limits))

    def cable_rating_a(self) -> float | None:
        if self.model["connector"] == "tethered":
            return self.model["tethered_cable_a"]
        return cpmath.cable_rating_for_pp(self.plant.vehicle.pp_ohms, self.model["phases"])

    # ------------------------------------------------------------------ real-time clock
    def rtc_now(self) -> datetime:
        """The unit's own calendar time (UTC): the bench calendar plus what currentTime set."""
        return self.clock.utc_now() + self.rtc_offset

    def _set_rtc(self, current_time: str | None) -> None:
        """Adopt the central system's currentTime; a new time re-evaluates windows at once."""
        try:
            when = M.parse_utc(current_time)
        except ValueError:
            return
        offset = when - self.clock.utc_now()
        if offset != self.rtc_offset:
            self.rtc_offset = offset
            self._later("reconsider", 0.0, self._reconsider_offer)

    # ------------------------------------------------------------------ timers
    def _later(self, key: str, delay_s: float, fn) -> None:
        """(Re)arm the named firmware timer; a power cycle makes old timers harmless."""
        self._cancel(key)
        epoch = self._power_epoch

        def fire():
            with self.plant.lock:
                self._timers.pop(key, None)
                if epoch == self._power_epoch:
                    fn()

        self._timers[key] = self.clock.call_later(delay_s, fire)

    def _cancel(self, key: str) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    # ------------------------------------------------------------------ plant events
    def _on_plant_change(self, topic: str) -> None:
        if topic == "supply":
            self._later("supply", 0.0, self._check_supply)
        elif topic == "vehicle" and self.powered and not self.booting:
            self._later("cp", T.CP_DETECT_S, self._evaluate_cp)
        elif topic == "injection" and self.powered:
            self._later("rcd", 0.0, self.rcd.on_injection_change)

    def _check_supply(self) -> None:
        on = self.plant.supply_on and any(v > 100 for v in self.plant.supply_v)
        if on and not self.powered:
            self._power_on()
        elif not on and self.powered:
            self._power_off()
        if self.powered:
            self.pen.on_supply_change()

    # ------------------------------------------------------------------ power and boot
    def _power_on(self) -> None:
        self._power_epoch += 1
        self.powered, self.booting = True, True
        self.registration, self.network_up = "none", False
        self.session, self.fault, self.fault_kind, self.status_sent = None, None, None, None
        self.finishing = False
        self.tx_in_flight = False
        self.firmware.power_cycled()
        self.modes.session_ended()
        if not self.plant.earth_closed:
            with self.plant.change("contactor"):
                self.plant.earth_closed = True  # the PEN relay closes PE again at power-up
        self.cp_state = "A"
        self._set_generator("off")
        self._show("rainbow", "rainbow")
        self._later("boot", T.SELF_TEST_S, self._self_test_done)

    def _power_off(self) -> None:
        self._power_epoch += 1
        self.pen.power_cycled()
        for key in list(self._timers):
            self._cancel(key)
        self.powered = self.booting = False
        self.network_up = False
        self.registration = "none"
        with self.plant.change("contactor"):
            self.plant.line_closed = self.plant.neutral_closed = False
        self._set_generator("off")
        self._show("off", "solid")
        if self.client is not None:
            self.client.close()

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
            if self.powered:
                self.clock.call_later_threadsafe(self.loop.loop, T.RECONNECT_S, self._reconnect)

    def _reconnect(self) -> None:
        with self.plant.lock:
            if self.powered and self.client is not None and not self.client.connected:
                if getattr(self, "net", None) is not None and self.network_up:
                    self._connect()  # through the network stack: DNS, NTP if the clock is in doubt, TLS
                elif getattr(self, "net", None) is None:
                    self.client.connect()

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

    def _heartbeat(self) -> None:
        self._send_heartbeat()
        interval = int(self.config.number("HeartbeatInterval", 0))
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
        self.tx_queue.append(QueuedMessage(action, build, on_result or (lambda _p: None)))
        self._pump_tx()

    def _pump_tx(self) -> None:
        if self.tx_in_flight or not self.tx_queue or not self.online or self.registration != "accepted":
            return
        head = self.tx_queue[0]
        payload = head.build()
        if payload is None:  # nothing left to say (a stop for a start the central system refused)
            self.tx_queue.popleft()
            self._pump_tx()
            return
        self.tx_in_flight = True

        def done(answer: dict) -> None:
            with self.plant.lock:
                self._tx_finished(head)
                head.on_result(answer)
                self._pump_tx()

        def failed(code: str, _description: str) -> None:
            with self.plant.lock:
                if code in _RETRY_LATER:
                    self.tx_in_flight = False  # kept: resent after the next accepted boot
                    return
                self._tx_finished(head)
                self._pump_tx()

        self.client.call(head.action, payload, done, on_error=failed)

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

    # ------------------------------------------------------------------ OCPP in
    def _on_ocpp_call(self, action: str, payload: dict) -> dict:
        from rig.sim.ocpp_client import CallErrorReply

        with self.plant.lock:
            if self.registration == "rejected":
                # OCPP 1.6 4.2: a rejected charge point does not act on central system messages;
                # the transport must answer something, so it is the least it can say
                return CallErrorReply("SecurityError", "not accepted by the central system")
            handler = getattr(self, f"_ocpp_{action}", None)
            if handler is None:
                return CallErrorReply("NotImplemented", f"{action} not supported")
            return handler(payload)

    def _ocpp_ChangeConfiguration(self, payload: dict) -> dict:
        key, value = payload["key"], payload["value"]
        if key in self.config.readonly:
            return {"status": "Rejected"}
        if key not in self.config.values:
            return {"status": "NotSupported"}
        if not self.modes.validate(key, value):
            return {"status": "Rejected"}
        self.modes.before_config_change(key, self.config.values[key], value)
        self.config.values[key] = value
        self._later(f"config:{key}", 0.0, self._reconsider_offer)
        return {"status": "Accepted"}

    def _ocpp_GetConfiguration(self, payload: dict) -> dict:
        wanted = payload.get("key") or list(self.config.values)
        known = [
            {"key": k, "readonly": k in self.config.readonly, "value": self.config.values[k]}
            for k in wanted
            if k in self.config.values
        ]
        unknown = [k for k in wanted if k not in self.config.values]
        reply: dict = {"configurationKey": known}
        if unknown:
            reply["unknownKey"] = unknown
        return reply

    def _ocpp_TriggerMessage(self, payload: dict) -> dict:
        what = payload["requestedMessage"]
        if what == "StatusNotification":
            self._later("trigger", 0.0, lambda: self._report_status(force=True))
        elif what == "Heartbeat":
            self._later("trigger", 0.0, self._send_heartbeat)
        elif what == "BootNotification":
            self._later("trigger", 0.0, self._send_boot_notification)
        else:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    def _ocpp_RemoteStartTransaction(self, payload: dict) -> dict:
        if self.session is None or self.fault:
            return {"status": "Rejected"}
        self.session.id_tag = payload["idTag"]
        self.session.start_requested = True
        self._later("reconsider", 0.0, self._reconsider_offer)
        return {"status": "Accepted"}

    def _ocpp_RemoteStopTransaction(self, payload: dict) -> dict:
        s = self.session
        if s is None or s.transaction_id != payload["transactionId"]:
            return {"status": "Rejected"}
        self._later("remote-stop", 0.0, lambda: self._stop_transaction("Remote"))
        return {"status": "Accepted"}

    def _ocpp_ChangeAvailability(self, payload: dict) -> dict:
        if payload["connectorId"] not in (0, 1):
            return {"status": "Rejected"}
        locked = payload["type"] == "Inoperative"
        self._later("lock", 0.0, lambda: self._set_locked(locked))
        return {"status": "Accepted"}

    def _ocpp_DataTransfer(self, payload: dict) -> dict:
        k = self.ocpp_keys
        if payload["vendorId"] != k["vendor_id"]:
            return {"status": "UnknownVendorId"}
        message, data = payload.get("messageId"), payload.get("data")
        if message == k["datatransfer_skip_delay"]:
            self._later("skip-delay", 0.0, self.modes.skip_delay)
            return {"status": "Accepted"}
        if message == k["datatransfer_set_tariff"]:
            return {"status": "Accepted" if self.modes.set_tariff(data) else "Rejected"}
        if message == k["datatransfer_set_sense_target"]:
            return {"status": "Accepted" if self.modes.set_target(data) else "Rejected"}
        if message == k["datatransfer_get_sense_plan"]:
            return self.modes.plan_answer()
        return {"status": "UnknownMessageId"}

    def _ocpp_UpdateFirmware(self, payload: dict) -> dict:
        return self.firmware.request(payload)

    def _ocpp_Reset(self, payload: dict) -> dict:
        self._later("reset", 1.0, lambda: (self._power_off(), self._later("supply", 0.5, self._check_supply)))
        return {"status": "Accepted"}

    # ------------------------------------------------------------------ control pilot
    def _read_cp(self) -> str:
        high, _low = self.plant.cp_levels()
        if self.plant.generator.mode == "off":
            return "A"
        return cpmath.state_for_high_v(high) or "E"

    def _evaluate_cp(self) -> None:
        if not self.powered or self.booting:
            return
        old, new = self.cp_state, self._read_cp()
        self.cp_state = new
        if old == "A" and new != "A":
            self._plugged_in()
        if new == "A" and old != "A":
            self._unplugged()
        elif new == "E" and old != "E":
            self.trip("state_e")
        elif new == "C" and old != "C":
            self._ev_requests_power()
        elif new in ("B", "D") and old == "C":
            self._ev_stops_requesting()
        if self.contactor_closed and self.cable_rating_a() is None:
            self._open_contactor(T.CONTACTOR_OPEN_S, "PP lost")  # PP-03: the cable is gone
        self._check_diode()
        self._reconsider_offer()
        self._report_status()
        self._update_led()

    def _plugged_in(self) -> None:
        self.session = Session(start_wh=self.meter_wh())
        self.modes.session_started()

    def _unplugged(self) -> None:
        self._open_contactor(T.CONTACTOR_OPEN_S, "unplug")
        if self.defect == "pwm-on-unplug":
            self._later("pwm-off", 2.0, lambda: self._set_generator("steady"))
        else:
            self._set_generator("steady")
        if self.session and self.session.start_requested_sent and not self.session.stopped:
            self._stop_transaction("EVDisconnected")
        self.session = None
        self.modes.session_ended()
        self._clear_latched_on_unplug()
        # OCPP 1.6: Finishing while the transaction winds up, then Available for the next user
        self.finishing = True
        self._later("available", 0.5, self._finished)

    def _finished(self) -> None:
        self.finishing = False
        self._report_status()
        self._update_led()

    def _ev_requests_power(self) -> None:
        if self.generator_on_pwm:
            self._later("close", T.CONTACTOR_CLOSE_S, self._close_if_still_c)

    def _ev_stops_requesting(self) -> None:
        delay = 0.250 if self.defect == "slow-open-c-to-b" else T.CONTACTOR_OPEN_S
        self._cancel("close")
        self._open_contactor(delay, "C->B")

    def _close_if_still_c(self) -> None:
        wanted_state = ("B", "C") if self.defect == "early-close" else ("C",)
        self._check_diode()
        if self.cp_state in wanted_state and self.generator_on_pwm and not self.fault:
            with self.plant.change("contactor"):
                self.plant.line_closed = self.plant.neutral_closed = True
            self.modes.energy_started()
            self._report_status()
            self._update_led()

    def _open_contactor(self, delay_s: float, why: str) -> None:
        def open_now():
            with self.plant.change("contactor"):
                self.plant.line_closed = self.plant.neutral_closed = False
            self._report_status()
            self._update_led()

        if delay_s <= 0:
            open_now()
        else:
            self._later("open", delay_s, open_now)

    @property
    def contactor_closed(self) -> bool:
        return self.plant.line_closed

    @property
    def generator_on_pwm(self) -> bool:
        return self.plant.generator.mode == "pwm"

    # ------------------------------------------------------------------ charging permission
    def _blocked_reason(self) -> str | None:
        """Why energy may not flow whatever the mode says (None: the mode decides)."""
        if self.session is None:
            return "no vehicle"
        if self.fault:
            return "fault"
        if self.registration in ("pending", "rejected"):
            return "not accepted"
        if self.cp_state == "D":
            return "ventilation"  # ventilation requested: a residential unit has none
        if self.session.stopped:
            return "stopped"
        if self.locked and self.defect != "locked-delivers-energy":
            return "locked"
        if self.firmware.installing:
            return "firmware"
        if self.defect == "offline-no-charge" and not self.online and self.mode == "PlugAndCharge":
            return "offline"
        return None

    def _permitted(self) -> bool:
        """May energy flow now? The unit is ready and the selected mode lets it (charger_modes)."""
        return self._blocked_reason() is None and self.modes.waiting_reason() is None

    def _set_locked(self, locked: bool) -> None:
        """ChangeAvailability: a locked unit delivers no energy (stopped at once, not paused)."""
        self.locked = locked
        self._reconsider_offer()
        if locked and self.contactor_closed and self.defect != "locked-delivers-energy":
            self._cancel("pause-open")
            self._open_contactor(T.CONTACTOR_OPEN_S, "locked")
        self._report_status()
        self._update_led()

    def _reconsider_offer(self) -> None:
        if not self.powered or self.booting:
            return
        self.modes.update()
        permitted = self._permitted() and self.offered_current_a() >= 6.0
        if permitted:
            duty = self._duty_for(self.offered_current_a())
            if not self.generator_on_pwm:
                self._later("pwm-on", T.PWM_START_S, lambda: self._start_pwm(duty))
            elif abs(self.plant.generator.duty - duty) > 1e-9:
                self._set_generator("pwm", duty)
        elif self.generator_on_pwm and "pwm-off" not in self._timers:  # (pwm-on-unplug holds it)
            self._set_generator("steady")
            if self.contactor_closed:
                self._later("pause-open", T.PAUSE_OPEN_S, lambda: self._open_contactor(0, "pause"))
        self._report_status()
        self._update_led()

    def _duty_for(self, amps: float) -> float:
        duty = cpmath.duty_for_current(amps)
        if self.defect == "duty-offset":
            duty += 0.03
        return duty

    def _start_pwm(self, duty: float) -> None:
        if not self._permitted():
            return
        self._set_generator("pwm", duty)
        self._cancel("pause-open")  # resumed before the paused vehicle let go: no need to open
        if self.session and not self.session.start_requested_sent:
            self._start_transaction()  # energy is offered from now on: the transaction begins
        self._later("diode", T.CP_DETECT_S, self._check_diode)
        if self.cp_state == "C" or self.defect == "early-close":
            self._ev_requests_power()
        self._report_status()

    def _start_transaction(self) -> None:
        s = self.session
        s.start_requested_sent = True
        s.meter_start_wh = self.meter_wh()
        payload = {
            "connectorId": 1,
            "idTag": s.id_tag or self.ocpp_keys["plug_and_charge_id_tag"],
            "meterStart": s.meter_start_wh,
            "timestamp": iso(self.rtc_now()),
        }

        def started(answer: dict, session=s):
            session.transaction_id = answer.get("transactionId")
            self._report_status()

        self._send_tx("StartTransaction", lambda: payload, started)

    def _stop_transaction(self, reason: str) -> None:
        s = self.session
        if s is None or s.stopped:
            return
        s.stopped = True
        if s.start_requested_sent:
            meter_stop = s.meter_start_wh if self.defect == "meterstop-missing-energy" else self.meter_wh()
            timestamp = iso(self.rtc_now())

            def payload(session=s) -> dict | None:
                if session.transaction_id is None:
                    return None  # the central system never gave this transaction an id
                return {"transactionId": session.transaction_id, "meterStop": meter_stop,
                        "timestamp": timestamp, "reason": reason}

            self._send_tx("StopTransaction", payload)
        self._reconsider_offer()

    def meter_wh(self) -> int:
        self.plant.integrate()
        return int(round(sum(self.plant.import_kwh) * 1000))

    def output_power_w(self) -> float:
        with self.plant.lock:
            return sum(self.plant.phase_power_w(i) for i in range(self.plant.phases))

    # ------------------------------------------------------------------ safety trips
    def trip(self, kind: str, open_earth: bool = False) -> None:
        """A safety function acts: contactor (and PE) open, no PWM, red LED, Faulted over OCPP."""
        self.fault_kind, self.fault = kind, self._error_code(kind)
        self._cancel("close")
        self._cancel("pwm-on")
        self._set_generator("steady")

        def open_now():
            with self.plant.change("contactor"):
                self.plant.line_closed = self.plant.neutral_closed = False
                if open_earth:
                    self.plant.earth_closed = False
            self._report_status()

        self._later("open", T.CONTACTOR_OPEN_S, open_now)
        self._report_status()
        self._update_led()

    def _error_code(self, kind: str) -> str:
        s = self.safety
        if kind == "pen":
            return s["pen_over_error_code"] if self.pen.tripped_on == "over" else s["pen_under_error_code"]
        return {"rcd": s["rcd_error_code"], "diode": s["diode_error_code"], "state_e": s["state_e_error_code"]}[kind]

    def clear_fault(self, kind: str) -> None:
        """The safety function that tripped has reset: close PE again and carry on where we were."""
        if self.fault_kind != kind:
            return
        self.fault = self.fault_kind = None
        if not self.plant.earth_closed:
            with self.plant.change("contactor"):
                self.plant.earth_closed = True
        self._reconsider_offer()
        self._report_status()
        self._update_led()

    def _clear_latched_on_unplug(self) -> None:
        """Unplugging acknowledges a pilot fault, and an RCD trip once the residual current is gone."""
        if self.fault_kind in ("diode", "state_e"):
            self.clear_fault(self.fault_kind)
        elif self.fault_kind == "rcd" and not self.rcd.fault_persists():
            self.clear_fault("rcd")

    def _check_diode(self) -> None:
        """IEC 61851-1: the -12 V low level (vehicle diode present) must be seen before closing."""
        if self.defect == "diode-ignored" or self.fault or not self.generator_on_pwm:
            return
        if self.cp_state in ("B", "C") and self.plant.cp_levels()[1] > T.DIODE_FAULT_LOW_V:
            self.trip("diode")

    # ------------------------------------------------------------------ outputs
    def _set_generator(self, mode: str, duty: float = 1.0) -> None:
        g = self.plant.generator
        if g.mode == mode and (mode != "pwm" or abs(g.duty - duty) < 1e-12):
            return
        with self.plant.change("generator"):
            self.plant.generator = Generator(mode=mode, duty=duty)

    def led_state(self) -> tuple[str, str]:
        """(colour, pattern) the firmware wants to show, by the profile's [led.precedence]."""
        if not self.powered:
            return "off", "solid"
        if self.booting:
            return "rainbow", "rainbow"
        if self.fault:
            return "red", "solid"
        if self.firmware.installing:
            return "purple", "solid"
        if self.locked:
            plugged = self.cp_state != "A" and self.defect != "locked-no-pulse"
            return ("orange", "pulsing") if plugged else ("orange", "solid")
        network = self._network_led()
        if network is not None:
            return network
        if self.contactor_closed:
            return ("green", "solid") if self.defect == "wrong-led-charging" else ("green", "pulsing")
        waiting = self._waiting()
        if waiting == "delay":
            return ("green", "solid") if self.defect == "no-green-circle" else ("green", "circle")
        if waiting in ("peak", "schedule", "sense"):
            # waiting for the selected schedule (peak hours are the regulations' default schedule)
            if waiting == "schedule" and self.defect == "schedule-no-blue-pulse":
                return "green", "solid"
            return "blue", "pulsing"
        if self.cp_state != "A":
            return "green", "solid"
        return "blue", "solid"

    def _network_led(self) -> tuple[str, str] | None:
        """White: not yet accepted (solid), no connection to the central system (pulsing)."""
        offline = "solid" if self.defect == "offline-white-solid" else "pulsing"
        if not self.network_up or not self.online:
            if self.registration != "accepted":
                return ("white", offline) if self.network_up else ("white", "solid")
            return "white", offline
        if self.registration != "accepted" or self.defect == "stuck-white":
            return "white", "solid"
        return None

    def _update_led(self) -> None:
        colour, pattern = self.led_state()
        self._show(colour, pattern)

    def _show(self, colour: str, pattern: str) -> None:
        led = self.plant.led
        if (led.colour, led.pattern) != (colour, pattern):
            with self.plant.change("led"):
                self.plant.led = LedShown(colour, pattern, self.clock.now())

    # ------------------------------------------------------------------ service console
    def console(self, line: str) -> str:
        with self.plant.lock:
            words = line.strip().split()
            if not words:
                return ""
            cmd = words[0].lower()
            if cmd == "info":
                return "\n".join(
                    [
                        f"model={self.model['ocpp_model']}",
                        f"serial={self.serial}",
                        f"firmware={self.firmware.version}",
                        f"phases={self.model['phases']}",
                        f"connector={self.model['connector']}",
                    ]
                )
            if cmd == "status":
                return "\n".join(
                    [
                        f"cp={self.cp_state}",
                        f"connector={self.status}",
                        f"registration={self.registration}",
                        f"online={'yes' if self.online else 'no'}",
                        f"offered_a={self.offered_current_a() if self.generator_on_pwm else 0:g}",
                        f"fault={self.fault or 'none'}",
                    ]
                )
            raise ValueError(f"unknown command {cmd!r}")
