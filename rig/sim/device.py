"""`rig device serve`: the emulated charge point and its instruments as a device of their own.

Inside a pytest run the harness starts the emulated bench itself, in its own process, on virtual
time. A device is the opposite, the way a real station meets its bench: another process, wall time
(`PacedClock`), every instrument at an address of its own that the harness reaches only over the
wire: Modbus RTU on a pty (or Modbus TCP), the SCPI instruments on TCP, the LED sensor and the
console on ptys, and the Pi's pilot box as a pigpio daemon (rig/sim/pigpio_daemon.py) in front
of the emulated pilot circuit. The emulated unit is commissioned with the rig's central system
(`central = "HOST:PORT"`) and connects to it as a unit on the station LAN does.

`rig_file()` is a ready-to-use real-bench rig file (`kind = "real"`, every address filled in);
the ground-truth journal (JSON lines) has the true time of every contactor edge, PWM change,
injection, supply change, LED change, vehicle state and OCPP frame, so timing can be judged.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rig.core.rigfile.schema import KEYS

log = logging.getLogger(__name__)

#: [device] keys: name -> (type, default, meaning). A device file holds the same keys as the options.
DEVICE_KEYS: dict[str, tuple[type, object, str]] = {
    "central": (str, "", 'where the rig\'s central system listens, "HOST:PORT" (the unit connects to '
                          "ws://HOST:PORT/ocpp/<serial>); required"),
    "model": (str, "PS22-S", "the model the unit is (a key of the profile's [models])"),
    "serial": (str, "SIM-0001", "the unit's serial number and charge point id"),
    "defect": (str, "", "a known-bad unit (`rig defects`); empty for a good unit"),
    "seed": (int, 1, "the emulation's random seed (the randomised delay, ADC noise)"),
    "speed": (float, 1.0, "wall-clock pace: 1.0 real time; more for demos (never for measurements)"),
    "host": (str, "127.0.0.1", "the address every TCP instrument listens on"),
    "meter_transport": (str, "rtu", "rtu (on a pty) or tcp"),
    "journal": (str, "", "ground-truth journal file (JSON lines); empty: none"),
    "rig_file": (str, "", "where to write the printed real-bench rig file; empty: only print it"),
    "network": (str, "", 'the unit on the rig\'s network: a /24 prefix such as "10.77.0" or "127.77.0" (the rig at '
                         '.1, the unit at .10, the documented services at .53 .54 .111 .112 .80 .81 .123, standard '
                         "ports); the unit gets its address by DHCP, resolves, takes NTP time and connects by TLS; "
                         "empty: the unit connects straight to `central`"),
    "rig_ca": (str, "", "with `network`: the rig's CA folder the unit is provisioned with (network.ca_dir), made "
                        "there if it has none yet"),
}
#: [device.ports] keys: TCP port per instrument, 0 = a free one
PORT_KEYS = ("pigpio", "meter", "load", "source", "injector")


class DeviceError(Exception):
    """A mistake in the device's file or options, or a port it cannot have: one line, exit non-zero."""


@dataclass
class DeviceOptions:
    central: str = ""
    model: str = "PS22-S"
    serial: str = "SIM-0001"
    defect: str = ""
    seed: int = 1
    speed: float = 1.0
    host: str = "127.0.0.1"
    meter_transport: str = "rtu"
    journal: str = ""
    rig_file: str = ""
    network: str = ""
    rig_ca: str = ""
    ports: dict[str, int] = field(default_factory=dict)
    source: str = "options"  # where the values came from, for error lines

    def central_address(self) -> tuple[str, int]:
        host, sep, port = self.central.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise DeviceError(f"{self.source}: device.central: expected \"HOST:PORT\" of the rig's central system, "
                              f"got {self.central!r}")
        return host.strip("[]"), int(port)


