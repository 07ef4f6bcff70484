"""A hazardous test that breaks off leaves no residual current and no disturbed supply behind.

Each case runs a probe marked `hazardous` with `--hazardous` in a child pytest against the
emulated bench (a three-phase unit, so every phase is checked). The probe injects a residual
current and disturbs the supply (a step that would stay, or a long excursion the source times
itself), then ends by an exception, Ctrl-C or SIGTERM: while sleeping, or while it is busy
talking to the very instruments the safe state has to use. The bench's journal
(RIG_SIM_JOURNAL) proves the disturbance happened and what the last state was.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from tests.harness.plugin_runs import PROJECT, child_env, journal_lines, pytest_cmd, run_pytest, write_test

MODEL = "PS22"  # three phases: a step on one phase must be undone too
NOMINAL_V = 230.0  # rig/data/rigs/emulated.toml [source] has no nominal_v: the driver's default
RESIDUAL_A = 0.06
SUPPLY = {
    "step": "rig.source.set_voltage(265.0, phase=2)",  # a step stays until someone undoes it
    "excursion": "rig.source.excursion(190.0, 600.0)",  # timed by the source, far beyond the test
}

HAZARDOUS_PROBE = """
import pathlib, time
import pytest

@pytest.mark.hazardous
@pytest.mark.req("RCD-02", "PEN-01")
def test_probe(rig):
    rig.await_ready()
    rig.ev.plug_in()
    rig.ev.request_power()
    rig.ev.draw(16.0)
    rig.clock.sleep(1.0)
    rig.injector.set_current({residual_a})
    {supply}
    rig.clock.sleep(0.2)
    {ending}
"""

ENDINGS = {
    "exception": "raise RuntimeError('harness crashed mid-injection')",
    "sleeping": "pathlib.Path(r'{marker}').write_text('ready')\n    time.sleep(120)",
    # interrupted mid-query, most likely: the safe state must still get through to the instruments
    "busy": ("pathlib.Path(r'{marker}').write_text('ready')\n"
             "    while True:\n"
             "        rig.injector.level()\n"
             "        rig.source.voltages()"),
}


def probe(tmp_path, supply: str, ending: str, marker=None):
    body = HAZARDOUS_PROBE.format(residual_a=RESIDUAL_A, supply=SUPPLY[supply],
                                  ending=ENDINGS[ending].format(marker=marker))
    return write_test(tmp_path, body, name="test_hazardous_probe.py")


def assert_disturbed_then_safe(journal) -> None:
    lines = journal_lines(journal)
    assert lines, "the bench journal is empty"
    injected = [ln for ln in lines if ln["injector_on"] and ln["injector_a"] > 0]
    disturbed = [ln for ln in lines if any(abs(v - NOMINAL_V) > 1.0 for v in ln["supply_v"])]
    assert injected, "the probe never injected a residual current: nothing proven (was it deselected?)"
    assert disturbed, "the probe never disturbed the supply: nothing proven"
    last = lines[-1]
    assert last["injector_a"] == 0.0 and last["injector_on"] is False, f"injector left on: {last}"
    assert last["supply_on"] is True, f"supply left off: {last}"
    assert len(last["supply_v"]) == 3 and all(abs(v - NOMINAL_V) < 1e-6 for v in last["supply_v"]), (
        f"supply not back to nominal: {last}")
    assert last["load_on"] is False and last["cp_state"] == "A", last


@pytest.mark.parametrize("supply", SUPPLY)
def test_exception_in_a_hazardous_test_leaves_injector_off_and_supply_nominal(tmp_path, supply):
    journal = tmp_path / "journal.jsonl"
    run = run_pytest([str(probe(tmp_path, supply, "exception")), "--hazardous", "--sim-model", MODEL],
                     tmp_path, journal=journal)
    assert run.returncode == 1, run.output
    assert run.outcome("test_probe") == "harness-error", run.output  # a RuntimeError is the harness's, not the unit's
    assert_disturbed_then_safe(journal)


@pytest.mark.parametrize("ending", ["sleeping", "busy"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_hazardous_test_leaves_injector_off_and_supply_nominal(tmp_path, sig, ending):
    journal, marker, reports = tmp_path / "journal.jsonl", tmp_path / "ready", tmp_path / "reports"
    supply = "step" if ending == "busy" else "excursion"
    args = [str(probe(tmp_path, supply, ending, marker)), "--hazardous", "--sim-model", MODEL]
    proc = subprocess.Popen(pytest_cmd(args, reports), cwd=PROJECT, env=child_env(journal),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the probe never reached its disturbance"
            time.sleep(0.05)
        time.sleep(0.2)  # let a busy probe get into its instrument traffic
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, out
    assert_disturbed_then_safe(journal)
    assert json.loads((reports / "run.json").read_text())["interrupted"] is True, out
