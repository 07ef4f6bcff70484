"""The rig-file loader: both shipped files load, and every class of mistake is one line naming the key.

Broken files are written into tmp_path from the emulated (or real-bench example) file with
one thing changed, so each test shows exactly which mistake produces which message.
Reachability is tested against real loopback sockets: a listening one, and a closed one.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import tomllib
from pathlib import Path
from typing import Callable

import pytest

from rig.core.errors import RigFileError
from rig.core.rigfile import (
    INSTRUMENT_SECTIONS,
    SCHEMA,
    SECTION_CLASSES,
    SECTIONS,
    check_reachable,
    describe_schema,
    load_profile,
    load_rigfile,
    validate_rigfile,
    with_model,
)

REPO = Path(__file__).resolve().parents[2]
EMULATED = REPO / "rig" / "data" / "rigs" / "emulated.toml"
REAL = REPO / "rig" / "data" / "rigs" / "real-bench.example.toml"


# --- helpers ----------------------------------------------------------------------------------

def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    return repr(value)


def dump_toml(data: dict, prefix: str = "") -> str:
    """Enough of a TOML writer for rig files: scalars and lists first, then sub-tables."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in ((k, v) for k, v in data.items() if isinstance(v, dict)):
        dotted = f"{prefix}.{name}" if prefix else name
        lines += ["", f"[{dotted}]", dump_toml(table, dotted)]
    return "\n".join(lines)


def rig_data(source: Path = EMULATED) -> dict:
    return tomllib.loads(source.read_text())


def write_rig(tmp_path: Path, data: dict, name: str = "bench.toml") -> Path:
    """Write into tmp/rigs/ so the profile is found through the shipped rig/data/profiles."""
    path = tmp_path / "rigs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_toml(data))
    return path


def errors_for(tmp_path: Path, change: Callable[[dict], None], source: Path = EMULATED) -> tuple[Path, list[str]]:
    data = rig_data(source)
    change(data)
    path = write_rig(tmp_path, data)
    rig, errors = validate_rigfile(path)
    assert (rig is None) == bool(errors)
    return path, [str(e) for e in errors]


def set_key(dotted: str, value) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, leaf = dotted.split(".")
        table = data
        for part in parents:
            table = table[part]
        table[leaf] = value
    return change


def delete_key(dotted: str) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, leaf = dotted.split(".")
        table = data
        for part in parents:
            table = table[part]
        del table[leaf]
    return change


def rename_key(dotted: str, new_leaf: str) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        *parents, leaf = dotted.split(".")
        table = data
        for part in parents:
            table = table[part]
        table[new_leaf] = table.pop(leaf)
    return change


# --- the shipped files ------------------------------------------------------------------------

@pytest.mark.parametrize("path", [EMULATED, REAL], ids=["emulated", "real-example"])
def test_shipped_rig_files_load(path):
    rig = load_rigfile(path)
    assert rig.path == path
    assert rig.product.profile == "plugstream" and rig.product.model == ("PS22-S" if path == EMULATED else "PS7")
    assert rig.pilot.pins.cp_b == 5 and rig.pilot.adc.chip == "MCP3208"
    assert rig.pilot.pp_ladder.ohms(3) == 220
    assert rig.meter.baudrate == 9600 and rig.meter.timeout_s == 0.5
    assert rig.profile_path == REPO / "rig" / "data" / "profiles" / "plugstream.toml"


def test_emulated_file_keeps_auto_and_reads_as_dicts():
    rig = load_rigfile(EMULATED)
    assert rig.bench.emulated
    meter = rig.section("meter")
    assert meter == {"model": "SDM630", "transport": "rtu", "port": "auto", "host": "127.0.0.1",
                     "baudrate": 9600, "parity": "N", "stopbits": 1, "unit": 1, "timeout_s": 0.5, "attempts": 3}
    assert rig.section("pilot")["pins"]["sense_pe"] == 24
    assert rig.section("pilot.pp_ladder") == {"codes": [0, 1500, 680, 220, 100, 47, 3300, 10000]}
    assert rig.charge_point_id == "SIM-0001"  # "auto" = the unit's serial
    for name in INSTRUMENT_SECTIONS:
        assert isinstance(rig.section(name), dict)


