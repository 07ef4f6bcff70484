"""The station's parts without processes: the shift's counts, a run's view built from its events,
the failure words the operator reads."""

from __future__ import annotations

import json
import time

from rig.results.store import FAIL, INTERRUPTED, PASS, RIG_FAULT
from rig.core.errors import plain_message
from rig.station.channel import StationChannel, write_answer
from rig.station.shift import ShiftLog
from rig.station.unit_run import UnitRun
from rig.bench.operator import Prompt


def unit(serial: str, verdict: str, t: float | None = None) -> dict:
    return {"t": t or time.time(), "socket": "A", "serial": serial, "verdict": verdict, "failing": [],
            "instruments": [], "model": "PS7", "run_dir": "", "certificate": None}


def test_shift_counts_retests_rig_faults_and_first_pass_yield(tmp_path):
    log = ShiftLog(tmp_path / "units.jsonl")
    for serial, verdict in [("S1", PASS), ("S2", FAIL), ("S2", PASS), ("S3", RIG_FAULT), ("S3", PASS),
                            ("S4", INTERRUPTED)]:
        log.add(unit(serial, verdict))
    c = log.counts()
    assert (c["tested"], c["passed"], c["failed"], c["retests"], c["rig_faults"]) == (6, 3, 1, 2, 2)
    # judged serials S1 (pass first), S2 (fail first), S3 (its first judged run passed): 2 of 3
    assert c["first_pass_yield"] == 66.7
    assert [u["serial"] for u in log.recent()][:2] == ["S4", "S3"]


def test_shift_survives_a_restart_a_torn_line_and_starts_anew_each_day(tmp_path):
    path = tmp_path / "units.jsonl"
    yesterday = time.time() - 86400
    lines = [json.dumps(unit("OLD", PASS, yesterday)), json.dumps(unit("S1", PASS)), '{"t": 17']
    path.write_text("\n".join(lines) + "\n")
    log = ShiftLog(path)
    assert log.counts()["tested"] == 1 and log.recent()[0]["serial"] == "S1"


def test_a_run_view_from_events_written_in_pieces(tmp_path):
    run = UnitRun("A", "S1", tmp_path)
    events = [{"type": "plan", "t": 1.0, "tests": [{"nodeid": "t1", "title": "one", "requirements": ["CP-01"]}]},
              {"type": "test-start", "t": 2.0, "nodeid": "t1"},
              {"type": "wait", "t": 2.5, "reason": "unit boots", "elapsed": 5.0, "total": 30.0, "done": False}]
    text = "".join(json.dumps(e) + "\n" for e in events)
    (tmp_path / "events.jsonl").write_text(text[:-20])  # the last line still being written
    assert run.read_events()
    assert run.view()["wait"] is None and run.view()["current"] == "t1"
    with open(tmp_path / "events.jsonl", "a") as f:
        f.write(text[-20:])
        f.write(json.dumps({"type": "test-done", "t": 3.0, "nodeid": "t1", "verdict": "passed",
                            "measurements": [{"name": "x"}], "requirements": ["CP-01"]}) + "\n")
    assert run.read_events()
    view = run.view()
    assert view["tests"][0]["state"] == "done" and view["last_done_t"] == 3.0 and view["wait"] is None


def test_a_run_that_wrote_no_verdict_is_a_retest_with_the_reason(tmp_path):
    (tmp_path / "pytest.log").write_text("collected\nERROR: rig.toml: meter.port: no such port\n")
    run = UnitRun("A", "S1", tmp_path)
    run.finish(4, "ERROR: rig.toml: meter.port: no such port")
    v = run.view()["verdict"]
    assert v["verdict"] == RIG_FAULT and v["word"] == "RIG FAULT - RETEST"
    assert "meter.port" in v["rig_faults"][0] and v["certificate"] is False
    aborted = UnitRun("B", "S2", tmp_path)
    aborted.aborting = True
    aborted.finish(-9, "")
    assert aborted.view()["verdict"]["word"] == "INTERRUPTED - RETEST"


def test_prompt_answers_only_when_they_make_sense(tmp_path):
    channel = StationChannel(tmp_path)
    write_answer(tmp_path, 1, "maybe")  # not a yes or a no: waits for a real answer, then times out
    assert channel.answerer(Prompt("Enclosure closed?", "yes_no"), timeout_s=0.3) is None
    write_answer(tmp_path, 2, "yes")
    assert channel.answerer(Prompt("Enclosure closed?", "yes_no"), timeout_s=5) == "yes"
    channel.close()
    kinds = [json.loads(x)["type"] for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert kinds == ["prompt", "prompt-closed", "prompt", "prompt-closed"]


def test_the_operator_reads_the_failure_not_the_source_around_it():
    longrepr = ("    if not ok:\n>       raise ChargerFailure(m.describe())\n"
                "E       rig.core.errors.ChargerFailure: duty for 32 A = 56.3 %, limit [52.8 .. 53.8] %")
    assert plain_message(longrepr) == "duty for 32 A = 56.3 %, limit [52.8 .. 53.8] %"
    assert plain_message(None) == "" and plain_message("meter: no reply") == "meter: no reply"


def test_with_a_shared_server_every_socket_records_into_one_station_journal(tmp_path):
    """Pending runs are forwarded by the next run's end: that run must read the same journal,
    whichever socket it is on."""
    from pathlib import Path

    from rig.station.runner import Station
    from rig.station.stationfile import emulated_station

    shared = emulated_station(2, reports=tmp_path, results_db="postgresql+psycopg://rig@db.site/records")
    station = Station(shared)
    commands = [station.command(s, "PS-1", tmp_path / s.name) for s in shared.sockets]
    journals = {c[c.index("--results-journal") + 1] for c in commands}
    assert journals == {str(tmp_path / "station" / "journal.sqlite")}
    assert all(c[c.index("--results-db") + 1] == shared.results_db for c in commands)
    local = Station(emulated_station(1, reports=tmp_path / "local"))
    cmd = local.command(local.file.sockets[0], "PS-2", Path(tmp_path))
    assert "--results-journal" not in cmd, "a SQLite store is the journal itself"
