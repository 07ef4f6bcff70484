"""A run's verdict on the unit, from its tests' verdicts.

The order matters on a factory line: a wrong unit on the station says nothing about either
unit; a rig fault means the rig could not measure, so the unit is retested, never failed (any
failures seen next to a rig fault are named, to be confirmed by the retest); only then does a
failed test make the unit FAIL. A run with no test that passed is no verdict at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rig.results.store import FAIL, INTERRUPTED, NO_TESTS, PASS, RIG_FAULT, WRONG_UNIT, TestResult


@dataclass
class RunVerdict:
    verdict: str
    failing_requirements: list[str] = field(default_factory=list)
    rig_faults: list[str] = field(default_factory=list)  # "instrument: what happened", one per instrument
    wrong_unit: str | None = None

    @property
    def instruments(self) -> list[str]:
        return [f.split(":", 1)[0] for f in self.rig_faults]

    def detail(self) -> str:
        if self.verdict == WRONG_UNIT:
            return self.wrong_unit or "wrong unit on the station"
        parts = []
        if self.rig_faults:
            parts.append("rig fault: " + "; ".join(self.rig_faults))
        if self.failing_requirements:
            label = "failed" if self.verdict == FAIL else "also failed (confirm on retest)"
            parts.append(f"{label}: {', '.join(self.failing_requirements)}")
        return " | ".join(parts)


def judge(results: list[TestResult], wrong_unit: str | None = None, interrupted: bool = False) -> RunVerdict:
    failing = sorted({rid for t in results if t.verdict == "failed" for rid in (t.requirements or [t.nodeid])})
    faults = _one_per_instrument(t for t in results if t.verdict in ("error", "harness-error"))
    if wrong_unit:
        return RunVerdict(WRONG_UNIT, wrong_unit=wrong_unit)
    if interrupted or any(t.verdict == "interrupted" for t in results):
        return RunVerdict(INTERRUPTED, failing, faults)
    if faults:
        return RunVerdict(RIG_FAULT, failing, faults)
    if failing:
        return RunVerdict(FAIL, failing)
    if any(t.verdict == "passed" for t in results):
        return RunVerdict(PASS)
    return RunVerdict(NO_TESTS)


def _one_per_instrument(errored) -> list[str]:
    """The first fault of each instrument (a broken meter errors every test that reads it)."""
    seen: dict[str, str] = {}
    for t in errored:
        what = t.rig_fault if t.verdict == "error" and t.rig_fault else f"test harness: {_last_line(t.message) or t.nodeid}"
        seen.setdefault(what.split(":", 1)[0], what)
    return list(seen.values())


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""
