"""A demonstration of `rig records report --html`: three stations, five days of end-of-line runs
with the failures and rig faults a line sees (a drifting current reading, a meter that faults on
one station more than on the others), written to a results store and reported. Prints where the
page is and how long the report took. The picture in docs/factory.md is this page.

    python benchmarks/quality_report_demo.py [--runs 300] [--out DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from rig.results import quality  # noqa: E402  (after the path is set)
from rig.results.quality_report import write_report  # noqa: E402
from rig.results.store import FAIL, PASS, RIG_FAULT, ResultsStore, TestResult  # noqa: E402

REQUIREMENTS = ["CP-01", "CP-02", "CP-03", "CP-04", "MTR-01", "RCD-01"]
FAIL_ODDS = {"CP-02": 0.03, "MTR-01": 0.015, "RCD-01": 0.008, "CP-04": 0.004}
METER_FAULT_ODDS = {"EOL-1": 0.01, "EOL-2": 0.06, "EOL-3": 0.01}


def one_run(store, rng: random.Random, i: int, start: datetime, station: str, serial: str) -> str:
    run_id = f"DEMO{i:05d}"
    store.start_run({"run_id": run_id, "serial": serial, "station": station, "host": station, "mode": "eol",
                     "variant": rng.choice(["PS7", "PS22-S"]), "started_at": start})
    drift = 0.0004 * i  # the current reading creeps up over the week
    failed = {r for r, p in FAIL_ODDS.items() if rng.random() < p}
    for k, req in enumerate(REQUIREMENTS):
        ms = []
        if req == "MTR-01":
            ms = [{"name": "L1 current at full offer", "value": rng.gauss(31.2 + drift, 0.35), "unit": "A",
                   "low": 28.8, "high": 32.5, "passed": True}]
        if req == "CP-02":
            ms = [{"name": "duty for 32 A", "value": rng.gauss(53.33, 0.08), "unit": "%", "low": 52.83,
                   "high": 53.83, "passed": True}]
        store.record_test(run_id, TestResult(nodeid=f"eol::{req}", requirements=[req], measurements=ms,
                                             verdict="failed" if req in failed else "passed",
                                             finished_at=start + timedelta(seconds=10 * k)))
    if rng.random() < METER_FAULT_ODDS[station]:
        store.record_test(run_id, TestResult(nodeid="eol::meter", verdict="error", rig_fault="meter: no reply",
                                             finished_at=start + timedelta(seconds=70)))
        store.finish_run(run_id, RIG_FAULT, ended_at=start + timedelta(seconds=80))
        return RIG_FAULT
    verdict = FAIL if failed else PASS
    store.finish_run(run_id, verdict, ended_at=start + timedelta(seconds=80))
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--out", default=None, help="where the page goes (default a temporary folder)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="quality-report-"))
    store = ResultsStore(f"sqlite:///{out / 'demo.sqlite'}")
    rng = random.Random(7)
    t = datetime(2026, 11, 23, 6)
    retest: list[str] = []
    for i in range(args.runs):
        t += timedelta(minutes=rng.randint(5, 40))
        serial = retest.pop() if retest and rng.random() < 0.8 else f"PS-{i:06d}"
        if run_verdict := one_run(store, rng, i, t, rng.choice(list(METER_FAULT_ODDS)), serial):
            if run_verdict in (FAIL, RIG_FAULT):
                retest.append(serial)
    t0 = time.perf_counter()
    page = write_report(store, out / "report", quality.Period(), "PlugStream end-of-line quality (demonstration)")
    print(f"{args.runs} runs; report written in {time.perf_counter() - t0:.2f} s: {page}")


if __name__ == "__main__":
    main()
