"""The rig: every instrument of one bench, opened from a rig file, with its safe state.

`open_rig()` reads the rig file; for the emulated bench it first starts `rig.sim.bench`, which
serves every instrument on loopback and pseudo-terminals and fills in the "auto" addresses.
From there on the same drivers run, whatever the bench.
"""

from __future__ import annotations


from rig.core.clock import Clock, RealClock
from rig.core.errors import ChargerFailure, RigFault, SafeStateError, ServiceFaults
from rig.bench.journal import Journal
from rig.core.measure import MeasurementLog
from rig.bench.timeservice import TimeService
from rig.bench.vehicle import Vehicle

SAFE_SUPPLY_TOLERANCE_V = 5.0  # how close to nominal the source must read back to call the supply nominal
# After the safe state, the unit gets this long to notice (unplug, supply back) before a test
# starts: a test must never measure the previous test's tail.
SAFE_DWELL_S = 2.0
# what tests reach through the journal (rig/bench/journal.py): the instruments by their rig
# attribute names, and the rig's own actions made of several instrument calls
JOURNALLED_INSTRUMENTS = ("central", "pilot", "meter", "load", "source", "injector", "led", "console")
RIG_STEPS = ("safe_state", "verify_safe_state", "await_ready", "configure", "power_cycle", "wait_for_led",
             "set_time")
# set_time(): how long the unit may take to send the triggered Heartbeat, and how long its answer
# (currentTime) is given to arrive before the caller relies on the unit's clock
SET_TIME_MAX_S = 30.0
SET_TIME_SETTLE_S = 0.1




def open_rig(
    rig_path: str | None,
    model: str | None = None,
    seed: int = 1,
    defect: str | None = None,
    limits_path: str | None = None,
    progress=None,
    serial: str | None = None,
) -> "Rig":
    from rig.core import rigfile as rf
    from rig.product.requirements import load_limits

    path = rf.resolve_rig_path(rig_path)
    rigfile = rf.load_rigfile(path)
    emulated = rigfile.bench.kind == "emulated"
    if model:
        if not emulated:
            raise rf.RigFileError(str(path), "--sim-model", "only applies to the emulated bench")
        rigfile = rf.with_model(rigfile, model)
    if serial:
        if not emulated:
            raise rf.RigFileError(str(path), "--sim-serial", "only applies to the emulated bench")
        rigfile = rf.with_serial(rigfile, serial)
    if defect and not emulated:
        raise rf.RigFileError(str(path), "--sim-defect", "only applies to the emulated bench")
    profile = rf.load_profile(rigfile)
    limits = load_limits(overrides=[limits_path] if limits_path else ())
    if emulated:
        from rig.sim.bench import EmulatedBench

        bench = EmulatedBench(rigfile, profile, seed=seed, defect=defect)
        sections = bench.start()
        clock: Clock = bench.clock
    else:
        bench = None
        sections = {name: rigfile.section(name) for name in rf.INSTRUMENT_SECTIONS if name in rigfile.data}
        clock = RealClock(progress=progress)
    rig = Rig(rigfile, profile, limits, clock, sections, bench)
    try:
        rig.open()
    except BaseException:
        rig.close()
        raise
    return rig


