"""The pytest plugin: options, markers, the `rig` fixture, verdicts and the run record.

Registered through the `pytest11` entry point, so any project that installs the package gets it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rig.errors import HARNESS, RIG, UNIT, Blame, blame
from rig.report import RunRecord, TestRecord
from rig.results.store import new_run_id, utcnow
from rig.tempdirs import ENV_RUN_ID, sweep_leftovers

log = logging.getLogger(__name__)
GROUP = "plugstream rig"
# user properties a report carries from the process that ran the test to the one that records it
_BLAME = "blame"  # unit | rig | harness, for a failed phase
_RIG_FAULT = "rig_fault"  # "instrument: what happened"
_HARNESS_ERROR = "harness_error"  # "ExceptionType: message"


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
    if not config.option.help:
        _check_bench_options(config)  # a bad rig file stops here, before anything is collected or recorded
    reports = _reports_dir(config)
    record = None
    hooks = RunHooks(config)
    if not _is_worker(config) and _wants_reports(config):
        run_id = new_run_id(utcnow())
        hooks.hold_reports(reports, run_id)  # a second run on the same reports/ refuses here
        record = RunRecord(reports, _requirement_ids(), _rig_summary(config), run_id=run_id)
        record.killed_runs = [leftover.describe() for leftover in sweep_leftovers()]
        config.stash[_record_key] = record
    _register_factory_plugins(config, record)
    config.pluginmanager.register(hooks, "plugstream_run")
    if record is None:
        return
    if getattr(config.option, "xmlpath", None) is None:
        config.option.xmlpath = str(reports / "junit.xml")
    if hasattr(config.option, "allure_report_dir") and not config.option.allure_report_dir:
        config.option.allure_report_dir = str(reports / "allure-results")
        config.option.clean_alluredir = True
    _set_up_allure(config, reports)
    hooks.install_signal_handlers()


def _check_bench_options(config: pytest.Config) -> None:
    """The rig file and the emulated-bench options, checked before collection: a mistake is one
    line naming the file and the key (pytest's usage error, exit status 4), and no test is run or
    recorded against a bench that cannot be what the file says."""
    from rig import rigfile as rf
    from rig.bench import default_rig_path
    from rig.sim.defects import lookup

    path = config.getoption("--rig") or default_rig_path(Path(config.rootpath))
    try:
        rig = rf.load_rigfile(path)
        model, defect = config.getoption("--sim-model"), config.getoption("--sim-defect")
        if (model or defect) and not rig.bench.emulated:
            flag = "--sim-model" if model else "--sim-defect"
            raise rf.RigFileError(str(path), flag, "only applies to the emulated bench (bench.kind is \"real\")")
        if model:
            rf.with_model(rig, model)
        lookup(defect)
    except (rf.RigFileError, ValueError) as exc:
        raise pytest.UsageError(" ".join(str(exc).split())) from None


def _add_factory_options(group) -> None:
    """Unit records (--results-db, --operator) and end-of-line mode (--eol, --serial)."""
    from rig import eol
    from rig.results import recorder

    recorder.add_options(group)
    eol.add_options(group)


def _register_factory_plugins(config: pytest.Config, record: RunRecord | None) -> None:
    """The results store's writer and the end-of-line plugin (each decides per process what it does)."""
    from rig import eol
    from rig.results import recorder

    recorder.register(config, _reports_dir(config), record)
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


LOCK_FILE = ".run.lock"  # in the reports folder: which run holds it
_record_key = pytest.StashKey[RunRecord]()
_rig_key = pytest.StashKey["object"]()  # the open Rig of this process, for the hooks that need it


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
    request.config.stash[_rig_key] = rig
    try:
        yield rig
    finally:
        del request.config.stash[_rig_key]
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
    rig = item.config.stash.get(_rig_key, None)  # where the rig's service faults stood when the test began
    item.stash[_fault_mark_key] = rig.service_faults.mark() if rig is not None else 0
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
    if rep.when == "setup":
        rep.user_properties.append(("req", _item_requirements(item)))
    if call.excinfo is None or not rep.failed:
        return
    who = blame(call.excinfo.value)
    if who.kind == UNIT:
        who = _unless_a_rig_service_failed(item, who)
    rep.user_properties.append((_BLAME, who.kind))
    if who.kind == RIG:
        # The rig could not measure: an error naming the instrument, never a charger failure.
        rep.user_properties.append((_RIG_FAULT, who.text))
    elif who.kind == HARNESS:
        # Our own bug: an error of the harness, never the unit's failure.
        rep.user_properties.append((_HARNESS_ERROR, who.text))


def _unless_a_rig_service_failed(item: pytest.Item, who: Blame) -> Blame:
    """A unit is blamed only when the rig can show its own side worked: if a rig service (central
    system, DHCP, DNS, NTP, firmware server) failed during this test, "the unit did not register"
    may be the service's doing, so the test is a rig fault naming that service."""
    rig = item.config.stash.get(_rig_key, None)
    if rig is None:
        return who
    faults = rig.service_faults.since(item.stash.get(_fault_mark_key, 0))
    if not faults:
        return who
    return Blame(RIG, f"{faults[0]} (the rig's own service failed during the test; "
                      f"the unit was not judged: {_first_line(who.text)})")


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


_fault_mark_key = pytest.StashKey[int]()


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if not report.failed:
        return None
    kind = _prop(report, _BLAME)
    if kind == RIG:
        return "error", "E", ("ERROR (rig fault)", {"red": True})
    if kind == HARNESS:
        return "error", "E", ("ERROR (harness)", {"red": True})
    if kind == UNIT and report.when != "call":
        return "failed", "F", (f"FAILED (unit, in {report.when})", {"red": True})
    return None


def _prop(report, key: str):
    for k, value in getattr(report, "user_properties", []):
        if k == key:
            return value
    return None


def _rig_fault_of(report) -> str | None:
    return _prop(report, _RIG_FAULT)


def phase_outcome(report: pytest.TestReport) -> str:
    """One phase's verdict: passed, skipped, failed (the unit), error (a rig fault) or
    harness-error (anything else). A failure without a blame tag (raised where the plugin did not
    see it) is the harness's: only what was shown to be the unit's fails the unit."""
    if report.passed:
        return "passed"
    if report.skipped:
        return "skipped"
    kind = _prop(report, _BLAME)
    if kind == UNIT:
        return "failed"
    if kind == RIG:
        return "error"
    return "harness-error"


class RunHooks:
    """The hooks that need the session's config but are not given it (pytest_runtest_logreport,
    pytest_keyboard_interrupt): one object per session, so nothing survives it in module state."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self._lock_file = None
        self._old_run_id = None
        self._old_sigterm = None

    # ------------------------------------------------------------------ what the run holds
    def hold_reports(self, reports: Path, run_id: str) -> None:
        """Hold the reports folder for this run (an advisory lock the OS releases even on SIGKILL):
        a second run started on the same folder would empty the first's allure results and
        overwrite its run.json, so it refuses with one line instead. The run id is handed to
        everything the run starts (the emulated bench's private folders carry it)."""
        import fcntl

        reports.mkdir(parents=True, exist_ok=True)
        lock = open(reports / LOCK_FILE, "a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip() or "another run"
            lock.close()
            raise pytest.UsageError(f"{reports}: in use by {holder}; wait for it to finish or give "
                                    f"--rig-reports DIR") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"run {run_id} (pid {os.getpid()})\n")
        lock.flush()
        self._lock_file = lock
        self._old_run_id = os.environ.get(ENV_RUN_ID)
        os.environ[ENV_RUN_ID] = run_id

    def install_signal_handlers(self) -> None:
        """SIGTERM unwinds like Ctrl-C, so fixture teardown brings the rig to its safe state."""

        def on_term(signum, frame):
            raise KeyboardInterrupt(f"signal {signum}")

        if hasattr(signal, "SIGTERM"):
            self._old_sigterm = signal.signal(signal.SIGTERM, on_term)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Give back what the run held: the signal handler, the run id, the reports folder."""
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
        if self._lock_file is not None:
            if self._old_run_id is None:
                os.environ.pop(ENV_RUN_ID, None)
            else:
                os.environ[ENV_RUN_ID] = self._old_run_id
            self._lock_file.close()
            self._lock_file = None

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        summary = _rig_summary(config)
        lines = [f"rig: {summary['rig_file']}, model {summary['model'] or '(rig file)'}, seed {summary['seed']}, "
                 f"defect {summary['defect'] or 'none'}"]
        record = config.stash.get(_record_key, None)
        if record is not None:
            lines.append(f"rig: run {record.run_id}, reports in {record.reports_dir}")
            lines += [f"rig: {killed}" for killed in record.killed_runs]
        return lines


    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self.config.stash.get(_record_key, None)
        if record is None:
            return
        props = dict((k, v) for k, v in report.user_properties if k != "measurements")
        measurements = [m for k, v in report.user_properties if k == "measurements" for m in v]
        record.record(
            TestRecord(
                nodeid=report.nodeid,
                requirements=list(props.get("req", [])),
                outcome=phase_outcome(report),
                sim_seconds=float(props.get("sim_seconds", 0.0)) if report.when == "teardown" else 0.0,
                wall_seconds=report.duration,
                measurements=measurements if report.when == "teardown" else [],
                rig_fault=_rig_fault_of(report),
                harness_error=props.get(_HARNESS_ERROR),
                message=_short(report.longreprtext) if report.failed else None,
                phases=[report.when],
            )
        )
        if report.when == "teardown":
            record.write()

    def pytest_keyboard_interrupt(self, excinfo) -> None:
        """Ctrl-C or SIGTERM: make the rig safe at once (fixture teardown will check it again)."""
        rig = self.config.stash.get(_rig_key, None)
        if rig is not None:
            try:
                rig.safe_state()
            except Exception as exc:  # the interrupt message must still reach the user
                log.error("could not reach the safe state after interrupt: %s", exc)
                sys.stderr.write(f"[rig] could not reach the safe state after interrupt: {exc}\n")
        record = self.config.stash.get(_record_key, None)
        if record is not None:
            record.interrupted = True


def _short(text: str, limit: int = 600) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    tail = "\n".join(lines[-6:])
    return tail[-limit:]


# ---------------------------------------------------------------------- the end
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
    if record is None:
        return
    for killed in record.killed_runs:
        terminalreporter.write_line(f"[rig] {killed}", yellow=True)
    if not record.tests:
        return
    run = record.run_json()
    trace = record.traceability()
    covered = sum(1 for v in trace.values() if v["verdict"] != "not-covered")
    terminalreporter.write_sep("-", "plugstream rig")
    terminalreporter.write_line(
        f"run {record.run_id}  rig {run['rig']['rig_file']}  model {run['rig']['model'] or '(rig file)'}  "
        f"seed {run['rig']['seed']}  defect {run['rig']['defect'] or 'none'}"
    )
    terminalreporter.write_line(
        f"simulated {run['sim_seconds']:.1f} s in {run['wall_seconds']:.1f} s wall; "
        f"requirements covered {covered}/{len(trace)}; reports in {record.reports_dir}"
    )


def _mark_rig_faults_as_errors_in_junit(config: pytest.Config, record: RunRecord) -> None:
    """junit.xml files call-phase rig faults and harness errors <failure>; CI dashboards must see
    <error> instead (type RigFault or HarnessError), since neither is the unit's failure."""
    path = getattr(config.option, "xmlpath", None)
    faulted = {t.nodeid: ("RigFault" if t.outcome == "error" else "HarnessError")
               for t in record.tests.values() if t.outcome in ("error", "harness-error")}
    if not path or not faulted or not os.path.exists(path):
        return
    tree = ET.parse(path)
    for case in tree.iter("testcase"):
        name = f"{case.get('classname', '')}.{case.get('name', '')}"
        kind = next((k for n, k in faulted.items() if _junit_name(n) == name), None)
        if kind is None:
            continue
        for failure in case.findall("failure") + case.findall("error"):
            failure.tag = "error"
            failure.set("type", kind)
    tree.write(path, encoding="utf-8", xml_declaration=True)


def _junit_name(nodeid: str) -> str:
    path, _, rest = nodeid.partition("::")
    module = path.removesuffix(".py").replace("/", ".")
    parts = rest.split("::")
    return ".".join([module, *parts[:-1]]) + "." + parts[-1]

