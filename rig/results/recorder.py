"""The pytest side of the results store: one run row per session, one committed row per test.

Two plugin objects, because pytest-xdist splits the work:

* `UnitProbe` runs wherever tests run (each xdist worker, or the single process). It reads the
  unit's identity (serial, model, firmware) from the BootNotification in the rig's central
  system history and puts it, with a few verdict details, on the test's reports.
* `ResultsRecorder` runs only in the controller, which sees every test's reports, and writes
  each test to the store as soon as its teardown report arrives, in its own transaction.
  It reads the test's merged record (verdict, requirements, measurements) from the same
  `RunRecord` that writes run.json, so the store and run.json never disagree on a verdict.

A store that cannot be written (a site server down) never stops the run: each failure is
printed at once and summed up at the end, and run.json still has everything.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
from pathlib import Path

import pytest

from rig.core.errors import WrongUnit
from rig.results.forwarder import BackgroundForward, check_url, target_name
from rig.results.store import (ENV_URL, RIG_FAULT, ResultsStore, TestResult, default_url, describe_error,
                               new_run_id, utcnow)
from rig.results.verdict import RunVerdict, judge

log = logging.getLogger(__name__)

P_USES_RIG, P_UNIT, P_WRONG_UNIT = "uses_rig", "unit", "wrong_unit"


def register(config: pytest.Config, reports_dir: Path, run_record=None) -> None:
    """Called from the rig plugin's pytest_configure, in every process. `run_record` is the
    run's RunRecord (rig.reports.run_record), whose merged verdicts the store takes over."""
    config.pluginmanager.register(UnitProbe(), "plugstream_unit_probe")
    if hasattr(config, "workerinput") or config.option.help or config.option.collectonly:
        return
    config.pluginmanager.register(ResultsRecorder(config, reports_dir, run_record), "plugstream_results")


def recorder_of(config: pytest.Config) -> "ResultsRecorder | None":
    return config.pluginmanager.get_plugin("plugstream_results")


def store_urls(option: str | None, reports_dir: Path | str, journal: str | None = None) -> tuple[str, str | None]:
    """(the local journal every test is committed to, the shared database runs are forwarded to).
    A SQLite URL is a local file: it is the journal itself, nothing is forwarded. A server's URL
    (PostgreSQL, ...) is shared: the journal is `journal` (--results-journal) or the reports
    directory's results.sqlite, and complete runs are forwarded (rig/results/forwarder.py)."""
    url = option or os.environ.get(ENV_URL)
    local = f"sqlite:///{Path(journal).resolve()}" if journal else default_url(reports_dir)
    if not url:
        return local, None
    if url.startswith("sqlite"):
        return url, None
    return local, url


def printable_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ---------------------------------------------------------------------- every process
def unit_identity(rig) -> dict:
    """Who the unit says it is (its last BootNotification); the rig file's values until it has booted.
    The firmware is the one it arrived with (its first BootNotification of the run): the firmware
    tests install an image of their own, and the record, certificate and dossier name the firmware
    that was judged, not the one a test left behind."""
    ident = {"serial": None, "model": None, "firmware": None, "vendor": None,
             "variant": rig.model_name, "rig_name": rig.rigfile.bench.name}
    boots = [m.payload for m in rig.central.history(action="BootNotification", direction="in")
             if isinstance(m.payload, dict)]
    if boots:
        p = boots[-1]
        arrived = next((b["firmwareVersion"] for b in boots if b.get("firmwareVersion")), None)
        ident.update(serial=p.get("chargePointSerialNumber"), model=p.get("chargePointModel"),
                     firmware=arrived, vendor=p.get("chargePointVendor"))
    return ident


class UnitProbe:
    def __init__(self):
        self.identity: dict | None = None  # the last one seen in this process

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        rep = outcome.get_result()
        if "rig" not in getattr(item, "fixturenames", ()):
            return
        self._read_identity(item)
        if rep.when == "setup":
            rep.user_properties.append((P_USES_RIG, True))
        if call.excinfo is not None:
            self._tag_exception(rep, call)
        if rep.when == "teardown" and self.identity:
            rep.user_properties.append((P_UNIT, dict(self.identity)))

    def _read_identity(self, item: pytest.Item) -> None:
        rig = getattr(item, "funcargs", {}).get("rig")
        if rig is None:
            return
        try:
            ident = unit_identity(rig)
        except Exception:  # a closed rig at the very end: keep what was seen
            return
        if ident["serial"] or self.identity is None:
            self.identity = ident

    def _tag_exception(self, rep, call) -> None:
        if call.excinfo.errisinstance(WrongUnit):
            rep.user_properties.append((P_WRONG_UNIT, str(call.excinfo.value)))
            self.identity = call.excinfo.value.identity or self.identity


