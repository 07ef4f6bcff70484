"""The reports a person reads: Allure steps, measurements, requirement links, environment,
severity, the per-test timeline (CSV and PNG) and progress of long real-bench waits."""

from __future__ import annotations

import csv
import io
import json
import struct
import time

import pytest

from rig.bench.journal import progress_line
from rig.reports.allure import catalogue, severity_of
from rig.core.clock import RealClock
from tests.harness.plugin_runs import run_pytest

RCD_TEST = "rig/spec/test_residual_current.py::test_sudden_smooth_dc_trips_within_its_time"
METER_TEST = "rig/spec/test_metering.py::test_phases_and_rated_current"


# ---------------------------------------------------------------------- one small run, many checks
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("allure")
    result = run_pytest([f"{RCD_TEST}[6mA]", METER_TEST, "--hazardous", "--rig-timeline-png", "all"], tmp)
    assert result.returncode == 0, result.output[-3000:]
    return result


def _results(run) -> dict[str, dict]:
    out = {}
    for path in (run.reports / "allure-results").glob("*-result.json"):
        data = json.loads(path.read_text())
        out[data["name"]] = data
    return out


def _result(run, fragment: str) -> dict:
    matches = [r for name, r in _results(run).items() if fragment in name]
    assert len(matches) == 1, f"{fragment}: {list(_results(run))}"
    return matches[0]


def _steps(steps: list[dict]):
    for step in steps:
        yield step
        yield from _steps(step.get("steps", []))


def _labels(result: dict, name: str) -> list[str]:
    return [label["value"] for label in result["labels"] if label["name"] == name]


def test_every_rig_action_is_a_step_and_polls_collapse_into_one_wait(run):
    result = _result(run, "test_sudden_smooth_dc_trips_within_its_time")
    titles = [s["name"] for s in _steps(result["steps"])]
    assert any(t.startswith("injector.set_current(0.006)") for t in titles), titles
    assert any(t.startswith("meter.currents() → (") for t in titles), titles
    waits = [t for t in titles if t.startswith("wait")]
    assert waits and all("→" in t for t in waits), waits  # each wait says how it ended
    # the trip is polled every 10 ms; those polls are not steps
    assert sum(t.startswith("pilot.sense()") for t in titles) < 10, titles


def test_measurements_are_steps_with_limits_unit_and_sources(run):
    result = _result(run, "test_sudden_smooth_dc_trips_within_its_time")
    measured = [s for s in _steps(result["steps"]) if s["name"].startswith("measure trip time")]
    assert measured, [s["name"] for s in _steps(result["steps"])]
    params = {p["name"]: p["value"] for p in measured[0]["parameters"]}
    assert params["unit"] == "s" and params["verdict"] == "pass"
    assert params["high limit"] != "none" and "rcd.trip_6ma_max_s" in params["limit source"]
    assert params["resolution"].endswith(" s")


def test_requirements_are_labels_links_and_set_the_severity(run):
    rcd = _result(run, "test_sudden_smooth_dc_trips_within_its_time")
    assert any(r.startswith("RCD-") for r in _labels(rcd, "requirement"))
    links = [link for link in rcd["links"] if link["type"] == "requirement"]
    assert links and all(link["url"] == f"../requirements.html#{link['name']}" for link in links), links
    assert _labels(rcd, "severity") == ["blocker"]
    assert "Requirements checked" in rcd["descriptionHtml"]
    meter = _result(run, "test_phases_and_rated_current")
    assert _labels(meter, "severity") == ["normal"]
    page = (run.reports / "requirements.html").read_text()
    assert "id='RCD-01'" in page and "id='MTR-01'" in page


