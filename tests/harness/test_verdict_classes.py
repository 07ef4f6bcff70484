"""Three verdict classes in every record: only the unit fails a test; a rig fault and the harness's
own exception are errors; skipped and interrupted tests are never counted as passed.

Each case runs pytest in a child process against the emulated bench, the way a station runs it,
and reads every record it left: the terminal, run.json, traceability.json, junit.xml, the results
store and (end of line) the banner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap

import pytest

from rig.core.errors import HARNESS, RIG, UNIT, ChargerFailure, InstrumentError, blame
from rig.results.store import ResultsStore
from tests.harness.plugin_runs import PROJECT, child_env, interrupt_when_ready, pytest_cmd, run_pytest, write_test


# ---------------------------------------------------------------------- the rule itself
@pytest.mark.parametrize("exc, kind", [
    (AssertionError("duty 40 %"), UNIT),
    (ChargerFailure("did not register"), UNIT),
    (InstrumentError("meter", "no answer"), RIG),
    (TypeError("unsupported operand"), HARNESS),
    (KeyError("bench"), HARNESS),
    (__import__("struct").error("unpack requires a buffer of 12 bytes"), HARNESS),
    (ExceptionGroup("two", [AssertionError("a"), AssertionError("b")]), UNIT),
    (ExceptionGroup("mixed", [AssertionError("a"), ValueError("b")]), HARNESS),
    (ExceptionGroup("rig", [AssertionError("a"), InstrumentError("load", "x")]), RIG),
])
def test_blame_only_an_assertion_about_the_unit_is_the_units(exc, kind):
    assert blame(exc).kind == kind


def test_blame_counts_pytest_fail_as_the_units():
    with pytest.raises(pytest.fail.Exception) as info:
        pytest.fail("the unit answered Rejected")
    assert blame(info.value).kind == UNIT


# ---------------------------------------------------------------------- harness errors
HARNESS_BUG = """
import pytest

@pytest.fixture
def broken_fixture():
    return {{}}["missing"]

@pytest.mark.req("CP-01")
def test_step_with_a_bug(rig):
    rig.await_ready()
    {call_body}

@pytest.mark.req("CP-02")
def test_fixture_with_a_bug(rig, broken_fixture):
    pass

@pytest.mark.req("CP-03")
def test_unit_fails(rig):
    assert 1 == 2, "the unit's duty was wrong"  # a designed unit failure: the contrast to the two above
"""


def test_a_harness_exception_is_a_harness_error_in_every_record(tmp_path):
    probe = write_test(tmp_path, HARNESS_BUG.format(call_body="rig.pilot.measure_cp() + 'volts'"))
    run = run_pytest([str(probe)], tmp_path)
    assert run.returncode == 1, run.output
    assert run.output.count("ERROR (harness)") >= 2, run.output
    assert run.outcome("test_step_with_a_bug") == "harness-error"
    assert run.outcome("test_fixture_with_a_bug") == "harness-error"
    assert run.outcome("test_unit_fails") == "failed"
    step = next(t for t in run.json("run.json")["tests"] if "step_with_a_bug" in t["nodeid"])
    assert step["harness_error"].startswith("TypeError"), step
    counts = run.json("run.json")["counts"]
    assert counts == {"harness-error": 2, "failed": 1}, counts
    trace = run.json("traceability.json")
    assert trace["CP-01"]["verdict"] == "harness-error" and trace["CP-02"]["verdict"] == "harness-error"
    assert trace["CP-03"]["verdict"] == "failed"
    assert run.junit.count('type="HarnessError"') == 2 and run.junit.count("<failure") == 1, run.junit
    store = ResultsStore(f"sqlite:///{run.reports / 'results.sqlite'}")
    [r] = store.recent_runs()
    verdicts = {t["nodeid"].rsplit("::", 1)[1]: t["verdict"] for t in store.run_detail(r["run_id"])["tests"]}
    assert verdicts == {"test_step_with_a_bug": "harness-error", "test_fixture_with_a_bug": "harness-error",
                        "test_unit_fails": "failed"}, verdicts
    allure = [json.loads(p.read_text()) for p in (run.reports / "allure-results").glob("*-result.json")]
    status = {a["name"]: a["status"] for a in allure}
    assert status["test_step_with_a_bug"] == "broken" and status["test_unit_fails"] == "failed", status


def test_a_harness_error_at_end_of_line_is_rig_fault_retest_never_fail(tmp_path):
    (tmp_path / "harness_bug.py").write_text(textwrap.dedent("""
        import pytest

        @pytest.fixture(autouse=True)
        def harness_bug_in_metering(request):
            if "test_metering" in request.node.nodeid:
                raise TypeError("unsupported operand type(s) for +: 'float' and 'str'")
            yield
    """))
    env = dict(child_env(), PYTHONPATH=f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    reports = tmp_path / "reports"
    proc = subprocess.run(pytest_cmd(["rig/spec", "--eol", "--serial", "SIM-0001", "-p", "harness_bug"], reports),
                          cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    from rig.station.eol import EXIT_RETEST, big

    assert proc.returncode == EXIT_RETEST, out
    assert "\n".join(big("RETEST")) in out and "\n".join(big("FAIL")) not in out, out
    assert "test harness: " in out and "TypeError" in out, out
    assert not (reports / "certificates").exists() or not list((reports / "certificates").glob("*.html"))


# ---------------------------------------------------------------------- rig services
def only_test_as_rig_fault(tmp_path, probe_text: str) -> tuple[dict, object]:
    """Run a one-test probe; its record, which must be a rig fault (outcome error), and the run."""
    run = run_pytest([str(write_test(tmp_path, probe_text))], tmp_path)
    assert run.returncode == 1, run.output
    (test,) = run.json("run.json")["tests"]
    assert test["outcome"] == "error", test
    return test, run

DNS_BREAKS = """
import struct
import pytest

