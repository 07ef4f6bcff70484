"""`rig device serve` as a subprocess, the way a bench of its own sits beside the harness."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
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
        self.args = ["--central", f"127.0.0.1:{self.central_port}", "--rig-file", str(self.rig_file),
                     "--journal", str(self.journal), *args]
        self.proc: subprocess.Popen | None = None
        self.output = ""

    def command(self) -> list[str]:
        argv = [sys.executable, "-m", "rig.cli", "device", "serve", *self.args]
        return self.wrap(argv) if self.wrap else argv

    def start(self, timeout_s: float = 30) -> "DeviceProcess":
        self.proc = subprocess.Popen(self.command(), cwd=PROJECT, env=child_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout_s
        lines = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith(READY_LINE):
                self.output = "".join(lines)
                # keep reading: a device whose log fills the pipe would block mid-test
                self._drain = threading.Thread(target=self._read_rest, daemon=True)
                self._drain.start()
                return self
        self.stop()
        raise AssertionError("the device never said it was ready:\n" + "".join(lines))

    def _read_rest(self) -> None:
        for line in self.proc.stdout:
            self.output += line

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        drain = getattr(self, "_drain", None)
        if drain is not None:
            drain.join(timeout=5)
        else:
            self.output += self.proc.stdout.read() or ""
        return self.proc.returncode

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
