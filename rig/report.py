"""What a run leaves under reports/: run.json and traceability.json.

Works from pytest reports only (what reaches the xdist controller), so the same code writes
the record for a single process and for a distributed run. Each file is written to a
temporary name and renamed, so an interrupted run never leaves half a record; the files are
rewritten after every test, so a run killed half-way still leaves what it measured.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

VERDICT_ORDER = ("failed", "error", "passed")  # the worst verdict of a requirement's tests wins


@dataclass
class TestRecord:
    nodeid: str
    requirements: list[str]
    outcome: str = "passed"  # passed | failed | error | skipped
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    measurements: list[dict] = field(default_factory=list)
    rig_fault: str | None = None
    message: str | None = None


@dataclass
class RunRecord:
    reports_dir: Path
    requirement_ids: list[str]
    rig: dict
    started_wall: float = field(default_factory=time.time)
    tests: dict[str, TestRecord] = field(default_factory=dict)
    interrupted: bool = False

    def record(self, rec: TestRecord) -> None:
        """Merge a phase's outcome into the test's record (setup/call/teardown arrive separately)."""
        old = self.tests.get(rec.nodeid)
        if old is None:
            self.tests[rec.nodeid] = rec
            return
        old.requirements = old.requirements or rec.requirements
        old.sim_seconds += rec.sim_seconds
        old.wall_seconds += rec.wall_seconds
        old.measurements += rec.measurements
        if _rank(rec.outcome) < _rank(old.outcome):
            old.outcome, old.rig_fault, old.message = rec.outcome, rec.rig_fault, rec.message

    # ------------------------------------------------------------------ outputs
    def traceability(self) -> dict:
        out: dict[str, dict] = {}
        for rid in self.requirement_ids:
            out[rid] = {"tests": [], "verdict": "not-covered"}
        for t in self.tests.values():
            for rid in t.requirements:
                entry = out.setdefault(rid, {"tests": [], "verdict": "not-covered", "note": "not in requirements data"})
                entry["tests"].append(t.nodeid)
                entry.setdefault("outcomes", []).append(t.outcome)
        for entry in out.values():
            outcomes = [o for o in entry.pop("outcomes", []) if o != "skipped"]
            entry["verdict"] = next((v for v in VERDICT_ORDER if v in outcomes), "not-covered")
        return out

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        for t in self.tests.values():
            counts[t.outcome] = counts.get(t.outcome, 0) + 1
        return counts

    def run_json(self) -> dict:
        return {
            "rig": self.rig,
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_wall)),
            "wall_seconds": round(time.time() - self.started_wall, 3),
            "sim_seconds": round(sum(t.sim_seconds for t in self.tests.values()), 6),
            "interrupted": self.interrupted,
            "counts": self.summary(),
            "tests": [vars(t) for t in self.tests.values()],
        }

    def write(self) -> None:
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        _atomic_json(self.reports_dir / "run.json", self.run_json())
        _atomic_json(self.reports_dir / "traceability.json", self.traceability())


def _rank(outcome: str) -> int:
    order = {"failed": 0, "error": 1, "passed": 2, "skipped": 3}
    return order.get(outcome, 4)


def _atomic_json(path: Path, data) -> None:
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")  # two runs sharing reports/ must not collide
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
