"""`rig station` as a process of its own, reached over HTTP as a browser reaches it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.harness.plugin_runs import BREAK_METER, child_env

RIG = Path(sys.executable).with_name("rig")
PANEL = re.compile(r"panel: (http://\S+/)")


# A known-bad unit the end-of-line selection catches (CP-02/CP-06), and a meter that answers garbage
DEFECT = "duty-offset"
# A station of three: a good unit (A), that known-bad unit (B), a broken meter (C)
THREE_SOCKETS = """
[[socket]]
name = "A"
rig = "emulated"

[[socket]]
name = "B"
rig = "emulated"
args = ["--sim-defect", "%s"]

[[socket]]
name = "C"
rig = "emulated"
args = ["-p", "break_meter"]
""" % DEFECT


def station_file(tmp: Path, sockets: str, **station) -> Path:
    """A station file of `sockets` (TOML [[socket]] tables) with [station] keys from `station`."""
    keys = {"name": "test station", "serial_pattern": "^PS-[0-9]{4}$", "hazardous": True, **station}
    lines = ["[station]"] + [f"{k} = {json.dumps(v)}" for k, v in keys.items()]
    path = tmp / "station.toml"
    path.write_text("\n".join(lines) + "\n" + textwrap.dedent(sockets), encoding="utf-8")
    return path


class StationProcess:
    def __init__(self, tmp: Path, *args: str):
        self.tmp = tmp
        (tmp / "break_meter.py").write_text(textwrap.dedent(BREAK_METER), encoding="utf-8")
        env = dict(child_env(), PYTHONPATH=f"{tmp}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self.log = open(tmp / "station.log", "w+", encoding="utf-8")
        self.proc = subprocess.Popen([str(RIG), "station", *args, "--port", "0"], cwd=tmp, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True)
        self.url = self._panel_url()

    def _panel_url(self, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = PANEL.search(self.output())
            if match:
                return match.group(1)
            if self.proc.poll() is not None:
                raise AssertionError(f"rig station ended: {self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"rig station printed no panel address: {self.output()}")

    def output(self) -> str:
        return (self.tmp / "station.log").read_text(encoding="utf-8")

    # ------------------------------------------------------------------ HTTP, as the page does it
    def state(self) -> dict:
        with urllib.request.urlopen(self.url + "api/state", timeout=10) as r:
            return json.load(r)

    def post(self, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
        hdrs = {"Content-Type": "application/json", "X-Rig-Panel": "1"} if headers is None else headers
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(), headers=hdrs, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def slot(self, name: str) -> dict:
        return next(s for s in self.state()["slots"] if s["name"] == name)

    def wait_for(self, name: str, what, timeout_s: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            slot = self.slot(name)
            if what(slot):
                return slot
            time.sleep(0.1)
        raise AssertionError(f"socket {name}: not reached in {timeout_s} s; last state {self.slot(name)}")

    def verdict(self, name: str, timeout_s: float = 120.0) -> dict:
        return self.wait_for(name, lambda s: not s["busy"] and s["run"] and s["run"].get("verdict"), timeout_s)

    def prompt(self, name: str, timeout_s: float = 60.0) -> dict:
        return self.wait_for(name, lambda s: s["run"] and s["run"]["prompt"], timeout_s)["run"]["prompt"]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode
