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
from dataclasses import dataclass
from datetime import datetime, timedelta

from rig.product import cp as cpmath
from rig.core.clock import DEFAULT_EPOCH, VirtualClock
from rig.sim import charging_modes as M
from rig.sim import firmware_timing as T
from rig.sim.charger_config import factory_config
from rig.sim.charger_console import ChargerConsole
from rig.sim.charger_firmware import FirmwareUpdater
from rig.sim.charger_led import ChargerLed
from rig.sim.charger_modes import ModeController
from rig.sim.charger_metering import ChargerMetering
from rig.sim.charger_ocpp import ChargerOcpp, QueuedMessage, iso
from rig.sim.charger_operations import ChargerOperations
from rig.sim.charger_smart import SmartCharging
from rig.sim.charger_safety import PenProtection, ResidualCurrentDetector
from rig.sim.defects import Defect
from rig.sim.plant import Generator, Plant

#: virtual t = 0 on the emulated bench's calendar (a Monday, 06:00 UTC)
BENCH_EPOCH = DEFAULT_EPOCH

FIRMWARE_VERSION = "PS-FW 4.2.1-sim"



@dataclass
class Session:
    """One plug-in to unplug."""

    transaction_id: int | None = None
    start_requested: bool = False  # Manual mode: RemoteStartTransaction received
    start_requested_sent: bool = False  # StartTransaction sent for this session
    stopped: bool = False
    deauthorized: bool = False  # idTag refused at start, StopTransactionOnInvalidId false: open, no energy
    id_tag: str = ""
    start_wh: int = 0  # the unit's own energy register at plug-in (Sense counts from here)
    meter_start_wh: int = 0  # StartTransaction.meterStart


class EmulatedCharger(ChargerOcpp, ChargerOperations, ChargerMetering, ChargerLed, ChargerConsole):
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
        self.config = factory_config(model, profile, self.defect)
        self.central_url: str | None = None
        self.client = None  # rig.sim.ocpp_client.OcppClient, made on first connect
        # firmware state
        self.powered = False
        self.booting = False
        self.network_up = False
        self.registration = "none"  # none | pending | rejected | accepted
        self.boot_heartbeat_s = 0  # the interval the accepted BootNotification gave
        self.cp_state = "A"
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
        self.lock_scheduled = False  # Inoperative asked during a transaction, for when it ends
        self.rtc_offset = timedelta(0)  # battery-backed real-time clock, relative to the bench calendar
        self.tx_queue: deque[QueuedMessage] = deque()
        self.tx_in_flight = False
        self.modes = ModeController(self)
        self.smart = SmartCharging(self)  # installed charging profiles: non-volatile (OCPP 1.6 3.13)
        self.firmware = FirmwareUpdater(self, FIRMWARE_VERSION)
        plant.subscribe(self._on_plant_change)

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
        smart = self.smart.limit_a()
        if smart is not None:
            limits.append(smart)
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
        # OCPP 1.6: Finishing while the transaction winds up, then Available for the next user. Set
        # first: opening the contactor and stopping the PWM report status on the way, and none of
        # those reports may say Available before Finishing (the defect does exactly that)
        if self.defect != "available-before-finishing":
            self.finishing = True
        self._open_contactor(T.CONTACTOR_OPEN_S, "unplug")
        if self.defect == "pwm-on-unplug":
            self._later("pwm-off", 2.0, lambda: self._set_generator("steady"))
        else:
            self._set_generator("steady")
        if self.session and self.session.start_requested_sent and not self.session.stopped:
            self._stop_transaction("Local" if self.defect == "unplug-stop-reason-local" else "EVDisconnected")
        self.session = None
        self.modes.session_ended()
        self._transaction_ended()  # also a TxProfile whose transaction never started
        self._clear_latched_on_unplug()
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
        # (the bugs: early-close asks for B too; close-after-bounce lets a close armed in C through in B)
        wanted_state = ("B", "C") if self.defect in ("early-close", "close-after-bounce") else ("C",)
        offered = self.generator_on_pwm or self.defect == "close-without-offer"  # (the bug: the request is enough)
        self._check_diode()
        if self.cp_state in wanted_state and offered and not self.fault:
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
        if self.session.deauthorized:
            return "deauthorized"
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
        stops = locked or self.defect == "availability-operative-interrupts"  # (the bug: any request resets)
        if stops and self.contactor_closed and self.defect != "locked-delivers-energy":
            self._cancel("pause-open")
            self._open_contactor(T.CONTACTOR_OPEN_S, "locked")
        self._report_status()
        self._update_led()

    def _reconsider_offer(self) -> None:
        if not self.powered or self.booting:
            return
        self.modes.update()
        self.smart.arm_next_change()
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
        elif self.defect == "pause-restarts-on-update" and "pause-open" in self._timers:
            self._later("pause-open", T.PAUSE_OPEN_S, lambda: self._open_contactor(0, "pause"))  # the bug
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
        if self.session and (not self.session.start_requested_sent or self.defect == "resume-new-transaction"):
            self._start_transaction()  # energy is offered from now on: the transaction begins (the bug: again)
        self._later("diode", T.CP_DETECT_S, self._check_diode)
        if self.cp_state == "C" or self.defect == "early-close":
            self._ev_requests_power()
        self._report_status()

    def _start_transaction(self) -> None:
        s = self.session
        s.start_requested_sent = True
        s.meter_start_wh = self.meter_wh()
        self.smart.transaction_started()
        payload = {
            "connectorId": 1,
            "idTag": s.id_tag or self.ocpp_keys["plug_and_charge_id_tag"],
            "meterStart": s.meter_start_wh,
            "timestamp": iso(self.rtc_now()),
        }

        queued = not self.online  # the central system hears this start only when it is back

        def started(answer: dict, session=s):
            session.transaction_id = answer.get("transactionId")
            if self._start_answered(session, answer):
                return
            self._report_status()
            if self.defect == "offline-transaction-unsampled" and queued:
                return  # the bug: sampling armed only for a start the central system heard when it was made
            if session is self.session:
                self._meter_values_start()

        self._send_tx("StartTransaction", lambda: payload, started)

    def _stop_transaction(self, reason: str) -> None:
        s = self.session
        if s is None or s.stopped:
            return
        s.stopped = True
        self._meter_values_stop()
        self._transaction_ended()
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
        reads = 0.95 if self.defect == "energy-reads-5pct-low" else 1.0  # the defect: a mis-calibrated meter
        return int(round(sum(self.plant.import_kwh) * 1000 * reads))

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
        elif self.fault_kind == "rcd" and (not self.rcd.fault_persists() or self.defect == "rcd-unplug-clears-persisting"):
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
