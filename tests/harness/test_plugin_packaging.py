"""The plugin as another project meets it: opt-in, configurable from the ini file, and installable
from a wheel that runs the spec suite outside this checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

UNRELATED = """
import json, signal, pathlib
import pytest

@pytest.mark.hazardous
def test_their_own_hazardous_marker():
    pass

@pytest.mark.req("not-ours")
def test_records_what_the_session_looks_like(request):
    pathlib.Path("seen.json").write_text(json.dumps({
        "xmlpath": request.config.option.xmlpath,
        "allure": getattr(request.config.option, "allure_report_dir", None),
        "sigterm": repr(signal.getsignal(signal.SIGTERM)),
    }))
"""


def test_an_unrelated_project_in_the_same_environment_is_untouched(pytester):
    import signal

    before = repr(signal.getsignal(signal.SIGTERM))
    pytester.makeini("[pytest]\nmarkers =\n    hazardous: their own meaning\n    req(x): theirs\n")
    pytester.makepyfile(test_theirs=UNRELATED)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)  # their hazardous test is not deselected
    seen = json.loads((pytester.path / "seen.json").read_text())
    assert seen == {"xmlpath": None, "allure": None, "sigterm": before}, seen
    assert sorted(p.name for p in pytester.path.iterdir()) == ["seen.json", "test_theirs.py", "tox.ini"], \
        "the rig plugin wrote files into another project's run"
    assert repr(signal.getsignal(signal.SIGTERM)) == before
    assert "plugstream rig" not in result.stdout.str()


def test_the_rig_fixture_in_an_inactive_session_says_how_to_switch_the_plugin_on(pytester):
    pytester.makepyfile(test_wants_rig="def test_x(rig):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the PlugStream rig plugin is not active in this session: give --rig PATH*"])
    assert not (pytester.path / "reports").exists()


SHOW_OPTIONS = """
import json, pathlib

def test_options(request):
    opt = request.config.getoption
    pathlib.Path("options.json").write_text(json.dumps({
        "rig": opt("--rig"), "seed": opt("--sim-seed"), "model": opt("--sim-model"),
        "hazardous": opt("--hazardous"), "png": opt("--rig-timeline-png"), "operator": opt("--operator"),
    }))
"""


def test_every_option_is_an_ini_key_and_the_command_line_wins(pytester):
    pytester.makeini("[pytest]\nrig = emulated\nsim_seed = 7\nsim_model = PS7\nhazardous = true\n"
                     "rig_timeline_png = none\nrig_reports = out\noperator = alice\n")
    pytester.makepyfile(test_opts=SHOW_OPTIONS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert json.loads((pytester.path / "options.json").read_text()) == {
        "rig": "emulated", "seed": 7, "model": "PS7", "hazardous": True, "png": "none", "operator": "alice"}
    assert (pytester.path / "out" / "run.json").exists(), "rig_reports from the ini was not used"
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--sim-seed", "3", "--sim-model", "PS22")
    result.assert_outcomes(passed=1)
    seen = json.loads((pytester.path / "options.json").read_text())
    assert (seen["seed"], seen["model"]) == (3, "PS22")


def test_a_bad_ini_value_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\nrig = emulated\nsim_seed = many\n")
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any("ini sim_seed = 'many': expected an integer" in ln for ln in result.errlines), result.errlines


def test_the_report_header_names_bench_model_seed_and_defect(pytester):
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--rig", "emulated", "--sim-model", "PS7",
                                          "--sim-seed", "5", "--sim-defect", "stuck-white")
    result.stdout.fnmatch_lines(["rig: *emulated.toml, model PS7, seed 5, defect stuck-white",
                                 "rig: run *, reports in *"])


# ---------------------------------------------------------------------- the wheel, outside the checkout
def test_a_wheel_installed_outside_the_checkout_runs_the_spec_suite_to_a_report(tmp_path):
    # built from a copy: the build must not leave build/ or egg-info in the checkout other tests read
    source = tmp_path / "source"
    everywhere = shutil.ignore_patterns("*.egg-info", "__pycache__", ".hypothesis")
    top_only = {".git", ".venv", "reports", "build", "dist", ".tox"}  # rig/reports is a package: keep it

    def ignore(directory, names):
        skipped = set(everywhere(directory, names))
        return skipped | (top_only & set(names) if Path(directory) == REPO else set())

    shutil.copytree(REPO, source, ignore=ignore)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("plugstream_rig-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "VIRTUAL_ENV", "PYTHONPATH"))}
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True,
                             text=True, timeout=900, env=clean)
    assert install.returncode == 0, install.stderr[-3000:]
    station = tmp_path / "station"
    station.mkdir()
    run = subprocess.run([str(env_dir / "bin" / "rig"), "spec", "-q", "--req", "CP-01,LED-01"], cwd=station,
                         capture_output=True, text=True, timeout=600, env=clean)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    record = json.loads((station / "reports" / "run.json").read_text())
    assert record["counts"].get("passed", 0) >= 2 and set(record["counts"]) == {"passed"}, record["counts"]
    assert {t["nodeid"].split("::")[0].rsplit("/", 1)[-1] for t in record["tests"]} == {
        "test_boot_and_led.py", "test_control_pilot.py"}, record["tests"]
    trace = json.loads((station / "reports" / "traceability.json").read_text())
    assert trace["CP-01"]["verdict"] == "passed" and trace["LED-01"]["verdict"] == "passed"
    where = subprocess.run([str(python), "-c", "import rig, rig.data; print(rig.__file__, rig.data.EMULATED_RIG)"],
                           cwd=station, capture_output=True, text=True, env=clean, timeout=60)
    assert str(env_dir) in where.stdout and str(REPO) not in where.stdout, where.stdout
    version = subprocess.run([str(env_dir / "bin" / "rig"), "--version"], capture_output=True, text=True, env=clean)
    assert version.stdout.strip() == "rig 0.1.0", version.stdout
    import zipfile

    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {f"rig/station/static/{name}" for name in ("index.html", "panel.css", "panel.js")} <= shipped, \
        "the station panel's page ships in the wheel (stations are offline: no CDN, no build step)"
