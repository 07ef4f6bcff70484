"""The rig file: where each instrument of a bench is, checked before anything is opened.

A rig file is TOML (see rig/data/rigs/). The same drivers read the emulated bench's file
and a real bench's; only the addresses differ. On the emulated bench an address may be
"auto" (the emulated instrument picks a free port or pty when it starts); on a real
bench every address must be given, because guessing one could drive the wrong device.

Every mistake is reported as one line naming the dotted key to fix
(`meter.baudrate: expected an integer, got "fast"`), so an operator at an end-of-line
station can fix the file without reading code. `validate_rigfile()` collects every problem
(for `rig check`); `load_rigfile()` raises the first one.

The schema is the `SCHEMA` table below; `describe_schema()` prints it for `rig schema`.
The typed dataclasses (`RigFile.meter.baudrate`) are for the harness; drivers take the
plain section dict (`rig.section("meter")`) with defaults filled in.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
import socket
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from rig.core.errors import RigFileError

from rig.data import EMULATED, EMULATED_RIG, PROFILES_DIR

AUTO = "auto"
REQUIRED = object()  # sentinel: the key has no default

STANDARD_BAUDRATES = (300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 38400, 57600,
                      115200, 230400, 460800, 921600)
#: gpiozero's MCP3xxx ADC classes and how many channels each has
ADC_CHANNELS = {"MCP3001": 1, "MCP3002": 2, "MCP3004": 4, "MCP3008": 8, "MCP3201": 1,
                "MCP3202": 2, "MCP3204": 4, "MCP3208": 8, "MCP3301": 1, "MCP3302": 4,
                "MCP3304": 8}
BCM_PINS = range(0, 28)
#: bits of each ADC family (gpiozero's MCP30xx are 10-bit, MCP32xx 12-bit, MCP33xx 12-bit single-ended)
ADC_BITS = {"MCP30": 10, "MCP32": 12, "MCP33": 12}
#: the CP line swings +-12 V (IEC 61851-1 Table A.4): the ADC's span must cover it, and a span
#: beyond 60 V would leave a resolution too coarse for the +-1 V state bands (a volts-per-count
#: ten times too large lands here)
CP_SWING_V = 12.0
ADC_SPAN_V = (2 * CP_SWING_V, 60.0)
#: RFC 1123 host names
HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
#: chargePointSerialNumber is CiString25Type (OCPP 1.6 BootNotification.req); the station's
#: scanner and the certificate's file name also need plain ASCII
SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,24}$")
#: the charge point identity in the URL path (OCPP-J 1.6 section 3.1.1: unreserved URL
#: characters; OCPP 2.0.1's identifierString, max 48, is the stricter form used here)
CHARGE_POINT_ID = re.compile(r"^[A-Za-z0-9*\-_=:+|@.]{1,48}$")
#: protocol field widths: DHCP lease time is a 32-bit unsigned (RFC 2132 section 9.2); a DNS TTL
#: a 31-bit positive value (RFC 2181 section 8)
UINT32_MAX = 2**32 - 1
DNS_TTL_MAX = 2**31 - 1
#: keys the emulated bench fills with an address of its own (a pty, a free port) whatever the
#: file says: anything but "auto" there would be silently replaced, so it is refused
EMULATED_REPLACES = ("load.resource", "source.resource", "injector.resource", "led_sensor.port",
                     "console.port")


# --- value kinds and checks -------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite number: TOML allows inf and nan, which no timeout, rate or scale can be."""
    import math

    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Kind:
    """A TOML value type as the schema names it ("expected <label>")."""

    label: str  # as in "expected <label>"
    accepts: Callable[[Any], bool]
    short: str  # as `rig schema` lists it


STRING = Kind("a string", lambda v: isinstance(v, str), "string")
INTEGER = Kind("an integer", _is_int, "integer")
NUMBER = Kind("a finite number", _is_number, "number")
INT_LIST = Kind("a list of integers", lambda v: isinstance(v, list) and all(map(_is_int, v)),
                "integer list")
BOOLEAN = Kind("true or false", lambda v: isinstance(v, bool), "boolean")
DEVICE_OR_PORT = Kind("a serial device path or a TCP port number",
                      lambda v: isinstance(v, str) or _is_int(v), "path or port")


def show(value: Any) -> str:
    """A value the way it is written in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def _between(lo: float, hi: float, what: str = "") -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if lo <= value <= hi:
            return None
        return f"{show(value)} is out of range {lo}-{hi}" + (f" ({what})" if what else "")
    return check


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {show(value)}"


def _not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _ipv4(value: str) -> str | None:
    import ipaddress

    try:
        ipaddress.IPv4Address(value)
        return None
    except ValueError:
        return f"{show(value)} is not an IPv4 address (e.g. 10.20.0.53)"


def _baudrate(value: int) -> str | None:
    if value in STANDARD_BAUDRATES:
        return None
    return f"{value} is not a standard baud rate ({', '.join(map(str, STANDARD_BAUDRATES))})"


def _visa_resource(value: str) -> str | None:
    """Problem with a VISA resource string, or None. pyvisa's own parser decides."""
    from pyvisa import rname  # lazy: only a rig file with a real VISA address needs pyvisa

    example = "e.g. TCPIP0::192.168.10.21::5025::SOCKET"
    try:
        parsed = rname.parse_resource_name(value)
    except rname.InvalidResourceName as exc:
        reason = " ".join(str(exc).split())
        return f"{show(value)} is not a VISA resource string ({example}): {reason}"
    port = getattr(parsed, "port", None)
    if isinstance(parsed, rname.TCPIPSocket) and not (port.isdigit() and 1 <= int(port) <= 65535):
        return f"{show(value)} has no valid TCP port (1-65535) in its ::PORT::SOCKET part"
    return None