def test_sections_are_copies_and_the_rig_file_is_frozen():
    rig = load_rigfile(EMULATED)
    rig.section("meter")["port"] = "/dev/changed"
    assert rig.section("meter")["port"] == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        rig.meter.port = "/dev/changed"
    with pytest.raises(KeyError, match="no section"):
        rig.section("metre")


def test_optional_keys_get_their_defaults(tmp_path):
    data = rig_data()
    for key in ("baudrate", "parity", "stopbits", "unit", "timeout_s", "host"):
        del data["meter"][key]
    del data["load"]["timeout_s"]
    rig = load_rigfile(write_rig(tmp_path, data))
    assert (rig.meter.baudrate, rig.meter.parity, rig.meter.stopbits, rig.meter.unit) == (9600, "N", 1, 1)
    assert rig.section("load") == {"resource": "auto", "timeout_s": 2.0, "attempts": 3, "visa_library": "@py",
                                   "phases": 0}


def test_integer_where_a_number_is_expected_reads_as_float(tmp_path):
    data = rig_data()
    data["load"]["timeout_s"] = 3
    rig = load_rigfile(write_rig(tmp_path, data))
    assert rig.load.timeout_s == 3.0 and isinstance(rig.section("load")["timeout_s"], float)


def test_every_schema_section_has_its_dataclass_with_the_same_fields():
    for section in SECTIONS:
        fields = {f.name for f in dataclasses.fields(SECTION_CLASSES[section])}
        keys = {k.short for k in SCHEMA if k.section == section}
        subsections = {s.rpartition(".")[2] for s in SECTIONS if s.rpartition(".")[0] == section}
        assert fields == keys | subsections, section


def test_describe_schema_lists_every_key_under_its_section():
    text = describe_schema()
    for section in SECTIONS:
        assert f"[{section}]" in text
    for key in SCHEMA:
        assert f"  {key.short} " in text, key.name
    assert "SDM630 | SDM120" in text


# --- one line per mistake ---------------------------------------------------------------------