class Rig:
    """The bench as tests see it: instruments, the vehicle, the clock, limits and the safe state."""

    def __init__(self, rigfile, profile: dict, limits: dict, clock: Clock, sections: dict, bench=None):
        self.rigfile, self.profile, self.limits = rigfile, profile, limits
        self.clock, self.sections, self.bench = clock, sections, bench
        self.model_name = rigfile.product.model
        self.serial = rigfile.product.serial
        central = sections["central"]
        self.cp_id = self.serial if central.get("charge_point_id", "auto") == "auto" else central["charge_point_id"]
        self.log = MeasurementLog()
        self.journal = Journal(clock)  # every call tests make on the rig: Allure steps, timeline events
        clock.wait_observer = self.journal.wait
        self.time = TimeService(clock)  # calendar time served to the unit (currentTime, later NTP)
        self._restore_config: dict[str, str] = {}
        self._opened: list = []
        # what the rig's own services (central system, DHCP, DNS, NTP, firmware) got wrong
        self.service_faults = ServiceFaults()
        self.operator = None  # rig.bench.operator.Operator: the plugin decides who answers prompts

    # ------------------------------------------------------------------ life cycle
    def open(self) -> None:
        from rig.instruments.ac_load import AcLoad
        from rig.instruments.ac_source import AcSource
        from rig.instruments.central_system import CentralSystem
        from rig.instruments.console import Console
        from rig.instruments.injector import Injector
        from rig.instruments.led_sensor import LedSensor
        from rig.instruments.meter import Meter
        from rig.instruments.pilot import PilotBox

        s, c = self.sections, self.clock
        pin_factory = self.bench.pin_factory if self.bench else None
        self.network = self._open_network()
        self.central = self._open(CentralSystem("central_system", self._central_config(), c, time_source=self.time.now,
                                                 faults=self.service_faults))
        self.capture = self._connect_network()
        self.pilot = self._open(PilotBox("pilot", s["pilot"], c, pin_factory=pin_factory))
        self.meter = self._open(Meter("meter", s["meter"], c))
        self.load = self._open(AcLoad("load", s["load"], c))
        self.source = self._open(AcSource("source", s["source"], c))
        self.injector = self._open(Injector("injector", s["injector"], c))
        self.led = self._open(LedSensor("led_sensor", s["led_sensor"], c, self.profile))
        self.console = self._open(Console("console", s["console"], c))
        self._journal_calls()
        if self.bench is not None and self.network is None:
            self.bench.connect_charger(self.central.url_for(self.cp_id))
        self.safe_state()

    def _open_network(self):
        """The rig as the unit's network (rig/network), when the rig file has a [network] section."""
        if "network" not in self.sections:
            return None
        from rig.network.services import NetworkServices

        return self._open(NetworkServices("network", self.sections["network"], self.clock, self.time.now,
                                                   faults=self.service_faults))

    def _connect_network(self):
        """Emulated bench: wire the unit to the services; either bench: the capture of its traffic."""
        if self.network is None:
            return None
        from rig.instruments.capture import Capture
        from rig.network import OCPP_HOST

        net = self.sections["network"]
        if self.bench is not None:
            scheme = "wss" if self.central.ssl_context is not None else "ws"
            url = f"{scheme}://{OCPP_HOST}{self.central.path_prefix}{self.cp_id}"
            self.bench.connect_network(self.network, (self.central.host, self.central.port), url)
        return self._open(Capture("capture", {"file": net["capture"], "unit_address": net["unit_address"],
                                              "scan_control_address": net.get("scan_control_address")}, self.clock))

    def _journal_calls(self) -> None:
        """Tests see the instruments, the vehicle and the rig's own composite actions through the
        journal: each call is an Allure step and a timeline event (rig/bench/journal.py,
        rig/reports/timeline.py). The drivers know nothing of it, so a real bench reports the same."""
        from rig.bench.journal import Instrumented, call_title

        for attr in JOURNALLED_INSTRUMENTS:
            setattr(self, attr, Instrumented(getattr(self, attr), attr, self.journal))
        self.ev = Instrumented(Vehicle(self.pilot, self.load, self.clock, self.profile), "ev", self.journal)
        for name in RIG_STEPS:
            method = getattr(self, name, None)
            if method is None:
                continue

            def step(*args, _name=name, _method=method, **kwargs):
                return self.journal.step(call_title("rig", _name, args, kwargs), _method, *args, **kwargs)

            setattr(self, name, step)

    def _central_config(self) -> dict:
        cfg = dict(self.sections["central"])
        if cfg.get("port") == "auto":
            cfg["port"] = 0
        cfg.setdefault("path_prefix", self.profile["ocpp"]["path_prefix"])
        cfg.setdefault("heartbeat_s", self.profile["ocpp"]["heartbeat_s"])
        if cfg.pop("tls", False) and getattr(self, "network", None) is not None:
            from rig.network import OCPP_HOST

            cfg["ssl"] = self.network.ca.server_context(OCPP_HOST)
            cfg["passwords"] = {self.cp_id: self.sections["network"]["unit_password"]}
        return cfg

    def _open(self, instrument):
        instrument.open()
        self._opened.append(instrument)
        return instrument

    def close(self) -> None:
        """Safe state, checked (`closed_safe`, for the station's panel), then every instrument closed."""
        self.closed_safe, self.closed_problem = False, "no instrument was opened"
        try:
            if self._opened:
                self.safe_state()
                if all(hasattr(self, name) for name in ("load", "injector", "source", "pilot")):
                    self.verify_safe_state()
                    self.closed_safe, self.closed_problem = True, None
                else:
                    self.closed_problem = "the rig was never fully opened: its safe state cannot be confirmed"
        except RigFault as exc:  # closing anyway; the test that saw it reported it already
            self.closed_problem = str(exc)
        finally:
            for instrument in reversed(self._opened):
                try:
                    instrument.close()
                except Exception:  # one instrument failing to close must not keep the others open
                    pass
            self._opened.clear()
            if self.bench is not None:
                self.bench.stop()

    def dead_services(self) -> list[str]:
        """The rig's own services whose thread has died (not stopped by the rig): a unit that
        cannot reach them cannot be blamed for it."""
        from rig.bench.journal import raw

        services = (("central_system", raw(getattr(self, "central", None))), ("network", getattr(self, "network", None)))
        return [f"{name}: its service thread has stopped" for name, service in services
                if service is not None and getattr(service, "_loop", None) is not None and service._loop.died]

    # ------------------------------------------------------------------ per test
    def begin_test(self, nodeid: str, attach=None) -> None:
        self.log = MeasurementLog(attach)
        if getattr(self, "network", None) is not None:
            self.network.restore()  # every service answering, the right time served
        if getattr(self, "central", None) is not None:
            self.central.clear_scripts()  # every call answered as usual: an answer a test scripted and
            #                               never used would otherwise greet the next test's unit
        self.safe_state()
        self.verify_safe_state()
        self.clock.sleep(SAFE_DWELL_S, "unit settles in the safe state")
        self._test_started_s = self.clock.now()

    def end_test(self) -> list[dict]:
        try:
            self._restore_configuration()
            self._restore_availability()
        finally:
            self.safe_state()
            self.verify_safe_state()
        return self.log.as_dicts()

    # ------------------------------------------------------------------ safe state
    def safe_state(self) -> None:
        """Load off, injector at 0, supply nominal, pilot in state A. Every step is tried."""
        problems = []
        for name, step in (
            ("load", lambda: self.load.off()),
            ("injector", lambda: self.injector.off()),
            ("source", lambda: self.source.nominal()),
            ("pilot", lambda: self.pilot.safe()),
        ):
            if not hasattr(self, name):
                continue
            try:
                step()
            except Exception as exc:  # keep going: the other instruments must still be made safe
                problems.append(f"{name}: {exc}")
        if problems:
            raise SafeStateError("rig", "could not reach the safe state: " + "; ".join(problems))

    def verify_safe_state(self) -> None:
        nominal = float(self.sections["source"].get("nominal_v", 230.0))
        checks = [
            ("load", not self.load.is_on(), "load still on"),
            ("injector", self.injector.is_off(), "injector not at 0"),
            ("source", self.source.is_on()
             and all(abs(v - nominal) <= SAFE_SUPPLY_TOLERANCE_V for v in self.source.voltages()),
             "supply not nominal"),
            ("pilot", self.pilot.state == "A", "pilot not in state A"),
        ]
        for instrument, ok, what in checks:
            if not ok:
                raise SafeStateError(instrument, f"safe state not confirmed: {what}")

    # ------------------------------------------------------------------ limits and measurements
    def limit(self, key: str) -> float:
        return self.limits[key].value

    def source_of(self, key: str) -> str:
        lim = self.limits[key]
        return f"{key} ({lim.source} [{lim.confidence}])"

    def check(self, name, value, unit, low=None, high=None, source="", resolution=None):
        return self.log.check(name, value, unit, low, high, source, resolution)

    def check_limit(self, name: str, value, *, low: str | None = None, high: str | None = None,
                    resolution: float | None = None, unit: str | None = None):
        """Compare `value` with limits named in the limits data; records the sources."""
        keys = [k for k in (low, high) if k]
        unit = unit or self.limits[keys[0]].unit
        lo = self.limit(low) if low else None
        hi = self.limit(high) if high else None
        return self.check(name, value, unit, lo, hi, "; ".join(self.source_of(k) for k in keys), resolution)

    # ------------------------------------------------------------------ the unit
    def await_ready(self, timeout_s: float = 60.0) -> None:
        """Given a unit that has booted and is accepted by the central system (ChargerFailure if not)."""
        ok = self.clock.wait_until(
            lambda: self.central.connected(self.cp_id) and self._booted(), timeout_s, poll=0.5,
            reason="waiting for the unit to register",
        )
        if ok is None:
            raise ChargerFailure(f"unit {self.cp_id} did not connect and register within {timeout_s:g} s")

    def _booted(self) -> bool:
        boots = self.central.history(action="BootNotification", direction="in")
        return bool(boots)

    def configure(self, key: str, value: str) -> None:
        """ChangeConfiguration, restored to the old value after the test."""
        if key not in self._restore_config:
            got = self.central.call("GetConfiguration", {"key": [key]}, cp_id=self.cp_id)
            old = [k["value"] for k in got.get("configurationKey", []) if k["key"] == key]
            if old:
                self._restore_config[key] = old[0]
        reply = self.central.call("ChangeConfiguration", {"key": key, "value": str(value)}, cp_id=self.cp_id)
        if reply.get("status") != "Accepted":
            raise ChargerFailure(f"ChangeConfiguration {key}={value} answered {reply}")

    def _restore_configuration(self) -> None:
        pending, self._restore_config = self._restore_config, {}
        if pending and not self.central.connected(self.cp_id):
            self.await_ready()
        for key, value in pending.items():
            self.central.call("ChangeConfiguration", {"key": key, "value": value}, cp_id=self.cp_id)

    def _restore_availability(self) -> None:
        """A test that locked the unit (ChangeAvailability Inoperative) and did not unlock it, because
        it failed half-way, must not leave the next test a locked unit."""
        since = getattr(self, "_test_started_s", 0.0)
        sent = [m for m in self.central.history(action="ChangeAvailability", direction="out") if m.time >= since]
        if not sent or sent[-1].payload.get("type") == "Operative":
            return
        if not self.central.connected(self.cp_id):
            self.await_ready()
        self.central.call("ChangeAvailability", {"connectorId": self.profile["lock"]["connector_id"], "type": "Operative"},
                          cp_id=self.cp_id)

    def set_time(self, when) -> None:
        """Serve `when` (tz-aware datetime) as the time from now on, and make the unit adopt it:
        TriggerMessage Heartbeat, whose answer carries currentTime. Returns once it has arrived."""
        self.time.set(when)
        mark = self.central.mark()
        reply = self.central.call("TriggerMessage", {"requestedMessage": "Heartbeat"}, cp_id=self.cp_id)
        if reply.get("status") != "Accepted":
            raise ChargerFailure(f"TriggerMessage Heartbeat answered {reply}: the unit cannot be given the time")
        self.central.wait_for("Heartbeat", timeout=SET_TIME_MAX_S, after=mark)
        self.clock.sleep(SET_TIME_SETTLE_S, "unit adopts the time")

    def power_cycle(self, off_s: float = 2.0) -> None:
        self.source.power_off()
        self.clock.sleep(off_s, "supply off")
        self.source.power_on()

    def wait_for_led(self, state: str, timeout_s: float = 15.0):
        """Watch the LED until it shows `state`; returns the observation, or the last one seen."""
        last = None
        deadline = self.clock.now() + timeout_s
        while self.clock.now() <= deadline:
            last = self.led.observe()
            if last.state == state:
                return last
        return last