def _timeout(lo: float, hi: float) -> Callable[[Any], str | None]:
    """A finite timeout within what the instrument class can mean: shorter is below one exchange
    on the wire, longer would hold a station for minutes on a dead instrument."""
    def check(value: Any) -> str | None:
        if lo <= value <= hi:
            return None
        return f"{show(value)} s is out of range {lo:g}-{hi:g} s"
    return check


def _host(value: str) -> str | None:
    """An IPv4 address or a host name. IPv6 is refused: the rig's network side (DHCP, DNS A
    records, the emulated link) is IPv4, so an IPv6 listener could never be reached by the unit."""
    import ipaddress

    if value != value.strip() or any(c.isspace() for c in value):
        return f"{show(value)} contains white space"
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is not None:
        return None if address.version == 4 else f"{show(value)} is an IPv6 address; the rig is IPv4 (e.g. 127.0.0.1)"
    if not HOSTNAME.match(value):
        return f"{show(value)} is neither an IPv4 address nor a host name"
    return None


def _optional_host(value: str) -> str | None:
    return None if value == "" else _host(value)


def _netmask(value: str) -> str | None:
    import ipaddress

    problem = _ipv4(value)
    if problem:
        return problem
    bits = int(ipaddress.IPv4Address(value))
    inverted = ~bits & 0xFFFFFFFF
    return None if inverted & (inverted + 1) == 0 else f"{show(value)} is not a netmask (ones, then zeros)"


def _pattern(regex: re.Pattern, what: str) -> Callable[[Any], str | None]:
    def check(value: str) -> str | None:
        if regex.match(value):
            return None
        odd = sorted({c for c in value if not c.isascii() or not c.isprintable()})
        hint = f" (it contains {', '.join(repr(c) + ' U+%04X' % ord(c) for c in odd)})" if odd else ""
        return f"{show(value)} is not {what}{hint}"
    return check


def _pp_ladder(codes: list[int]) -> str | None:
    """Three selector pins give eight codes; a resistance is ohms, 0 meaning PP open."""
    if len(codes) != 8:
        return f"expected 8 entries (3-bit selector code 0-7), got {len(codes)}"
    negative = [c for c in codes if c < 0]
    return f"resistances must be >= 0 ohms, got {negative[0]}" if negative else None