MISTAKES = [
    # (id, change, expected message after "<path>: ")
    ("missing-section", delete_key("meter"), "meter: missing section [meter]"),
    ("missing-subsection", delete_key("pilot.pins"), "pilot.pins: missing section [pilot.pins]"),
    ("missing-key", delete_key("meter.port"), "meter.port: missing required key"),
    ("missing-pin", delete_key("pilot.pins.cp_e"), "pilot.pins.cp_e: missing required key"),
    ("unknown-key", rename_key("meter.baudrate", "baudrat"), 'meter.baudrat: unknown key; did you mean "baudrate"?'),
    ("unknown-nested-key", rename_key("pilot.adc.cp_low_channel", "cp_lo_channel"),
     'pilot.adc.cp_lo_channel: unknown key; did you mean "cp_low_channel"?'),
    ("wrong-type", set_key("meter.baudrate", "fast"), 'meter.baudrate: expected an integer, got "fast"'),
    ("wrong-type-number", set_key("pilot.adc.volts_per_count", "0.007"),
     'pilot.adc.volts_per_count: expected a finite number, got "0.007"'),
    ("bool-is-not-int", set_key("meter.unit", True), "meter.unit: expected an integer, got true"),
    ("table-for-scalar", set_key("meter.host", {"name": "x"}), "meter.host: expected a string, got a table"),
    ("section-not-table", set_key("console", "auto"), 'console: expected a table [console], got "auto"'),
    ("ladder-list", set_key("pilot.pp_ladder.codes", [0, 1500, "680"]),
     'pilot.pp_ladder.codes: expected a list of integers, got [0, 1500, "680"]'),
    ("enum-pin-factory", set_key("pilot.pin_factory", "Mock"),
     'pilot.pin_factory: "Mock" is not one of mock, pigpio, lgpio, rpigpio; did you mean "mock"?'),
    ("enum-meter-model", set_key("meter.model", "SDM63"),
     'meter.model: "SDM63" is not one of SDM630, SDM120; did you mean "SDM630"?'),
    ("enum-transport", set_key("meter.transport", "udp"), 'meter.transport: "udp" is not one of rtu, tcp'),
    ("enum-parity", set_key("meter.parity", "X"), 'meter.parity: "X" is not one of N, E, O'),
    ("enum-bench-kind", set_key("bench.kind", "virtual"), 'bench.kind: "virtual" is not one of emulated, real'),
    ("pin-range", set_key("pilot.pins.cp_b", 28), "pilot.pins.cp_b: 28 is out of range 0-27 (BCM GPIO numbers)"),
    ("pin-negative", set_key("pilot.pins.sense_pe", -1), "pilot.pins.sense_pe: -1 is out of range 0-27"),
    ("pin-twice", set_key("pilot.pins.cp_c", 5), "pilot.pins.cp_c: BCM 5 is already used by pilot.pins.cp_b"),
    ("baudrate", set_key("meter.baudrate", 9601), "meter.baudrate: 9601 is not a standard baud rate"),
    ("port-range", set_key("central.port", 70000), "central.port: 70000 is out of range 1-65535 (TCP ports)"),
    ("port-zero", set_key("pilot.port", 0), "pilot.port: 0 is out of range 1-65535"),
    ("modbus-unit", set_key("meter.unit", 248), "meter.unit: 248 is out of range 1-247"),
    ("timeout-zero", set_key("meter.timeout_s", 0.0), "meter.timeout_s: 0.0 s is out of range 0.01-10 s"),
    ("ladder-length", set_key("pilot.pp_ladder.codes", [0, 1500, 680]),
     "pilot.pp_ladder.codes: expected 8 entries (3-bit selector code 0-7), got 3"),
    ("adc-channel-chip", lambda d: d["pilot"]["adc"].update(chip="MCP3202", cp_low_channel=3),
     "pilot.adc.cp_low_channel: 3 is out of range for MCP3202 (channels 0-1)"),
    ("adc-same-channel", set_key("pilot.adc.cp_low_channel", 0),
     "pilot.adc.cp_low_channel: channel 0 is already pilot.adc.cp_high_channel"),
    ("rtu-with-tcp-port", set_key("meter.port", 502), 'meter.port: transport "rtu" needs a serial device path, got 502'),
    ("tcp-with-device", lambda d: d["meter"].update(transport="tcp", port="/dev/ttyUSB0"),
     'meter.port: transport "tcp" needs a TCP port number, got "/dev/ttyUSB0"'),
    ("auto-where-not-allowed", set_key("product.serial", "auto"), 'product.serial: "auto" is not accepted here'),
    ("empty-serial", set_key("product.serial", "  "), "product.serial: must not be empty"),
    ("emulated-real-pins", set_key("pilot.pin_factory", "pigpio"),
     'pilot.pin_factory: the emulated bench drives gpiozero mock pins; use "mock", not "pigpio"'),
    ("profile-missing", set_key("product.profile", "plugsteam"), 'product.profile: no profile "plugsteam"'),
    ("model-missing", set_key("product.model", "PS8"),
     'product.model: "PS8" is not a model of profile "plugstream"; did you mean "PS7"?'),
]


@pytest.mark.parametrize("change, expected", [m[1:] for m in MISTAKES], ids=[m[0] for m in MISTAKES])
def test_each_mistake_is_one_line_naming_the_key(tmp_path, change, expected):
    path, errors = errors_for(tmp_path, change)
    assert len(errors) == 1, errors  # one mistake, one line: no cascade of follow-on noise
    assert errors[0].startswith(f"{path}: {expected}"), errors[0]
    assert "\n" not in errors[0]


