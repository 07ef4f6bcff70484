"""Every broken rig file stops before testing, with one line naming the file and the key.

Each case changes one thing in the emulated bench's file (or the real-bench example) the way a
person at a station gets it wrong, then checks the same line twice: from `rig check` (the
validator, every problem) and from pytest (a usage error before collection: exit status 4, one
`ERROR:` line, no test run and nothing recorded).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rig.core.rigfile import validate_rigfile

REPO = Path(__file__).resolve().parents[2]
EMULATED = (REPO / "rig" / "data" / "rigs" / "emulated.toml").read_text()
REAL = (REPO / "rig" / "data" / "rigs" / "real-bench.example.toml").read_text()


def edit(old: str, new: str, base: str = EMULATED) -> str:
    assert old in base, f"{old!r} is not in the base file"
    return base.replace(old, new, 1)


def after_section(section: str, line: str, base: str = EMULATED) -> str:
    return edit(f"[{section}]\n", f"[{section}]\n{line}\n", base)


def without_section(section: str) -> str:
    lines, out, skipping = EMULATED.splitlines(), [], False
    for line in lines:
        if line.startswith("["):
            skipping = line.split("]")[0].strip("[") == section
        if not skipping:
            out.append(line)
    return "\n".join(out) + "\n"


# (case id, file content (str, bytes, or None = no file, "DIR" = a directory), key, fragment)
CASES = [
    ("no-file", None, "(file)", "no such file"),
    ("directory", "DIR", "(file)", "cannot read"),
    ("empty", "", "(file)", "is empty"),
    ("binary", bytes(range(256)) * 4, "(file)", "cannot read"),
    ("nul-bytes", "[bench]\x00\n", "(file)", "NUL bytes"),
    ("byte-order-mark", "\ufeff" + EMULATED, "(file)", "byte-order mark"),
    ("syntax-error", edit('name = "emulated"', 'name = "emulated'), "line 8", "TOML syntax error"),
    ("duplicate-key", after_section("meter", "unit = 2"), "line", "TOML syntax error"),
    ("not-a-table", edit('[bench]\nname = "emulated"\nkind = "emulated"', 'bench = "emulated"\n#'), "bench",
     "expected a table"),
    ("unknown-section", EMULATED + "\n[meterr]\nunit = 1\n", "meterr", 'unknown section; did you mean "meter"'),
    ("unknown-key-typo", edit("baudrate = 9600", "baudrat = 9600"), "meter.baudrat", 'did you mean "baudrate"'),
    ("unknown-key", after_section("load", "colour = 3"), "load.colour", "unknown key"),
    ("missing-section", without_section("injector"), "injector", "missing section [injector]"),
    ("missing-key", edit('name = "emulated"\n', ""), "bench.name", "missing required key"),
    ("bench-kind", edit('kind = "emulated"', 'kind = "virtual"'), "bench.kind", "is not one of emulated, real"),
    ("bench-name-empty", edit('name = "emulated"', 'name = " "'), "bench.name", "must not be empty"),
    ("profile-unknown", edit('profile = "plugstream"', 'profile = "plugstreem"'), "product.profile", "did you mean"),
    ("model-unknown", edit('model = "PS22-S"', 'model = "PS99"'), "product.model", "is not a model"),
    ("serial-unicode-hyphen", edit('serial = "SIM-0001"', 'serial = "SIM\u20110001"'), "product.serial",
     "U+2011"),
    ("serial-space", edit('serial = "SIM-0001"', 'serial = "SIM 0001"'), "product.serial", "not a serial number"),
    ("serial-too-long", edit('serial = "SIM-0001"', 'serial = "' + "S" * 26 + '"'), "product.serial", "at most 25"),
    ("pin-factory-on-emulated", edit('pin_factory = "mock"', 'pin_factory = "pigpio"'), "pilot.pin_factory",
     'use "mock"'),
    ("pigpio-port", edit("port = 8888", "port = 70000"), "pilot.port", "out of range 1-65535"),
    ("pigpio-host-ipv6", edit('host = ""                    # pigpio', 'host = "fe80::1"  # pigpio'), "pilot.host",
     "IPv6"),
    ("pin-out-of-range", edit("cp_b = 5 ", "cp_b = 40 "), "pilot.pins.cp_b", "out of range 0-27"),
    ("pin-duplicate", edit("cp_c = 6 ", "cp_c = 5 "), "pilot.pins.cp_c", "already used by pilot.pins.cp_b"),
    ("pin-string", edit("cp_b = 5 ", 'cp_b = "5" '), "pilot.pins.cp_b", "expected an integer"),
    ("pin-float", edit("cp_b = 5 ", "cp_b = 5.0 "), "pilot.pins.cp_b", "expected an integer"),
    ("pp-ladder-short", edit("codes = [0, 1500, 680, 220, 100, 47, 3300, 10000]", "codes = [0, 1500, 680]"),
     "pilot.pp_ladder.codes", "expected 8 entries"),
    ("pp-ladder-negative", edit("codes = [0, 1500,", "codes = [0, -1500,"), "pilot.pp_ladder.codes", ">= 0 ohms"),
    ("adc-chip", edit('chip = "MCP3208"', 'chip = "MCP9999"'), "pilot.adc.chip", "is not one of"),
    ("adc-channel", edit("cp_high_channel = 0", "cp_high_channel = 8"), "pilot.adc.cp_high_channel",
     "out of range"),
    ("adc-same-channel", edit("cp_low_channel = 1", "cp_low_channel = 0"), "pilot.adc.cp_low_channel",
     "already pilot.adc.cp_high_channel"),
    ("adc-scale-ten-times", edit("volts_per_count = 0.00732", "volts_per_count = 0.0732"),
     "pilot.adc.volts_per_count", "V span"),
    ("adc-scale-zero", edit("volts_per_count = 0.00732", "volts_per_count = 0"), "pilot.adc.volts_per_count",
     "greater than 0"),
    ("adc-scale-inf", edit("volts_per_count = 0.00732", "volts_per_count = inf"), "pilot.adc.volts_per_count",
     "expected a finite number"),
    ("adc-offset", edit("offset_volts = -15.0", "offset_volts = 0.0"), "pilot.adc.offset_volts",
     "does not cover"),
    ("meter-model", edit('model = "SDM630"', 'model = "SDM72"'), "meter.model", "is not one of"),
    ("meter-transport", edit('transport = "rtu"', 'transport = "udp"'), "meter.transport", "is not one of"),
    ("meter-baudrate", edit("baudrate = 9600", "baudrate = 9601"), "meter.baudrate", "not a standard baud rate"),
    ("meter-parity", edit('parity = "N"', 'parity = "X"'), "meter.parity", "is not one of"),
    ("meter-stopbits", edit("stopbits = 1", "stopbits = 3"), "meter.stopbits", "is not one of"),
    ("meter-unit-zero", edit("unit = 1\n", "unit = 0\n"), "meter.unit", "out of range 1-247"),
    ("meter-unit-248", edit("unit = 1\n", "unit = 248\n"), "meter.unit", "out of range 1-247"),
    ("meter-unit-float", edit("unit = 1\n", "unit = 1.5\n"), "meter.unit", "expected an integer"),
    ("meter-timeout-inf", edit("timeout_s = 0.5", "timeout_s = inf"), "meter.timeout_s", "finite number"),
    ("meter-timeout-nan", edit("timeout_s = 0.5", "timeout_s = nan"), "meter.timeout_s", "finite number"),
    ("meter-timeout-zero", edit("timeout_s = 0.5", "timeout_s = 0"), "meter.timeout_s", "out of range"),
    ("meter-timeout-huge", edit("timeout_s = 0.5", "timeout_s = 3600"), "meter.timeout_s", "out of range"),
    ("meter-fixed-pty", edit('port = "auto"                # serial', 'port = "/dev/ttyUSB0"  # serial'),
     "meter.port", "silently replaced"),
    ("meter-host-space", edit('host = "127.0.0.1"           # tcp only', 'host = "127.0.0. 1"  # tcp only'),
     "meter.host", "white space"),
    ("load-resource", edit('[load]\nresource = "auto"', '[load]\nresource = "TCPIP0::10.0.0.5"'),
     "load.resource", "silently replaced"),
    ("load-timeout-negative", edit("[load]\nresource = \"auto\"            # VISA resource, e.g. TCPIP0::192.168.10.21::5025::SOCKET\ntimeout_s = 2.0",
                                   "[load]\nresource = \"auto\"\ntimeout_s = -2.0"), "load.timeout_s", "out of range"),
    ("source-timeout-string", edit('[source]\nresource = "auto"\ntimeout_s = 2.0', '[source]\nresource = "auto"\ntimeout_s = "2"'),
     "source.timeout_s", "expected a finite number"),
    ("injector-timeout-inf", edit('[injector]\nresource = "auto"\ntimeout_s = 2.0', '[injector]\nresource = "auto"\ntimeout_s = inf'),
     "injector.timeout_s", "finite number"),
    ("led-rate-zero", edit("sample_rate_hz = 50", "sample_rate_hz = 0"), "led_sensor.sample_rate_hz", "out of range"),
    ("led-rate-huge", edit("sample_rate_hz = 50", "sample_rate_hz = 100000"), "led_sensor.sample_rate_hz",
     "out of range"),
    ("led-baudrate", edit("[led_sensor]\nport = \"auto\"\nbaudrate = 115200", "[led_sensor]\nport = \"auto\"\nbaudrate = 12345"),
     "led_sensor.baudrate", "not a standard baud rate"),
    ("led-fixed-port", edit('[led_sensor]\nport = "auto"', '[led_sensor]\nport = "/dev/ttyACM0"'), "led_sensor.port",
     "silently replaced"),
    ("console-empty-port", edit('[console]\nport = "auto"', '[console]\nport = ""'), "console.port",
     "must not be empty"),
    ("central-ipv6", edit('host = "127.0.0.1"           # the rig', 'host = "::1"  # the rig'), "central.host", "IPv6"),
    ("central-host-empty", edit('host = "127.0.0.1"           # the rig', 'host = ""  # the rig'), "central.host",
     "neither an IPv4 address nor a host name"),
    ("central-port", edit('port = "auto"\ncharge_point_id', "port = 70000\ncharge_point_id"), "central.port",
     "out of range 1-65535"),
    ("cp-id-space", edit('charge_point_id = "auto"', 'charge_point_id = "SIM 0001"'), "central.charge_point_id",
     "not a charge point identity"),
    ("cp-id-slash", edit('charge_point_id = "auto"', 'charge_point_id = "SIM/0001"'), "central.charge_point_id",
     "no space or '/'"),
    ("cp-id-too-long", edit('charge_point_id = "auto"', 'charge_point_id = "' + "C" * 49 + '"'),
     "central.charge_point_id", "at most 48"),
    ("central-tls-string", edit("tls = true", 'tls = "yes"'), "central.tls", "expected true or false"),
    ("network-address", edit('address = "auto"             # every', 'address = "999.1.1.1"  # every'),
     "network.address", "not an IPv4 address"),
    ("netmask", edit('netmask = "255.255.255.0"', 'netmask = "255.0.255.0"'), "network.netmask", "not a netmask"),
    ("lease-beyond-32-bits", edit("dhcp_lease_s = 86400", "dhcp_lease_s = 4294967296"), "network.dhcp_lease_s",
     "32-bit"),
    ("lease-zero", edit("dhcp_lease_s = 86400", "dhcp_lease_s = 0"), "network.dhcp_lease_s", "out of range"),
    ("ttl-beyond-31-bits", edit("dns_ttl_s = 300", "dns_ttl_s = 2147483648"), "network.dns_ttl_s", "DNS TTL"),
    ("network-ports", edit('ports = "auto"', 'ports = "fixed"'), "network.ports", "is not one of"),
    ("real-bench-auto", edit('kind = "real"', 'kind = "real"', REAL).replace('port = "/dev/ttyUSB0"', 'port = "auto"', 1),
     "meter.port", "only for the emulated bench"),
    ("real-bench-mock", REAL.replace('pin_factory = "pigpio"', 'pin_factory = "mock"', 1), "pilot.pin_factory",
     "only for the emulated bench"),
]


def materialise(tmp_path: Path, content) -> Path:
    path = tmp_path / "rigs" / "bench.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    if content == "DIR":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path


def test_there_are_at_least_sixty_distinct_broken_files():
    assert len(CASES) >= 60
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("content, key, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rig_check_names_the_key(tmp_path, content, key, fragment):
    path = materialise(tmp_path, content)
    rig, errors = validate_rigfile(path)
    assert rig is None and errors, f"accepted: {path}"
    first = str(errors[0])
    assert first.startswith(f"{path}: {key}"), first
    assert fragment in first, first
    assert "\n" not in first


def pytest_run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("content, key, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_pytest_stops_before_collection_with_the_same_line(pytester, content, key, fragment):
    path = materialise(pytester.path, content)
    pytester.makepyfile(test_uses_rig="def test_x(rig):\n    raise AssertionError('must not run')\n")
    result = pytester.runpytest_inprocess("--rig", str(path), "--rig-reports", str(pytester.path / "reports"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.outlines + result.errlines
    errors = [ln for ln in result.errlines if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"ERROR: {path}: {key}"), errors
    assert fragment in errors[0], errors
    assert not (pytester.path / "reports").exists(), "a run that never started left records"
