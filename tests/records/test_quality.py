"""The quality figures, computed by SQL on SQLite and on PostgreSQL from the same designed
records, against numbers worked out by hand; and the self-contained HTML report."""

from __future__ import annotations

import math
import statistics
import subprocess
from datetime import datetime, timedelta

import pytest

from rig.results import quality
from rig.results.store import FAIL, PASS, RIG_FAULT, ResultsStore, TestResult
from tests.station.station_process import RIG

DAY1, DAY2 = datetime(2026, 11, 30, 8), datetime(2026, 12, 1, 8)
VALUES = [31.8, 32.1, 32.0, 32.3, 31.9, 32.2, 32.0, 31.7, 32.4]  # "L1 current", limits 28.8 .. 32.5 A


def run(store, run_id, serial, station, variant, start, verdict, failed=(), fault=None, value=None):
    store.start_run({"run_id": run_id, "serial": serial, "station": station, "variant": variant, "host": station,
                     "mode": "eol", "started_at": start})
    for i, req in enumerate(("CP-01", "CP-02", "MTR-01")):
        verdict_t = "failed" if req in failed else "passed"
        ms = []
        if req == "MTR-01" and value is not None:
            ms = [{"name": "L1 current", "value": value, "unit": "A", "low": 28.8, "high": 32.5, "passed": True}]
        store.record_test(run_id, TestResult(nodeid=f"t::{req}", verdict=verdict_t, requirements=[req], measurements=ms,
                                             finished_at=start + timedelta(seconds=i)))
    if fault:
        store.record_test(run_id, TestResult(nodeid="t::meter", verdict="error", rig_fault=f"{fault}: no reply",
                                             finished_at=start + timedelta(seconds=5)))
    store.finish_run(run_id, verdict, ended_at=start + timedelta(minutes=1))


def designed(store: ResultsStore) -> None:
    """Day 1, station A, PS7: U1 pass; U2 fail (CP-02) then pass; U3 fail (CP-02, MTR-01) twice.
    Day 1, station B, PS7: U4 rig fault (meter), then pass; U5 pass.
    Day 2, station A, PS22: U6 pass. Station B has 3 runs, 2 of them meter faults (U4, and U7's)."""
    values = iter(VALUES)
    t = DAY1
    for args in [("R1", "U1", "A", "PS7", PASS, (), None), ("R2", "U2", "A", "PS7", FAIL, ("CP-02",), None),
                 ("R3", "U2", "A", "PS7", PASS, (), None), ("R4", "U3", "A", "PS7", FAIL, ("CP-02", "MTR-01"), None),
                 ("R5", "U3", "A", "PS7", FAIL, ("CP-02",), None), ("R6", "U4", "B", "PS7", RIG_FAULT, (), "meter"),
                 ("R7", "U4", "B", "PS7", PASS, (), None), ("R8", "U5", "B", "PS7", PASS, (), None)]:
        t += timedelta(minutes=10)
        run(store, *args[:4], t, args[4], args[5], args[6], value=next(values))
    run(store, "R9", "U6", "A", "PS22", DAY2, PASS, value=next(values))
    run(store, "R10", "U7", "B", "PS22", DAY2 + timedelta(minutes=5), RIG_FAULT, fault="meter", value=None)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = ResultsStore(f"sqlite:///{tmp_path / 'q.sqlite'}")
    else:
        pg = request.getfixturevalue("pg")
        s = ResultsStore(pg.url)
        with s.engine.begin() as conn:
            for table in ("measurements", "test_requirements", "tests", "runs"):
                conn.exec_driver_sql(f"DELETE FROM {table}")
    designed(s)
    yield s
    s.close()


def test_yield_per_station_model_and_day(store):
    rows = {(r["day"], r["station"], r["variant"]): r for r in quality.yields(store, quality.Period())}
    a = rows[("2026-11-30", "A", "PS7")]  # U1 first pass; U2 fail->pass; U3 fail->fail
    assert (a["units"], a["first_pass"], a["final_pass"]) == (3, 1, 2)
    assert a["retest_yield"] == 0.5  # of U2 and U3, which failed first, U2 passed in the end
    b = rows[("2026-11-30", "B", "PS7")]  # U4's rig fault judged nothing: its first judging run passed
    assert (b["units"], b["first_pass"], b["final_pass"], b["retest_yield"]) == (2, 2, 2, None)
    assert rows[("2026-12-01", "A", "PS22")]["first_pass_yield"] == 1.0
    assert ("2026-12-01", "B", "PS22") not in rows  # U7 never judged: not a unit of any yield


def test_pareto_of_failing_requirements(store):
    rows = quality.pareto(store, quality.Period())
    assert [(r["requirement"], r["failed_tests"]) for r in rows] == [("CP-02", 3), ("MTR-01", 1)]
    assert rows[0]["cumulative_share"] == 0.75 and rows[-1]["cumulative_share"] == 1.0


def test_capability_matches_the_numbers_by_hand(store):
    [row] = quality.capability(store, quality.Period())
    mean, sigma = statistics.fmean(VALUES), statistics.stdev(VALUES)
    assert row["n"] == len(VALUES) and math.isclose(row["mean"], mean) and math.isclose(row["sigma"], sigma, rel_tol=1e-6)
    assert math.isclose(row["cpk"], min(32.5 - mean, mean - 28.8) / (3 * sigma), rel_tol=1e-6)
    assert [v for _, v in quality.series(store, quality.Period(), "L1 current")] == VALUES


def test_a_station_whose_meter_faults_more_stands_out(store):
    rows = {(r["station"], r["instrument"]): r for r in quality.rig_fault_rates(store, quality.Period())}
    meter_b = rows[("B", "meter")]
    assert (meter_b["faults"], meter_b["runs"]) == (2, 4) and meter_b["stands_out"]
    assert ("A", "meter") not in rows


def test_the_html_report_is_one_self_contained_page(tmp_path):
    db = tmp_path / "q.sqlite"
    designed(ResultsStore(f"sqlite:///{db}"))
    out = subprocess.run([str(RIG), "records", "report", "--db", f"sqlite:///{db}", "--html", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    html = (tmp_path / "r" / "index.html").read_text()
    assert html.count('src="data:image/png;base64,') >= 3 and "<script" not in html
    assert "http://" not in html and "https://" not in html, "nothing to fetch: opens offline"
    for words in ("CP-02", "stands out", "L1 current", "first-pass yield"):
        assert words in html
