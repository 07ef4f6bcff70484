"""Many stations recording into their journals and forwarding to one shared PostgreSQL.

N station processes each record M runs of the end-of-line size (9 tests, 29 measurements: the
same rows the recorder writes, through the same ResultsStore, each test committed on its own)
into their own SQLite journal, while a forwarder thread in each pushes complete runs to a real
PostgreSQL server this script starts (Debian's postgresql, as the tests do). Prints each
station's per-test recording cost, the records (tests) per second arriving in the shared
database, the forwarding lag (a run's end in the journal to its arrival, from the journals' own
timestamps) and the count check: every run, test and measurement exactly once.

Goal (issue 15): 20 stations x 1,000 runs with nothing lost or duplicated, per-test recording
under 10 ms. The last line reads `records: <R>/s; forwarding lag <L> s; lost <X>; duplicated <Y>`.

    python benchmarks/records_load.py [--stations 20] [--runs 100]

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from sqlalchemy import create_engine, func, select  # noqa: E402  (after the path is set)

from rig.results.forwarder import Forwarder  # noqa: E402
from rig.results.store import ResultsStore, forwarded, measurements, runs, tests  # noqa: E402
from tests.records.pg_server import PostgresServer  # noqa: E402
from tests.records.synthetic import MEASUREMENTS_PER_RUN, TESTS, write_run  # noqa: E402


def station(index: int, journal: str, url: str, n_runs: int, go, out) -> None:
    store = ResultsStore(f"sqlite:///{journal}")
    costs: list[float] = []
    finished = threading.Event()
    errors: list[str] = []

    def forward_in_background() -> None:
        forwarder = Forwarder(ResultsStore(f"sqlite:///{journal}"), url)
        while True:
            result = forwarder.forward()
            if result.error:
                errors.append(result.error)
            if finished.is_set() and result.pending == 0 and not result.error:
                return
            time.sleep(0.2)

    go.wait()
    thread = threading.Thread(target=forward_in_background, daemon=True)
    thread.start()
    rng = random.Random(index)
    for i in range(n_runs):
        write_run(store, f"st{index:02d}", f"PS-{index:02d}-{i:05d}", rng, record=costs.append)
    finished.set()
    thread.join()
    with store.engine.connect() as conn:
        lags = [(f - e).total_seconds() for e, f in conn.execute(
            select(runs.c.ended_at, forwarded.c.forwarded_at).join(forwarded, forwarded.c.run_id == runs.c.run_id))]
    out.put((index, costs, lags, len(errors)))


def one_station_alone(n_runs: int = 50) -> list[float]:
    """A station's own per-test recording cost with the machine to itself (in a factory each
    station is its own computer; the N-station figure below shares this machine's 2 cores)."""
    costs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="records-alone-") as tmp:
        store = ResultsStore(f"sqlite:///{Path(tmp) / 'journal.sqlite'}")
        rng = random.Random(0)
        for i in range(n_runs):
            write_run(store, "alone", f"PS-A-{i:05d}", rng, record=costs.append)
        store.close()
    return sorted(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=20)
    parser.add_argument("--runs", type=int, default=100, help="runs per station (the goal is 1000)")
    args = parser.parse_args()
    server = PostgresServer()
    ResultsStore(server.url).close()  # the schema, before the stations race for it
    alone = one_station_alone()
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="records-load-") as tmp:
        procs = [ctx.Process(target=station, args=(i, str(Path(tmp) / f"journal{i:02d}.sqlite"), server.url,
                                                  args.runs, go, out)) for i in range(args.stations)]
        for p in procs:
            p.start()
        time.sleep(1.0)
        t0 = time.perf_counter()
        go.set()
        results = [out.get() for _ in procs]
        wall = time.perf_counter() - t0
        for p in procs:
            p.join()
    engine = create_engine(server.url)
    with engine.connect() as conn:
        n_runs = conn.execute(select(func.count()).select_from(runs)).scalar()
        distinct = conn.execute(select(func.count(func.distinct(runs.c.run_id)))).scalar()
        n_tests = conn.execute(select(func.count()).select_from(tests)).scalar()
        n_meas = conn.execute(select(func.count()).select_from(measurements)).scalar()
    engine.dispose()
    server.close()
    expected_runs = args.stations * args.runs
    costs = [c for _, cs, _, _ in results for c in cs]
    lags = [x for _, _, ls, _ in results for x in ls]
    errors = sum(e for _, _, _, e in results)
    costs.sort()
    print(f"{args.stations} stations x {args.runs} runs ({len(TESTS)} tests, {MEASUREMENTS_PER_RUN} measurements "
          f"per run) in {wall:.1f} s on this machine")
    print(f"per-test recording, one station alone: median {1000 * statistics.median(alone):.2f} ms, "
          f"p99 {1000 * alone[int(0.99 * (len(alone) - 1))]:.2f} ms")
    print(f"per-test recording in the journal, {args.stations} stations sharing this machine: median {1000 * statistics.median(costs):.2f} ms, "
          f"p99 {1000 * costs[int(0.99 * (len(costs) - 1))]:.2f} ms, worst {1000 * costs[-1]:.2f} ms")
    print(f"shared database: {n_runs} runs ({distinct} distinct), {n_tests} tests, {n_meas} measurements; "
          f"expected {expected_runs}, {expected_runs * len(TESTS)}, {expected_runs * MEASUREMENTS_PER_RUN}; "
          f"{errors} forwarding attempts failed and were retried")
    lost = expected_runs - distinct
    duplicated = n_runs - distinct
    lost += (expected_runs * len(TESTS) - n_tests) // len(TESTS) if n_tests < expected_runs * len(TESTS) else 0
    print(f"forwarding lag: median {statistics.median(lags):.2f} s, worst {max(lags):.2f} s")
    print(f"records: {n_tests / wall:.0f}/s; forwarding lag {max(lags):.2f} s; lost {lost}; duplicated {duplicated}")


if __name__ == "__main__":
    main()
