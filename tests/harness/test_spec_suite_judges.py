"""The spec suite is worth trusting: it passes every good model, fails every known-bad unit on the
requirement the defect breaks, replays exactly with the same seed, and leaves a complete record."""

from __future__ import annotations

import pytest

from rig.product.requirements import load_requirements
from rig.sim.defects import CATALOGUE
from tests.harness.plugin_runs import run_pytest, write_test

GOOD_MODELS = ["PS7", "PS7-S", "PS22", "PS22-S", "PS22-E"]


@pytest.mark.parametrize("model", GOOD_MODELS)
def test_spec_suite_passes_on_every_good_model(tmp_path, model):
    run = run_pytest(["rig/spec", "--hazardous", "--sim-model", model], tmp_path)
    assert run.returncode == 0, run.output[-3000:]
    record = run.json("run.json")
    assert record["rig"]["model"] == model
    assert record["counts"].get("passed", 0) > 0 and "failed" not in record["counts"]


@pytest.mark.parametrize("defect", sorted(CATALOGUE))
def test_spec_suite_fails_on_every_known_bad_unit(tmp_path, defect):
    # Only the tests of the defect's own requirements run: the full suite would fail too, but the
    # question here is whether the tests written for that requirement catch it.
    model = CATALOGUE[defect].model
    reqs = ",".join(CATALOGUE[defect].requirements)
    run = run_pytest(["rig/spec", "--hazardous", "--sim-defect", defect, "--sim-model", model, "--req", reqs],
                     tmp_path)
    assert run.returncode == 1, f"spec suite passed a unit with defect {defect!r}:\n{run.output[-2000:]}"
    trace = run.json("traceability.json")
    broken = CATALOGUE[defect].requirements
    caught = [rid for rid in broken if trace[rid]["verdict"] == "failed"]
    assert caught, f"{defect}: none of {broken} failed; verdicts {[(r, trace[r]['verdict']) for r in broken]}"
    errors = [t["nodeid"] for t in run.json("run.json")["tests"] if t["outcome"] == "error"]
    assert not errors, f"{defect}: a charger defect was reported as a rig fault in {errors}"


def test_same_seed_same_run_other_seed_other_noise(tmp_path):
    args = ["rig/spec/test_metering.py", "rig/spec/test_control_pilot.py"]
    runs = [run_pytest([*args, "--sim-seed", str(seed)], tmp_path / f"run{i}") for i, seed in enumerate([7, 7, 8])]

    def figures(run):
        return [(t["nodeid"], t["sim_seconds"], [(m["name"], m["value"]) for m in t["measurements"]])
                for t in run.json("run.json")["tests"]]

    assert all(r.returncode == 0 for r in runs), [r.output[-1000:] for r in runs]
    assert figures(runs[0]) == figures(runs[1])
    assert figures(runs[0]) != figures(runs[2]), "a different seed should change the meter and ADC noise"


def test_reports_cover_every_requirement_with_a_verdict(tmp_path):
    run = run_pytest(["rig/spec"], tmp_path)
    assert run.returncode == 0, run.output[-2000:]
    trace = run.json("traceability.json")
    assert set(trace) == set(load_requirements())
    assert {e["verdict"] for e in trace.values()} <= {"passed", "failed", "error", "not-covered"}
    for rid in ["LED-01", "LED-02", "LED-05", "LED-06", "LED-07", "BOOT-01", "MTR-01", "MTR-02", "MTR-03",
                "MODE-04", "OCPP-01"] + [f"CP-0{i}" for i in range(1, 7)]:
        assert trace[rid]["verdict"] == "passed" and trace[rid]["tests"], (rid, trace[rid])
    record = run.json("run.json")
    assert record["sim_seconds"] > 60 and record["wall_seconds"] > 0
    assert record["rig"]["rig_file"].endswith("emulated.toml")
    assert (run.reports / "junit.xml").exists()
    assert any((run.reports / "allure-results").glob("*-result.json"))


def test_hazardous_tests_run_only_when_asked(tmp_path):
    probe = write_test(tmp_path, """
        import pytest

        @pytest.mark.hazardous
        @pytest.mark.req("RCD-01")
        def test_injects(rig):
            rig.injector.set_current(0.001)

        def test_plain():
            pass
    """)
    quiet = run_pytest([str(probe)], tmp_path / "without")
    assert quiet.returncode == 0 and "1 deselected" in quiet.output, quiet.output
    loud = run_pytest([str(probe), "--hazardous"], tmp_path / "with")
    assert loud.returncode == 0 and "2 passed" in loud.output, loud.output


def test_req_selects_the_tests_of_named_requirements_and_rejects_unknown_ids(tmp_path):
    probe = write_test(tmp_path, """
        import pytest

        @pytest.mark.req("CP-01", "CP-02")
        def test_pilot():
            pass

        @pytest.mark.req("MTR-01")
        def test_meter():
            pass

        def test_unmarked():
            pass
    """)
    run = run_pytest([str(probe), "--req", "cp-02"], tmp_path / "one")
    assert run.returncode == 0 and "1 passed, 2 deselected" in run.output, run.output
    run = run_pytest([str(probe), "--req", "CP-02,XX-99"], tmp_path / "typo")
    assert run.returncode != 0 and "XX-99" in run.output, run.output


def test_options_are_documented_in_help(tmp_path):
    run = run_pytest(["--help"], tmp_path)
    assert "PlugStream rig" in run.output
    for option in ["--rig", "--sim-model", "--sim-seed", "--sim-defect", "--hazardous", "--limits", "--rig-reports",
                   "--req"]:
        assert option in run.output


def test_rig_markers_pass_strict_markers_and_typos_do_not(tmp_path):
    good = write_test(tmp_path, """
        import pytest

        @pytest.mark.req("CP-01")
        @pytest.mark.hazardous
        @pytest.mark.models("PS22")
        @pytest.mark.connector("socket")
        def test_marked():
            pass
    """, name="test_good.py")
    run = run_pytest([str(good), "--strict-markers", "--hazardous"], tmp_path / "good")
    assert run.returncode == 0, run.output
    typo = write_test(tmp_path, """
        import pytest

        @pytest.mark.requirement("CP-01")
        def test_typo():
            pass
    """, name="test_typo.py")
    run = run_pytest([str(typo), "--strict-markers"], tmp_path / "typo")
    assert run.returncode != 0 and "requirement" in run.output


def test_unknown_defect_names_the_catalogue(tmp_path):
    probe = write_test(tmp_path, """
        def test_uses_rig(rig):
            pass
    """)
    run = run_pytest([str(probe), "--sim-defect", "no-such-bug"], tmp_path)
    assert run.returncode != 0
    assert "no-such-bug" in run.output and "slow-open-c-to-b" in run.output
