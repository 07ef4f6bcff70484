"""The rig file's schema: every key, its type, default, allowed values and range check, and
`describe_schema()` for `rig schema`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable



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
        if not value.strip():
            return "must not be empty"
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


def _attempts(section: str) -> Key:
    return Key(f"{section}.attempts", INTEGER, "tries per exchange before a rig fault (1-10)", default=3,
               check=_between(1, 10, "attempts"))


def _visa(section: str, what: str, phased: bool = False) -> tuple[Key, ...]:
    keys = (
        Key(f"{section}.resource", STRING, f"VISA resource of the {what}", check=_visa_resource,
            auto="emulated"),
        Key(f"{section}.timeout_s", NUMBER, "VISA I/O timeout, seconds (0.01-60)", default=2.0,
            check=_timeout(0.01, 60.0)),
        _attempts(section),
        Key(f"{section}.visa_library", STRING, 'VISA library: "@py" (pyvisa-py, default), "" (the system\'s '
            'NI-VISA / Keysight IO Libraries, for USB-TMC and GPIB) or a library path', default="@py"),
    )
    if phased:
        keys += (Key(f"{section}.phases", INTEGER, "outputs 1-3; 0 = ask the instrument (SYST:PHAS?)", default=0,
                     check=_between(0, 3, "phases")),)
    return keys


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
    "calibration": "when each measuring instrument's calibration runs out (YYYY-MM-DD), for the certification "
                   "dossier; optional",
}

CALIBRATED = ("pilot", "meter", "load", "source", "injector", "led_sensor")


def _date_or_empty(value: str) -> str | None:
    from datetime import date

    if value == "":
        return None
    try:
        date.fromisoformat(value)
    except ValueError:
        return f"{value!r}: expected a date, YYYY-MM-DD (or \"\" for not recorded)"
    return None


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
    Key("pilot.timeout_s", NUMBER, "pigpio: longest wait for the daemon's answer to one command, seconds "
        "(0.05-60); past it the link is closed and the run ends in a rig fault", default=5.0,
        check=_timeout(0.05, 60.0)),
    Key("pilot.chip", INTEGER, "gpiochip number (pin_factory = \"lgpio\"; 0 on most Pis, 4 on a Pi 5 with "
        "older kernels)", default=0, check=_between(0, 15, "gpiochips")),
    Key("pilot.sense_pull", STRING, 'sense inputs: "none" (the optos drive the lines), "up" or "down" '
        "(the Pi's pull resistor; a pulled-up line is active low)", default="none", allowed=("none", "up", "down")),
    Key("pilot.sense_active_high", BOOLEAN, 'sense_pull = "none": a live line reads high', default=True),
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
    Key("pilot.adc.samples", INTEGER, "ADC readings averaged per level (1-64)", default=3,
        check=_between(1, 64, "samples")),
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
    _attempts("meter"),
    *_visa("load", "programmable AC load", phased=True),
    *_visa("source", "AC source", phased=True),
    Key("source.nominal_v", NUMBER, "the supply's nominal phase voltage (the safe state), volts", default=230.0,
        check=_between(100, 280, "phase volts")),
    Key("source.nominal_hz", NUMBER, "the supply's nominal frequency, Hz", default=50.0, allowed=(50.0, 60.0)),
    *_visa("injector", "DC residual-current injector"),
    Key("led_sensor.port", STRING, "serial device of the colour sensor", check=_not_empty,
        auto="emulated"),
    Key("led_sensor.baudrate", INTEGER, "serial speed", default=115200, check=_baudrate),
    Key("led_sensor.timeout_s", NUMBER, "serial exchange timeout, seconds (0.05-60)", default=1.0,
        check=_timeout(0.05, 60.0)),
    _attempts("led_sensor"),
    Key("led_sensor.max_garbage_fraction", NUMBER, "share of unreadable samples tolerated in an observation "
        "(0-0.5)", default=0.05, check=_between(0, 0.5, "fraction")),
    Key("led_sensor.sample_rate_hz", NUMBER, "RGB samples per second the sensor streams (5-1000: "
        "slower cannot see a pulsing LED, faster is no colour sensor's)",
        default=50.0, check=_between(5, 1000, "samples per second")),
    Key("console.port", STRING, "serial device of the charger's service console",
        check=_not_empty, auto="emulated"),
    Key("console.baudrate", INTEGER, "serial speed", default=115200, check=_baudrate),
    Key("console.timeout_s", NUMBER, "serial exchange timeout, seconds (0.05-60)", default=2.0,
        check=_timeout(0.05, 60.0)),
    _attempts("console"),
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
    Key("network.scan_control_address", STRING, "an address on the unit's segment that nothing answers for: a TCP "
        "port open there too belongs to the rig machine's own wildcard listeners, not to the unit (a unit emulated on "
        'this machine\'s loopback); "" on a real segment', default="", check=_optional_host),
    Key("network.ca_dir", STRING, 'the rig\'s lasting test CA and firmware key (ca.crt, ca.key, firmware.key, '
        'firmware.pub), made there on first use: a real unit is provisioned once with its ca.crt and firmware.pub; '
        '"" makes a fresh CA every run (the emulated bench, whose unit is given it at start)', default=""),
    Key("network.dhcp_lease_s", INTEGER, "DHCP lease time, seconds (1 to 2^32-1: RFC 2132 option 51)",
        default=86400, check=_between(1, UINT32_MAX, "DHCP lease time, a 32-bit field")),
    Key("network.dns_ttl_s", INTEGER, "TTL of the rig's DNS answers, seconds (1 to 2^31-1: RFC 2181)",
        default=300, check=_between(1, DNS_TTL_MAX, "DNS TTL")),
)

SCHEMA += tuple(Key(f"calibration.{name}", STRING, f"calibration due date of the {name} (YYYY-MM-DD); \"\" = "
                     "not recorded (the dossier says so)", default="", check=_date_or_empty) for name in CALIBRATED)

KEYS: dict[str, Key] = {k.name: k for k in SCHEMA}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(k.section for k in SCHEMA))
#: the sections a driver is built from (bench and product describe the bench, not an instrument)
INSTRUMENT_SECTIONS = ("pilot", "meter", "load", "source", "injector", "led_sensor", "console", "central",
                       "network")
#: sections a real bench may leave out. [network]: the rig is not the unit's network (a unit
#: commissioned on the station's LAN, or `rig device serve`); the network tests are then skipped
#: as not covered, never blamed on the unit
OPTIONAL_ON_REAL = ("network",)
#: sections any rig file may leave out: every key has its default
OPTIONAL_EVERYWHERE = ("calibration",)


def _children(table: str) -> list[str]:
    """Names allowed directly inside `table` ("" is the file's top level)."""
    names = [k.short for k in SCHEMA if k.section == table]
    prefix = f"{table}." if table else ""
    subsections = [s[len(prefix):] for s in SECTIONS if s.startswith(prefix) and s != table]
    return names + [s for s in subsections if "." not in s]



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
