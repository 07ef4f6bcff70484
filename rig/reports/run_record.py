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

# A test's outcomes, worst first. failed: the unit did not meet a requirement; error: a rig fault
# (an instrument or a rig service, named); harness-error: the harness's own exception;
# interrupted: the run stopped before the test's call finished; skipped: not applicable or not
# run. Only "passed" says the unit met the requirement.
OUTCOMES = ("failed", "error", "harness-error", "interrupted", "skipped", "passed")
# a requirement's verdict: the worst of its tests' outcomes; skipped tests do not count, so a
# requirement whose tests were all skipped is not-covered
VERDICT_ORDER = ("failed", "error", "harness-error", "interrupted", "passed")


@dataclass
class TestRecord:
    __test__ = False  # a data class named Test*, not a pytest test class

    nodeid: str
    requirements: list[str]
    outcome: str = "passed"  # one of OUTCOMES
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    measurements: list[dict] = field(default_factory=list)
    rig_fault: str | None = None
    harness_error: str | None = None
    message: str | None = None
    phases: list[str] = field(default_factory=list)  # setup / call / teardown: which have reported

    @property
    def verdict(self) -> str:
        """The outcome as records give it: a test whose call never finished is interrupted, never
        passed (only its setup, or setup and teardown, reported)."""
        if self.outcome == "passed" and "call" not in self.phases:
            return "interrupted"
        return self.outcome

    def as_dict(self) -> dict:
        out = {k: v for k, v in vars(self).items() if k != "phases"}
        out["outcome"] = self.verdict
        return out


@dataclass
class RunRecord:
    reports_dir: Path
    requirement_ids: list[str]
    rig: dict
    run_id: str = ""
    started_wall: float = field(default_factory=time.time)
    tests: dict[str, TestRecord] = field(default_factory=dict)
    interrupted: bool = False
    killed_runs: list[str] = field(default_factory=list)  # earlier runs whose leftovers this one removed

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
        old.phases += rec.phases
        if _rank(rec.outcome) < _rank(old.outcome):
            old.outcome, old.rig_fault, old.message = rec.outcome, rec.rig_fault, rec.message
            old.harness_error = rec.harness_error

    # ------------------------------------------------------------------ outputs
    def traceability(self) -> dict:
        out: dict[str, dict] = {}
        for rid in self.requirement_ids:
            out[rid] = {"tests": [], "verdict": "not-covered"}
        for t in self.tests.values():
            for rid in t.requirements:
                entry = out.setdefault(rid, {"tests": [], "verdict": "not-covered", "note": "not in requirements data"})
                entry["tests"].append(t.nodeid)
                entry.setdefault("outcomes", []).append(t.verdict)
        for entry in out.values():
            outcomes = [o for o in entry.pop("outcomes", []) if o != "skipped"]
            entry["verdict"] = next((v for v in VERDICT_ORDER if v in outcomes), "not-covered")
        return out

    def summary(self) -> dict:
        counts: dict[str, int] = {}
        for t in self.tests.values():
            counts[t.verdict] = counts.get(t.verdict, 0) + 1
        return counts

    def run_json(self) -> dict:
        return {
            "run_id": self.run_id,
            "rig": self.rig,
            "host": socket.gethostname(),
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_wall)),
            "wall_seconds": round(time.time() - self.started_wall, 3),
            "sim_seconds": round(sum(t.sim_seconds for t in self.tests.values()), 6),
            "interrupted": self.interrupted,
            "killed_runs_found": self.killed_runs,
            "counts": self.summary(),
            "tests": [t.as_dict() for t in self.tests.values()],
        }

    def write(self) -> None:
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        _atomic_json(self.reports_dir / "run.json", self.run_json())
        _atomic_json(self.reports_dir / "traceability.json", self.traceability())


def _rank(outcome: str) -> int:
    """Worst first; a skipped phase outranks a passed one (a skipped test's teardown passes)."""
    return OUTCOMES.index(outcome) if outcome in OUTCOMES else 0


def _atomic_json(path: Path, data) -> None:
    tmp = path.with_suffix(f"{path.suffix}.{os.getpid()}.tmp")  # two runs sharing reports/ must not collide
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
