"""The results store keeps every finished test of every run, whatever happens to the run.

Runs go through a child pytest on the emulated bench (plugin_runs), as a station runs them;
the yield and export cases fill a store through its API with known contents.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rig.results.export import export_unit, import_records
from rig.results.store import FAIL, PASS, RIG_FAULT, WRONG_UNIT, ResultsStore, TestResult
from rig.results.yields import yield_report
from tests.harness.plugin_runs import PROJECT, child_env, pytest_cmd, run_pytest

FINISHED = re.compile(r"^(rig/spec/\S+::\S+) (PASSED|FAILED|ERROR|SKIPPED)", re.M)


def stored_nodeids(db: Path) -> list[str]:
    """Read-only look at a store another process may be writing (WAL lets it)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return [r[0] for r in conn.execute("SELECT nodeid FROM tests ORDER BY seq")]
    except sqlite3.OperationalError:  # the tables are not there yet
        return []
    finally:
        conn.close()


def rig_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rig.cli", *map(str, args)], cwd=PROJECT,
                          capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------------- SIGKILL
def test_a_run_killed_with_sigkill_keeps_every_finished_test(tmp_path):
    reports, out = tmp_path / "reports", tmp_path / "out.txt"
    db = reports / "results.sqlite"
    env = dict(child_env(), PYTHONUNBUFFERED="1")
    suite = ["rig/spec/test_control_pilot.py", "rig/spec/test_metering.py", "rig/spec/test_boot_and_led.py"]
    cmd = [*pytest_cmd(suite, reports), "-vv"]  # -vv on top of -q: one line per test
    with open(out, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=PROJECT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while len(stored_nodeids(db)) < 3:
                assert proc.poll() is None, out.read_text()
                assert time.monotonic() < deadline, "the run never stored 3 tests"
                time.sleep(0.05)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    printed = [m.group(1) for m in FINISHED.finditer(out.read_text())]
    stored = stored_nodeids(db)
    assert len(stored) >= 3 and len(stored) == len(set(stored))
    assert set(stored) <= set(printed), "the store holds a test the run never reported"
    # -v prints a verdict after the call phase; the last printed test may have been killed in
    # its teardown, before it finished. Every test before it finished and must be stored.
    assert set(printed[:-1]) <= set(stored), (printed, stored)
    store = ResultsStore(f"sqlite:///{db}")
    [run] = store.recent_runs()
    assert run["ended_at"] is None and run["serial"] == "SIM-0001"
    detail = store.run_detail(run["run_id"])
    assert any(t["measurements"] for t in detail["tests"]), "measurements were not stored"
    listed = rig_cli("records", "list", "--db", f"sqlite:///{db}")
    assert "interrupted" in listed.stdout, listed.stdout + listed.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


# ---------------------------------------------------------------------- where the store is
def test_a_store_given_by_url_gets_the_records_and_the_default_file_is_not_made(tmp_path):
    other = tmp_path / "site" / "shared.sqlite"
    run = run_pytest(["rig/spec/test_control_pilot.py", "-k", "state_a or state_b_pwm",
                      "--results-db", f"sqlite:///{other}", "--operator", "bob"], tmp_path)
    assert run.returncode == 0, run.output
    assert not (run.reports / "results.sqlite").exists()
    store = ResultsStore(f"sqlite:///{other}")
    [r] = store.recent_runs()
    assert (r["serial"], r["model"], r["variant"], r["operator"], r["verdict"]) == (
        "SIM-0001", "PlugStream 22", "PS22-S", "bob", PASS)
    assert r["firmware"].startswith("PS-FW") and r["rig_name"] == "emulated" and r["mode"] == "suite"
    tests = store.run_detail(r["run_id"])["tests"]
    assert {t["requirements"][0] for t in tests} == {"CP-01", "CP-02"}
    m = next(t for t in tests if t["requirements"] == ["CP-01"])["measurements"][0]
    assert m["name"] == "CP high level in state A" and m["passed"] is True
    assert m["low"] < m["value"] < m["high"] and "IEC 61851-1" in m["limit_source"]


def test_xdist_run_writes_every_test_from_the_controller(tmp_path):
    db = tmp_path / "env.sqlite"
    reports = tmp_path / "reports"
    env = dict(child_env(), RIG_RESULTS_DB=f"sqlite:///{db}")  # a site's store named by the environment
    proc = subprocess.run(pytest_cmd(["rig/spec/test_control_pilot.py", "-n", "2"], reports), cwd=PROJECT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = {t["nodeid"]: t["outcome"] for t in json.loads((reports / "run.json").read_text())["tests"]}
    store = ResultsStore(f"sqlite:///{db}")
    [r] = store.recent_runs()  # one run, written by the controller alone
    stored = {t["nodeid"]: t["verdict"] for t in store.run_detail(r["run_id"])["tests"]}
    assert stored == ran and len(stored) >= 8
    assert r["ended_at"] is not None and r["verdict"] == PASS and r["serial"] == "SIM-0001"


# ---------------------------------------------------------------------- yield
T0 = datetime(2025, 3, 1, 8, 0, 0)


def add_run(store, serial, model, verdict, day, tests=(), ended=True, mode="eol"):
    started = T0 + timedelta(days=day, minutes=len(store.recent_runs(1000)))
    run_id = store.start_run({"serial": serial, "model": model, "mode": mode, "started_at": started})
    for nodeid, v, reqs, fault in tests:
        store.record_test(run_id, TestResult(nodeid, v, list(reqs), rig_fault=fault))
    if ended:
        store.finish_run(run_id, verdict, ended_at=started + timedelta(minutes=3))
    return run_id


def ok(reqs=("CP-01",)):
    return ("t::ok", "passed", reqs, None)


def bad(name, *reqs):
    return (f"t::{name}", "failed", reqs, None)


def known_store(tmp_path) -> ResultsStore:
    s = ResultsStore(f"sqlite:///{tmp_path / 'known.sqlite'}")
    add_run(s, "G1", "PlugStream 22", FAIL, -5, [bad("duty", "CP-06")])  # before the period
    add_run(s, "G1", "PlugStream 22", PASS, 1, [ok()])  # its retest: not a first pass
    add_run(s, "A1", "PlugStream 22", PASS, 1, [ok()])
    add_run(s, "B1", "PlugStream 22", FAIL, 2, [ok(), bad("duty", "CP-06", "CP-02")])
    add_run(s, "B1", "PlugStream 22", PASS, 3, [ok()])
    add_run(s, "C1", "PlugStream 22", RIG_FAULT, 2, [("t::m", "error", ["MTR-01"], "meter: no answer")])
    add_run(s, "C1", "PlugStream 22", PASS, 2, [ok()])  # the rig fault was no attempt: first pass
    add_run(s, "D1", "PlugStream 22", None, 4, [ok()], ended=False)  # killed
    add_run(s, "D1", "PlugStream 22", FAIL, 4, [bad("duty", "CP-06"), bad("mtr", "MTR-01")])
    add_run(s, "E7", "PlugStream 7", PASS, 5, [ok()])
    add_run(s, "F7", "PlugStream 7", WRONG_UNIT, 5, [("t::x", "error", ["BOOT-01"], None)])
    add_run(s, "F7", "PlugStream 7", PASS, 6, [ok()])
    add_run(s, "H7", "PlugStream 7", FAIL, 40, [bad("late", "CP-03")])  # after the period
    return s


def test_yield_counts_units_first_judged_in_the_period_and_rig_faults_apart(tmp_path):
    report = yield_report(known_store(tmp_path), T0, T0 + timedelta(days=30))
    by_model = {m.model: (m.units, m.first_pass, m.runs) for m in report.models}
    assert by_model == {"PlugStream 22": (4, 2, 6), "PlugStream 7": (2, 2, 2)}
    assert report.failing == [("CP-06", 2, 2), ("CP-02", 1, 1), ("MTR-01", 1, 1)]
    assert (report.rig_fault_runs, report.rig_faults_by_instrument) == (1, {"meter": 1})
    assert (report.wrong_unit_runs, report.interrupted_runs, report.runs) == (1, 1, 11)


def test_yield_command_prints_the_same(tmp_path):
    known_store(tmp_path)
    got = rig_cli("records", "yield", "--since", "2025-03-01", "--until", "2025-03-31",
                  "--db", f"sqlite:///{tmp_path / 'known.sqlite'}")
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert re.search(r"PlugStream 22\s+4\s+2\s+50.0 %\s+6", got.stdout), got.stdout
    assert re.search(r"PlugStream 7\s+2\s+2\s+100.0 %\s+2", got.stdout), got.stdout
    failing = lines[lines.index("most frequent failing requirements (failed runs, units):") + 1]
    assert failing.split()[:2] == ["CP-06", "2"]
    assert "rig faults 1 runs (meter 1); wrong unit 1; interrupted 1" in got.stdout


# ---------------------------------------------------------------------- export
def test_export_import_export_round_trip(tmp_path):
    src = ResultsStore(f"sqlite:///{tmp_path / 'station.sqlite'}")
    measured = [{"name": "duty for 32 A", "value": 53.3, "unit": "%", "low": 52.83, "high": 53.83,
                 "limit_source": "IEC 61851-1 D = I/0.6", "resolution": 0.1, "passed": True},
                {"name": "contactor open after C->B", "value": None, "unit": "s", "low": None, "high": 0.1,
                 "limit_source": "cp.contactor_open_c_to_b_max_s", "resolution": 1e-6, "passed": False}]
    run_id = src.start_run({"serial": "SN-1", "model": "PlugStream 22", "firmware": "PS-FW 4.2.1",
                            "operator": "alice", "mode": "eol"})
    src.record_test(run_id, TestResult("rig/spec/a.py::test_duty", "failed", ["CP-02", "CP-06"],
                                       message="E   duty out", measurements=measured))
    src.record_test(run_id, TestResult("rig/spec/a.py::test_meter", "error", ["MTR-01"],
                                       rig_fault="meter: no answer"))
    src.finish_run(run_id, RIG_FAULT, "rig fault: meter: no answer")
    add_run(src, "SN-2", "PlugStream 7", PASS, 0, [ok()])  # another unit: not in SN-1's export

    out = tmp_path / "SN-1.json"
    got = rig_cli("records", "export", "SN-1", "-o", out, "--db", f"sqlite:///{tmp_path / 'station.sqlite'}")
    assert got.returncode == 0, got.stderr
    doc = json.loads(out.read_text())
    assert [r["run_id"] for r in doc["runs"]] == [run_id]
    [duty, meter] = doc["runs"][0]["tests"]
    assert duty["measurements"] == measured and duty["requirements"] == ["CP-02", "CP-06"]
    assert meter["rig_fault"] == "meter: no answer" and doc["runs"][0]["verdict"] == RIG_FAULT

    site = ResultsStore(f"sqlite:///{tmp_path / 'site.sqlite'}")
    assert import_records(site, doc) == [run_id]
    assert import_records(site, doc) == []  # importing twice adds nothing
    assert json.loads(json.dumps(export_unit(site, "SN-1"))) == doc


FIXTURE_FAILS = """
import pytest
from rig.core.errors import ChargerFailure

@pytest.fixture
def never_registers(rig):
    raise ChargerFailure("unit did not connect and register within 60 s")

@pytest.mark.req("BOOT-01")
def test_probe(never_registers):
    pass
"""


def test_a_unit_failing_in_a_fixture_is_a_unit_failure_not_a_rig_fault(tmp_path):
    from tests.harness.plugin_runs import write_test

    probe = write_test(tmp_path, FIXTURE_FAILS)
    run = run_pytest([str(probe)], tmp_path)
    assert run.returncode == 1, run.output
    store = ResultsStore(f"sqlite:///{run.reports / 'results.sqlite'}")
    [r] = store.recent_runs()
    [t] = store.run_detail(r["run_id"])["tests"]
    assert (t["verdict"], t["rig_fault"], r["verdict"]) == ("failed", None, FAIL)
    assert "did not connect and register" in t["message"] and "BOOT-01" in r["verdict_detail"]


def test_a_store_that_cannot_be_opened_means_nothing_is_tested(tmp_path):
    """Tried on the old store: a directory, a file that is no database, a URL without its driver
    each let the run test and exit 0 with every record lost. Now: one line, nothing tested, exit 3."""
    (tmp_path / "a-directory").mkdir()
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\x00not sqlite" * 300)
    for url, said in ((f"sqlite:///{tmp_path / 'a-directory'}", "unable to open database file"),
                      (f"sqlite:///{junk}", "file is not a database"),
                      ("mysql+mysqldb://rig@127.0.0.1:1/records", "driver is not installed")):
        run = run_pytest(["rig/spec/test_control_pilot.py", "--results-db", url], tmp_path / url[-6:].strip("/:"))
        assert run.returncode == 3, (url, run.output[-1500:])
        assert said in run.output and "nothing is tested" in run.output, (url, run.output[-1500:])
        assert " passed" not in run.output.splitlines()[-1], run.output[-500:]


def _open_store(url: str, go) -> None:
    go.wait()
    ResultsStore(url).close()


def test_several_stations_opening_a_new_store_at_once_all_get_it(tmp_path):
    """Found by the four-socket station: four runs creating the store's tables at the same moment,
    the losers saw 'table already exists' and ended as rig faults."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'new{round_}.sqlite'}"
        go = ctx.Event()
        procs = [ctx.Process(target=_open_store, args=(url, go)) for _ in range(6)]
        for p in procs:
            p.start()
        go.set()
        for p in procs:
            p.join(60)
        assert [p.exitcode for p in procs] == [0] * 6
        assert ResultsStore(url).recent_runs() == []


def test_a_damaged_station_journal_is_kept_aside_and_a_new_one_started(tmp_path):
    """The station's own journal (reports/results.sqlite) damaged: the run goes on with a new one and
    the damaged file is kept whole beside it. A file named with --results-db is not the station's to
    move: that stops the run (test_a_store_that_cannot_be_opened_means_nothing_is_tested)."""
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "results.sqlite").write_bytes(b"\x00damaged" * 500)
    run = run_pytest(["rig/spec/test_control_pilot.py", "-k", "state_a"], tmp_path)
    assert run.returncode == 0, run.output[-2000:]
    assert "is damaged: kept aside as" in run.output, run.output[-2000:]
    [aside] = list(reports.glob("results.sqlite.damaged-*"))
    assert aside.read_bytes() == b"\x00damaged" * 500
    [r] = ResultsStore(f"sqlite:///{reports / 'results.sqlite'}").recent_runs()
    assert r["verdict"] == PASS


def test_an_import_cut_short_leaves_no_partial_run_and_a_second_import_completes_it(tmp_path):
    """Each run goes in whole or not at all: a run whose last test cannot be written leaves
    nothing of itself behind, so the next import does not take it for already present."""
    import random

    from tests.records.synthetic import TESTS, write_run

    source = ResultsStore(f"sqlite:///{tmp_path / 'station.sqlite'}")
    write_run(source, "st1", "PS-7", random.Random(1))
    write_run(source, "st1", "PS-7", random.Random(2))
    doc = json.loads(json.dumps(export_unit(source, "PS-7")))
    good_last = doc["runs"][1]["tests"][-1]["verdict"]
    doc["runs"][1]["tests"][-1]["verdict"] = None  # the write fails at the run's very last test
    target = ResultsStore(f"sqlite:///{tmp_path / 'site.sqlite'}")
    with pytest.raises(Exception):
        import_records(target, doc)
    kept = target.recent_runs()
    assert [r["run_id"] for r in kept] == [doc["runs"][0]["run_id"]], "the first run whole, nothing of the second"
    doc["runs"][1]["tests"][-1]["verdict"] = good_last
    assert import_records(target, doc) == [doc["runs"][1]["run_id"]]
    assert len(target.run_detail(doc["runs"][1]["run_id"])["tests"]) == len(TESTS)