# ---------------------------------------------------------------------- the controller
class ResultsRecorder:
    def __init__(self, config: pytest.Config, reports_dir: Path, run_record=None):
        self.config = config
        self.run_record = run_record
        option = config.getoption("--results-db") or os.environ.get(ENV_URL)
        self.url, self.shared_url = store_urls(option, reports_dir, config.getoption("--results-journal"))
        self.owns_journal = not (option or "").startswith("sqlite")  # a file named by --results-db is not ours to move
        self.forwarding = None  # the background forward of this run (and any left pending) to shared_url
        self.started = utcnow()
        self.run_id = run_record.run_id if run_record is not None and run_record.run_id else new_run_id(self.started)
        self.store: ResultsStore | None = None
        self.run_open = False
        self.results: list[TestResult] = []
        self.identity: dict = {}
        self.wrong_unit: str | None = None
        self.problems: list[str] = []
        self.store_problem: str | None = None  # the store could not be opened: nothing is tested
        self.verdict: RunVerdict | None = None
        self._setup: dict[str, dict] = {}  # nodeid -> setup-phase properties
        self._rig_fields: dict | None = None

    # ------------------------------------------------------------------ what the run is
    def run_fields(self) -> dict:
        opt = self.config.getoption
        fields = {
            "run_id": self.run_id,
            "started_at": self.started,
            "operator": opt("--operator") or _login(),
            "host": socket.gethostname(),
            "station": os.environ.get(STATION_ENV) or socket.gethostname(),
            "mode": "eol" if opt("--eol", default=False) else "suite",
            "seed": opt("--sim-seed"),
            "defect": opt("--sim-defect"),
            "expected_serial": opt("--serial", default=None),
        }
        fields.update(self._rig_file_fields())
        fields.update({k: v for k, v in self.identity.items() if v is not None})
        if not fields.get("serial"):
            fields["serial"] = fields.get("expected_serial")
        return fields

    def _rig_file_fields(self) -> dict:
        if self._rig_fields is None:
            self._rig_fields = self._read_rig_file()
        return dict(self._rig_fields)

    def _read_rig_file(self) -> dict:
        from rig.core.rigfile import load_rigfile, resolve_rig_path

        path = resolve_rig_path(self.config.getoption("--rig"))
        out = {"rig_file": str(path), "variant": self.config.getoption("--sim-model")}
        try:
            rigfile = load_rigfile(Path(path))
        except Exception:  # the run itself reports a bad rig file; the record keeps the path
            return out
        out["rig_name"] = rigfile.bench.name
        out["variant"] = out["variant"] or rigfile.product.model
        return out

    # ------------------------------------------------------------------ each test
    @pytest.hookimpl(trylast=True)  # after the rig plugin merged this phase into its RunRecord
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if report.when == "setup" and props.get(P_USES_RIG):
            self._setup[report.nodeid] = props
            if props.get(P_WRONG_UNIT):
                self.wrong_unit = props[P_WRONG_UNIT]
        if report.when == "teardown" and report.nodeid in self._setup:
            if props.get(P_UNIT):
                self.identity.update({k: v for k, v in props[P_UNIT].items() if v is not None})
            self._write(self._result_of(report.nodeid, self._setup.pop(report.nodeid)))

    def _result_of(self, nodeid: str, setup_props: dict) -> TestResult:
        record = self.run_record
        rec = record.tests.get(nodeid) if record is not None else None
        if rec is None:  # the run record missed this test: keep at least that it ran and broke
            return TestResult(nodeid=nodeid, verdict="harness-error", message="no run record for this test")
        result = TestResult(nodeid=nodeid, verdict=rec.verdict, requirements=list(rec.requirements),
                            rig_fault=rec.rig_fault, message=rec.harness_error or rec.message,
                            wall_seconds=rec.wall_seconds, sim_seconds=rec.sim_seconds,
                            measurements=list(rec.measurements))
        if setup_props.get(P_WRONG_UNIT):
            result.verdict, result.message = "error", setup_props[P_WRONG_UNIT]
        return result

    def _write(self, result: TestResult) -> None:
        self.results.append(result)
        try:
            if self.store is None:
                self.store = ResultsStore(self.url)
            if not self.run_open:
                self.store.start_run(self.run_fields())
                self.run_open = True
            self.store.record_test(self.run_id, result, run_update=self._identity_columns())
        except Exception as exc:  # the run goes on; run.json keeps the result
            self._problem(f"could not record {result.nodeid}: {type(exc).__name__}: {exc}")

    def _identity_columns(self) -> dict:
        return {k: v for k, v in self.identity.items() if v is not None}

    def _problem(self, text: str) -> None:
        self.problems.append(text)
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"[rig] results store: {text}", red=True)

    # ------------------------------------------------------------------ the end
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Open the store and the run's row before the first test: a unit is never judged without
        a record. A store that cannot be written means nothing is tested (pytest_runtestloop below)
        and the run ends as a rig fault naming the store (exit status 3: fix the store, retest)."""
        try:
            if self.shared_url:  # malformed, or its driver missing: say so now (no connection is made)
                try:
                    check_url(self.shared_url)
                except Exception as exc:
                    line = describe_error(exc, self.shared_url)
                    if line is None:
                        raise
                    raise SharedUrlProblem(line) from None
            self.store = self._open_journal()
            self.store.start_run(self.run_fields())
            self.run_open = True
        except Exception as exc:
            line = str(exc) if isinstance(exc, SharedUrlProblem) else describe_error(exc, self.url)
            if line is None:
                raise
            self.store_problem = line
            tr = self.config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line(f"[rig] {line}; nothing is tested (fix the store, then retest)", red=True)

    def _open_journal(self) -> ResultsStore:
        """The store; when it is the station's own journal (not a file someone named with
        --results-db) and SQLite says it is damaged, it is kept aside whole (for `rig records export`
        or a database tool to recover what it can) and a new journal is started."""
        from sqlalchemy.exc import DatabaseError

        try:
            return ResultsStore(self.url)
        except DatabaseError as exc:
            damaged = any(w in str(exc) for w in ("not a database", "malformed"))
            if not (damaged and self.owns_journal):
                raise
        path = Path(self.url.removeprefix("sqlite:///"))
        aside = path.with_name(f"{path.name}.damaged-{utcnow():%Y%m%dT%H%M%S}")
        path.rename(aside)
        for extra in ("-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)  # they belong to the damaged file
        line = f"results journal {path} is damaged: kept aside as {aside}, a new journal started"
        log.error("%s", line)
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"[rig] {line}", red=True)
        return ResultsStore(self.url)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session):
        """No store, no test: the run loop is taken over and runs nothing."""
        return True if self.store_problem else None

    def finish(self, exitstatus: int | None = None) -> RunVerdict:
        """Judge the run and close its row (idempotent: the end-of-line plugin may ask first)."""
        if self.verdict is not None:
            return self.verdict
        record = self.run_record
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or bool(record and record.interrupted)
        for nodeid in list(self._setup):  # set up but never torn down: the run stopped inside them
            self._write(self._result_of(nodeid, self._setup.pop(nodeid)))
        self.verdict = judge(self.results, self.wrong_unit, interrupted)
        lost = self.store_problem or (self.problems[0] if self.problems else None)
        if lost and self.verdict.verdict != RIG_FAULT:
            # a unit is not judged on results the store did not keep: retest once the store is fixed
            self.verdict = RunVerdict(RIG_FAULT, self.verdict.failing_requirements,
                                      [lost if lost.startswith("results store:") else f"results store: {lost}"])
        if self.run_open:
            try:
                self.store.finish_run(self.run_id, self.verdict.verdict, self.verdict.detail())
            except Exception as exc:
                self._problem(f"could not close run {self.run_id}: {exc}")
            else:
                self._forward()
        return self.verdict

    def _forward(self) -> None:
        """The run is complete in the journal: forward it (and any left pending) off the test's path."""
        if self.shared_url and self.forwarding is None:
            self.forwarding = BackgroundForward(self.url, self.shared_url)
            self.forwarding.start()

    def forward_outcome(self):
        """(forwarded: bool, words) once the forward has ended or FORWARD_WAIT_S has passed; None if
        this run is not forwarded anywhere."""
        if self.forwarding is None:
            return None
        result = self.forwarding.outcome()
        target = target_name(self.shared_url)
        if result is None:
            return False, f"forwarding to {target} still under way (the shared database is slow); `rig records status`"
        if self.run_id in result.forwarded + result.already_there:
            return True, f"forwarded to {target}"
        return False, (f"NOT yet in {target} ({result.error or 'not forwarded'}): pending in the local journal, "
                       f"`rig records sync` forwards it")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.forwarding is not None:
            self.forwarding.outcome()  # bounded: a run cut short here is rolled back by the server, still pending

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.finish(exitstatus)
        if self.store_problem:
            session.exitstatus = 3  # RIG FAULT - RETEST (docs/factory.md): the store is part of the rig
        if self.store is not None:
            self.store.close()

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.results:
            return
        where = printable_url(self.url)
        terminalreporter.write_line(
            f"results store: run {self.run_id}, {len(self.results)} tests, unit "
            f"{self.identity.get('serial') or '?'} -> {where}"
        )
        outcome = self.forward_outcome()
        if outcome is not None:
            terminalreporter.write_line(f"results store: {outcome[1]}", red=not outcome[0])
        if self.problems:
            terminalreporter.write_line(f"results store: {len(self.problems)} problem(s); first: {self.problems[0]}",
                                        red=True)


STATION_ENV = "RIG_STATION"  # the station's name (`rig station` sets "<station>/<socket>"); default the host


class SharedUrlProblem(Exception):
    """The shared database's URL cannot be used at all (one line, already worded)."""


def _login() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a container: the record says so by leaving it empty
        return None
