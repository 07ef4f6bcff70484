"""One unit's end-of-line run on one socket, as the panel shows it: built only from the events the
run writes (rig/station/channel.py), so a panel reloaded or a station restarted shows the same.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rig.results.store import FAIL, INTERRUPTED, NO_TESTS, PASS, RIG_FAULT, WRONG_UNIT

# What the operator reads, and the class the page colours it by (the word is always there too)
HEADLINE = {PASS: ("PASS", "pass"), FAIL: ("FAIL", "fail"), RIG_FAULT: ("RIG FAULT - RETEST", "retest"),
            WRONG_UNIT: ("WRONG UNIT", "retest"), INTERRUPTED: ("INTERRUPTED - RETEST", "retest"),
            NO_TESTS: ("NO RESULT - RETEST", "retest")}
# pytest's exit status when the run wrote no verdict (it never got that far): the one-line reason
EXIT_REASON = {2: "the run was interrupted", 3: "no result", 4: "the run could not start (usage or rig file)"}


class UnitRun:
    def __init__(self, socket: str, serial: str, directory: Path):
        self.socket, self.serial, self.dir = socket, serial, directory
        self.started = time.time()
        self.ended: float | None = None
        self.tests: dict[str, dict] = {}  # nodeid -> title, requirements, state, verdict, measurements
        self.current: str | None = None
        self.wait: dict | None = None
        self.prompt: dict | None = None
        self.verdict: dict | None = None
        self.safe: dict | None = None
        self.aborting = False
        self.offset = 0  # how far events.jsonl has been read
        self.last_done_t: float | None = None  # when the last finished test was written (its process's clock)
        self.pending = b""

    # ------------------------------------------------------------------ reading the run's events
    def read_events(self) -> bool:
        """Apply what the run wrote since the last look; True when something changed."""
        try:
            with open(self.dir / "events.jsonl", "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return False
        if not chunk:
            return False
        self.offset += len(chunk)
        data = self.pending + chunk
        *lines, self.pending = data.split(b"\n")  # a line still being written waits for its end
        for line in lines:
            if line.strip():
                self.apply(json.loads(line))
        return bool(lines)

    def apply(self, event: dict) -> None:
        kind = event["type"]
        if kind == "plan":
            for t in event["tests"]:
                self.tests[t["nodeid"]] = {"title": t["title"], "requirements": t["requirements"], "state": "waiting",
                                           "verdict": None, "measurements": [], "message": ""}
        elif kind == "test-start":
            self.current = event["nodeid"]
            self.tests.setdefault(event["nodeid"], _unplanned(event["nodeid"]))["state"] = "running"
        elif kind == "test-done":
            test = self.tests.setdefault(event["nodeid"], _unplanned(event["nodeid"]))
            test.update(state="done", verdict=event["verdict"], measurements=event.get("measurements", []),
                        message=event.get("message", ""), rig_fault=event.get("rig_fault"))
            self.current, self.wait, self.last_done_t = None, None, event["t"]
        elif kind == "wait":
            self.wait = None if event["done"] else {k: event[k] for k in ("reason", "elapsed", "total")}
        elif kind == "prompt":
            self.prompt = {k: event[k] for k in ("id", "text", "kind", "unit", "timeout_s")}
            self.prompt["asked_at"] = event["t"]
        elif kind == "prompt-closed":
            self.prompt = None
        elif kind == "safe":
            self.safe = {"ok": event["ok"], "detail": event.get("detail")}
        elif kind == "verdict":
            self.verdict = event

    def finish(self, exit_status: int, log_tail: str) -> None:
        """The process has ended. A run that wrote no verdict never judged the unit: a retest."""
        self.ended, self.current, self.wait, self.prompt = time.time(), None, None, None
        if self.verdict is None:
            why = INTERRUPTED if exit_status in (2, -15, -9) or self.aborting else RIG_FAULT
            reason = EXIT_REASON.get(exit_status, f"the test process ended with status {exit_status}")
            self.verdict = {"verdict": why, "failing": [], "instruments": ["test harness"] if why == RIG_FAULT else [],
                            "rig_faults": [f"test harness: {reason}: {log_tail}"] if why == RIG_FAULT else [],
                            "certificate": None, "record": "no record: the run did not reach its end", "unit": {}}

    # ------------------------------------------------------------------ what the page gets
    def view(self) -> dict:
        out = {"serial": self.serial, "started": self.started, "ended": self.ended, "current": self.current,
               "wait": self.wait, "prompt": self.prompt, "safe": self.safe, "aborting": self.aborting,
               "last_done_t": self.last_done_t,
               "tests": [{"nodeid": k, **v} for k, v in self.tests.items()]}
        if self.verdict is not None:
            word, cls = HEADLINE.get(self.verdict["verdict"], ("NO RESULT - RETEST", "retest"))
            out["verdict"] = {"word": word, "class": cls, "verdict": self.verdict["verdict"],
                              "failing": self.verdict.get("failing", []),
                              "instruments": self.verdict.get("instruments", []),
                              "rig_faults": self.verdict.get("rig_faults", []),
                              "wrong_unit": self.verdict.get("wrong_unit"),
                              "certificate": bool(self.verdict.get("certificate")),
                              "record": self.verdict.get("record"),
                              "model": (self.verdict.get("unit") or {}).get("variant")}
        return out

    def unit_entry(self) -> dict:
        """The line the shift log keeps for this unit."""
        v = self.verdict or {}
        return {"t": self.ended or time.time(), "socket": self.socket, "serial": self.serial,
                "verdict": v.get("verdict"), "failing": [f["id"] for f in v.get("failing", [])],
                "instruments": v.get("instruments", []), "model": (v.get("unit") or {}).get("variant"),
                "run_dir": str(self.dir), "certificate": v.get("certificate")}


def _unplanned(nodeid: str) -> dict:
    return {"title": nodeid.rsplit("::", 1)[-1], "requirements": [], "state": "waiting", "verdict": None,
            "measurements": [], "message": ""}
