"""Rig faults are errors naming the instrument; the safe state is reached on every way out of a test.

Each case runs pytest in a child process against the emulated bench and breaks an emulated
instrument (or the process) mid-test, then reads the run record and the bench's journal.
"""

from __future__ import annotations

import signal

import pytest

from tests.harness.plugin_runs import interrupt_when_ready, journal_lines, run_pytest, write_test

BREAK_AND_USE = """
import pytest

@pytest.mark.req("MTR-02")
def test_probe(rig):
    rig.await_ready()
    rig.bench.break_instrument("{instrument}", "{how}")
    try:
        {use}
    finally:
        rig.bench.break_instrument("{instrument}", None)
"""

USES = {
    "meter": "rig.meter.snapshot()",
    "load": "rig.load.set_current(10.0)",
    "injector": "rig.injector.set_current(0.001)",
    "source": "rig.source.set_voltage(231.0)",
    "led_sensor": "rig.led.observe()",
    "console": "rig.console.info()",
    "pilot": "rig.pilot.measure_cp()",
}


@pytest.mark.parametrize(
    "instrument, how",
    [("meter", "silent"), ("meter", "garbage"), ("load", "disconnect"), ("injector", "garbage"),
     ("source", "silent"), ("led_sensor", "garbage"), ("console", "silent"), ("pilot", "garbage")],
)
def test_instrument_fault_mid_test_is_an_error_naming_the_instrument(tmp_path, instrument, how):
    probe = write_test(tmp_path, BREAK_AND_USE.format(instrument=instrument, how=how, use=USES[instrument]))
    run = run_pytest([str(probe)], tmp_path)
    assert run.returncode == 1, run.output
    assert run.outcome("test_probe") == "error", run.output
    record = run.json("run.json")["tests"][0]
    assert record["rig_fault"].startswith(f"{instrument}:"), record
    assert "ERROR (rig fault)" in run.output or " error" in run.output, run.output
    assert "<error" in run.junit and "<failure" not in run.junit
    assert run.json("traceability.json")["MTR-02"]["verdict"] == "error"
    # the retries and the fault are in the captured log, with the instrument's name
    assert "Captured log call" in run.output and "WARNING  rig.instruments" in run.output, run.output[-3000:]
    assert "ERROR    rig.instruments" in run.output and f"{instrument}: " in run.output


def test_charger_failure_is_failed_not_error(tmp_path):
    run = run_pytest(["rig/spec/test_control_pilot.py", "-k", "c_to_b", "--sim-defect", "slow-open-c-to-b"], tmp_path)
    assert run.returncode == 1, run.output
    assert run.outcome("c_to_b") == "failed"
    assert "<failure" in run.junit
    assert run.json("traceability.json")["CP-04"]["verdict"] == "failed"
    measured = run.json("run.json")["tests"][0]["measurements"]
    assert measured == [] or measured[0]["passed"] is False


DISTURB_THEN = """
import pathlib, time
import pytest

@pytest.mark.req("RCD-01")
def test_probe(rig):
    rig.await_ready()
    rig.ev.plug_in()
    rig.ev.request_power()
    rig.ev.draw(16.0)
    rig.injector.set_current(0.005)
    rig.source.excursion(260.0, 30.0)
    rig.clock.sleep(1.0)
    {ending}
"""

ENDINGS = {
    "exception": "raise RuntimeError('harness crashed mid-test')",
    "failure": "assert False, 'charger failed mid-injection'",
    "signal": "pathlib.Path(r'{marker}').write_text('ready')\n    time.sleep(60)",
}


def assert_last_state_safe(journal):
    lines = journal_lines(journal)
    assert lines, "the bench journal is empty"
    disturbed = [ln for ln in lines if ln["injector_on"] or ln["load_on"]]
    assert disturbed, "the probe never disturbed the bench: nothing proven"
    last = lines[-1]
    assert last["load_on"] is False, last
    assert last["injector_a"] == 0.0 and last["injector_on"] is False, last
    assert last["supply_on"] is True and all(abs(v - 230.0) < 1e-6 for v in last["supply_v"]), last
    assert last["cp_state"] == "A", last


@pytest.mark.parametrize("ending", ["exception", "failure"])
def test_safe_state_after_a_test_that_breaks_off(tmp_path, ending):
    journal = tmp_path / "journal.jsonl"
    probe = write_test(tmp_path, DISTURB_THEN.format(ending=ENDINGS[ending]))
    run = run_pytest([str(probe)], tmp_path, journal=journal)
    assert run.returncode == 1, run.output
    assert_last_state_safe(journal)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_safe_state_when_the_run_is_interrupted(tmp_path, sig):
    journal, marker = tmp_path / "journal.jsonl", tmp_path / "ready"
    probe = write_test(tmp_path, DISTURB_THEN.format(ending=ENDINGS["signal"].format(marker=marker)))
    reports = tmp_path / "reports"
    status, out = interrupt_when_ready([str(probe)], reports, marker, sig, journal=journal)
    assert status != 0, out
    assert_last_state_safe(journal)
    import json

    assert json.loads((reports / "run.json").read_text())["interrupted"] is True


def test_a_unit_failing_a_precondition_in_setup_is_a_charger_failure_not_an_error(tmp_path):
    probe = write_test(tmp_path, """
        import pytest
        from rig.core.errors import ChargerFailure

        @pytest.fixture
        def dead_unit():
            raise ChargerFailure("unit did not register")

        @pytest.mark.req("BOOT-01")
        def test_needs_unit(dead_unit):
            pass
    """)
    run = run_pytest([str(probe)], tmp_path)
    assert run.returncode == 1 and "FAILED (unit, in setup)" in run.output, run.output[-2000:]
    (test,) = run.json("run.json")["tests"]
    assert test["outcome"] == "failed" and not test["rig_fault"]
    assert run.json("traceability.json")["BOOT-01"]["verdict"] == "failed"
