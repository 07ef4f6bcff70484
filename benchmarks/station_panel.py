"""What the station's panel costs an end-of-line run, and how soon it shows a finished test.

1. The same end-of-line run (emulated bench, prompts answered by the emulated rig) `--runs N` times
   by hand (`pytest --eol` in a process, start to exit) and N times through `rig station` (the
   start request to the verdict arriving on the panel's event stream): the station's overhead per
   unit in seconds, and as a share of the emulated run and of a real-time end-of-line run
   (`--real-eol-s`, by default the 81.5 s benchmarks/realtime_accuracy.py measured).
2. Latency: from a run writing a finished test to the event stream delivering it (every test of
   every run through the station), and, with Debian's Chromium installed, to the page showing it
   (`window.panelLatency`, measured by the page itself after it has rendered).

Goals (issue 14): no more than 2 % added to an end-of-line run's wall time; a finished test shown
within 200 ms. The last line reads
`station overhead <S> s per unit (<P> % of a real-time run); finished test shown within <L> ms (worst)`.

    python benchmarks/station_panel.py [--runs 5] [--real-eol-s 81.5]

A benchmark, not a test: it prints figures and never fails on them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tests.harness.plugin_runs import child_env  # noqa: E402  (after the path is set)
from tests.station.station_process import StationProcess, station_file  # noqa: E402

SOCKET = '[[socket]]\nname = "A"\nrig = "emulated"\n'


def by_hand(tmp: Path, serial: str) -> float:
    reports = tmp / f"hand-{serial}"
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "rig.spec", "-c", str(tmp / "pytest.ini"), "-p",
           "no:cacheprovider", "--rig", "emulated", "--eol", "--serial", serial, "--sim-serial", serial,
           "--prompts", "emulated", "--hazardous", "--rig-reports", str(reports), "-q"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp, env=child_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the end-of-line run by hand did not pass:\n{proc.stdout[-2000:]}")
    return wall


class EventStream(threading.Thread):
    """The panel's event stream, read as the page reads it; notes when each event arrives."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.events = url, []
        self.verdicts: dict[str, float] = {}  # serial -> when its verdict arrived
        self.latencies: list[float] = []
        self._seen_done: dict[str, float] = {}

    def run(self) -> None:
        with urllib.request.urlopen(self.url + "api/events", timeout=600) as stream:
            kind = None
            for raw in stream:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "slot":
                    self._slot(json.loads(line[6:]), time.time())

    def _slot(self, slot: dict, now: float) -> None:
        run = slot.get("run") or {}
        done_t = run.get("last_done_t")
        if done_t and self._seen_done.get(run["serial"]) != done_t:
            self._seen_done[run["serial"]] = done_t
            self.latencies.append(now - done_t)
        if run.get("verdict") and not slot["busy"]:
            self.verdicts.setdefault(run["serial"], now)


def through_station(station: StationProcess, stream: EventStream, serial: str) -> float:
    t0 = time.time()
    status, body = station.post("api/start", {"socket": "A", "serial": serial})
    if status != 200:
        raise SystemExit(f"the station refused: {body}")
    while serial not in stream.verdicts:
        time.sleep(0.005)
    verdict = station.slot("A")["run"]["verdict"]["verdict"]
    if verdict != "pass":
        raise SystemExit(f"the end-of-line run through the station did not pass: {verdict}")
    return stream.verdicts[serial] - t0


def browser_latencies(url: str, station: StationProcess, runs: int) -> list[float]:
    if not (shutil.which("/usr/bin/chromium") and shutil.which("/usr/bin/chromedriver")):
        return []
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(url)
        time.sleep(1.0)
        for i in range(runs):
            serial = f"PS-9{i:03d}"
            station.post("api/start", {"socket": "A", "serial": serial})
            station.wait_for("A", lambda s: not s["busy"] and s["run"]["serial"] == serial and s["run"].get("verdict"))
            time.sleep(0.3)
        return list(driver.execute_script("return window.panelLatency"))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--real-eol-s", type=float, default=81.5,
                        help="wall time of a real-time end-of-line run (benchmarks/realtime_accuracy.py)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="station-bench-") as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "pytest.ini").write_text("[pytest]\n")
        by_hand(tmp, "PS-0000")  # warm the caches both ways start with
        hand = [by_hand(tmp, f"PS-1{i:03d}") for i in range(args.runs)]
        station = StationProcess(tmp, str(station_file(tmp, SOCKET, prompts="emulated")))
        try:
            stream = EventStream(station.url)
            stream.start()
            time.sleep(0.5)
            through_station(station, stream, "PS-0001")  # warm
            panel = [through_station(station, stream, f"PS-2{i:03d}") for i in range(args.runs)]
            page = browser_latencies(station.url, station, args.runs)
        finally:
            station.stop()
    h, p = statistics.median(hand), statistics.median(panel)
    overhead = p - h
    print(f"end-of-line by hand:        median {h:.3f} s  (runs: {', '.join(f'{x:.2f}' for x in hand)})")
    print(f"through the station:        median {p:.3f} s  (runs: {', '.join(f'{x:.2f}' for x in panel)})")
    print(f"station overhead per unit:  {overhead * 1000:+.0f} ms = {100 * overhead / h:+.1f} % of the emulated run, "
          f"{100 * overhead / args.real_eol_s:+.2f} % of a {args.real_eol_s:g} s real-time run")
    lat = stream.latencies
    print(f"finished test to event stream: {len(lat)} tests, median {1000 * statistics.median(lat):.0f} ms, "
          f"worst {1000 * max(lat):.0f} ms")
    worst = max(lat)
    if page:
        print(f"finished test to the page showing it (Chromium): {len(page)} tests, median "
              f"{1000 * statistics.median(page):.0f} ms, worst {1000 * max(page):.0f} ms")
        worst = max(page)
    else:
        print("no Chromium: the page's own latency was not measured (apt-get install chromium chromium-driver)")
    print(f"station overhead {overhead:.3f} s per unit ({100 * overhead / args.real_eol_s:.2f} % of a real-time run); "
          f"finished test shown within {1000 * worst:.0f} ms (worst)")


if __name__ == "__main__":
    main()
