"""Local first, then forward, against a real PostgreSQL server: a run is committed to the
station's journal test by test and forwarded whole and exactly once; the server down, hanging or
too new never blocks a test and never loses a record."""

from __future__ import annotations

import multiprocessing
import random
import socket
import subprocess
import time

import pytest
from sqlalchemy import create_engine, func, select, update

from rig.results.forwarder import Forwarder
from rig.results.store import PASS, SCHEMA_VERSION, ResultsStore, measurements, meta, runs, tests
from tests.harness.plugin_runs import PROJECT, child_env, pytest_cmd
from tests.records.synthetic import MEASUREMENTS_PER_RUN, TESTS, write_run
from tests.station.station_process import RIG

pytestmark = pytest.mark.postgres


def counts(url: str) -> tuple[int, int, int, int]:
    """(runs, distinct run ids, tests, measurements) in the shared database."""
    engine = create_engine(url)
    with engine.connect() as conn:
        out = (conn.execute(select(func.count()).select_from(runs)).scalar(),
               conn.execute(select(func.count(func.distinct(runs.c.run_id)))).scalar(),
               conn.execute(select(func.count()).select_from(tests)).scalar(),
               conn.execute(select(func.count()).select_from(measurements)).scalar())
    engine.dispose()
    return out


def clear(url: str) -> None:
    ResultsStore(url).close()  # the schema, on a new server
    engine = create_engine(url)
    with engine.begin() as conn:
        for table in ("measurements", "test_requirements", "tests", "runs"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    engine.dispose()


def run_spec(tmp, *args, env=None):
    reports = tmp / "reports"
    proc = subprocess.run(pytest_cmd(list(args), reports), cwd=PROJECT, env=env or child_env(),
                          capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr, reports


def records(journal, shared_url, *command):
    return subprocess.run([str(RIG), "records", *command, "--journal", str(journal), "--db", shared_url],
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------- one station
def test_a_run_goes_to_the_journal_and_to_the_shared_database_once(pg, tmp_path):
    clear(pg.url)
    rc, out, reports = run_spec(tmp_path, "rig/spec/test_control_pilot.py", "-k", "state_a or state_b_pwm",
                                "--results-db", pg.url)
    assert rc == 0, out[-3000:]
    assert f"forwarded to postgresql+psycopg://rig@127.0.0.1:{pg.port}/records" in out, out[-1500:]
    journal = ResultsStore(f"sqlite:///{reports / 'results.sqlite'}")
    [local] = journal.recent_runs()
    shared = ResultsStore(pg.url)
    [remote] = shared.recent_runs()
    assert remote["run_id"] == local["run_id"] and remote["verdict"] == PASS
    assert shared.run_detail(remote["run_id"])["tests"] == journal.run_detail(local["run_id"])["tests"]
    again = records(reports / "results.sqlite", pg.url, "sync")
    assert again.returncode == 0 and "forwarded 0 run(s)" in again.stdout and "0 pending" in again.stdout
    assert counts(pg.url)[:2] == (1, 1)


def test_server_down_the_unit_is_still_judged_and_the_run_waits_in_the_journal(pg, tmp_path):
    clear(pg.url)
    pg.stop()
    try:
        rc, out, reports = run_spec(tmp_path, "rig/spec", "--eol", "--serial", "SIM-0001", "--results-db", pg.url)
        assert rc == 0, out[-3000:]  # PASS: the record is safe in the journal
        assert "record: run" in out and "in the local journal" in out and "NOT yet in" in out, out[-2000:]
        assert "rig records sync" in out
        status = records(reports / "results.sqlite", pg.url, "status")
        assert "1 complete run(s) pending" in status.stdout and "last forwarding error" in status.stdout, status.stdout
        refused = records(reports / "results.sqlite", pg.url, "sync")
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    finally:
        pg.start()
    synced = records(reports / "results.sqlite", pg.url, "sync")
    assert synced.returncode == 0 and "forwarded 1 run(s)" in synced.stdout, synced.stdout + synced.stderr
    assert counts(pg.url)[:2] == (1, 1)


def test_a_server_that_accepts_but_never_answers_delays_no_test(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel does) and never says a word
    port = silent.getsockname()[1]
    try:
        t0 = time.monotonic()
        rc, out, _ = run_spec(tmp_path, "rig/spec/test_control_pilot.py", "-k", "state_a",
                              "--results-db", f"postgresql+psycopg://rig@127.0.0.1:{port}/records")
        wall = time.monotonic() - t0
    finally:
        silent.close()
    assert rc == 0, out[-2000:]
    assert "NOT yet in" in out and "pending" in out, out[-1500:]
    assert wall < 60, f"a hanging server must not hold the run (took {wall:.0f} s)"


def test_a_shared_database_newer_than_the_station_is_not_written(pg, tmp_path):
    clear(pg.url)
    journal = ResultsStore(f"sqlite:///{tmp_path / 'journal.sqlite'}")
    write_run(journal, "st1", "PS-1", random.Random(1))
    engine = create_engine(pg.url)
    with engine.begin() as conn:
        conn.execute(update(meta).where(meta.c.key == "schema_version").values(value="99"))
    try:
        result = Forwarder(journal, pg.url).forward()
        assert result.pending == 1 and "schema is version 99" in result.error and "upgrade" in result.error
        assert counts(pg.url)[0] == 0
    finally:
        with engine.begin() as conn:
            conn.execute(update(meta).where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
        engine.dispose()
    assert Forwarder(journal, pg.url).forward().pending == 0


# ---------------------------------------------------------------------- several stations
def _station(journal: str, url: str, runs_: int, seed: int, go, done) -> None:
    store = ResultsStore(f"sqlite:///{journal}")
    rng = random.Random(seed)
    go.wait()
    for i in range(runs_):
        write_run(store, f"st{seed}", f"PS-{seed}-{i}", rng)
        if i % 5 == 4:
            Forwarder(store, url).forward()  # as each station's runs end: errors while the server is down
    while Forwarder(store, url).forward().pending:  # and on `rig records sync` once it is back
        time.sleep(0.2)
    done.set()


def test_three_stations_forward_at_once_through_a_server_restart_exactly_once(pg, tmp_path):
    clear(pg.url)
    ctx = multiprocessing.get_context("spawn")
    go, per_station = ctx.Event(), 40
    procs, dones = [], []
    for seed in (1, 2, 3):
        done = ctx.Event()
        dones.append(done)
        procs.append(ctx.Process(target=_station, args=(str(tmp_path / f"j{seed}.sqlite"), pg.url, per_station, seed,
                                                        go, done)))
    for p in procs:
        p.start()
    go.set()
    time.sleep(1.0)
    pg.stop()  # mid-run: some forwards fail, some are cut in their transaction
    time.sleep(2.0)
    pg.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    n_runs, distinct, n_tests, n_meas = counts(pg.url)
    assert (n_runs, distinct) == (3 * per_station, 3 * per_station), "every run exactly once"
    assert n_tests == 3 * per_station * len(TESTS) and n_meas == 3 * per_station * MEASUREMENTS_PER_RUN