# --- the schema -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    """One rig-file key: dotted name, type, default (REQUIRED if none), allowed values, doc.

    auto: "" = "auto" not accepted; "emulated" = the emulated bench picks a free address
    (refused on a real bench); "always" = "auto" has a meaning of its own, stated in the doc.
    """

    name: str
    kind: Kind
    doc: str
    default: Any = REQUIRED
    allowed: tuple = ()
    check: Callable[[Any], str | None] | None = None
    auto: str = ""

    @property
    def section(self) -> str:
        return self.name.rpartition(".")[0]

    @property
    def short(self) -> str:
        return self.name.rpartition(".")[2]

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _pin(name: str, doc: str) -> Key:
    return Key(f"pilot.pins.{name}", INTEGER, doc, check=_between(0, 27, "BCM GPIO numbers"))


def _visa(section: str, what: str) -> tuple[Key, Key]:
    return (
        Key(f"{section}.resource", STRING, f"VISA resource of the {what}", check=_visa_resource,
            auto="emulated"),
        Key(f"{section}.timeout_s", NUMBER, "VISA I/O timeout, seconds (0.01-60)", default=2.0,
            check=_timeout(0.01, 60.0)),
    )


SECTION_DOCS = {
    "bench": "what this bench is",
    "product": "the unit under test",
    "pilot": "pilot-signal box: vehicle emulator on a Raspberry Pi (gpiozero)",
    "pilot.pins": "BCM numbers of the relay drivers and sense inputs (each pin once)",
    "pilot.pp_ladder": "PP resistor selector",
    "pilot.adc": "ADC reading the CP peak detectors",
    "meter": "reference energy meter (Eastron, Modbus RTU or TCP)",
    "load": "programmable AC load: the vehicle's on-board charger (SCPI)",
    "source": "AC source / supply disturbance for PEN tests (SCPI)",
    "injector": "DC residual-current injector for the 6 mA tests (SCPI)",
    "led_sensor": "LED colour sensor streaming RGB samples (serial)",
    "console": "the charger's service console (serial)",
    "central": "the rig's own OCPP 1.6J central system, which the unit connects to",
    "network": "the rig as the unit's network: DHCP, DNS, NTP, TLS, firmware, capture (docs/network.md)",
}


def _net(name: str, doc: str) -> Key:
    return Key(f"network.{name}", STRING, doc, check=_ipv4, auto="emulated")

SCHEMA: tuple[Key, ...] = (
    Key("bench.name", STRING, "shown in reports and the run record", check=_not_empty),
    Key("bench.kind", STRING, "emulated: rig.sim serves every instrument; real: a physical bench",
        allowed=("emulated", "real")),
    Key("product.profile", STRING,
        "product profile: rig/data/profiles/<profile>.toml (or a path ending in .toml)",
        check=_not_empty),
    Key("product.model", STRING, "a [models.<model>] of the profile; --sim-model overrides it"),
    Key("product.serial", STRING, "serial number of the unit under test (ASCII letters, digits, . _ -; "
        "at most 25: OCPP's chargePointSerialNumber)", check=_pattern(SERIAL, "a serial number (ASCII letters, "
                                                                       "digits, '.', '_', '-'; at most 25)")),
    Key("pilot.pin_factory", STRING,
        "gpiozero pin factory: mock (emulated bench only), pigpio (remote), lgpio, rpigpio",
        allowed=("mock", "pigpio", "lgpio", "rpigpio")),
    Key("pilot.host", STRING, 'pigpio daemon host (pin_factory = "pigpio"; "" = localhost)',
        default="", check=_optional_host),
    Key("pilot.port", INTEGER, "pigpio daemon port", default=8888,
        check=_between(1, 65535, "TCP ports")),
    _pin("cp_b", "relay: 2.74 kOhm CP-PE (state B)"),
    _pin("cp_c", "relay: + 1.3 kOhm in parallel (state C)"),
    _pin("cp_d", "relay: + 270 Ohm in parallel (state D)"),
    _pin("cp_e", "relay: CP shorted to PE (state E)"),
    _pin("diode_bypass", "relay: shorts the vehicle diode"),
    _pin("pp_select_0", "relay: PP selector bit 0"),
    _pin("pp_select_1", "relay: PP selector bit 1"),
    _pin("pp_select_2", "relay: PP selector bit 2"),
    _pin("cp_capture", "input: CP comparator output (edge timing for frequency and duty)"),
    _pin("sense_l1", "input: opto, L1 live at the vehicle connector"),
    _pin("sense_l2", "input: opto, L2 live at the vehicle connector"),
    _pin("sense_l3", "input: opto, L3 live at the vehicle connector"),
    _pin("sense_n", "input: opto, neutral continuous"),
    _pin("sense_pe", "input: PE continuity to the vehicle"),
    Key("pilot.pp_ladder.codes", INT_LIST,
        "selector code 0-7 -> PP resistance in ohms (0 = open); 8 entries", check=_pp_ladder),
    Key("pilot.adc.chip", STRING, "gpiozero ADC class", allowed=tuple(ADC_CHANNELS)),
    Key("pilot.adc.spi_port", INTEGER, "SPI bus", check=_between(0, 6, "SPI buses")),
    Key("pilot.adc.spi_device", INTEGER, "SPI chip select", check=_between(0, 2, "chip selects")),
    Key("pilot.adc.cp_high_channel", INTEGER, "channel of the CP positive peak detector",
        check=_between(0, 7, "ADC channels")),
    Key("pilot.adc.cp_low_channel", INTEGER, "channel of the CP negative peak detector",
        check=_between(0, 7, "ADC channels")),
    Key("pilot.adc.volts_per_count", NUMBER, "CP volts per ADC count after the level shifter "
        "(the ADC's span must cover the CP's +-12 V and be at most 60 V)", check=_positive),
    Key("pilot.adc.offset_volts", NUMBER, "CP volts at ADC count 0"),
    Key("meter.model", STRING, "register map: SDM630 (3-phase) or SDM120 (1-phase)",
        allowed=("SDM630", "SDM120")),
    Key("meter.transport", STRING, "Modbus RTU over RS485, or Modbus TCP via a gateway",
        allowed=("rtu", "tcp")),
    Key("meter.port", DEVICE_OR_PORT, "serial device (rtu) or TCP port number (tcp)",
        auto="emulated"),
    Key("meter.host", STRING, "Modbus TCP host (tcp only)", default="127.0.0.1", check=_host),
    Key("meter.baudrate", INTEGER, "serial speed (rtu); SDM630 ships at 9600, SDM120 at 2400",
        default=9600, check=_baudrate),
    Key("meter.parity", STRING, "serial parity (rtu)", default="N", allowed=("N", "E", "O")),
    Key("meter.stopbits", INTEGER, "serial stop bits (rtu)", default=1, allowed=(1, 2)),
    Key("meter.unit", INTEGER, "Modbus device address", default=1,
        check=_between(1, 247, "Modbus addresses")),
    Key("meter.timeout_s", NUMBER, "Modbus response timeout, seconds (0.01-10)", default=0.5,
        check=_timeout(0.01, 10.0)),
    *_visa("load", "programmable AC load"),
    *_visa("source", "AC source"),
    *_visa("injector", "DC residual-current injector"),
    Key("led_sensor.port", STRING, "serial device of the colour sensor", check=_not_empty,
        auto="emulated"),
    Key("led_sensor.baudrate", INTEGER, "serial speed", default=115200, check=_baudrate),
    Key("led_sensor.sample_rate_hz", NUMBER, "RGB samples per second the sensor streams (5-1000: "
        "slower cannot see a pulsing LED, faster is no colour sensor's)",
        default=50.0, check=_between(5, 1000, "samples per second")),
    Key("console.port", STRING, "serial device of the charger's service console",
        check=_not_empty, auto="emulated"),
    Key("console.baudrate", INTEGER, "serial speed", default=115200, check=_baudrate),
    Key("central.host", STRING, "IPv4 address (or host name) the rig's central system listens on",
        default="127.0.0.1", check=_host),
    Key("central.port", INTEGER, "TCP port the rig's central system listens on",
        check=_between(1, 65535, "TCP ports"), auto="emulated"),
    Key("central.charge_point_id", STRING, '"auto" = the unit\'s serial (product.serial); else the '
        "identity in the unit's URL (letters, digits, *-_=:+|@. ; at most 48)",
        default=AUTO, check=_pattern(CHARGE_POINT_ID, "a charge point identity (letters, digits, *-_=:+|@. ; "
                                                      "at most 48; no space or '/')"), auto="always"),
    Key("central.tls", BOOLEAN, "serve wss:// with the rig CA's certificate for ocpp.ampnexus.net, and "
        "require the unit's per-unit credentials (HTTP Basic)", default=False),
    Key("network.ports", STRING, 'standard: 67, 53, 123, 443 (real bench); "auto": free ports the '
        "emulated link maps the documented ones to", allowed=("standard", AUTO), auto="emulated"),
    Key("network.interface", STRING, "the rig's interface toward the unit (tcpdump -i); \"\" on the "
        "emulated bench", default=""),
    _net("address", "the rig's own address on the unit's network: DHCP server and router"),
    _net("unit_address", "the address DHCP leases to the unit"),
    Key("network.netmask", STRING, "netmask DHCP hands out", default="255.255.255.0", check=_netmask),
    _net("dns_primary", "primary DNS server DHCP hands out (option 6, first): a rig address"),
    _net("dns_secondary", "secondary DNS server DHCP hands out (option 6, second): a rig address"),
    _net("cloudflare_primary", "where the rig answers for 1.1.1.1 (a real bench holds 1.1.1.1 itself)"),
    _net("cloudflare_secondary", "where the rig answers for 1.0.0.1 (a real bench holds 1.0.0.1 itself)"),
    _net("ocpp_address", "A record the rig's DNS gives for ocpp.ampnexus.net (the central system)"),
    _net("setup_address", "A record for setup.plugstream.co.uk (the firmware server)"),
    _net("ntp_address", "A record for pool.ntp.org (the rig's NTP server)"),
    Key("network.capture", STRING, "pcap of the unit's traffic (tcpdump -w on a real bench)",
        check=_not_empty, auto="emulated"),
    Key("network.unit_password", STRING, "the unit's own password (its manufacturing record); "
        '"auto" on the emulated bench', check=_not_empty, auto="emulated"),
    Key("network.dhcp_lease_s", INTEGER, "DHCP lease time, seconds (1 to 2^32-1: RFC 2132 option 51)",
        default=86400, check=_between(1, UINT32_MAX, "DHCP lease time, a 32-bit field")),
    Key("network.dns_ttl_s", INTEGER, "TTL of the rig's DNS answers, seconds (1 to 2^31-1: RFC 2181)",
        default=300, check=_between(1, DNS_TTL_MAX, "DNS TTL")),
)

KEYS: dict[str, Key] = {k.name: k for k in SCHEMA}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(k.section for k in SCHEMA))
#: the sections a driver is built from (bench and product describe the bench, not an instrument)
INSTRUMENT_SECTIONS = ("pilot", "meter", "load", "source", "injector", "led_sensor", "console", "central",
                       "network")


def _children(table: str) -> list[str]:
    """Names allowed directly inside `table` ("" is the file's top level)."""
    names = [k.short for k in SCHEMA if k.section == table]
    prefix = f"{table}." if table else ""
    subsections = [s[len(prefix):] for s in SECTIONS if s.startswith(prefix) and s != table]
    return names + [s for s in subsections if "." not in s]


# --- typed view -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bench:
    name: str
    kind: str

    @property
    def emulated(self) -> bool:
        return self.kind == "emulated"


@dataclass(frozen=True)
class Product:
    profile: str
    model: str
    serial: str


@dataclass(frozen=True)
class Pins:
    cp_b: int
    cp_c: int
    cp_d: int
    cp_e: int
    diode_bypass: int
    pp_select_0: int
    pp_select_1: int
    pp_select_2: int
    cp_capture: int
    sense_l1: int
    sense_l2: int
    sense_l3: int
    sense_n: int
    sense_pe: int


@dataclass(frozen=True)
class PpLadder:
    codes: tuple[int, ...]

    def ohms(self, code: int) -> int:
        """PP resistance selected by `code` (0 = open)."""
        return self.codes[code]


@dataclass(frozen=True)
class Adc:
    chip: str
    spi_port: int
    spi_device: int
    cp_high_channel: int
    cp_low_channel: int
    volts_per_count: float
    offset_volts: float


@dataclass(frozen=True)
class Pilot:
    pin_factory: str
    host: str
    port: int
    pins: Pins
    pp_ladder: PpLadder
    adc: Adc


@dataclass(frozen=True)
class Meter:
    model: str
    transport: str
    port: str | int
    host: str
    baudrate: int
    parity: str
    stopbits: int
    unit: int
    timeout_s: float


@dataclass(frozen=True)
class VisaInstrument:
    resource: str
    timeout_s: float


@dataclass(frozen=True)
class LedSensor:
    port: str
    baudrate: int
    sample_rate_hz: float


@dataclass(frozen=True)
class Console:
    port: str
    baudrate: int


@dataclass(frozen=True)
class Central:
    host: str
    port: int | str
    charge_point_id: str
    tls: bool


@dataclass(frozen=True)
class Network:
    ports: str
    interface: str
    address: str
    unit_address: str
    netmask: str
    dns_primary: str
    dns_secondary: str
    cloudflare_primary: str
    cloudflare_secondary: str
    ocpp_address: str
    setup_address: str
    ntp_address: str
    capture: str
    unit_password: str
    dhcp_lease_s: int
    dns_ttl_s: int


#: the dataclass for each schema section (a test proves fields and schema keys agree)
SECTION_CLASSES: dict[str, type] = {
    "bench": Bench, "product": Product, "pilot": Pilot, "pilot.pins": Pins,
    "pilot.pp_ladder": PpLadder, "pilot.adc": Adc, "meter": Meter, "load": VisaInstrument,
    "source": VisaInstrument, "injector": VisaInstrument, "led_sensor": LedSensor,
    "console": Console, "central": Central, "network": Network,
}


@dataclass(frozen=True)
class RigFile:
    """A validated rig file. Drivers take `section(name)`; the harness reads the attributes."""

    path: Path
    bench: Bench
    product: Product
    pilot: Pilot
    meter: Meter
    load: VisaInstrument
    source: VisaInstrument
    injector: VisaInstrument
    led_sensor: LedSensor
    console: Console
    central: Central
    network: Network
    profile_path: Path
    data: dict = field(repr=False, compare=False, hash=False)  # defaults filled in

    def section(self, name: str) -> dict:
        """A copy of one section as a plain dict ("meter", "pilot", "pilot.pins", ...)."""
        table: Any = self.data
        for part in name.split("."):
            if not isinstance(table, dict) or part not in table:
                raise KeyError(f"{self.path}: no section [{name}]; sections: {', '.join(SECTIONS)}")
            table = table[part]
        return copy.deepcopy(table)

    @property
    def charge_point_id(self) -> str:
        """The id the unit connects with: central.charge_point_id, "auto" meaning the serial."""
        cp_id = self.central.charge_point_id
        return self.product.serial if cp_id == AUTO else cp_id


# --- validation -------------------------------------------------------------------------------

class _Problems:
    """Collects one-line problems; remembers which keys are bad so later checks skip them."""

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[RigFileError] = []
        self.bad: set[str] = set()
        # keys an "unknown key; did you mean ..." already points at: their absence is the
        # same mistake, so it is not reported a second time
        self.explained: set[str] = set()

    def add(self, key: str, problem: str) -> None:
        self.errors.append(RigFileError(str(self.path), key, _one_line(problem)))
        self.bad.add(key)

    def ok(self, *keys: str) -> bool:
        return not any(k in self.bad for k in keys)

    def missing(self, key: str, problem: str) -> None:
        if key in self.explained:
            self.bad.add(key)
        else:
            self.add(key, problem)


def _closest(word: str, choices: list[str]) -> str | None:
    """The known name `word` was probably meant to be (case slips first, then difflib)."""
    same_case = [c for c in choices if c.casefold() == word.casefold()]
    close = same_case or difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def _suggest(word: str, choices: list[str]) -> str:
    best = _closest(word, choices)
    return f'did you mean "{best}"?' if best else "known: " + ", ".join(choices)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _parse(path: Path, problems: _Problems) -> dict | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add("(file)", "no such file")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.add("(file)", f"cannot read: {exc}")
        return None
    if text.startswith("\ufeff"):
        problems.add("(file)", "starts with a byte-order mark (U+FEFF), which TOML does not allow: "
                               "save it as UTF-8 without BOM")
        return None
    if "\x00" in text:
        problems.add("(file)", "contains NUL bytes: not a text file (is it the right file?)")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        reason = re.sub(r"\s*\(at line .*\)$", "", message) or "invalid TOML"
        key = f"line {where.group(1)}" if where else "(file)"
        column = f" (column {where.group(2)})" if where else ""
        problems.add(key, f"TOML syntax error: {reason}{column}")
        return None


def _check_unknown(table: dict, name: str, problems: _Problems) -> None:
    """Flag every key the schema does not know, suggesting the closest known one."""
    allowed = _children(name)
    for key, value in table.items():
        dotted = f"{name}.{key}" if name else key
        if key not in allowed:
            what = "unknown key" if name else "unknown section"
            problems.add(dotted, f"{what}; {_suggest(key, allowed)}")
            best = _closest(key, allowed)
            if best is not None:
                problems.explained.add(f"{name}.{best}" if name else best)
        elif dotted in SECTIONS and isinstance(value, dict):
            _check_unknown(value, dotted, problems)


def _fill_sections(data: dict, problems: _Problems) -> dict:
    """Check presence and types of every key; return the tables with defaults filled in."""
    filled: dict = {}
    for section in SECTIONS:
        parent_name, _, leaf = section.rpartition(".")
        if parent_name and not problems.ok(parent_name):
            problems.bad.add(section)
            continue
        parent = _walk(data, parent_name)
        source = parent.get(leaf) if parent is not None else None
        if source is None:
            problems.missing(section, f"missing section [{section}]")
            continue
        if not isinstance(source, dict):
            problems.add(section, f"expected a table [{section}], got {show(source)}")
            continue
        target = _walk(filled, parent_name).setdefault(leaf, {})
        for key in (k for k in SCHEMA if k.section == section):
            value = _check_key(key, source, problems)
            if value is not None:
                target[key.short] = value
    return filled


def _walk(table: dict, dotted: str) -> dict | None:
    for part in filter(None, dotted.split(".")):
        table = table.get(part) if isinstance(table, dict) else None
    return table if isinstance(table, dict) else None


def _check_key(key: Key, table: dict, problems: _Problems) -> Any:
    """The key's value (default if absent), or None after recording a problem."""
    if key.short not in table:
        if key.required:
            problems.missing(key.name, f"missing required key ({key.doc})")
            return None
        return key.default
    value = table[key.short]
    if value == AUTO and isinstance(value, str):
        if key.auto:
            return value
        if key.kind is STRING:
            problems.add(key.name, '"auto" is not accepted here; give a value')
            return None
    if not key.kind.accepts(value):
        problems.add(key.name, f"expected {key.kind.label}, got {show(value)}")
        return None
    if key.allowed and value not in key.allowed:
        choices = [str(a) for a in key.allowed]
        best = _closest(value, choices) if isinstance(value, str) else None
        hint = f'; did you mean "{best}"?' if best else ""
        problems.add(key.name, f"{show(value)} is not one of {', '.join(choices)}{hint}")
        return None
    problem = key.check(value) if key.check else None
    if problem:
        problems.add(key.name, problem)
        return None
    return float(value) if key.kind is NUMBER else value


def _check_bench_kind(filled: dict, problems: _Problems) -> None:
    """ "auto" and mock pins belong to the emulated bench; a real bench names real things."""
    kind = (filled.get("bench") or {}).get("kind")
    if kind is None or not problems.ok("bench.kind"):
        return
    real = kind == "real"
    for key in SCHEMA:
        section = _walk(filled, key.section)
        if real and key.auto == "emulated" and section and section.get(key.short) == AUTO:
            problems.add(key.name, '"auto" is only for the emulated bench; give the real address')
    for name in EMULATED_REPLACES if not real else ():
        section = _walk(filled, KEYS[name].section)
        value = section.get(KEYS[name].short) if section else None
        if value not in (None, AUTO) and problems.ok(name):
            problems.add(name, f'the emulated bench serves this instrument at an address of its own; write "auto" '
                               f"(a fixed {show(value)} would be silently replaced)")
    meter = filled.get("meter", {})
    if not real and meter.get("transport") == "rtu" and meter.get("port") not in (None, AUTO):
        problems.add("meter.port", 'the emulated bench serves the RTU meter on a pty of its own; write "auto" '
                                   f"(a fixed {show(meter['port'])} would be silently replaced)")
    pilot = filled.get("pilot", {})
    if problems.ok("pilot", "pilot.pin_factory") and "pin_factory" in pilot:
        factory = pilot["pin_factory"]
        if real and factory == "mock":
            problems.add("pilot.pin_factory",
                         '"mock" is only for the emulated bench; use pigpio, lgpio or rpigpio')
        elif not real and factory != "mock":
            problems.add("pilot.pin_factory",
                         f'the emulated bench drives gpiozero mock pins; use "mock", not {show(factory)}')


def _check_pins(filled: dict, problems: _Problems) -> None:
    pins = _walk(filled, "pilot.pins") or {}
    used: dict[int, str] = {}
    for name, pin in pins.items():
        key = f"pilot.pins.{name}"
        if pin in used:
            problems.add(key, f"BCM {pin} is already used by {used[pin]}")
        else:
            used[pin] = key


def _check_adc(filled: dict, problems: _Problems) -> None:
    adc = _walk(filled, "pilot.adc") or {}
    if "chip" not in adc:
        return
    channels = ADC_CHANNELS[adc["chip"]]
    for name in ("cp_high_channel", "cp_low_channel"):
        if name in adc and adc[name] >= channels:
            problems.add(f"pilot.adc.{name}",
                         f"{adc[name]} is out of range for {adc['chip']} (channels 0-{channels - 1})")
    if adc.get("cp_high_channel") is not None and adc.get("cp_high_channel") == adc.get("cp_low_channel"):
        problems.add("pilot.adc.cp_low_channel",
                     f"channel {adc['cp_low_channel']} is already pilot.adc.cp_high_channel")
    _check_adc_span(adc, problems)


def _check_adc_span(adc: dict, problems: _Problems) -> None:
    """The ADC's volts-per-count and offset must place the CP's +-12 V inside the ADC's range,
    with a span a real level shifter gives (a scale ten times off is caught here)."""
    if not all(k in adc for k in ("chip", "volts_per_count", "offset_volts")):
        return
    bits = ADC_BITS[adc["chip"][:5]]
    span = adc["volts_per_count"] * 2**bits
    lo, hi = ADC_SPAN_V
    if not lo <= span <= hi:
        problems.add("pilot.adc.volts_per_count",
                     f"{show(adc['volts_per_count'])} V/count gives a {span:.4g} V span over {bits} bits; "
                     f"the CP's +-{CP_SWING_V:g} V needs {lo:g}-{hi:g} V")
        return
    bottom, top = adc["offset_volts"], adc["offset_volts"] + span
    if bottom > -CP_SWING_V or top < CP_SWING_V:
        problems.add("pilot.adc.offset_volts",
                     f"{show(adc['offset_volts'])} V puts the ADC's range at {bottom:.4g}..{top:.4g} V, "
                     f"which does not cover the CP's -{CP_SWING_V:g}..+{CP_SWING_V:g} V")


def _check_meter(filled: dict, problems: _Problems) -> None:
    meter = filled.get("meter", {})
    if "transport" not in meter or "port" not in meter or meter["port"] == AUTO:
        return
    port = meter["port"]
    if meter["transport"] == "rtu" and not isinstance(port, str):
        problems.add("meter.port", f'transport "rtu" needs a serial device path, got {show(port)}')
    elif meter["transport"] == "rtu" and not port.strip():
        problems.add("meter.port", "must not be empty")
    elif meter["transport"] == "tcp" and not _is_int(port):
        problems.add("meter.port", f'transport "tcp" needs a TCP port number, got {show(port)}')
    elif meter["transport"] == "tcp" and not 1 <= port <= 65535:
        problems.add("meter.port", f"{port} is out of range 1-65535 (TCP ports)")
    if meter["transport"] == "tcp" and not meter.get("host", "x").strip():
        problems.add("meter.host", 'transport "tcp" needs the gateway\'s host')


# --- the product profile ----------------------------------------------------------------------

def _profile_candidates(profile: str, rig_dir: Path | None) -> list[Path]:
    """Where a profile may live: beside the rig file's ../profiles/, then the project's."""
    if profile.endswith(".toml") or "/" in profile:
        base = rig_dir or Path.cwd()
        return [base / profile]
    name = f"{profile}.toml"
    places = [rig_dir.parent / "profiles" / name] if rig_dir else []
    places.append(PROFILES_DIR / name)
    return list(dict.fromkeys(p.resolve() for p in places))


def _known_profiles(candidates: list[Path]) -> list[str]:
    return sorted({p.stem for c in candidates if c.parent.is_dir() for p in c.parent.glob("*.toml")})


def _read_profile(path: Path) -> dict:
    with path.open("rb") as f:
        profile = tomllib.load(f)
    if not isinstance(profile.get("models"), dict) or not profile["models"]:
        raise ValueError("has no [models.<model>] tables")
    return profile


def _check_profile(filled: dict, rig_dir: Path, problems: _Problems) -> Path | None:
    """Resolve product.profile and check product.model against it; the profile's path or None."""
    product = filled.get("product", {})
    if "profile" not in product:
        return None
    candidates = _profile_candidates(product["profile"], rig_dir)
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        known = _known_profiles(candidates)
        hint = _suggest(product["profile"], known) if known else "no profiles found"
        looked = ", ".join(str(c) for c in candidates)
        problems.add("product.profile", f"no profile {show(product['profile'])} (looked in {looked}); {hint}")
        return None
    try:
        models = _read_profile(path)["models"]
    except (tomllib.TOMLDecodeError, ValueError, OSError) as exc:
        problems.add("product.profile", f"profile {path} is unusable: {exc}")
        return None
    if "model" in product and product["model"] not in models:
        problems.add("product.model", _unknown_model(product["model"], product["profile"], models))
    return path


def _unknown_model(model: str, profile: str, models: dict) -> str:
    return (f"{show(model)} is not a model of profile {show(profile)}; "
            f"{_suggest(model, sorted(models))}")


# --- public API -------------------------------------------------------------------------------

def validate_rigfile(path: str | os.PathLike) -> tuple[RigFile | None, list[RigFileError]]:
    """Check a rig file; every problem found, and the RigFile when there are none."""
    path = Path(path)
    problems = _Problems(path)
    data = _parse(path, problems)
    if data is None:
        return None, problems.errors
    if not data:
        problems.add("(file)", "is empty: a rig file names the bench and every instrument "
                               "(`rig schema`; rig/data/rigs/emulated.toml is an example)")
        return None, problems.errors
    _check_unknown(data, "", problems)
    filled = _fill_sections(data, problems)
    _check_bench_kind(filled, problems)
    _check_pins(filled, problems)
    _check_adc(filled, problems)
    _check_meter(filled, problems)
    profile_path = _check_profile(filled, path.resolve().parent, problems)
    if problems.errors:
        return None, problems.errors
    return _build(path, filled, profile_path), []


def resolve_rig_path(option: str | os.PathLike | None) -> Path:
    """The rig file an option names: none or "emulated" is the shipped emulated bench; anything
    else is a path (relative to the current directory, as pytest reads paths)."""
    if option is None or str(option) in ("", EMULATED):
        return EMULATED_RIG
    return Path(option)


def load_rigfile(path: str | os.PathLike) -> RigFile:
    """The validated rig file; the first problem is raised as a one-line RigFileError."""
    rig, errors = validate_rigfile(path)
    if errors:
        raise errors[0]
    return rig


def _build_section(section: str, table: dict) -> Any:
    kwargs = {}
    for name, value in table.items():
        child = f"{section}.{name}"
        if child in SECTION_CLASSES:
            kwargs[name] = _build_section(child, value)
        else:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    return SECTION_CLASSES[section](**kwargs)


def _build(path: Path, filled: dict, profile_path: Path) -> RigFile:
    top = {name: _build_section(name, filled[name]) for name in SECTIONS if "." not in name}
    return RigFile(path=path, profile_path=profile_path, data=filled, **top)


def load_profile(rig_or_name: RigFile | str, model: str | None = None) -> dict:
    """The product profile for one model: every table of the profile file, with [product]
    merged with the selected [models.<model>] table.

    The merged product is both `profile["product"]` and spread at the top level, so tests
    read `profile["phases"]` and `profile["ocpp"]["path_prefix"]` alike. Given a RigFile,
    the model is the rig file's product.model (or `model`), and the merged product also
    carries "model" and the unit's "serial". Given a profile name (or a path ending in
    .toml) without a model, the profile file is returned as it is.
    """
    if isinstance(rig_or_name, RigFile):
        path, serial = rig_or_name.profile_path, rig_or_name.product.serial
        name, model = rig_or_name.product.profile, model or rig_or_name.product.model
    else:
        name, serial = rig_or_name, None
        candidates = _profile_candidates(name, None)
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"no product profile {name!r} (looked in {candidates[0]})")
    profile = _read_profile(path)
    if model is None:
        return profile
    models = profile["models"]
    if model not in models:
        raise KeyError(_unknown_model(model, name, models))
    product = {**profile.get("product", {}), **models[model], "model": model}
    if serial is not None:
        product["serial"] = serial
    clash = sorted(set(product) & set(profile) - {"product"})
    if clash:
        raise ValueError(f"profile {path}: [models.{model}] key {clash[0]!r} is also a table name")
    return {**profile, **product, "product": product}


