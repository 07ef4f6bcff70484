"""The pytest plugin: options, markers, the `rig` fixture, verdicts and the run record.

Registered through the `pytest11` entry point, so any project that installs the package gets it.
"""

from __future__ import annotations

import os
import signal
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rig.errors import ChargerFailure, RigFault
from rig.report import RunRecord, TestRecord

GROUP = "plugstream rig"
_RIG_FAULT = "rig_fault"
_CHARGER_FAILED_IN_SETUP = "charger_failed_in_setup"


# ---------------------------------------------------------------------- options and markers
def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup(GROUP, "PlugStream rig (bench, emulated bench, reports)")
    g.addoption("--rig", metavar="PATH", default=None,
                help="rig file describing the bench (default: fixtures/rigs/emulated.toml, the emulated bench)")
    g.addoption("--sim-model", metavar="MODEL", default=None,
                help="emulated bench: model of the emulated unit (PS7, PS7-S, PS22, PS22-S); default: the rig file's")
    g.addoption("--sim-seed", metavar="N", type=int, default=1,
                help="emulated bench: seed of the virtual clock and every random choice (default 1)")
    g.addoption("--sim-defect", metavar="NAME", default=None,
                help="emulated bench: start the unit with this firmware defect (see `rig defects`)")
    g.addoption("--hazardous", action="store_true", default=False,
                help="also run tests marked hazardous (fault injection, supply excursions)")
    g.addoption("--req", metavar="IDS", default=None,
                help="run only tests that check one of these requirement IDs (comma-separated, e.g. MODE-01,LOCK-01)")
    g.addoption("--limits", metavar="PATH", default=None,
                help="TOML file whose limits override fixtures/limits/plugstream.toml")
    g.addoption("--rig-timeline-png", choices=("failed", "all", "none"), default="failed",
                help="which tests get their timeline drawn as a PNG (every test gets the CSV); "
                     "default: failed (and errored) tests; 'all' draws every test in a background process")
    g.addoption("--rig-reports", metavar="DIR", default="reports",
                help="where run.json, traceability.json, junit.xml and allure-results go (default: reports)")
    _add_factory_options(g)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "req(*ids): requirement IDs this test checks (see `rig requirements`)")
    config.addinivalue_line("markers", "hazardous: injects faults or disturbs the supply; runs only with --hazardous")
    config.addinivalue_line("markers", "models(*names): run only when the unit under test is one of these models")
    config.addinivalue_line("markers", "connector(kind): run only on 'socket' or 'tethered' variants")
    _register_factory_plugins(config)
    if _is_worker(config) or not _wants_reports(config):
        return
    reports = _reports_dir(config)
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(reports / "junit.xml")
    if hasattr(config.option, "allure_report_dir") and not config.option.allure_report_dir:
        config.option.allure_report_dir = str(reports / "allure-results")
        config.option.clean_alluredir = True
    _set_up_allure(config, reports)
    config.stash[_record_key] = RunRecord(reports, _requirement_ids(), _rig_summary(config))
    _install_signal_handlers()


def _add_factory_options(group) -> None:
    """Unit records (--results-db, --operator) and end-of-line mode (--eol, --serial)."""
    from rig import eol
    from rig.results import recorder

    recorder.add_options(group)
    eol.add_options(group)


def _register_factory_plugins(config: pytest.Config) -> None:
    """The results store's writer and the end-of-line plugin (each decides per process what it does)."""
    from rig import eol
    from rig.results import recorder

    recorder.register(config, _reports_dir(config))
    eol.register(config)


def _set_up_allure(config: pytest.Config, reports: Path) -> None:
    """Requirement links point at reports/requirements.html (the catalogue, one anchor per ID)."""
    from rig.allure_report import requirement_link_pattern, write_requirements_page
    from rig.requirements import load_requirements

    requirement_link_pattern(config)
    write_requirements_page(reports / "requirements.html", load_requirements())


def _wants_reports(config: pytest.Config) -> bool:
    """Reports are written for runs that collect rig tests; `--collect-only` and `--help` runs are left alone."""
    return not (config.option.help or config.option.collectonly)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _reports_dir(config: pytest.Config) -> Path:
    p = Path(config.getoption("--rig-reports"))
    return p if p.is_absolute() else Path(config.rootpath) / p


