"""The `rig` command, run the way an operator runs it: a separate process, reading its output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rig.product.requirements import load_limits, load_requirements
from rig.sim.defects import CATALOGUE

REPO = Path(__file__).resolve().parents[2]
EMULATED = REPO / "rig" / "data" / "rigs" / "emulated.toml"
REAL = REPO / "rig" / "data" / "rigs" / "real-bench.example.toml"


def rig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rig.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def test_defects_lists_every_catalogued_defect_on_one_line():
    result = rig("defects")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(CATALOGUE)
    for line, defect in zip(lines, CATALOGUE.values()):
        assert line.split()[0] == defect.name and line.endswith(defect.description)


def test_check_emulated_bench_is_ok():
    result = rig("check", EMULATED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"ok: {EMULATED} (emulated bench 'emulated', PS22-S SIM-0001)")


def test_check_prints_one_line_per_mistake_to_stderr_and_exits_1(tmp_path):
    broken = tmp_path / "rigs" / "broken.toml"
    broken.parent.mkdir()
    text = EMULATED.read_text().replace("baudrate = 9600", 'baudrate = "fast"').replace("cp_c = 6", "cp_c = 5")
    broken.write_text(text)
    result = rig("check", broken)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f'{broken}: meter.baudrate: expected an integer, got "fast"',
        f"{broken}: pilot.pins.cp_c: BCM 5 is already used by pilot.pins.cp_b",
    ]


def test_check_real_bench_reaches_the_instruments(tmp_path):
    real = tmp_path / "rigs" / "real.toml"
    real.parent.mkdir()
    real.write_text(REAL.read_text().replace('"/dev/ttyUSB0"', f'"{tmp_path / "no-such-tty"}"'))
    result = rig("check", real, "--timeout", "0.2")
    assert result.returncode == 1
    assert f"{real}: meter.port: no such device {tmp_path / 'no-such-tty'}" in result.stderr


def test_check_real_bench_offline_checks_the_file_only():
    result = rig("check", REAL, "--offline")
    assert result.returncode == 0, result.stdout
    assert "real bench 'eol-station-3'" in result.stdout


def test_schema_describes_the_keys():
    result = rig("schema")
    assert result.returncode == 0
    assert "[meter]" in result.stdout and re.search(r"^  baudrate +integer +default 9600", result.stdout, re.M)


def test_requirements_one_per_line_with_m1_flag():
    result = rig("requirements")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    requirements = load_requirements()
    assert [line.split()[0] for line in lines] == list(requirements)
    assert lines[0] == f"LED-01   M1  {requirements['LED-01'].text}"
    assert any(line.startswith("SEC-02   --  ") for line in lines)
    m1_only = rig("requirements", "--m1").stdout.splitlines()
    assert len(m1_only) == sum(r.m1 for r in requirements.values())


def test_limits_key_value_unit_confidence_source():
    result = rig("limits")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    limits = load_limits()
    assert lines == [str(item) for item in limits.values()]
    close = limits["cp.contactor_close_max_s"]
    assert f"cp.contactor_close_max_s = {close.value:g} s [{close.confidence}] {close.source}" in lines
    assert all(re.fullmatch(r"\S+ = \S+( \S+)* \[[NSV]\] .+", line) for line in lines)


def test_limits_with_override(tmp_path):
    override = tmp_path / "mine.toml"
    override.write_text('[pen.trip_max_s]\nvalue = 4.0\nsource = "customer spec 12"\n')
    lines = rig("limits", "--limits", override).stdout.splitlines()
    confidence = load_limits()["pen.trip_max_s"].confidence
    assert f"pen.trip_max_s = 4 s [{confidence}] customer spec 12" in lines


def test_broken_limits_override_is_one_line_on_stderr(tmp_path):
    result = rig("limits", "--limits", tmp_path / "absent.toml")
    assert result.returncode == 1
    assert result.stderr == f"rig: {tmp_path / 'absent.toml'}: (file): no such limits file\n"


def test_version_and_usage_errors():
    from importlib.metadata import version

    result = rig("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"rig {version('plugstream-rig')}"
    result = rig("no-such-command")
    assert result.returncode == 2 and "invalid choice" in result.stderr


@pytest.mark.parametrize("content, fragment", [
    (None, "cannot read: No such file or directory"),
    ("{not json", "not JSON: "),
    ('{"runs": 3}', "not a records export"),
    ('{"runs": [{"run": {}}]}', "incomplete or malformed"),
])
def test_records_import_of_a_bad_file_is_one_line(tmp_path, content, fragment):
    path = tmp_path / "export.json"
    if content is not None:
        path.write_text(content)
    result = rig("records", "import", path, "--db", f"sqlite:///{tmp_path / 'r.sqlite'}")
    assert result.returncode == 1, result.stderr
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"rig: {path}: ") and fragment in result.stderr, result.stderr


@pytest.mark.parametrize("url, fragment", [
    ("not a url", "not a usable database URL"),
    ("nosuchdb://x/y", "not a usable database URL"),
    ("mysql+mysqldb://u@127.0.0.1:1/db", "driver is not installed"),
    ("postgresql+psycopg://u@127.0.0.1:1/db", "Connection refused"),
])
def test_records_against_a_bad_store_url_is_one_line(tmp_path, url, fragment):
    result = rig("records", "list", "--db", url)
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.splitlines()) == 1 and fragment in result.stderr, result.stderr


def test_records_list_on_a_file_that_is_no_database_is_one_line(tmp_path):
    junk = tmp_path / "results.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    result = rig("records", "list", "--db", f"sqlite:///{junk}")
    assert result.returncode == 1, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "file is not a database" in result.stderr, result.stderr