def test_environment_names_the_unit_the_rig_and_every_instrument(run):
    text = (run.reports / "allure-results" / "environment.properties").read_text()
    env = dict(line.split("=", 1) for line in text.splitlines() if line)
    assert env["unit.firmware"] not in ("", "(not yet reported)")
    assert env["unit.serial"] and env["run.seed"] == "1" and env["run.defect"] == "none"
    assert "EmuLoad" in env["instrument.load"] and "EmuInjector" in env["instrument.injector"]
    assert "SDM630" in env["instrument.meter"] and "TCS34725" in env["instrument.led"]


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_each_test_has_its_timeline_as_csv_and_png_in_allure_and_under_reports(run):
    result = _result(run, "test_sudden_smooth_dc_trips_within_its_time")
    attachments = {a["name"]: a for a in result["attachments"]}
    png = (run.reports / "allure-results" / attachments["timeline (plot)"]["source"]).read_bytes()
    width, height = _png_size(png)
    assert 600 <= width <= 1600 and 400 <= height <= 1200 and len(png) > 10_000
    text = (run.reports / "allure-results" / attachments["timeline (CSV)"]["source"]).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    channels = {r["channel"] for r in rows}
    assert {"vehicle.state", "contact.L1", "meter.I1", "meter.V1", "cp.duty_pct", "fault.injector_mA",
            "ocpp", "action"} <= channels, channels
    times = [float(r["t_s"]) for r in rows]
    assert times == sorted(times)
    # found without Allure too
    stem = "test_residual_current__test_sudden_smooth_dc_trips_within_its_time-6mA"
    assert (run.reports / "timelines" / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    assert (run.reports / "timelines" / f"{stem}.csv").read_text() == text


# ---------------------------------------------------------------------- the sampler, on the emulated bench
def test_sampling_takes_no_simulated_time_and_thins_out_over_a_long_wait():
    from rig.bench.rig import open_rig
    from rig.reports.timeline import TimelineRecorder

    rig = open_rig(None, seed=1)
    try:
        rig.await_ready()
        recorder = TimelineRecorder(rig, "probe").start()
        t0 = rig.clock.now()
        rig.ev.plug_in()
        rig.clock.sleep(3600.0, "an hour with the vehicle plugged in")
        assert rig.clock.now() - t0 == pytest.approx(3600.0, abs=1e-6)  # sampling added nothing
        timeline = recorder.finish()
    finally:
        rig.close()
    meter_times = sorted({r.t for r in timeline.rows if r.channel == "meter.V1"})
    assert 3 <= len(meter_times) <= 40, meter_times  # not 3600 Modbus reads
    assert meter_times[0] - t0 <= 2.0  # the first one soon after plugging in
    assert rig.clock.sampler is None


# ---------------------------------------------------------------------- severity from the catalogue
def test_safety_requirements_are_blocker_or_critical():
    cat = catalogue()
    assert {severity_of([r], cat) for r in cat if r.startswith(("RCD-", "PEN-"))} == {"blocker"}
    assert {severity_of([r], cat) for r in cat if r.startswith("PP-")} == {"critical"}
    assert severity_of(["CP-08"], cat) == severity_of(["CP-09"], cat) == "critical"
    assert severity_of(["CP-01"], cat) == severity_of(["LED-05"], cat) == "normal"
    assert severity_of(["LED-05", "PEN-01"], cat) == "blocker"  # the most severe wins


# ---------------------------------------------------------------------- progress of real waits
def test_real_clock_waits_say_what_they_wait_for_and_how_long_is_left():
    seen: list[tuple] = []

    def progress(reason, elapsed, total, done=False):
        seen.append((reason, elapsed, total, done))

    clock = RealClock(progress=progress, progress_after_s=0.3, progress_every_s=0.1)
    start = time.monotonic()
    assert clock.wait_until(lambda: False, 0.45, poll=0.02, reason="waiting for the 30 s reset") is None
    assert time.monotonic() - start == pytest.approx(0.45, abs=0.2)
    assert seen and all(r[0] == "waiting for the 30 s reset" and r[2] == 0.45 for r in seen)
    assert seen[-1][3] is True  # the wait is closed
    assert 2 <= len(seen) <= 8, seen  # throttled: not one line per 20 ms poll
    lines = [progress_line(*r) for r in seen]
    assert "s left" in lines[0] and "done after" in lines[-1]

    seen.clear()
    clock.sleep(0.35, "random delay before the session")
    assert seen and seen[0][0] == "random delay before the session" and seen[-1][3] is True

    seen.clear()
    clock.sleep(0.05, "short")  # shorter than progress_after_s: silent
    assert clock.wait_until(lambda: True, 5.0, reason="already true") is not None
    assert seen == []


def test_progress_reaches_the_terminal(tmp_path):
    probe = tmp_path / "test_wait_probe.py"
    probe.write_text(
        "from rig.core.clock import RealClock\n"
        "def test_wait(request):\n"
        "    from rig.plugin.fixtures import progress_printer\n"
        "    clock = RealClock(progress=progress_printer(request.config), progress_after_s=0.2, progress_every_s=0.1)\n"
        "    clock.wait_until(lambda: False, 0.4, poll=0.05, reason='waiting for the unit to reboot')\n"
    )
    for capture in ("-s", "--capture=fd"):  # live under pytest's default capture too, not after the test
        result = run_pytest([str(probe), capture, "-rA"], tmp_path)
        assert result.returncode == 0, result.output[-2000:]
        assert "[rig] waiting for the unit to reboot:" in result.output and "s left" in result.output
        captured = result.output.split("Captured", 1)[1] if "Captured" in result.output else ""
        assert "[rig] waiting for the unit to reboot" not in captured, "the progress was held back until the end"
