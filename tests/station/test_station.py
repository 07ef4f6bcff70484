"""`rig station` through its HTTP API, as the panel's page uses it: the operator's flow, the
verdicts (PASS, FAIL with its requirements, RIG FAULT - RETEST naming the instrument), prompts,
abort, several sockets at once, the shift's counts, and every request the station must refuse.
The browser itself is in test_panel_browser.py."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from rig.results.store import FAIL, INTERRUPTED, PASS, RIG_FAULT, ResultsStore
from tests.station.station_process import RIG, THREE_SOCKETS, StationProcess, station_file



@pytest.fixture(scope="module")
def station(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("station")
    st = StationProcess(tmp, str(station_file(tmp, THREE_SOCKETS)))
    yield st
    assert st.stop() == 0, st.output()


def start(station, socket: str, serial: str) -> None:
    status, body = station.post("api/start", {"socket": socket, "serial": serial})
    assert status == 200, body


def answer(station, socket: str, prompt: dict, text: str = "") -> None:
    status, body = station.post("api/answer", {"socket": socket, "prompt": prompt["id"], "answer": text})
    assert status == 200, body


# ---------------------------------------------------------------------- the verdicts
def test_good_unit_scan_start_prompt_pass_with_certificate_and_record(station):
    start(station, "A", "PS-0001")
    prompt = station.prompt("A")
    assert "Type 2 test plug" in prompt["text"] and prompt["kind"] == "continue"
    answer(station, "A", prompt)
    slot = station.verdict("A")
    run = slot["run"]
    assert run["verdict"]["verdict"] == PASS and run["verdict"]["word"] == "PASS", run["verdict"]
    assert run["safe"] == {"ok": True, "detail": None}
    assert all(t["verdict"] == "passed" for t in run["tests"]) and len(run["tests"]) >= 8
    measured = [m for t in run["tests"] for m in t["measurements"]]
    assert measured and all({"value", "low", "high", "unit", "passed"} <= set(m) for m in measured)
    with urllib.request.urlopen(station.url + "certificate/A", timeout=10) as r:
        html = r.read().decode()
    assert "PS-0001" in html and "verdict pass" in html
    store = ResultsStore(f"sqlite:///{station.tmp / 'reports' / 'station' / 'results.sqlite'}")
    assert any(r["serial"] == "PS-0001" and r["verdict"] == PASS for r in store.recent_runs())


def test_known_bad_unit_fails_with_its_requirements_and_broken_meter_is_a_rig_fault(station):
    start(station, "B", "PS-0002")
    start(station, "C", "PS-0003")  # two sockets at once
    for socket in ("B", "C"):
        answer(station, socket, station.prompt(socket))
    bad = station.verdict("B")["run"]["verdict"]
    assert bad["verdict"] == FAIL and bad["word"] == "FAIL"
    assert {"CP-02", "CP-06"} <= {f["id"] for f in bad["failing"]}
    assert all(f["text"] for f in bad["failing"]), "the failing requirements in plain words"
    broken = station.verdict("C")["run"]
    assert broken["verdict"]["verdict"] == RIG_FAULT and broken["verdict"]["word"] == "RIG FAULT - RETEST"
    assert broken["verdict"]["instruments"] == ["meter"] and broken["verdict"]["failing"] == []
    assert broken["verdict"]["certificate"] is False, "a rig fault gets no certificate: the unit is retested"
    status, _ = station.post("api/start", {"socket": "C", "serial": "PS-0003"})  # the retest
    assert status == 200
    answer(station, "C", station.prompt("C"))
    station.verdict("C")
    counts = station.state()["shift"]["counts"]
    assert counts["retests"] >= 1 and counts["rig_faults"] >= 2 and counts["failed"] >= 1


def test_abort_mid_test_makes_the_rig_safe_and_is_a_retest(station):
    start(station, "A", "PS-0004")
    station.prompt("A")  # mid-test: the unit is on the socket, the first test waits for the operator
    status, body = station.post("api/abort", {"socket": "A"})
    assert status == 200, body
    run = station.verdict("A", timeout_s=60)["run"]
    assert run["verdict"]["verdict"] == INTERRUPTED and "RETEST" in run["verdict"]["word"]
    assert run["safe"]["ok"] is True, run["safe"]


# ---------------------------------------------------------------------- refusals
def test_the_station_refuses_what_it_must(station):
    cases = [
        ({"socket": "A", "serial": "PS-12"}, 400, "pattern ^PS-[0-9]{4}$"),
        ({"socket": "Z", "serial": "PS-0005"}, 404, "no socket 'Z'"),
    ]
    for body, code, words in cases:
        status, reply = station.post("api/start", body)
        assert status == code and words in reply["error"], reply
    start(station, "A", "PS-0005")
    status, reply = station.post("api/start", {"socket": "A", "serial": "PS-0006"})
    assert status == 409 and "already testing PS-0005" in reply["error"]
    status, reply = station.post("api/start", {"socket": "B", "serial": "PS-0005"})
    assert status == 409 and "already on test in socket A" in reply["error"]
    status, reply = station.post("api/answer", {"socket": "B", "prompt": 1, "answer": ""})
    assert status == 409
    answer(station, "A", station.prompt("A"))
    assert station.verdict("A")["run"]["verdict"]["verdict"] == PASS


def test_only_the_panels_own_page_may_start_anything(station):
    no_header = station.post("api/start", {"socket": "A", "serial": "PS-0007"}, headers={"Content-Type": "application/json"})
    assert no_header[0] == 403
    foreign = station.post("api/start", {"socket": "A", "serial": "PS-0007"},
                           headers={"Content-Type": "application/json", "X-Rig-Panel": "1",
                                    "Origin": "http://evil.example"})
    assert foreign[0] == 403 and "another site" in foreign[1]["error"]
    assert not station.slot("A")["busy"]


# ---------------------------------------------------------------------- faults
def test_unanswered_prompt_is_a_rig_fault_naming_the_operator(tmp_path):
    st = StationProcess(tmp_path, str(station_file(tmp_path, '[[socket]]\nname = "A"\nrig = "emulated"\n',
                                                   prompt_timeout_s=1)))
    try:
        start(st, "A", "PS-0100")
        v = st.verdict("A")["run"]["verdict"]
        assert v["verdict"] == RIG_FAULT and v["instruments"] == ["operator"], v
    finally:
        assert st.stop() == 0


def test_four_sockets_test_four_units_in_parallel(tmp_path):
    st = StationProcess(tmp_path, "--emulated", "4")
    try:
        t0 = time.time()
        serials = {s: f"SIM-40{i}" for i, s in enumerate("ABCD")}
        for socket, serial in serials.items():
            start(st, socket, serial)
        for socket in serials:
            answer(st, socket, st.prompt(socket))
        runs = {s: st.verdict(s)["run"] for s in serials}
        assert {s: r["verdict"]["verdict"] for s, r in runs.items()} == dict.fromkeys(serials, PASS)
        assert max(r["started"] for r in runs.values()) < min(r["ended"] for r in runs.values()), \
            "every unit started before the first one ended: in parallel"
        store = ResultsStore(f"sqlite:///{tmp_path / 'reports' / 'station' / 'results.sqlite'}")
        recorded = {r["serial"]: r["verdict"] for r in store.recent_runs() if r["started_at"] >= _utc(t0 - 1)}
        assert recorded == dict.fromkeys(serials.values(), PASS), recorded
        assert len({r["run_id"] for r in store.recent_runs()}) == 4
    finally:
        assert st.stop() == 0
    units = [json.loads(x) for x in (tmp_path / "reports" / "station" / "units.jsonl").read_text().splitlines()]
    assert sorted(u["serial"] for u in units) == sorted(serials.values())
    again = StationProcess(tmp_path, "--emulated", "4")  # restarted mid-shift: the counts stay
    try:
        assert again.state()["shift"]["counts"]["tested"] == 4
    finally:
        again.stop()


def _utc(t: float):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).replace(tzinfo=None)


# ---------------------------------------------------------------------- station-file mistakes
@pytest.mark.parametrize("text, words", [
    ('[station]\nname = "x"\n', "station.toml: socket: no [[socket]]"),
    ('[station]\ncolour = 1\n[[socket]]\nrig = "emulated"\n', "station.toml: station.colour: unknown key"),
    ('[station]\nserial_pattern = "("\n[[socket]]\nrig = "emulated"\n', "station.serial_pattern: '(' is not a regular expression"),
    ('[[socket]]\nrig = "nowhere.toml"\n', "socket[0].rig: nowhere.toml:"),
    ('[[socket]]\nname = "A"\nrig = "emulated"\n[[socket]]\nname = "A"\nrig = "emulated"\n', "socket[1].name: 'A': two sockets"),
    ('[station]\nprompts = "shout"\n[[socket]]\nrig = "emulated"\n', "station.prompts: 'shout'"),
    ('[station\n', "station.toml: not TOML"),
])
def test_station_file_mistakes_are_one_line_naming_the_key(tmp_path, text, words):
    path = tmp_path / "station.toml"
    path.write_text(text)
    proc = subprocess.run([str(RIG), "station", str(path), "--port", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], proc.stderr


def test_port_in_use_is_one_line(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([str(RIG), "station", "--emulated", "1", "--port", str(port)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and f"127.0.0.1:{port}: in use" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