def test_load_raises_the_first_problem_as_rig_file_error(tmp_path):
    data = rig_data()
    data["meter"]["baudrate"] = "fast"
    path = write_rig(tmp_path, data)
    with pytest.raises(RigFileError) as caught:
        load_rigfile(path)
    assert str(caught.value) == f'{path}: meter.baudrate: expected an integer, got "fast"'
    assert (caught.value.key, caught.value.path) == ("meter.baudrate", str(path))


def test_every_problem_is_collected_for_rig_check(tmp_path):
    def two_mistakes(data):
        data["meter"]["baudrate"] = "fast"
        data["pilot"]["pins"]["cp_d"] = 5

    _, errors = errors_for(tmp_path, two_mistakes)
    assert [e.split(": ")[1] for e in errors] == ["meter.baudrate", "pilot.pins.cp_d"]


def test_misspelt_section_is_one_line_suggesting_the_right_one(tmp_path):
    path, errors = errors_for(tmp_path, rename_key("meter", "metre"))
    assert errors == [f'{path}: metre: unknown section; did you mean "meter"?']


def test_unknown_key_without_a_close_match_lists_the_known_ones_and_the_missing_key(tmp_path):
    path, errors = errors_for(tmp_path, rename_key("console.port", "device"))
    assert errors == [f"{path}: console.device: unknown key; known: port, baudrate, timeout_s, attempts",
                      f"{path}: console.port: missing required key (serial device of the charger's service console)"]


def test_toml_syntax_error_names_the_line(tmp_path):
    text = EMULATED.read_text()
    line = text.splitlines().index("baudrate = 9600") + 1
    path = tmp_path / "broken.toml"
    path.write_text(text.replace("baudrate = 9600", "baudrate = ", 1))
    _, errors = validate_rigfile(path)
    assert len(errors) == 1
    assert str(errors[0]).startswith(f"{path}: line {line}: TOML syntax error: Invalid value")


def test_missing_file_is_one_line(tmp_path):
    _, errors = validate_rigfile(tmp_path / "nope.toml")
    assert [str(e) for e in errors] == [f"{tmp_path / 'nope.toml'}: (file): no such file"]


# --- real benches -----------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["meter.port", "load.resource", "source.resource", "injector.resource",
                                 "led_sensor.port", "console.port", "central.port"])
def test_real_bench_refuses_auto(tmp_path, key):
    path, errors = errors_for(tmp_path, set_key(key, "auto"), source=REAL)
    assert errors == [f'{path}: {key}: "auto" is only for the emulated bench; give the real address']


def test_real_bench_accepts_auto_charge_point_id_meaning_the_serial():
    rig = load_rigfile(REAL)
    assert rig.central.charge_point_id == "auto" and rig.charge_point_id == "PS7T-2611-000123"


def test_real_bench_refuses_mock_pins(tmp_path):
    path, errors = errors_for(tmp_path, set_key("pilot.pin_factory", "mock"), source=REAL)
    assert errors == [f'{path}: pilot.pin_factory: "mock" is only for the emulated bench; use pigpio, lgpio or rpigpio']


@pytest.mark.parametrize("resource, fragment", [
    ("TCPIP0::10.20.0.21::SOCKET", "is not a VISA resource string"),
    ("10.20.0.21:5025", "is not a VISA resource string"),
    ("TCPIP0::10.20.0.21::scpi::SOCKET", "has no valid TCP port"),
    ("TCPIP0::10.20.0.21::99999::SOCKET", "has no valid TCP port"),
])
def test_malformed_visa_resource(tmp_path, resource, fragment):
    path, errors = errors_for(tmp_path, set_key("load.resource", resource), source=REAL)
    assert len(errors) == 1 and errors[0].startswith(f'{path}: load.resource: "{resource}" {fragment}')


