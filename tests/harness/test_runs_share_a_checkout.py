"""Runs that share a checkout: one reports folder per run at a time, a run id that ties run.json
to the results store, private temporary folders, and the leftovers of a killed run found and
removed by the next one."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys

from rig.results.store import ResultsStore
from rig.core.tempdirs import OWNER_FILE, PrivateDir, sweep_leftovers
from tests.harness.plugin_runs import PROJECT, child_env, pytest_cmd, write_test

PROBE = """
import pytest

@pytest.mark.req("CP-01")
def test_probe(rig):
    rig.await_ready()
"""


def run_child(tmp_path, env=None):
    probe = write_test(tmp_path, PROBE)
    reports = tmp_path / "reports"
    proc = subprocess.run(pytest_cmd([str(probe)], reports), cwd=PROJECT, env=env or child_env(),
                          capture_output=True, text=True, timeout=300)
    return proc, reports


def test_a_second_run_on_the_same_reports_folder_refuses_with_one_line(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "run.json").write_text('{"run_id": "first"}')
    with open(reports / ".run.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("run 20261202T100000-abcdef (pid 4242)\n")
        held.flush()
        proc, _ = run_child(tmp_path)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert errors == [f"ERROR: {reports}: in use by run 20261202T100000-abcdef (pid 4242); wait for it to "
                      f"finish or give --rig-reports DIR"], proc.stderr
    assert json.loads((reports / "run.json").read_text()) == {"run_id": "first"}, "the first run's record was touched"


def test_run_json_carries_the_run_id_of_the_results_store(tmp_path):
    proc, reports = run_child(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = json.loads((reports / "run.json").read_text())["run_id"]
    [stored] = ResultsStore(f"sqlite:///{reports / 'results.sqlite'}").recent_runs()
    assert run_id and stored["run_id"] == run_id
    assert f"run {run_id}  rig " in proc.stdout


def test_private_folders_are_private_and_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    folder = PrivateDir("ca-")
    key = folder.write_private("unit.key", b"secret")
    assert stat.S_IMODE(os.stat(folder.name).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    folder.cleanup()
    assert not os.path.exists(folder.name)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_run_finds_a_killed_runs_leftovers_removes_them_and_says_which_run(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    leftover = scratch / "rig-bench-killed"
    leftover.mkdir(mode=0o700)
    (leftover / "ca.key").write_text("private key")
    pid = dead_pid()
    (leftover / OWNER_FILE).write_text(json.dumps({"pid": pid, "run_id": "20261201T230000-0badf0", "started": 0}))
    alive = scratch / "rig-bench-alive"
    alive.mkdir()
    (alive / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "run_id": "mine", "started": 0}))
    env = dict(child_env(), TMPDIR=str(scratch))
    proc, reports = run_child(tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not leftover.exists() and alive.exists()
    said = f"run 20261201T230000-0badf0 (pid {pid}, "
    assert said in proc.stdout and "was killed; removed its leftovers" in proc.stdout, proc.stdout
    found = json.loads((reports / "run.json").read_text())["killed_runs_found"]
    assert len(found) == 1 and said in found[0]
    assert not [p for p in scratch.iterdir() if p.name.startswith("rig-") and p != alive], \
        "the run left its own private folders behind"


def test_sweep_ignores_folders_that_are_not_ours(tmp_path):
    (tmp_path / "rig-something").mkdir()
    (tmp_path / "other").mkdir()
    assert sweep_leftovers(str(tmp_path)) == []
    assert (tmp_path / "rig-something").exists()
