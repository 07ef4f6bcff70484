"""`rig device serve` as a subprocess, the way a bench of its own sits beside the harness."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.harness.plugin_runs import PROJECT, child_env

READY_LINE = "device: ready"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class DeviceProcess:
    """Start with `start()`; `rig_file` is the printed real-bench rig file, `journal` the ground truth."""

    def __init__(self, tmp: Path, *args: str, central_port: int | None = None, wrap=None):
        self.tmp = tmp
        self.wrap = wrap  # e.g. Namespace.command: run the device inside a network namespace
        self.central_port = central_port or free_port()
        self.rig_file = tmp / "device-rig.toml"
        self.journal = tmp / "device-truth.jsonl"
        # its output goes to a file, not a pipe: a pipe the test stops reading fills up and then
        # blocks the device in the middle of whatever it was logging (every instrument with it)
        self.log = tmp / "device-output.log"
        self.args = ["--central", f"127.0.0.1:{self.central_port}", "--rig-file", str(self.rig_file),
                     "--journal", str(self.journal), *args]
        self.proc: subprocess.Popen | None = None

    @property
    def output(self) -> str:
        """Everything the device printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def command(self) -> list[str]:
        argv = [sys.executable, "-m", "rig.cli", "device", "serve", *self.args]
        return self.wrap(argv) if self.wrap else argv

    def start(self, timeout_s: float = 30) -> "DeviceProcess":
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.command(), cwd=PROJECT, env=child_env(), stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if READY_LINE in self.output:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError("the device never said it was ready:\n" + self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        """Stop it with `sig`; a device that has not exited after `timeout_s` is killed, and says so
        in `output` (a device that hangs on the way out is a finding, not noise)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with open(self.log, "a") as out:
                out.write(f"\n[test] the device did not exit within {timeout_s:g} s of signal {sig}; "
                          "its threads' stacks (SIGUSR1), then killed\n")
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def tail(self, chars: int = 3000) -> str:
        return f"--- the device's last output ---\n{self.output[-chars:]}"

    def truth(self) -> list[dict]:
        if not self.journal.exists():
            return []
        return [json.loads(line) for line in self.journal.read_text().splitlines() if line.strip()]

    def wait_for_truth(self, predicate, timeout_s: float) -> dict | None:
        """The first ground-truth line for which `predicate` holds, waiting up to `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.truth():
                if predicate(line):
                    return line
            time.sleep(0.1)
        return None