def _requirement_ids() -> list[str]:
    from rig.requirements import load_requirements

    return sorted(load_requirements())


def _rig_summary(config: pytest.Config) -> dict:
    return {
        "rig_file": config.getoption("--rig") or "fixtures/rigs/emulated.toml",
        "model": config.getoption("--sim-model"),
        "seed": config.getoption("--sim-seed"),
        "defect": config.getoption("--sim-defect"),
    }


_record_key = pytest.StashKey[RunRecord]()
_session_rig = None  # the open Rig, for the interrupt hooks


def _install_signal_handlers() -> None:
    """SIGTERM unwinds like Ctrl-C, so fixture teardown brings the rig to its safe state."""

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, on_term)


# ---------------------------------------------------------------------- selection
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = _wanted_requirements(config)
    hazardous_ok = config.getoption("--hazardous")
    keep, drop = [], []
    for item in items:
        selected = hazardous_ok or not item.get_closest_marker("hazardous")
        if wanted is not None:
            selected = selected and bool(wanted & set(_item_requirements(item)))
        (keep if selected else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _wanted_requirements(config: pytest.Config) -> set[str] | None:
    """The --req selection, checked against the catalogue so a typo is an error, not an empty run."""
    raw = config.getoption("--req")
    if not raw:
        return None
    wanted = {r.strip().upper() for r in raw.split(",") if r.strip()}
    unknown = sorted(wanted - set(_requirement_ids()))
    if unknown:
        raise pytest.UsageError(f"--req: unknown requirement ID(s) {', '.join(unknown)}; `rig requirements` lists them")
    return wanted


def _item_requirements(item: pytest.Item) -> list[str]:
    return [rid for mark in item.iter_markers("req") for rid in mark.args]


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def rig_session(request: pytest.FixtureRequest):
    """The open rig (emulated or real) for the whole session: one bench per xdist worker."""
    global _session_rig
    from rig.bench import open_rig

    opt = request.config.getoption
    rig = open_rig(
        rig_path=opt("--rig"),
        rootdir=Path(request.config.rootpath),
        model=opt("--sim-model"),
        seed=opt("--sim-seed"),
        defect=opt("--sim-defect"),
        limits_path=opt("--limits"),
        progress=_progress_printer(request.config),
    )
    _session_rig = rig
    try:
        yield rig
    finally:
        _session_rig = None
        rig.close()


@pytest.fixture
def rig(rig_session, request: pytest.FixtureRequest):
    """The rig for one test: safe state checked before and after, measurements recorded,
    every call on the rig an Allure step, and a timeline of the test."""
    from rig.allure_report import allure_active, measurement_step
    from rig.timeline import TimelineRecorder

    _skip_if_not_applicable(request, rig_session)
    steps = allure_active()
    rig_session.journal.use_allure(steps)
    if _wants_timeline(request.config):
        request.node.stash[_timeline_key] = TimelineRecorder(rig_session, request.node.nodeid).start()
    rig_session.begin_test(request.node.nodeid, measurement_step if steps else None)
    t0 = rig_session.clock.now()
    try:
        yield rig_session
    finally:
        _close_timeline(request.node)  # a test that never reached its call phase
        request.node.user_properties.append(("sim_seconds", rig_session.clock.now() - t0))
        request.node.user_properties.append(("measurements", rig_session.end_test()))
        _write_allure_environment(request.config, rig_session)


_timeline_key = pytest.StashKey["object"]()


def _wants_timeline(config: pytest.Config) -> bool:
    return _wants_reports(config)


def _close_timeline(item: pytest.Item, failed: bool = True) -> None:
    """End the test's timeline: CSV and PNG under <reports>/timelines/ and attached to Allure."""
    from rig import timeline
    from rig.allure_report import allure_active, attach, reserver

    recorder = item.stash.get(_timeline_key, None)
    if recorder is None:
        return
    del item.stash[_timeline_key]
    config = item.config
    allure_on = allure_active()
    if _renderer_key not in config.stash:
        config.stash[_renderer_key] = timeline.PngRenderer()
    timeline.close(
        recorder,
        _reports_dir(config),
        attach=attach if allure_on else None,
        reserve=reserver(getattr(config.option, "allure_report_dir", None)) if allure_on else None,
        renderer=config.stash[_renderer_key],
        draw=_draws_png(config, failed),
    )


def _draws_png(config: pytest.Config, failed: bool) -> bool:
    which = config.getoption("--rig-timeline-png")
    return which == "all" or (which == "failed" and failed)


_renderer_key = pytest.StashKey["object"]()


def _finish_timelines(config: pytest.Config) -> None:
    """Wait for the timeline pictures still being drawn; say which could not be."""
    renderer = config.stash.get(_renderer_key, None)
    if renderer is None:
        return
    failures = renderer.finish()
    if failures:
        print(f"[rig] {len(failures)} timeline pictures could not be drawn, e.g. {failures[0]}", file=sys.stderr)


def _write_allure_environment(config: pytest.Config, rig) -> None:
    """environment.properties: the rig, the unit (model, serial, firmware), seed, defect, instruments."""
    from rig.allure_report import environment, write_environment

    results = getattr(config.option, "allure_report_dir", None)
    if results:
        write_environment(Path(results), environment(rig, _rig_summary(config)))


def _skip_if_not_applicable(request: pytest.FixtureRequest, rig) -> None:
    """Model- and connector-specific tests do not apply to other units; that is a skip, not a pass."""
    m = request.node.get_closest_marker("models")
    if m and rig.model_name not in m.args:
        pytest.skip(f"applies to {', '.join(m.args)}; unit is {rig.model_name}")
    c = request.node.get_closest_marker("connector")
    if c and rig.profile["connector"] not in c.args:
        pytest.skip(f"applies to {c.args[0]} variants; unit is {rig.profile['connector']}")


def _progress_printer(config: pytest.Config):
    """Long real-bench waits, one line each time the clock reports (it throttles to every 5 s)."""
    from rig.allure_report import progress_line

    tr = config.pluginmanager.get_plugin("terminalreporter")

    def show(reason: str, elapsed: float, total: float, done: bool = False) -> None:
        line = progress_line(reason, elapsed, total, done)
        if tr is not None:
            tr.ensure_newline()
            tr.write_line(line, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    return show


# ---------------------------------------------------------------------- verdicts
@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item):
    yield  # outermost wrapper: allure-pytest has set its description from the docstring by now
    from rig.allure_report import catalogue, label_test, requirement_url

    ids = [i for m in item.iter_markers("req") for i in m.args]
    doc = getattr(getattr(item, "obj", None), "__doc__", None)
    label_test(ids, catalogue(), item.get_closest_marker("hazardous") is not None, doc,
               requirement_url(item.config))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep = outcome.get_result()
    if call.when == "call" or (call.when == "setup" and rep.failed):
        _close_timeline(item, rep.failed)  # attached to the test itself, before its teardown
    if call.excinfo is not None and call.excinfo.errisinstance(RigFault):
        # The rig could not measure: an error naming the instrument, never a charger failure.
        rep.user_properties.append((_RIG_FAULT, str(call.excinfo.value)))
    elif call.when == "setup" and call.excinfo is not None and call.excinfo.errisinstance(ChargerFailure):
        # The unit failed a precondition (did not register, did not charge): a charger failure,
        # even though pytest calls any setup exception an error. A dead unit must not be retested
        # for ever as a rig fault.
        rep.user_properties.append((_CHARGER_FAILED_IN_SETUP, str(call.excinfo.value)))
    if rep.when == "setup":
        rep.user_properties.append(("req", _item_requirements(item)))


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if report.failed and report.when == "call" and _rig_fault_of(report):
        return "error", "E", ("ERROR (rig fault)", {"red": True})
    if report.failed and report.when == "setup" and any(k == _CHARGER_FAILED_IN_SETUP for k, _ in report.user_properties):
        return "failed", "F", ("FAILED (unit, in setup)", {"red": True})
    return None


def _rig_fault_of(report) -> str | None:
    for key, value in getattr(report, "user_properties", []):
        if key == _RIG_FAULT:
            return value
    return None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _config_of(report)
    record = config.stash.get(_record_key, None) if config else None
    if record is None:
        return
    props = dict((k, v) for k, v in report.user_properties if k != "measurements")
    measurements = [m for k, v in report.user_properties if k == "measurements" for m in v]
    fault = _rig_fault_of(report)
    if report.passed:
        outcome = "passed"
    elif report.skipped:
        outcome = "skipped"
    elif fault or (report.when != "call" and _CHARGER_FAILED_IN_SETUP not in props):
        outcome = "error"
    else:
        outcome = "failed"
    record.record(
        TestRecord(
            nodeid=report.nodeid,
            requirements=list(props.get("req", [])),
            outcome=outcome,
            sim_seconds=float(props.get("sim_seconds", 0.0)) if report.when == "teardown" else 0.0,
            wall_seconds=report.duration,
            measurements=measurements if report.when == "teardown" else [],
            rig_fault=fault,
            message=_short(report.longreprtext) if report.failed else None,
        )
    )
    if report.when == "teardown":
        record.write()


_CONFIG = None


def pytest_sessionstart(session: pytest.Session) -> None:
    global _CONFIG
    _CONFIG = session.config


def _config_of(report):
    return _CONFIG


def _short(text: str, limit: int = 600) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    tail = "\n".join(lines[-6:])
    return tail[-limit:]


# ---------------------------------------------------------------------- interrupts and the end
def pytest_keyboard_interrupt(excinfo) -> None:
    """Ctrl-C or SIGTERM: make the rig safe at once (fixture teardown will check it again)."""
    if _session_rig is not None:
        try:
            _session_rig.safe_state()
        except Exception as exc:  # the interrupt message must still reach the user
            print(f"[rig] could not reach the safe state after interrupt: {exc}")
    if _CONFIG is not None and _record_key in _CONFIG.stash:
        _CONFIG.stash[_record_key].interrupted = True


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _finish_timelines(session.config)
    record = session.config.stash.get(_record_key, None)
    if record is None or _is_worker(session.config):
        return
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        record.interrupted = True
    record.write()
    _mark_rig_faults_as_errors_in_junit(session.config, record)


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    record = config.stash.get(_record_key, None)
    if record is None or not record.tests:
        return
    run = record.run_json()
    trace = record.traceability()
    covered = sum(1 for v in trace.values() if v["verdict"] != "not-covered")
    terminalreporter.write_sep("-", "plugstream rig")
    terminalreporter.write_line(
        f"rig {run['rig']['rig_file']}  model {run['rig']['model'] or '(rig file)'}  "
        f"seed {run['rig']['seed']}  defect {run['rig']['defect'] or 'none'}"
    )
    terminalreporter.write_line(
        f"simulated {run['sim_seconds']:.1f} s in {run['wall_seconds']:.1f} s wall; "
        f"requirements covered {covered}/{len(trace)}; reports in {record.reports_dir}"
    )


def _mark_rig_faults_as_errors_in_junit(config: pytest.Config, record: RunRecord) -> None:
    """junit.xml files call-phase rig faults <failure>; CI dashboards must see <error> instead."""
    path = getattr(config.option, "xmlpath", None)
    faulted = {t.nodeid for t in record.tests.values() if t.rig_fault}
    if not path or not faulted or not os.path.exists(path):
        return
    tree = ET.parse(path)
    for case in tree.iter("testcase"):
        name = f"{case.get('classname', '')}.{case.get('name', '')}"
        if not any(_junit_name(n) == name for n in faulted):
            continue
        for failure in case.findall("failure"):
            failure.tag = "error"
            failure.set("type", "RigFault")
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _junit_name(nodeid: str) -> str:
    path, _, rest = nodeid.partition("::")
    module = path.removesuffix(".py").replace("/", ".")
    parts = rest.split("::")
    return ".".join([module, *parts[:-1]]) + "." + parts[-1]

