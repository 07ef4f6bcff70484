"""The pytest plugin (the `pytest11` entry point): options, markers, and, in a session that uses
the rig, the fixtures, verdicts and the run record.

Opt-in: the plugin acts only when the session asks for a rig, with `--rig PATH` (`--rig emulated`
for the shipped emulated bench) or the ini key `rig`. Otherwise it only adds its options and
markers; another project's pytest run in the same environment is not changed (no files, no report
options, no signal handlers), and a test there that asks for the `rig` fixture is told how to
switch the plugin on.

Layout: options.py (flags and ini keys), verdicts.py (who is to blame, per phase), fixtures.py
(`rig_session`, `rig`), session.py (selection, the run record, what a run holds).
"""

from __future__ import annotations

import pytest

from rig.plugin import options
from rig.plugin.options import active, is_worker, reports_dir, rig_summary, wants_reports

MARKERS = (
    "req(*ids): requirement IDs this test checks (see `rig requirements`)",
    "hazardous: injects faults or disturbs the supply; runs only with --hazardous",
    "models(*names): run only when the unit under test is one of these models",
    "connector(kind): run only on 'socket' or 'tethered' variants",
    "eol: in the end-of-line selection (--eol): fast and non-destructive",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    from rig.station import channel, eol

    group = options.add_options(parser)
    eol.add_options(group)
    channel.add_options(group)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    options.resolve(config)
    if config.getoption("--certification"):  # every standards test, each with its timeline picture
        config.option.hazardous = True
        config.option.rig_timeline_png = "all"
    if not active(config):
        from rig.plugin import inactive

        config.pluginmanager.register(inactive, "plugstream_rig_inactive")
        return
    if not config.option.help:
        _check_bench_options(config)  # a bad rig file stops here, before anything is collected or recorded
    _start_session(config)


def _start_session(config: pytest.Config) -> None:
    from rig.plugin import fixtures
    from rig.plugin.session import RigSession, record_key, requirement_ids
    from rig.reports.run_record import RunRecord
    from rig.results.store import new_run_id, utcnow
    from rig.core.tempdirs import sweep_leftovers

    reports = reports_dir(config)
    record = None
    session = RigSession(config)
    if not is_worker(config) and wants_reports(config):
        run_id = new_run_id(utcnow())
        session.hold_reports(reports, run_id)  # a second run on the same reports/ refuses here
        record = RunRecord(reports, requirement_ids(), rig_summary(config), run_id=run_id)
        record.killed_runs = [leftover.describe() for leftover in sweep_leftovers()]
        config.stash[record_key] = record
    _register_factory_plugins(config, record)
    config.pluginmanager.register(session, "plugstream_rig_session")
    config.pluginmanager.register(fixtures, "plugstream_rig_fixtures")
    if record is None:
        return
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(reports / "junit.xml")
    if hasattr(config.option, "allure_report_dir") and not config.option.allure_report_dir:
        config.option.allure_report_dir = str(reports / "allure-results")
        config.option.clean_alluredir = True
    _set_up_allure(config, reports)
    session.install_signal_handlers()


def _check_bench_options(config: pytest.Config) -> None:
    """The rig file and the emulated-bench options, checked before collection: a mistake is one
    line naming the file and the key (pytest's usage error, exit status 4), and no test is run or
    recorded against a bench that cannot be what the file says."""
    from rig.core import rigfile as rf
    from rig.sim.defects import lookup

    path = rf.resolve_rig_path(config.getoption("--rig"))
    try:
        rig = rf.load_rigfile(path)
        model, defect = config.getoption("--sim-model"), config.getoption("--sim-defect")
        if (model or defect) and not rig.bench.emulated:
            flag = "--sim-model" if model else "--sim-defect"
            raise rf.RigFileError(str(path), flag, "only applies to the emulated bench (bench.kind is \"real\")")
        if model:
            rf.with_model(rig, model)
        if config.getoption("--sim-serial") and not rig.bench.emulated:
            raise rf.RigFileError(str(path), "--sim-serial", "only applies to the emulated bench (bench.kind is \"real\")")
        lookup(defect)
        if config.getoption("--prompts") == "panel" and not config.getoption("--station-channel"):
            raise pytest.UsageError("--prompts panel needs the station's panel: run the unit from `rig station`")
    except (rf.RigFileError, ValueError) as exc:
        raise pytest.UsageError(" ".join(str(exc).split())) from None


def _register_factory_plugins(config: pytest.Config, record) -> None:
    """The results store's writer and the end-of-line plugin (each decides per process what it does)."""
    from rig.station import channel, eol
    from rig.results import recorder

    recorder.register(config, reports_dir(config), record)
    eol.register(config)
    channel.register(config)  # the station's panel, when `rig station` started this run


def _set_up_allure(config: pytest.Config, reports) -> None:
    """Requirement links point at reports/requirements.html (the catalogue, one anchor per ID)."""
    from rig.reports.allure import requirement_link_pattern, write_requirements_page
    from rig.product.requirements import load_requirements

    requirement_link_pattern(config)
    write_requirements_page(reports / "requirements.html", load_requirements())