def with_model(rig: RigFile, model: str) -> RigFile:
    """A copy of `rig` testing another model of the same profile (the --sim-model option)."""
    models = _read_profile(rig.profile_path)["models"]
    if model not in models:
        raise RigFileError(str(rig.path), "product.model", _unknown_model(model, rig.product.profile, models))
    data = copy.deepcopy(rig.data)
    data["product"]["model"] = model
    return replace(rig, product=replace(rig.product, model=model), data=data)


# --- reachability (real benches) --------------------------------------------------------------

def _serial_problem(device: str) -> str | None:
    if not os.path.exists(device):
        return f"no such device {device} (adapter unplugged? see ls /dev/serial/by-id)"
    if not os.access(device, os.R_OK | os.W_OK):
        return f"{device} is not readable and writable by this user (dialout group?)"
    return None


def _tcp_problem(host: str, port: int, timeout_s: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.timeout:
        return f"nothing answers at {host}:{port} within {timeout_s:g} s"
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def _listen_problem(host: str, port: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return f"the central system cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def _visa_endpoint(resource: str) -> tuple[str, str | int] | None:
    """("tcp", (host, port)) or ("serial", device) for the resources we can probe cheaply."""
    from pyvisa import rname

    parsed = rname.parse_resource_name(resource)
    if isinstance(parsed, rname.TCPIPSocket):
        return "tcp", (parsed.host_address, int(parsed.port))
    if isinstance(parsed, rname.TCPIPInstr):
        # HiSLIP listens on 4880; VXI-11 starts at the portmapper on 111
        port = 4880 if parsed.lan_device_name.lower().startswith("hislip") else 111
        return "tcp", (parsed.host_address, port)
    if isinstance(parsed, rname.ASRLInstr) and parsed.board.startswith("/"):
        return "serial", parsed.board
    return None  # USB and GPIB need the VISA library itself; opening them is the driver's job


def _probes(rig: RigFile) -> list[tuple[str, str, Any]]:
    """(key, "serial" | "tcp" | "listen", address) for every address on the bench."""
    probes: list[tuple[str, str, Any]] = []
    if rig.meter.transport == "rtu":
        probes.append(("meter.port", "serial", rig.meter.port))
    else:
        probes.append(("meter.port", "tcp", (rig.meter.host, rig.meter.port)))
    for name in ("load", "source", "injector"):
        endpoint = _visa_endpoint(getattr(rig, name).resource)
        if endpoint:
            probes.append((f"{name}.resource", *endpoint))
    probes.append(("led_sensor.port", "serial", rig.led_sensor.port))
    probes.append(("console.port", "serial", rig.console.port))
    if rig.pilot.pin_factory == "pigpio":
        probes.append(("pilot.host", "tcp", (rig.pilot.host or "localhost", rig.pilot.port)))
    probes.append(("central.port", "listen", (rig.central.host, rig.central.port)))
    return probes


def check_reachable(rig: RigFile, timeout_s: float = 1.0) -> list[str]:
    """One line per instrument of a real bench that cannot be reached, naming its key.

    TCP endpoints are tried in parallel so a bench with several dead hosts still answers
    within about `timeout_s`. Not for the emulated bench: its "auto" addresses exist only
    once the emulated instruments start.
    """
    if rig.bench.kind != "real":
        raise RigFileError(str(rig.path), "bench.kind", "reachability is only checked on a real bench")

    def run(probe: tuple[str, str, Any]) -> str | None:
        key, how, address = probe
        if how == "serial":
            problem = _serial_problem(address)
        elif how == "tcp":
            problem = _tcp_problem(*address, timeout_s)
        else:
            problem = _listen_problem(*address)
        return str(RigFileError(str(rig.path), key, _one_line(problem))) if problem else None

    probes = _probes(rig)
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        return [line for line in pool.map(run, probes) if line]


# --- rig schema -------------------------------------------------------------------------------

def _describe_key(key: Key) -> str:
    need = "required" if key.required else f"default {show(key.default)}"
    extras = []
    if key.allowed:
        extras.append("one of " + " | ".join(str(a) for a in key.allowed))
    if key.auto == "emulated":
        extras.append('"auto" on the emulated bench')
    extra = f" [{'; '.join(extras)}]" if extras else ""
    return f"  {key.short:<16} {key.kind.short:<13} {need:<20} {key.doc}{extra}"


def describe_schema() -> str:
    """Every rig-file key, section by section, for `rig schema`."""
    lines = [
        "Rig file keys (TOML). Every section is required. \"auto\" lets the emulated bench pick",
        "a free address when it starts; a real bench (bench.kind = \"real\") must name every address.",
    ]
    for section in SECTIONS:
        lines += ["", f"[{section}]  {SECTION_DOCS[section]}"]
        lines += [_describe_key(k) for k in SCHEMA if k.section == section]
    return "\n".join(lines)
