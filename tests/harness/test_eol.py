"""End-of-line mode on the emulated bench, run as a station runs it: a child pytest with --eol.

A good unit ends in PASS with its record and certificate; a known-bad unit in FAIL naming the
requirements it broke; a broken instrument in RIG FAULT - RETEST naming the instrument, never
FAIL; another unit on the station in WRONG UNIT; no serial number and no terminal in a usage
error; a serial scanned at the terminal is read even though pytest captures output.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import subprocess
import termios
import textwrap
import time
from pathlib import Path

from rig.station.certificate import render_certificate
from rig.station.eol import EXIT_FAIL, EXIT_PASS, EXIT_RETEST, PROMPT, big
from rig.results.store import FAIL, PASS, RIG_FAULT, WRONG_UNIT, ResultsStore
from tests.harness.plugin_runs import BREAK_METER, PROJECT, Run, child_env, pytest_cmd

SERIAL = "SIM-0001"  # rig/data/rigs/emulated.toml [product] serial
EOL_SELECTION = {
    "rig/spec/test_boot_and_led.py::test_power_on_rainbow_then_white_until_accepted_then_blue",
    "rig/spec/test_boot_and_led.py::test_vehicle_charging_is_green_pulsing",
    "rig/spec/test_control_pilot.py::test_state_a_steady_plus_12v_no_pwm_contactor_open",
    "rig/spec/test_control_pilot.py::test_state_b_pwm_1khz_minus_12v_duty_for_offered_current",
    "rig/spec/test_control_pilot.py::test_contactor_closes_within_3s_of_state_c_and_never_in_b",
    "rig/spec/test_control_pilot.py::test_contactor_opens_within_100ms_of_c_to_b",
    "rig/spec/test_metering.py::test_phases_and_rated_current",
    "rig/spec/test_modes_and_ocpp.py::test_plug_and_charge_starts_by_itself",
}
HAZARDOUS_EOL = "rig/spec/test_residual_current.py::test_sudden_smooth_dc_trips_within_its_time[6mA]"



def run_eol(tmp: Path, *args: str, env: dict | None = None, **popen) -> Run:
    reports = tmp / "reports"
    proc = subprocess.run(pytest_cmd(["rig/spec", "--eol", *args], reports), cwd=PROJECT,
                          env=env or child_env(), capture_output=True, text=True, timeout=300, **popen)
    return Run(proc.returncode, proc.stdout + proc.stderr, reports, proc.stdout)


def the_run(run: Run) -> dict:
    store = ResultsStore(f"sqlite:///{run.reports / 'results.sqlite'}")
    [r] = store.recent_runs()
    return store.run_detail(r["run_id"])


def has_banner(output: str, word: str) -> bool:
    return "\n".join(big(word)) in output


def certificates(run: Run) -> list[Path]:
    return sorted((run.reports / "certificates").glob("*.html")) if (run.reports / "certificates").exists() else []


# ---------------------------------------------------------------------- verdicts
def test_good_unit_passes_with_record_and_certificate(tmp_path):
    started = time.monotonic()
    run = run_eol(tmp_path, "--serial", SERIAL, "--operator", "alice")
    wall = time.monotonic() - started
    assert run.returncode == EXIT_PASS, run.output
    assert has_banner(run.output, "PASS") and not has_banner(run.output, "FAIL"), run.output
    assert run.stdout.rstrip().splitlines()[-1].startswith("=" * 72), "the banner must come last"
    record = the_run(run)
    assert (record["verdict"], record["mode"], record["serial"], record["expected_serial"], record["operator"]) == (
        PASS, "eol", SERIAL, SERIAL, "alice")
    assert record["firmware"].startswith("PS-FW") and record["model"] == "PlugStream 22"
    assert {t["nodeid"] for t in record["tests"]} == EOL_SELECTION
    assert all(t["verdict"] == "passed" for t in record["tests"])
    [cert] = certificates(run)
    assert cert.name.startswith(f"{SERIAL}-")
    html = cert.read_text()
    for text in (SERIAL, "alice", "PlugStream 22", record["firmware"], "PASS", "CP high level in state A",
                 "IEC 61851-1:2017 Annex A", "contactor close after B-&gt;C", "CP-04"):
        assert text in html, text
    assert "<script" not in html and "http" not in html.split("<body>")[0]  # self-contained
    print(f"end-of-line run on the emulated bench: {wall:.1f} s wall")


def test_known_bad_unit_fails_naming_its_requirements(tmp_path):
    run = run_eol(tmp_path, "--serial", SERIAL, "--sim-defect", "duty-offset")
    assert run.returncode == EXIT_FAIL, run.output
    assert has_banner(run.output, "FAIL") and not has_banner(run.output, "PASS"), run.output
    failed = re.search(r"FAILED REQUIREMENTS: (.*)", run.output).group(1).split(", ")
    assert {"CP-02", "CP-06"} <= set(failed), failed
    record = the_run(run)
    assert record["verdict"] == FAIL and "CP-06" in record["verdict_detail"]
    [cert] = certificates(run)
    html = cert.read_text()
    assert "verdict fail" in html and "duty for 32 A" in html and "OUT" in html


def test_broken_instrument_is_a_rig_fault_never_a_unit_fail(tmp_path):
    (tmp_path / "break_meter.py").write_text(textwrap.dedent(BREAK_METER))
    env = dict(child_env(), PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    run = run_eol(tmp_path, "--serial", SERIAL, "-p", "break_meter", env=env)
    assert run.returncode == EXIT_RETEST, run.output  # never 1: a line controller must not scrap the unit
    assert has_banner(run.output, "RIG FAULT") and has_banner(run.output, "RETEST"), run.output
    assert not has_banner(run.output, "FAIL") and not has_banner(run.output, "PASS")
    assert re.search(r"RIG FAULT on: meter\b", run.output), run.output
    assert "NOT a unit failure" in run.output
    record = the_run(run)
    assert record["verdict"] == RIG_FAULT and "meter:" in record["verdict_detail"]
    errored = [t for t in record["tests"] if t["verdict"] == "error"]
    assert [t["instrument"] for t in errored] == ["meter"]
    assert certificates(run) == [], "a rig fault gets no certificate: the unit is retested"


def test_wrong_unit_on_the_station_is_caught_before_testing(tmp_path):
    run = run_eol(tmp_path, "--serial", "SIM-9999")
    assert run.returncode != 0
    assert has_banner(run.output, "WRONG UNIT"), run.output
    assert "scanned SIM-9999, the unit on the station reports SIM-0001" in run.output
    record = the_run(run)
    assert (record["verdict"], record["serial"], record["expected_serial"]) == (WRONG_UNIT, SERIAL, "SIM-9999")
    assert len(record["tests"]) == 1, "the run stops at the first test"
    assert certificates(run) == []


# ---------------------------------------------------------------------- the serial number
def test_no_serial_and_no_terminal_is_a_usage_error(tmp_path):
    run = run_eol(tmp_path, start_new_session=True, stdin=subprocess.DEVNULL)  # no controlling terminal
    assert run.returncode == 4, run.output  # pytest's usage error
    assert "--eol needs the serial number of the unit on the station: give --serial SN" in run.output
    assert not (run.reports / "results.sqlite").exists()


def test_serial_scanned_at_the_terminal(tmp_path):
    master, slave = os.openpty()
    reports = tmp_path / "reports"
    cmd = pytest_cmd(["rig/spec", "--eol", "-k", "state_a"], reports)
    proc = subprocess.Popen(cmd, cwd=PROJECT, env=child_env(), stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
    os.close(slave)
    seen = b""
    try:
        seen = read_until(master, PROMPT.encode(), proc, timeout=60)
        os.write(master, f"{SERIAL}\r".encode())  # a barcode scanner ends with CR
        seen += read_until(master, None, proc, timeout=120)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    text = re.sub(r"\x1b\[[0-9;]*m", "", seen.decode(errors="replace")).replace("\r\n", "\n")  # a terminal gets colours
    assert proc.returncode == 0, text
    assert has_banner(text, "PASS"), text
    record = the_run(Run(0, text, reports))
    assert record["expected_serial"] == SERIAL and record["verdict"] == PASS


def read_until(fd: int, marker: bytes | None, proc, timeout: float) -> bytes:
    """Read the terminal until `marker` appears (None: until the process closes it)."""
    got, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker is not None and marker in got:
            return got
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return got
        if not chunk:
            return got
        got += chunk
    raise AssertionError(f"terminal: {marker!r} not seen within {timeout} s: {got[-2000:]!r}")


# ---------------------------------------------------------------------- the selection
def collected(tmp: Path, *args: str) -> set[str]:
    run = run_eol(tmp, "--collect-only", *args)
    assert run.returncode == 0, run.output
    return {ln.strip() for ln in run.output.splitlines() if ln.startswith("rig/spec/")}


def test_eol_selection_is_the_marked_tests_hazardous_only_on_request(tmp_path):
    assert collected(tmp_path) == EOL_SELECTION
    assert collected(tmp_path, "--hazardous") == EOL_SELECTION | {HAZARDOUS_EOL}


def test_certificate_escapes_every_text():
    html = render_certificate({
        "run_id": "r1", "verdict": "fail", "failing_requirements": ["<b>CP-06</b>"],
        "unit": {"serial": "SN<1>", "model": "M&M", "variant": None, "firmware": "\"fw\"", "vendor": None},
        "rig": {"name": "<script>alert(1)</script>", "file": "x"}, "operator": "O'Brien", "host": "h",
        "started_at": __import__("datetime").datetime(2025, 1, 1), "ended_at": None, "requirement_texts": {},
        "tests": [{"nodeid": "t.py::test_<x>", "verdict": "failed", "requirements": ["<b>CP-06</b>"],
                   "message": "E <i>", "measurements": [{"name": "<m>", "value": 1.0, "unit": "<u>", "low": 0.0,
                                                         "high": 2.0, "limit_source": "<s>", "resolution": None,
                                                         "passed": True}]}],
    })
    assert "<script>" not in html and "<b>" not in html and "<m>" not in html and "<i>" not in html
    assert "&lt;script&gt;" in html and "SN&lt;1&gt;" in html and "O&#x27;Brien" in html


# ---------------------------------------------------------------------- the record comes first
def test_a_store_that_cannot_be_written_stops_the_run_before_testing_as_a_rig_fault(tmp_path):
    junk = tmp_path / "not-a-database.sqlite"
    junk.write_bytes(b"this is not a database " * 200)
    run = run_eol(tmp_path, "--serial", SERIAL, "--results-db", f"sqlite:///{junk}")
    assert run.returncode == EXIT_RETEST, run.output
    assert has_banner(run.output, "RETEST") and not has_banner(run.output, "PASS"), run.output
    assert "results store" in run.output and "file is not a database" in run.output, run.output
    assert "record: NOT in the results store" in run.output
    assert not (run.reports / "run.json").exists() or not json.loads((run.reports / "run.json").read_text())["tests"]
    assert certificates(run) == []


def test_a_malformed_store_url_stops_before_testing(tmp_path):
    run = run_eol(tmp_path, "--serial", SERIAL, "--results-db", "postgresql+nosuchdriver://u@h/db")
    assert run.returncode == EXIT_RETEST, run.output
    assert "not a usable database URL" in run.output, run.output
    assert certificates(run) == []
