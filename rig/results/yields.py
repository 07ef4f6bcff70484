"""First-pass yield and the most frequent failing requirements over a period.

First-pass yield counts units, not runs: a unit passes first time when the first run that
judged it (verdict pass or fail) passed. Runs that said nothing about the unit are counted
apart and never as unit failures: rig faults (retest), wrong unit on the station, and runs
left without an end (interrupted). A unit whose first judging run lies before the period
belongs to that earlier period, so retests never count as first passes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from rig.results.store import FAIL, INTERRUPTED, PASS, RIG_FAULT, WRONG_UNIT, ResultsStore

JUDGING = (PASS, FAIL)


@dataclass
class ModelYield:
    model: str
    units: int = 0  # units first judged in the period
    first_pass: int = 0
    runs: int = 0  # judging runs in the period, retests included

    @property
    def fpy(self) -> float | None:
        return self.first_pass / self.units if self.units else None


@dataclass
class YieldReport:
    since: datetime | None
    until: datetime | None
    models: list[ModelYield] = field(default_factory=list)
    failing: list[tuple[str, int, int]] = field(default_factory=list)  # (requirement, failed runs, units)
    rig_fault_runs: int = 0
    rig_faults_by_instrument: dict[str, int] = field(default_factory=dict)
    wrong_unit_runs: int = 0
    interrupted_runs: int = 0
    runs: int = 0

    def as_dict(self) -> dict:
        return {
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "runs": self.runs,
            "models": [{"model": m.model, "units": m.units, "first_pass": m.first_pass, "runs": m.runs,
                        "first_pass_yield": m.fpy} for m in self.models],
            "failing_requirements": [{"requirement": r, "failed_runs": n, "units": u} for r, n, u in self.failing],
            "rig_fault_runs": self.rig_fault_runs,
            "rig_faults_by_instrument": self.rig_faults_by_instrument,
            "wrong_unit_runs": self.wrong_unit_runs,
            "interrupted_runs": self.interrupted_runs,
        }


def yield_report(store: ResultsStore, since: datetime | None, until: datetime | None,
                 mode: str | None = None, top: int = 10) -> YieldReport:
    history = [r for r in store.runs_between(None, until) if mode is None or r["mode"] == mode]
    in_period = [r for r in history if since is None or r["started_at"] >= since]
    report = YieldReport(since, until, runs=len(in_period))
    _count_apart(store, report, in_period)
    report.models = _first_pass(history, in_period, since)
    report.failing = _failing(store, [r for r in in_period if r["verdict"] == FAIL and r["ended_at"] is not None], top)
    return report


def _unit_of(run: dict) -> str:
    return run["serial"] or run["expected_serial"] or "?"


def _judging(run: dict) -> bool:
    return run["ended_at"] is not None and run["verdict"] in JUDGING


def _count_apart(store: ResultsStore, report: YieldReport, period: list[dict]) -> None:
    report.interrupted_runs = sum(1 for r in period if r["ended_at"] is None or r["verdict"] == INTERRUPTED)
    report.wrong_unit_runs = sum(1 for r in period if r["ended_at"] is not None and r["verdict"] == WRONG_UNIT)
    faulted = [r["run_id"] for r in period if r["ended_at"] is not None and r["verdict"] == RIG_FAULT]
    report.rig_fault_runs = len(faulted)
    by_instrument: Counter[str] = Counter()
    for run_id, instrument in set(store.rig_faults(faulted)):
        by_instrument[instrument or "unknown"] += 1
    report.rig_faults_by_instrument = dict(by_instrument.most_common())


def _first_pass(history: list[dict], period: list[dict], since: datetime | None) -> list[ModelYield]:
    first: dict[str, dict] = {}
    for run in history:  # oldest first
        if _judging(run):
            first.setdefault(_unit_of(run), run)
    models: dict[str, ModelYield] = {}
    for run in first.values():
        if since is not None and run["started_at"] < since:
            continue
        m = models.setdefault(run["model"] or "?", ModelYield(run["model"] or "?"))
        m.units += 1
        m.first_pass += run["verdict"] == PASS
    for run in period:
        if _judging(run):
            models.setdefault(run["model"] or "?", ModelYield(run["model"] or "?")).runs += 1
    return sorted(models.values(), key=lambda m: m.model)


def _failing(store: ResultsStore, failed_runs: list[dict], top: int) -> list[tuple[str, int, int]]:
    unit = {r["run_id"]: _unit_of(r) for r in failed_runs}
    runs_per: dict[str, set] = defaultdict(set)
    units_per: dict[str, set] = defaultdict(set)
    for run_id, requirement, _nodeid in store.failed_requirements(list(unit)):
        runs_per[requirement].add(run_id)
        units_per[requirement].add(unit[run_id])
    ranked = sorted(runs_per, key=lambda r: (-len(runs_per[r]), -len(units_per[r]), r))
    return [(r, len(runs_per[r]), len(units_per[r])) for r in ranked[:top]]