@pytest.mark.parametrize("resource", ["TCPIP0::10.20.0.21::inst0::INSTR", "USB0::0x1AB1::0x0E11::DP8C1234::INSTR",
                                      "ASRL/dev/ttyUSB3::INSTR", "GPIB0::12::INSTR"])
def test_other_visa_resources_are_accepted(tmp_path, resource):
    _, errors = errors_for(tmp_path, set_key("load.resource", resource), source=REAL)
    assert errors == []


def test_profile_beside_the_rig_file_is_preferred(tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "bench-only.toml").write_text('[product]\nvendor = "X"\n[models.X1]\nphases = 1\n')
    data = rig_data()
    data["product"].update(profile="bench-only", model="X1")
    rig = load_rigfile(write_rig(tmp_path, data))
    assert rig.profile_path == (profiles / "bench-only.toml").resolve()
    assert load_profile(rig)["phases"] == 1


# --- profiles and models ----------------------------------------------------------------------

def test_load_profile_merges_product_and_model():
    profile = load_profile(load_rigfile(EMULATED))
    assert profile["product"]["vendor"] == "PlugStream"
    assert profile["product"]["model"] == "PS22-S" and profile["product"]["serial"] == "SIM-0001"
    assert (profile["phases"], profile["connector"]) == (3, "socket")
    assert profile["ocpp"]["path_prefix"] == "/ocpp/"
    assert load_profile("plugstream", model="PS7")["phases"] == 1


def test_load_profile_by_name_without_model_is_the_file_as_is():
    profile = load_profile("plugstream")
    assert set(profile["models"]) == {"PS7", "PS7-S", "PS22", "PS22-S", "PS22-E"}
    assert "phases" not in profile


def test_with_model_replaces_only_the_model():
    rig = load_rigfile(EMULATED)
    other = with_model(rig, "PS7")
    assert other.product.model == "PS7" and other.section("product")["model"] == "PS7"
    assert rig.product.model == "PS22-S" and rig.section("product")["model"] == "PS22-S"
    assert load_profile(other)["connector"] == "tethered"


def test_with_unknown_model_names_the_key():
    with pytest.raises(RigFileError, match=r'product\.model: "PS23" is not a model of profile "plugstream"'):
        with_model(load_rigfile(EMULATED), "PS23")


# --- reachability -----------------------------------------------------------------------------

@pytest.fixture
def listening():
    """A loopback TCP port something listens on (the kernel accepts without accept())."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture
def closed():
    """A loopback TCP port nothing listens on: bound, never listening, so connects are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reachable_real_bench(tmp_path: Path, listening: int) -> dict:
    """A real-bench file whose every address exists: device files in tmp, SCPI on a live port."""
    data = rig_data(REAL)
    devices = {name: tmp_path / name for name in ("ttyUSB0", "led", "console")}
    for device in devices.values():
        device.touch()
    data["pilot"].update(pin_factory="lgpio")
    data["meter"]["port"] = str(devices["ttyUSB0"])
    data["led_sensor"]["port"] = str(devices["led"])
    data["console"]["port"] = str(devices["console"])
    for name in ("load", "source", "injector"):
        data[name]["resource"] = f"TCPIP0::127.0.0.1::{listening}::SOCKET"
    data["central"].update(host="127.0.0.1", port=free_port())
    return data


def test_reachable_real_bench_has_no_problems(tmp_path, listening):
    rig = load_rigfile(write_rig(tmp_path, reachable_real_bench(tmp_path, listening)))
    assert check_reachable(rig, timeout_s=0.5) == []


def test_closed_meter_port_is_reported_on_its_key(tmp_path, listening, closed):
    data = reachable_real_bench(tmp_path, listening)
    data["meter"].update(transport="tcp", host="127.0.0.1", port=closed)
    path = write_rig(tmp_path, data)
    problems = check_reachable(load_rigfile(path), timeout_s=0.5)
    assert len(problems) == 1
    assert problems[0].startswith(f"{path}: meter.port: cannot connect to 127.0.0.1:{closed}")