def load_options(path: str | None, overrides: dict) -> DeviceOptions:
    """The device file's [device] table (if any) with `overrides` (options given) on top, checked."""
    values: dict = {}
    source = "options"
    if path:
        import tomllib

        source = path
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DeviceError(f"{path}: no such device file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DeviceError(f"{path}: not valid TOML: {exc}") from None
        unknown = set(data) - {"device"}
        if unknown:
            raise DeviceError(f"{path}: {sorted(unknown)[0]}: unknown section (a device file has only [device])")
        values = dict(data.get("device", {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _checked(values, source)


def _checked(values: dict, source: str) -> DeviceOptions:
    ports = values.pop("ports", {}) or {}
    for key, value in values.items():
        if key not in DEVICE_KEYS:
            raise DeviceError(f"{source}: device.{key}: unknown key; known: {', '.join(DEVICE_KEYS)}, ports")
        kind = DEVICE_KEYS[key][0]
        ok = isinstance(value, kind) and not isinstance(value, bool) or (kind is float and isinstance(value, int)
                                                                         and not isinstance(value, bool))
        if not ok:
            raise DeviceError(f"{source}: device.{key}: expected {kind.__name__}, got {value!r}")
    if not isinstance(ports, dict):
        raise DeviceError(f"{source}: device.ports: expected a table of instrument = port")
    for name, port in ports.items():
        if name not in PORT_KEYS:
            raise DeviceError(f"{source}: device.ports.{name}: unknown instrument; known: {', '.join(PORT_KEYS)}")
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port < 65536:
            raise DeviceError(f"{source}: device.ports.{name}: expected a TCP port 0-65535 (0 = free), got {port!r}")
    options = DeviceOptions(**{k: (float(v) if DEVICE_KEYS[k][0] is float else v) for k, v in values.items()},
                            ports=dict(ports), source=source)
    _check_values(options)
    return options


def _check_values(o: DeviceOptions) -> None:
    if o.network:
        _check_network(o)
        return _check_common(o)
    if not o.central:
        raise DeviceError(f"{o.source}: device.central: required: where the rig's central system listens, "
                          '"HOST:PORT" (the port of [central] in the harness\'s rig file)')
    o.central_address()
    _check_common(o)


def _check_network(o: DeviceOptions) -> None:
    import ipaddress

    try:
        ipaddress.IPv4Address(o.network + ".1")
    except ValueError:
        raise DeviceError(f'{o.source}: device.network: expected the first three octets of a /24, such as "10.77.0", '
                          f"got {o.network!r}") from None
    if not o.rig_ca:
        raise DeviceError(f"{o.source}: device.rig_ca: required with device.network: the rig's CA folder "
                          "(network.ca_dir of the rig file) the unit is provisioned with")


def _check_common(o: DeviceOptions) -> None:
    if not 0.01 <= o.speed <= 1000:
        raise DeviceError(f"{o.source}: device.speed: {o.speed:g} is outside 0.01..1000")
    if o.meter_transport not in ("rtu", "tcp"):
        raise DeviceError(f"{o.source}: device.meter_transport: {o.meter_transport!r} is not rtu or tcp")
    from rig.sim.defects import lookup

    try:
        lookup(o.defect or None)
    except ValueError as exc:
        raise DeviceError(f"{o.source}: device.defect: {exc}") from None


def describe_keys() -> str:
    lines = ["[device]"]
    for name, (kind, default, doc) in DEVICE_KEYS.items():
        lines.append(f"  {name:<16} {kind.__name__:<6} default {default!r}: {doc}")
    lines.append("[device.ports]   " + ", ".join(PORT_KEYS) + ": TCP port per instrument (0 = a free one)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
class Device:
    """The emulated bench, paced by the wall clock, serving at addresses others reach."""

    def __init__(self, options: DeviceOptions):
        self.options = options
        self.bench = None
        self.clock = None
        self.daemon = None
        self.truth: GroundTruth | None = None
        self.sections: dict[str, dict] = {}
        self.profile: dict = {}
        self.network: dict | None = None  # the [network] section, when the unit is on the rig's network
        self.serial_links: Path | None = None  # the device's /dev/serial/by-id: stable names of its ptys

    def start(self) -> "Device":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from rig.core import rigfile as rf
        from rig.data import EMULATED_RIG
        from rig.sim.bench import EmulatedBench
        from rig.sim.paced_clock import PacedClock
        from rig.sim.pigpio_daemon import PigpioDaemon

        o = self.options
        rigfile = rf.with_model(rf.load_rigfile(EMULATED_RIG), o.model)
        data = copy.deepcopy(rigfile.data)
        data["product"]["serial"] = o.serial
        data["meter"]["transport"] = o.meter_transport
        rigfile = replace(rigfile, product=replace(rigfile.product, serial=o.serial),
                          meter=replace(rigfile.meter, transport=o.meter_transport), data=data)
        self.profile = rf.load_profile(rigfile)
        self.clock = PacedClock(o.seed, o.speed)
        self.bench = EmulatedBench(rigfile, self.profile, seed=o.seed, defect=o.defect or None, clock=self.clock,
                                   listen_host=o.host, listen_ports=o.ports)
        self.sections = self._started(self.bench.start)
        if o.journal:
            self.truth = GroundTruth(o.journal, self.clock, self.bench.plant)
            self.bench.charger.frame_observer = self.truth.frame
        if o.network:
            self._join_rig_network()
        else:
            host, port = o.central_address()
            self.bench.connect_charger(f"ws://{host}:{port}{self.profile['ocpp']['path_prefix']}{o.serial}")
        circuit = self.bench.instruments["pilot"]
        self.daemon = PigpioDaemon(self.bench.pin_factory, o.host, o.ports.get("pigpio", 0), adc=circuit._adc_counts)
        self._started(self.daemon.start, "pigpio", o.ports.get("pigpio", 0))
        self.sections["pilot"].update(pin_factory="pigpio", host=o.host, port=self.daemon.port)
        self._link_serial_lines()
        self.clock.start()
        log.info("device %s (%s) serving on %s", o.serial, o.model, o.host)

    def _join_rig_network(self) -> None:
        """The unit's Ethernet port on the rig's segment: its own stack (DHCP, DNS in the documented
        order, NTP, TLS with the rig CA it was provisioned with) reaches the rig's services at their
        standard ports, as a real unit's does. The device writes the capture a tcpdump would."""
        from rig.network import OCPP_HOST
        from rig.network.ca import TestAuthority, provisioning
        from rig.sim.bench import NETWORK_HOSTS
        from rig.sim.charger_network import unit_password

        o = self.options
        net = dict(self.bench.rigfile.section("network"))
        net.update({key: f"{o.network}.{host}" for key, host in NETWORK_HOSTS.items()})
        net.update(ports="standard", interface="", ca_dir=str(Path(o.rig_ca).resolve()),
                   unit_password=unit_password(o.serial),
                   # loopback shares the machine's wildcard listeners: name an address with no unit behind it
                   scan_control_address=f"{o.network}.11" if o.network.startswith("127.") else "",
                   capture=str(Path(o.rig_file or f"{o.serial}.toml").resolve().with_name(f"{o.serial}-unit.pcap")))
        TestAuthority(self.clock.utc_now, net["ca_dir"]).close()  # made on first use, by the device or the rig
        ca_pem, firmware_pem = provisioning(net["ca_dir"])
        self.network = net
        central = (net["ocpp_address"], 443)
        url = f"wss://{OCPP_HOST}{self.profile['ocpp']['path_prefix']}{o.serial}"
        self.bench.connect_network(_RigSegment(net, ca_pem, firmware_pem), central, url)

    def _link_serial_lines(self) -> None:
        """Name each pty the way /dev/serial/by-id names an adapter: a link that exists only while
        the device does. A pty number is reused by the next process that opens one, so a rig file
        naming /dev/pts/N would, after the device stops, point at someone else's terminal; a rig
        file naming the link finds nothing, as a real bench does with its adapter unplugged."""
        import tempfile

        o = self.options
        where = Path(o.rig_file).resolve().parent if o.rig_file else Path(tempfile.gettempdir())
        self.serial_links = Path(tempfile.mkdtemp(prefix=f"{o.serial}-serial-by-id-", dir=where))
        for name in ("meter", "led_sensor", "console"):
            section = self.sections[name]
            port = section.get("port")
            if isinstance(port, str) and port.startswith("/dev/"):
                link = self.serial_links / f"plugstream-device-{o.serial}-{name}"
                link.symlink_to(port)
                section["port"] = str(link)

    def _unlink_serial_lines(self) -> None:
        if self.serial_links is not None:
            for link in self.serial_links.glob("*"):
                link.unlink(missing_ok=True)
            self.serial_links.rmdir()
            self.serial_links = None

    def _started(self, start, name: str | None = None, port: int = 0):
        """Run `start`; a port that cannot be had is the device's one-line error."""
        try:
            return start()
        except OSError as exc:
            what = name or _instrument_of(exc)
            raise DeviceError(f"{self.options.source}: device.ports.{what}: cannot listen on "
                              f"{self.options.host}:{port or 'a free port'}: {exc.strerror or exc}") from None

    def stop(self) -> None:
        self._unlink_serial_lines()
        if self.clock is not None:
            self.clock.stop()
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None
        if self.bench is not None:
            self.bench.stop()
            self.bench = None
        if self.truth is not None:
            self.truth.close()
            self.truth = None

    # -- the rig file a station would write for this device ------------------------------------
    def rig_file(self) -> dict:
        """A real-bench rig file's tables with every address of this device filled in."""
        o = self.options
        host, port = o.central_address() if o.central else ("", 0)
        tables: dict = {
            "bench": {"name": f"device-{o.serial}", "kind": "real"},
            "product": {"profile": self.bench.rigfile.product.profile, "model": o.model, "serial": o.serial},
        }
        for name in ("pilot", "meter", "load", "source", "injector", "led_sensor", "console"):
            tables[name] = _schema_keys(name, self.sections[name])
        if self.network is None:
            tables["central"] = {"host": host, "port": port, "charge_point_id": "auto", "tls": False}
            return tables
        tables["central"] = {"host": self.network["ocpp_address"], "port": 443, "charge_point_id": "auto", "tls": True}
        tables["network"] = _schema_keys("network", self.network)
        return tables

    def rig_file_text(self) -> str:
        import tomli_w

        where = ("[network]: the unit is on the rig's network (the rig serves DHCP, DNS, NTP and TLS at the\n"
                 "# standard ports on these addresses)" if self.network else
                 "No [network]: the unit\n# is commissioned with the central system below, as on a station LAN")
        head = (f"# Real-bench rig file for the emulated device {self.options.serial} ({self.options.model}),\n"
                f"# printed by `rig device serve` at {time.strftime('%Y-%m-%d %H:%M:%S')}. {where}.\n")
        return head + tomli_w.dumps(self.rig_file())


class _RigSegment:
    """The rig's network as the device's unit meets it: what `EmulatedBench.connect_network` reads
    from the rig's NetworkServices (config, the CA material the unit trusts, where each documented
    destination is served), without serving anything: the harness serves it."""

    real_segment = True  # the link may reach addresses beyond loopback (a veth), see EmulatedLink

    def __init__(self, config: dict, ca_pem: bytes, firmware_public_pem: bytes):
        from types import SimpleNamespace

        self.config = config
        self.ca = SimpleNamespace(ca_pem=ca_pem, firmware_public_pem=firmware_public_pem)

    def endpoints(self, central: tuple[str, int]) -> dict:
        from rig.network.services import standard_routes

        return standard_routes(self.config, central)


def _instrument_of(exc: OSError) -> str:
    return getattr(exc, "instrument", "an instrument")


def _schema_keys(section: str, values: dict) -> dict:
    """Only the keys the rig-file schema knows (the bench's sections carry working keys too)."""
    out = {}
    for key, value in values.items():
        dotted = f"{section}.{key}"
        if isinstance(value, dict) and any(k.startswith(dotted + ".") for k in KEYS):
            out[key] = _schema_keys(dotted, value)
        elif dotted in KEYS and value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


# ------------------------------------------------------------------------------------------------
class GroundTruth:
    """The device's journal: what really happened, when (JSON lines).

    Each line: `t` (device seconds since start), `mono` (time.monotonic(): the same clock in every
    process of this machine, so the harness's timestamps can be set against it), `event` and its
    facts. Only changes are written: a plant notification that changed nothing of interest is not
    an event."""

    def __init__(self, path: str, clock, plant):
        self.clock, self.plant = clock, plant
        self._file = open(path, "a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()
        self._last: dict[str, object] = {}
        plant.subscribe(self._on_plant)
        self.write("start", pid=os.getpid())

    def write(self, event: str, **facts) -> None:
        line = {"t": round(self.clock.now(), 6), "mono": round(time.monotonic(), 6), "event": event, **facts}
        with self._lock:
            if not self._file.closed:
                self._file.write(json.dumps(line) + "\n")

    def _on_plant(self, topic: str) -> None:
        p = self.plant
        facts = {
            "contactor": {"closed": p.line_closed, "neutral": p.neutral_closed, "earth": p.earth_closed},
            "pwm": {"mode": p.generator.mode, "duty": round(p.generator.duty, 4), "hz": p.generator.freq_hz},
            "injection": {"on": p.injection.on, "a": p.injection.start_a, "ramp_a_per_s": p.injection.rate_a_per_s},
            "supply": {"on": p.supply_on, "v": [round(v, 2) for v in p.supply_v]},
            "led": {"colour": p.led.colour, "pattern": p.led.pattern},
            "vehicle": {"state": p.cp_state_letter()},
        }
        for event, now in facts.items():
            if self._last.get(event) != now:
                self._last[event] = now
                self.write(event, **now)

    def frame(self, direction: str, text: str) -> None:
        self.write("ocpp", direction=direction, frame=text)

    def close(self) -> None:
        # how late the pacer delivered its latest timer at worst: events still carry their true time
        self.write("stop", pacer_late_us_worst=getattr(self.clock, "late_us_worst", None))
        with self._lock:
            self._file.close()


STOP_BOUND_S = 15.0  # longest a stop may take (a clean one takes about a second)


def serve(options: DeviceOptions, out) -> int:
    """Start the device, print where everything is and the rig file, run until SIGINT/SIGTERM."""
    import faulthandler
    import signal

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    # `kill -USR1 <pid>` prints every thread's stack to stderr: what a device that stopped answering
    # (or will not stop) is stuck in, without a debugger on the bench PC
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    device = Device(options)
    try:
        device.start()
        text = device.rig_file_text()
        if options.rig_file:
            Path(options.rig_file).write_text(text, encoding="utf-8")
        _announce(device, text, out)
        while not stop.wait(0.5):
            pass
        out.write("device: stopping\n")
        return 0
    finally:
        # a device that cannot stop (a wedged thread) must not hang its terminal or the harness:
        # past the bound it prints every thread's stack and exits 1, its temp dirs left for the
        # next run's sweep (rig.core.tempdirs)
        faulthandler.dump_traceback_later(STOP_BOUND_S, exit=True)
        try:
            device.stop()
        finally:
            faulthandler.cancel_dump_traceback_later()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _announce(device: Device, text: str, out) -> None:
    o, s = device.options, device.sections
    central_at = o.central if device.network is None else f"{device.network['ocpp_address']}:443 (TLS)"
    meter = s["meter"]
    meter_at = meter["port"] if meter.get("transport") == "rtu" else f"{o.host}:{meter['port']}"
    lines = [
        f"device: {o.serial} ({o.model}{', defect ' + o.defect if o.defect else ''}) at {o.speed:g}x real time",
        f"  pigpio daemon   {o.host}:{s['pilot']['port']}",
        f"  meter           {meter_at} (Modbus {meter.get('transport', 'rtu').upper()}, {meter['model']})",
        *(f"  {name:<15} {s[name]['resource']}" for name in ("load", "source", "injector")),
        f"  led sensor      {s['led_sensor']['port']}",
        f"  console         {s['console']['port']}",
        f"  central system  expected at {central_at} (the unit retries every 10 s until it answers)",
    ]
    if device.network is not None:
        lines.append(f"  unit network    {o.network}.0/24: unit {device.network['unit_address']}, rig "
                     f"{device.network['address']}; capture {device.network['capture']}")
    if o.journal:
        lines.append(f"  journal         {o.journal}")
    if o.rig_file:
        lines.append(f"  rig file        {o.rig_file}")
    else:
        lines += ["--- rig file ---", text.rstrip(), "--- end ---"]
    lines.append("device: ready (Ctrl-C or SIGTERM stops it)")
    out.write("\n".join(lines) + "\n")
    out.flush()
