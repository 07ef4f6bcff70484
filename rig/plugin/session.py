"""One rig session's hooks: what it selects, what each test's reports become in the run record,
what the run holds (its reports folder, SIGTERM, its run id) and gives back, and the summary.

An instance is registered per session by rig/plugin/__init__.py, only when the session uses the
rig, so nothing of it survives the session and no other pytest run is touched.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
from pathlib import Path

import pytest

from rig.plugin import verdicts
from rig.plugin.fixtures import close_timeline, finish_timelines
from rig.plugin.options import is_worker, rig_summary
from rig.reports.run_record import RunRecord, TestRecord
from rig.core.tempdirs import ENV_RUN_ID

log = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"  # in the reports folder: which run holds it
record_key = pytest.StashKey[RunRecord]()


def requirement_ids() -> list[str]:
    from rig.product.requirements import load_requirements

    return sorted(load_requirements())


class RigSession:
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
        summary = rig_summary(config)
        lines = [f"rig: {summary['rig_file']}, model {summary['model'] or '(rig file)'}, seed {summary['seed']}, "
                 f"defect {summary['defect'] or 'none'}"]
        record = config.stash.get(record_key, None)
        if record is not None:
            lines.append(f"rig: run {record.run_id}, reports in {record.reports_dir}")
            lines += [f"rig: {killed}" for killed in record.killed_runs]
        return lines

    # ------------------------------------------------------------------ selection
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        wanted = _wanted_requirements(config)
        if config.getoption("--certification"):
            from rig.product.requirements import load_requirements
            from rig.reports.dossier import certification_requirements

            standards = certification_requirements(load_requirements())
            wanted = standards if wanted is None else wanted & standards
        hazardous_ok = config.getoption("--hazardous")
        keep, drop = [], []
        for item in items:
            selected = hazardous_ok or not item.get_closest_marker("hazardous")
            if wanted is not None:
                selected = selected and bool(wanted & set(verdicts.item_requirements(item)))
            (keep if selected else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    # ------------------------------------------------------------------ each test
    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item):
        verdicts.mark_service_faults(item)
        yield  # outermost wrapper: allure-pytest has set its description from the docstring by now
        from rig.reports.allure import catalogue, label_test, requirement_url

        ids = verdicts.item_requirements(item)
        doc = getattr(getattr(item, "obj", None), "__doc__", None)
        label_test(ids, catalogue(), item.get_closest_marker("hazardous") is not None, doc,
                   requirement_url(item.config))

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        rep = outcome.get_result()
        if call.when == "call" or (call.when == "setup" and rep.failed):
            close_timeline(item, rep.failed)  # attached to the test itself, before its teardown
        verdicts.tag_report(item, call, rep)

    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        return verdicts.test_status(report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = self.config.stash.get(record_key, None)
        if record is None:
            return
        props = dict((k, v) for k, v in report.user_properties if k != "measurements")
        measurements = [m for k, v in report.user_properties if k == "measurements" for m in v]
        record.record(
            TestRecord(
                nodeid=report.nodeid,
                requirements=list(props.get(verdicts.REQUIREMENTS, [])),
                outcome=verdicts.phase_outcome(report),
                sim_seconds=float(props.get("sim_seconds", 0.0)) if report.when == "teardown" else 0.0,
                wall_seconds=report.duration,
                measurements=measurements if report.when == "teardown" else [],
                rig_fault=props.get(verdicts.RIG_FAULT),
                harness_error=props.get(verdicts.HARNESS_ERROR),
                message=_short(report.longreprtext) if report.failed else None,
                phases=[report.when],
            )
        )
        if report.when == "teardown":
            record.write()

    def pytest_keyboard_interrupt(self, excinfo) -> None:
        """Ctrl-C or SIGTERM: make the rig safe at once (fixture teardown will check it again)."""
        rig = self.config.stash.get(verdicts.rig_key, None)
        if rig is not None:
            try:
                rig.safe_state()
            except Exception as exc:  # the interrupt message must still reach the user
                log.error("could not reach the safe state after interrupt: %s", exc)
                sys.stderr.write(f"[rig] could not reach the safe state after interrupt: {exc}\n")
        record = self.config.stash.get(record_key, None)
        if record is not None:
            record.interrupted = True

    # ------------------------------------------------------------------ the end
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        finish_timelines(session.config)
        record = session.config.stash.get(record_key, None)
        if record is None or is_worker(session.config):
            return
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            record.interrupted = True
        record.write()
        verdicts.mark_errors_in_junit(getattr(session.config.option, "xmlpath", None), record.tests.values())
        if session.config.getoption("--certification"):
            self.dossier = _write_dossier(session.config, record)

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config: pytest.Config) -> None:
        record = config.stash.get(record_key, None)
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
        if run["rig"].get("bench") == "real":  # the rig's clock is the wall: say where the rest went
            timing = (f"tests {run['sim_seconds']:.1f} s, run {run['wall_seconds']:.1f} s wall "
                      f"({max(0.0, run['wall_seconds'] - run['sim_seconds']):.1f} s outside the tests: "
                      "opening the rig, the unit registering, reports)")
        else:
            timing = f"simulated {run['sim_seconds']:.1f} s in {run['wall_seconds']:.1f} s wall"
        terminalreporter.write_line(
            f"{timing}; requirements covered {covered}/{len(trace)}; reports in {record.reports_dir}"
        )
        if getattr(self, "dossier", None):
            terminalreporter.write_line(self.dossier, red="NOT" in self.dossier or "no PDF" in self.dossier)


def _write_dossier(config: pytest.Config, record) -> str:
    """The certification dossier from what the run recorded; one line saying where it is."""
    from rig.core.rigfile import load_rigfile, resolve_rig_path
    from rig.reports import dossier
    from rig.results.recorder import recorder_of

    recorder = recorder_of(config)
    unit = recorder.run_fields() if recorder is not None else {}
    try:
        rig_data = load_rigfile(resolve_rig_path(config.getoption("--rig"))).data
    except Exception:  # the run reported a bad rig file already; the dossier says "not recorded"
        rig_data = {}
    try:
        html, pdf, why = dossier.write(record.reports_dir, record.run_json(), record.traceability(), unit, rig_data)
    except Exception as exc:  # the run's verdicts stand; the dossier's failure is the harness's, said plainly
        log.exception("certification dossier not written")
        return f"certification dossier NOT written: {type(exc).__name__}: {exc}"
    return f"certification dossier: {html}" + (f" and {pdf}" if pdf else f" ({why})")


def _wanted_requirements(config: pytest.Config) -> set[str] | None:
    """The --req selection, checked against the catalogue so a typo is an error, not an empty run."""
    raw = config.getoption("--req")
    if not raw:
        return None
    wanted = {r.strip().upper() for r in raw.split(",") if r.strip()}
    unknown = sorted(wanted - set(requirement_ids()))
    if unknown:
        raise pytest.UsageError(f"--req: unknown requirement ID(s) {', '.join(unknown)}; `rig requirements` lists them")
    return wanted


def _short(text: str, limit: int = 600) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    tail = "\n".join(lines[-6:])
    return tail[-limit:]
