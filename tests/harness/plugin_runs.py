"""Run pytest with the rig plugin in a child process, the way a station would, and read what it left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    returncode: int
    output: str  # stdout then stderr
    reports: Path
    stdout: str = ""  # alone: what comes last on the operator's screen (stderr's lines came when logged)

    def json(self, name: str) -> dict:
        return json.loads((self.reports / name).read_text())

    @property
    def junit(self) -> str:
        return (self.reports / "junit.xml").read_text()

    def outcome(self, fragment: str) -> str:
        tests = [t for t in self.json("run.json")["tests"] if fragment in t["nodeid"]]
        assert len(tests) == 1, f"{fragment!r} matches {[t['nodeid'] for t in tests]}"
        return tests[0]["outcome"]


def write_test(tmp: Path, body: str, name: str = "test_probe.py") -> Path:
    path = tmp / name
    path.write_text(textwrap.dedent(body))
    return path


def child_env(journal: Path | None = None) -> dict:
    env = dict(os.environ)
    env.pop("PYTEST_XDIST_WORKER", None)
    env.pop("PYTEST_ADDOPTS", None)
    if journal is not None:
        env["RIG_SIM_JOURNAL"] = str(journal)
    return env


def pytest_cmd(args: list[str], reports: Path) -> list[str]:
    """pytest as a station runs it. A probe file outside the checkout has no ini file of its own, so
    the rig is asked for on the command line (`--rig emulated`), as any user of the plugin does."""
    rig = [] if any(a == "--rig" or a.startswith("--rig=") for a in args) else ["--rig", "emulated"]
    return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *rig, "--rig-reports", str(reports),
            *args]


def run_pytest(args: list[str], tmp: Path, journal: Path | None = None, timeout: float = 300) -> Run:
    reports = tmp / "reports"
    proc = subprocess.run(
        pytest_cmd(args, reports), cwd=PROJECT, env=child_env(journal), capture_output=True, text=True, timeout=timeout
    )
    return Run(proc.returncode, proc.stdout + proc.stderr, reports)


def journal_lines(journal: Path) -> list[dict]:
    return [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]


def interrupt_when_ready(args: list[str], reports: Path, marker: Path, sig: int, journal: Path | None = None,
                         wait_s: float = 120) -> tuple[int, str]:
    """Run pytest, wait until the probe writes `marker` (it has reached the point to interrupt),
    send `sig`, and return (exit status, output)."""
    import subprocess
    import time

    proc = subprocess.Popen(pytest_cmd(args, reports), cwd=PROJECT, env=child_env(journal),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + wait_s
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the probe never reached the point to interrupt"
            time.sleep(0.05)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out


# a plugin (-p break_meter, on PYTHONPATH) that makes the emulated meter answer garbage in the metering tests
BREAK_METER = """
import pytest

@pytest.fixture(autouse=True)
def break_the_meter_in_metering_tests(request):
    if "test_metering" not in request.node.nodeid:
        yield
        return
    rig = request.getfixturevalue("rig_session")
    rig.bench.break_instrument("meter", "garbage")
    try:
        yield
    finally:
        rig.bench.break_instrument("meter", None)
"""