def test_closed_visa_and_pigpio_ports_are_reported_on_their_keys(tmp_path, listening, closed):
    data = reachable_real_bench(tmp_path, listening)
    data["injector"]["resource"] = f"TCPIP0::127.0.0.1::{closed}::SOCKET"
    data["pilot"].update(pin_factory="pigpio", host="127.0.0.1", port=closed)
    path = write_rig(tmp_path, data)
    problems = check_reachable(load_rigfile(path), timeout_s=0.5)
    assert [p.split(": ")[1] for p in problems] == ["injector.resource", "pilot.host"]


def test_missing_serial_device_and_busy_central_port(tmp_path, listening):
    data = reachable_real_bench(tmp_path, listening)
    data["console"]["port"] = str(tmp_path / "unplugged")
    data["central"]["port"] = listening  # taken by the listening socket
    path = write_rig(tmp_path, data)
    problems = check_reachable(load_rigfile(path), timeout_s=0.5)
    assert problems == [
        f"{path}: console.port: no such device {tmp_path / 'unplugged'} (adapter unplugged? see ls /dev/serial/by-id)",
        f"{path}: central.port: the central system cannot listen on 127.0.0.1:{listening}: Address already in use",
    ]


def test_reachability_is_not_for_the_emulated_bench():
    with pytest.raises(RigFileError, match="bench.kind: reachability is only checked on a real bench"):
        check_reachable(load_rigfile(EMULATED))


# --- the schema is the one source of truth for every key a driver reads ----------------------

#: driver file -> the rig-file sections it is built from (ac_load.py, injector.py and console.py
#: read nothing themselves: their bases, scpi.py and serial_line.py, do)
DRIVER_SECTIONS = {
    "meter.py": ("meter",), "scpi.py": ("load", "source", "injector"), "ac_source.py": ("source",),
    "led_sensor.py": ("led_sensor",), "serial_line.py": ("led_sensor", "console"), "pilot.py": ("pilot",),
}


def _keys_read(source: str, variable: str) -> set[str]:
    import re

    pattern = rf"\b{variable}(?:\.get\(|\[)\s*[\"']([a-z_]+)[\"']"
    return set(re.findall(pattern, source))


@pytest.mark.parametrize("driver", sorted(DRIVER_SECTIONS))
def test_every_key_a_driver_reads_is_in_the_schema(driver):
    source = (REPO / "rig" / "instruments" / driver).read_text()
    read = _keys_read(source, "config") | _keys_read(source, "self.config")
    known = {k.short for k in SCHEMA for section in DRIVER_SECTIONS[driver] if k.section == section}
    known |= {s.rpartition(".")[2] for s in SECTIONS for section in DRIVER_SECTIONS[driver]
              if s.startswith(section + ".")}  # sub-tables: pilot.pins, pilot.adc, ...
    assert read, f"{driver}: no config keys found: has the driver stopped reading a dict?"
    assert read <= known, f"{driver} reads keys the rig-file schema does not know: {sorted(read - known)}"


def test_every_key_the_pilot_reads_from_its_adc_table_is_in_the_schema():
    source = (REPO / "rig" / "instruments" / "pilot.py").read_text()
    read = _keys_read(source, "adc")
    known = {k.short for k in SCHEMA if k.section == "pilot.adc"}
    assert read and read <= known, sorted(read - known)


def test_a_model_key_that_is_a_safety_key_sets_it_for_that_model():
    """PEN-07: the -E export variant keeps protective earth; every other model opens it."""
    export, other = load_profile("plugstream", "PS22-E"), load_profile("plugstream", "PS22-S")
    assert export["safety"]["pen_opens_earth"] is False and other["safety"]["pen_opens_earth"] is True
    assert export["safety"]["pen_over_error_code"] == other["safety"]["pen_over_error_code"]
