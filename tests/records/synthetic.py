"""Runs of the end-of-line size written straight into a station's journal (no bench): what the
forwarding tests and benchmarks/records_load.py move around. 9 tests, 29 measurements per run, as
the end-of-line selection records."""

from __future__ import annotations

import random
from datetime import timedelta

from rig.results.store import PASS, ResultsStore, TestResult, new_run_id, utcnow

TESTS = [("test_boot_and_led.py::test_power_on", ["BOOT-01", "LED-01"], 0),
         ("test_boot_and_led.py::test_charging_green", ["LED-07"], 0),
         ("test_control_pilot.py::test_state_a", ["CP-01"], 1),
         ("test_control_pilot.py::test_state_b", ["CP-02", "CP-06"], 4),
         ("test_control_pilot.py::test_close", ["CP-03"], 1),
         ("test_control_pilot.py::test_open", ["CP-04"], 1),
         ("test_metering.py::test_phases", ["MTR-01"], 3),
         ("test_modes_and_ocpp.py::test_plug_and_charge", ["MODE-04"], 0),
         ("test_residual_current.py::test_6ma", ["RCD-01"], 19)]
MEASUREMENTS_PER_RUN = sum(n for _, _, n in TESTS)


def write_run(store: ResultsStore, station: str, serial: str, rng: random.Random, record=None) -> str:
    """One complete run; `record(seconds)` is told what each test's recording cost."""
    import time

    started = utcnow()
    run_id = new_run_id(started) + f"-{station}"
    store.start_run({"run_id": run_id, "serial": serial, "expected_serial": serial, "variant": "PS22-S",
                     "model": "PlugStream 22", "host": station, "rig_name": station, "mode": "eol",
                     "started_at": started})
    for i, (nodeid, reqs, n) in enumerate(TESTS):
        ms = [{"name": f"{nodeid.rsplit('_', 1)[-1]} {k}", "value": 32.0 + rng.gauss(0, 0.4), "unit": "A",
               "low": 28.8, "high": 32.5, "limit_source": "datasheet", "resolution": 0.01, "passed": True}
              for k in range(n)]
        t0 = time.perf_counter()
        store.record_test(run_id, TestResult(nodeid=nodeid, verdict="passed", requirements=reqs, measurements=ms,
                                             wall_seconds=0.5, finished_at=started + timedelta(seconds=i)))
        if record is not None:
            record(time.perf_counter() - t0)
    store.finish_run(run_id, PASS)
    return run_id
