"""How well the harness times a unit in real time: its measurements against the device's ground truth.

Starts `rig device serve` (the emulated unit in real time, its own process) and runs the harness
against the printed real-bench rig file twice:

1. the real-time selection (CP-01..CP-06, RCD-01 at 6 mA, a PEN excursion and its ride-through,
   LED-05/06/07, OCPP-01). For every timing measurement (contactor close after B->C, open after
   C->B and after unplug, the 6 mA trip, the PEN trip) it prints the harness's value, the true
   value from the device's journal (stimulus to response, both as the device saw them) and the
   error; for the ride-through, the excursion the harness asked for against the one the unit saw;
2. the end-of-line selection (`--eol`): the wall time per unit (pytest start to verdict) and the
   harness's overhead, the wall time minus the waits the tests ask for (every clock.sleep and
   wait_until, counted by this file acting as a pytest plugin in the harness's process).

Goals (issue 12): every timing error within 1 ms plus the stated resolution; an end-of-line run
of at most 60 s per unit with under 5 % overhead. The last line reads
`worst timing error: <E> ms; end-of-line wall <W> s per unit; overhead <O> %`.

    python benchmarks/realtime_accuracy.py [--keep DIR]

A benchmark, not a test: it prints figures and never fails on them (the machine's load moves them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from tests.harness.device_process import DeviceProcess  # noqa: E402  (after the path is set)

SPEC = "rig/spec"
SELECTION = [
    "test_control_pilot.py::test_state_a_steady_plus_12v_no_pwm_contactor_open",
    "test_control_pilot.py::test_state_b_pwm_1khz_minus_12v_duty_for_offered_current",
    "test_control_pilot.py::test_contactor_closes_within_3s_of_state_c_and_never_in_b",
    "test_control_pilot.py::test_contactor_opens_within_100ms_of_c_to_b",
    "test_control_pilot.py::test_unplug_opens_contactor_and_stops_pwm_within_100ms",
    "test_metering.py::test_delivered_current_follows_offered_current[16]",
    "test_residual_current.py::test_sudden_smooth_dc_trips_within_its_time[6mA]",
    "test_pen_fault.py::test_supply_outside_the_window_disconnects_line_neutral_and_earth_within_5s[under]",
    "test_pen_fault.py::test_excursion_shorter_than_4s_does_not_trip[under-just-outside]",
    "test_boot_and_led.py::test_ready_without_vehicle_is_blue_solid",
    "test_boot_and_led.py::test_vehicle_plugged_in_not_charging_is_green_solid",
    "test_boot_and_led.py::test_vehicle_charging_is_green_pulsing",
    "test_modes_and_ocpp.py::test_connector_status_follows_a_session",
]
PEN_WINDOW_V = (207.0, 253.0)  # only to recognise an excursion in the journal; the limits data judges


def _vehicle(state):
    return lambda e: e["event"] == "vehicle" and e["state"] == state


def _contactor(closed):
    return lambda e: e["event"] == "contactor" and e["closed"] == closed


def _out_of_window(e) -> bool:
    return e["event"] == "supply" and any(not PEN_WINDOW_V[0] <= v <= PEN_WINDOW_V[1] for v in e["v"])


#: measurement name (regex) -> (what it is, stimulus, response) in the device's journal
TIMINGS = [
    (r"^contactor close after B->C$", "contactor close after B->C", _vehicle("C"), _contactor(True)),
    (r"^contactor open after C->B$", "contactor open after C->B", _vehicle("B"), _contactor(False)),
    (r"^contactor open after unplug$", "contactor open after unplug", _vehicle("A"), _contactor(False)),
    (r"^trip time at 6 mA", "6 mA residual-current trip", lambda e: e["event"] == "injection" and e["on"],
     _contactor(False)),
    (r"line, neutral and earth open$", "PEN trip (line, neutral, earth open)", _out_of_window,
     lambda e: e["event"] == "contactor" and not (e["closed"] or e["neutral"] or e["earth"])),
]
RIDE_THROUGH = re.compile(r"after a ([0-9.]+) s excursion to")


# ------------------------------------------------------------------------ the plugin side (in pytest)
_marks: list[dict] = []
_waits = {"seconds": 0.0}
_depth = threading.local()


def pytest_configure(config) -> None:
    """Count every wait the tests ask for (outermost sleep / wait_until only: a wait_until's polls
    are part of it)."""
    from rig.core.clock import RealClock

    for name in ("sleep", "wait_until"):
        original = getattr(RealClock, name)

        def counted(self, *args, _original=original, **kwargs):
            depth = getattr(_depth, "n", 0)
            _depth.n = depth + 1
            started = time.monotonic()
            try:
                return _original(self, *args, **kwargs)
            finally:
                _depth.n = depth
                if depth == 0:
                    _waits["seconds"] += time.monotonic() - started

        setattr(RealClock, name, counted)


def pytest_runtest_logstart(nodeid, location) -> None:
    _marks.append({"nodeid": nodeid, "start": time.monotonic()})


def pytest_runtest_logfinish(nodeid, location) -> None:
    _marks[-1]["end"] = time.monotonic()


def pytest_unconfigure(config) -> None:
    out = os.environ.get("RIG_BENCH_MARKS")
    if out:
        Path(out).write_text(json.dumps({"tests": _marks, "waits_s": _waits["seconds"]}))


# ------------------------------------------------------------------------ the benchmark side
def run_harness(device: DeviceProcess, args: list[str], work: Path, name: str) -> tuple[dict, dict, float, int]:
    reports, marks = work / f"reports-{name}", work / f"marks-{name}.json"
    env = {**os.environ, "RIG_BENCH_MARKS": str(marks),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-p",
           "realtime_accuracy", "--rig", str(device.rig_file), "--rig-reports", str(reports), "--hazardous",
           "--prompts", "emulated", *args]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if not (reports / "run.json").exists() or not marks.exists():
        raise SystemExit(f"{name}: the harness left no record (exit {proc.returncode}):\n{proc.stdout[-3000:]}")
    return json.loads((reports / "run.json").read_text()), json.loads(marks.read_text()), wall, proc.returncode


def timing_rows(run: dict, marks: dict, truth: list[dict]) -> list[tuple[str, float, float, float]]:
    """(what, harness s, truth s, resolution s) for every timing measurement the journal can judge."""
    windows = {m["nodeid"]: (m["start"], m.get("end", float("inf"))) for m in marks["tests"]}
    rows = []
    for test in run["tests"]:
        start, end = windows.get(test["nodeid"], (None, None))
        if start is None:
            continue
        seen = [e for e in truth if start <= e["mono"] <= end]
        for m in test["measurements"]:
            row = _timing_row(m, seen)
            if row is not None and row not in rows:  # the ride-through is named once per phase
                rows.append(row)
    return rows


def _timing_row(m: dict, seen: list[dict]):
    if m.get("value") is None:
        return None
    for pattern, what, stimulus, response in TIMINGS:
        if re.search(pattern, m["name"]):
            # the first response this test caused (a response before any stimulus is the safe
            # state the test started from), timed from the latest stimulus before it
            for i, e in enumerate(seen):
                causes = [s for s in seen[:i] if stimulus(s)] if response(e) else []
                if causes:
                    return what, m["value"], e["mono"] - causes[-1]["mono"], m.get("resolution") or 0.0
            return None
    ride = RIDE_THROUGH.search(m["name"])
    if ride:
        outs = [i for i, e in enumerate(seen) if _out_of_window(e)]
        if outs:
            back = next((e for e in seen[outs[0] + 1:] if e["event"] == "supply" and not _out_of_window(e)), None)
            if back is not None:
                return ("ride-through excursion applied", float(ride.group(1)), back["mono"] - seen[outs[0]]["mono"],
                        0.0)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", metavar="DIR", help="keep the reports and journals here")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rt-accuracy-"))
    work.mkdir(parents=True, exist_ok=True)

    print("real-time selection against `rig device serve` ...", flush=True)
    (work / "selection").mkdir(exist_ok=True)
    device = DeviceProcess(work / "selection").start()
    try:
        run, marks, wall, rc = run_harness(device, [f"{SPEC}/{t}" for t in SELECTION], work, "selection")
    finally:
        device.stop()
    counts = run["counts"]
    print(f"  {sum(counts.values())} tests, {counts} in {wall:.1f} s wall (exit {rc})")
    rows = timing_rows(run, marks, device.truth())
    print(f"  {'measurement':<38} {'harness':>12} {'truth':>12} {'error':>10}  resolution")
    worst = 0.0
    for what, measured, true, resolution in rows:
        error_ms = (measured - true) * 1000.0
        worst = max(worst, abs(error_ms))
        print(f"  {what:<38} {measured:>10.6f} s {true:>10.6f} s {error_ms:>+8.3f} ms  {resolution * 1000:g} ms")
    if not rows:
        print("  no timing measurement could be matched to the device's journal")
    late = [e.get("pacer_late_us_worst") for e in device.truth() if e["event"] == "stop"]
    if late and late[-1] is not None:
        print(f"  the device's pacer delivered its timers at most {late[-1] / 1000:.3f} ms late "
              "(events keep their true time)")

    print("end-of-line selection against a fresh device ...", flush=True)
    (work / "eol").mkdir(exist_ok=True)
    device = DeviceProcess(work / "eol").start()
    try:
        eol_run, eol_marks, eol_wall, eol_rc = run_harness(device, [SPEC, "--eol", "--serial", "SIM-0001"], work, "eol")
    finally:
        device.stop()
    waits = eol_marks["waits_s"]
    overhead = 100.0 * max(0.0, eol_wall - waits) / eol_wall
    print(f"  verdict exit {eol_rc}; {sum(eol_run['counts'].values())} tests; wall {eol_wall:.1f} s from pytest start "
          f"to verdict; the tests asked for {waits:.1f} s of waits; the rest, {eol_wall - waits:.1f} s, is the "
          "harness (start-up, rig open, instrument I/O, reports)")
    print(f"reports and journals: {work}")
    print(f"worst timing error: {worst:.3f} ms; end-of-line wall {eol_wall:.1f} s per unit; overhead {overhead:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
