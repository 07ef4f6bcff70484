"""What a quality engineer asks of the records, as SQL that runs on SQLite and PostgreSQL alike
(SQLAlchemy Core: window functions and aggregates both dialects have; no STDDEV or SQRT, which
SQLite lacks: sums of squares come from SQL, the square root from Python).

* yield per station, model and day (the day of the unit's first judging run): first-pass (the
  first judging run passed), final (the last one passed) and retest yield (of the units that
  failed first, the share that passed in the end);
* Pareto of failing requirements (failed tests per requirement, cumulative share);
* per measurement: count, mean, sigma, its limits, Cpk, and its values over time (control chart);
* rig-fault rate per station and instrument (rig-fault tests per run), with the pairs whose rate
  is at least twice the other stations' for that instrument marked.

Runs that judged nothing (rig fault, wrong unit, interrupted) never count as unit failures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String, and_, case, cast, func, select

from rig.results.store import FAIL, PASS, ResultsStore, measurements, runs, test_requirements, tests

STANDS_OUT = 2.0  # a station's rig-fault rate for an instrument this many times the others' is marked


@dataclass
class Period:
    since: datetime | None = None
    until: datetime | None = None

    def where(self, column):
        conds = []
        if self.since is not None:
            conds.append(column >= self.since)
        if self.until is not None:
            conds.append(column < self.until)
        return and_(*conds) if conds else None


def _judging():
    return and_(runs.c.ended_at.is_not(None), runs.c.verdict.in_((PASS, FAIL)))


def _filtered(q, period: Period, column):
    cond = period.where(column)
    return q if cond is None else q.where(cond)


def yields(store: ResultsStore, period: Period) -> list[dict]:
    unit = func.coalesce(runs.c.serial, runs.c.expected_serial)
    ordered = select(
        unit.label("unit"), runs.c.station, runs.c.variant, runs.c.verdict,
        func.substr(cast(runs.c.started_at, String), 1, 10).label("day"),  # YYYY-MM-DD on both dialects
        func.row_number().over(partition_by=unit, order_by=runs.c.started_at).label("first_n"),
        func.row_number().over(partition_by=unit, order_by=runs.c.started_at.desc()).label("last_n"),
    ).where(_judging()).subquery()
    first = select(ordered.c.unit, ordered.c.station, ordered.c.variant, ordered.c.day,
                   ordered.c.verdict.label("first")).where(ordered.c.first_n == 1).subquery()
    last = select(ordered.c.unit, ordered.c.verdict.label("last")).where(ordered.c.last_n == 1).subquery()
    q = (select(first.c.station, first.c.variant, first.c.day, func.count().label("units"),
                func.sum(case((first.c.first == PASS, 1), else_=0)).label("first_pass"),
                func.sum(case((last.c.last == PASS, 1), else_=0)).label("final_pass"),
                func.sum(case((and_(first.c.first == FAIL, last.c.last == PASS), 1), else_=0)).label("recovered"),
                func.sum(case((first.c.first == FAIL, 1), else_=0)).label("failed_first"))
         .join(last, last.c.unit == first.c.unit)
         .group_by(first.c.station, first.c.variant, first.c.day)
         .order_by(first.c.day, first.c.station, first.c.variant))
    q = _filtered(q, period, first.c.day) if period.since or period.until else q
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    for r in rows:
        r["day"] = str(r["day"])
        r["first_pass_yield"] = r["first_pass"] / r["units"]
        r["final_yield"] = r["final_pass"] / r["units"]
        r["retest_yield"] = r["recovered"] / r["failed_first"] if r["failed_first"] else None
    return rows


def pareto(store: ResultsStore, period: Period, top: int = 15) -> list[dict]:
    q = (select(test_requirements.c.requirement, func.count().label("failed_tests"),
                func.count(func.distinct(tests.c.run_id)).label("runs"))
         .join(tests, tests.c.test_id == test_requirements.c.test_id)
         .join(runs, runs.c.run_id == tests.c.run_id)
         .where(tests.c.verdict == "failed")
         .group_by(test_requirements.c.requirement)
         .order_by(func.count().desc(), test_requirements.c.requirement))
    q = _filtered(q, period, runs.c.started_at)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    total, running = sum(r["failed_tests"] for r in rows), 0
    for r in rows:
        running += r["failed_tests"]
        r["cumulative_share"] = running / total
    return rows[:top]


def capability(store: ResultsStore, period: Period, min_count: int = 5) -> list[dict]:
    """Per measurement (name and unit): n, mean, sigma, limits, Cpk (the nearer limit's distance in
    sigmas, over 3; one-sided limits use the side they have)."""
    v = measurements.c.value
    q = (select(measurements.c.name, measurements.c.unit, func.count(v).label("n"), func.avg(v).label("mean"),
                func.avg(v * v).label("mean_sq"), func.min(measurements.c.low).label("low"),
                func.max(measurements.c.high).label("high"))
         .join(tests, tests.c.test_id == measurements.c.test_id)
         .join(runs, runs.c.run_id == tests.c.run_id)
         .where(v.is_not(None))
         .group_by(measurements.c.name, measurements.c.unit)
         .order_by(measurements.c.name))
    q = _filtered(q, period, runs.c.started_at)
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q) if r.n >= min_count]
    for r in rows:
        n = r["n"]
        variance = max(0.0, r.pop("mean_sq") - r["mean"] ** 2) * n / (n - 1)
        r["sigma"] = math.sqrt(variance)
        r["cpk"] = cpk(r["mean"], r["sigma"], r["low"], r["high"])
    return rows


def cpk(mean: float, sigma: float, low: float | None, high: float | None) -> float | None:
    sides = []
    if high is not None:
        sides.append((high - mean) / (3 * sigma) if sigma > 0 else math.inf)
    if low is not None:
        sides.append((mean - low) / (3 * sigma) if sigma > 0 else math.inf)
    return min(sides) if sides else None


def series(store: ResultsStore, period: Period, name: str, limit: int = 2000) -> list[tuple[datetime, float]]:
    """A measurement's values in the order they were taken: the control chart's points."""
    q = (select(tests.c.finished_at, measurements.c.value)
         .join(tests, tests.c.test_id == measurements.c.test_id)
         .join(runs, runs.c.run_id == tests.c.run_id)
         .where(measurements.c.name == name, measurements.c.value.is_not(None))
         .order_by(tests.c.finished_at.desc()).limit(limit))
    q = _filtered(q, period, runs.c.started_at)
    with store.engine.connect() as conn:
        return list(reversed([(r[0], r[1]) for r in conn.execute(q)]))


def rig_fault_rates(store: ResultsStore, period: Period) -> list[dict]:
    per_station = _filtered(select(runs.c.station, func.count().label("runs")).group_by(runs.c.station),
                            period, runs.c.started_at).subquery()
    faults = _filtered(  # a harness error has no instrument: "test harness" (named below, not in SQL, where
        # PostgreSQL would see the select's and the GROUP BY's literal as two different expressions)
        select(runs.c.station, tests.c.instrument, func.count().label("faults"))
        .join(runs, runs.c.run_id == tests.c.run_id)
        .where(tests.c.verdict.in_(("error", "harness-error")))
        .group_by(runs.c.station, tests.c.instrument),
        period, runs.c.started_at).subquery()
    q = (select(faults.c.station, faults.c.instrument, faults.c.faults, per_station.c.runs)
         .join(per_station, per_station.c.station == faults.c.station)
         .order_by(faults.c.instrument, faults.c.station))
    with store.engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
        runs_by_station = {r.station: r.runs for r in conn.execute(select(per_station))}
    for r in rows:
        r["instrument"] = r["instrument"] or "test harness"
        r["rate"] = r["faults"] / r["runs"]
        others = [o for o in rows if o["instrument"] == r["instrument"] and o["station"] != r["station"]]
        other_faults = sum(o["faults"] for o in others)
        other_runs = sum(n for s, n in runs_by_station.items() if s != r["station"])
        other_rate = other_faults / other_runs if other_runs else None
        r["others_rate"] = other_rate
        r["stands_out"] = bool(other_rate is not None and r["rate"] >= STANDS_OUT * other_rate and r["faults"] >= 2)
    return rows