@pytest.mark.req("BOOT-01")
def test_unit_registers_after_power_cycle(rig):
    rig.await_ready()
    def broken(data, peer):
        raise struct.error("pack: 'I' format requires 0 <= number <= 4294967295")
    for server in rig.network.dns.values():
        server.answer = broken
    rig.central.disconnect()
    rig.power_cycle()
    rig.await_ready(timeout_s=120)
"""


def test_a_rig_service_failing_makes_the_units_silence_a_rig_fault(tmp_path):
    test, run = only_test_as_rig_fault(tmp_path, DNS_BREAKS)
    assert "ERROR (rig fault)" in run.output, run.output
    assert test["rig_fault"].startswith("dns "), test
    assert "struct.error" in test["rig_fault"] and "the unit was not judged" in test["rig_fault"], test
    assert run.json("traceability.json")["BOOT-01"]["verdict"] == "error"


CENTRAL_BREAKS = """
import pytest
from rig.bench.journal import raw

@pytest.mark.req("BOOT-01")
def test_unit_answers_a_trigger(rig):
    rig.await_ready()
    central = raw(rig.central)
    def broken(conn, text):
        raise RuntimeError("central system bug")
    central._handle_message = broken
    rig.central.call("TriggerMessage", {"requestedMessage": "Heartbeat"}, timeout=5)
    rig.central.wait_for("Heartbeat", timeout=5)
"""


def test_the_central_system_failing_is_a_rig_fault_naming_it(tmp_path):
    test, _run = only_test_as_rig_fault(tmp_path, CENTRAL_BREAKS)
    assert test["rig_fault"].startswith("central_system: "), test
    assert "RuntimeError: central system bug" in test["rig_fault"], test


# ---------------------------------------------------------------------- nothing untested passes
def test_a_ps7_run_counts_skipped_tests_as_skipped_and_their_requirements_not_covered(tmp_path):
    run = run_pytest(["rig/spec", "--sim-model", "PS7", "--req", "PEN-06,PP-01,PP-02,PP-03", "--hazardous"],
                     tmp_path)
    assert run.returncode == 0, run.output
    counts = run.json("run.json")["counts"]
    assert set(counts) == {"skipped"} and counts["skipped"] >= 6, counts
    trace = run.json("traceability.json")
    for rid in ("PEN-06", "PP-01", "PP-02", "PP-03"):
        assert trace[rid]["verdict"] == "not-covered", (rid, trace[rid])
        assert trace[rid]["tests"], rid  # the tests are listed: they exist, they did not apply


SLOW = """
import pathlib, time
import pytest

@pytest.mark.req("CP-01")
def test_first(rig):
    pass

@pytest.mark.req("CP-02")
def test_interrupted(rig):
    rig.await_ready()
    pathlib.Path(r'{marker}').write_text('ready')
    time.sleep(60)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_test_is_interrupted_never_passed(tmp_path, sig):
    marker = tmp_path / "ready"
    probe = write_test(tmp_path, SLOW.format(marker=marker))
    reports = tmp_path / "reports"
    _status, out = interrupt_when_ready([str(probe)], reports, marker, sig)
    run_json = json.loads((reports / "run.json").read_text())
    outcomes = {t["nodeid"].rsplit("::", 1)[1]: t["outcome"] for t in run_json["tests"]}
    assert outcomes == {"test_first": "passed", "test_interrupted": "interrupted"}, (outcomes, out)
    assert run_json["interrupted"] is True
    trace = json.loads((reports / "traceability.json").read_text())
    assert trace["CP-01"]["verdict"] == "passed" and trace["CP-02"]["verdict"] == "interrupted", trace
    store = ResultsStore(f"sqlite:///{reports / 'results.sqlite'}")
    [r] = store.recent_runs()
    stored = {t["nodeid"].rsplit("::", 1)[1]: t["verdict"] for t in store.run_detail(r["run_id"])["tests"]}
    assert stored == {"test_first": "passed", "test_interrupted": "interrupted"}, stored


CENTRAL_DIES = """
import pytest
from rig.bench.journal import raw

@pytest.mark.req("BOOT-01")
def test_unit_registers_after_power_cycle(rig):
    rig.await_ready()
    central = raw(rig.central)
    central._loop.loop.call_soon_threadsafe(central._loop.loop.stop)  # the service thread dies
    central._loop._thread.join(5)
    rig.power_cycle()
    rig.await_ready(timeout_s=30)
"""


def test_a_rig_service_that_dies_makes_the_units_silence_a_rig_fault(tmp_path):
    test, run = only_test_as_rig_fault(tmp_path, CENTRAL_DIES)
    assert test["rig_fault"].startswith("central_system: its service thread has stopped"), test
    assert run.json("traceability.json")["BOOT-01"]["verdict"] == "error"
