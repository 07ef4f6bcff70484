"""End-of-line mode (`--eol`): the factory's short run per unit, ending in one clear verdict.

* Selection: the tests marked `eol` (fast, non-destructive); those also marked `hazardous` only
  with `--hazardous`, as everywhere else.
* The unit: its serial number from `--serial SN`, or scanned at the station's terminal (read
  from /dev/tty, so pytest's output capture does not swallow the prompt). It is checked against
  the serial the unit reports in its BootNotification before the first test: another unit on
  the station ends the run as WRONG UNIT, which judges neither unit.
* The end: a big banner as the last thing on the terminal: PASS; FAIL with the failing
  requirement IDs; or RIG FAULT - RETEST naming the instrument when any test errored. A rig
  fault is never a unit FAIL. PASS and FAIL runs leave a certificate
  (reports/certificates/<serial>-<UTC time>.html); every run is in the results store.
"""

from __future__ import annotations

import re
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from rig.core.errors import WrongUnit
from rig.results.store import FAIL, INTERRUPTED, NO_TESTS, PASS, RIG_FAULT, WRONG_UNIT

# Exit statuses of an end-of-line run, for a line controller: what to do with the unit, without
# asking the database. 2 and 4 are pytest's own (interrupted; usage error, e.g. a bad rig file).
EXIT_PASS = 0  # box the unit
EXIT_FAIL = 1  # the unit failed a requirement: route it to repair
EXIT_INTERRUPTED = 2  # the run was stopped: retest
EXIT_RETEST = 3  # RIG FAULT - RETEST (an instrument, a rig service or the harness), WRONG UNIT, no result
EXIT_USAGE = 4  # the command or the rig file is wrong: fix it, nothing was tested
EXIT_STATUS = {PASS: EXIT_PASS, FAIL: EXIT_FAIL, INTERRUPTED: EXIT_INTERRUPTED, RIG_FAULT: EXIT_RETEST,
               WRONG_UNIT: EXIT_RETEST, NO_TESTS: EXIT_RETEST}

SERIAL_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PROMPT = "Scan the unit's serial number (or type it and press Enter): "
PROMPT_TRIES = 3


def add_options(group) -> None:
    group.addoption("--eol", action="store_true", default=False,
                    help="end-of-line run: only tests marked eol (hazardous ones only with --hazardous), "
                         "for the unit of --serial or scanned at the prompt; ends in PASS / FAIL / "
                         "RIG FAULT - RETEST with a certificate under the reports directory")
    group.addoption("--serial", metavar="SN", default=None,
                    help="end-of-line: serial number of the unit on the station (else asked for at the terminal)")


def register(config: pytest.Config) -> None:
    """Called from the rig plugin's pytest_configure, in every process."""
    if not config.getoption("--eol") or config.option.help:
        return
    if not hasattr(config, "workerinput") and not config.option.collectonly:
        config.option.serial = resolve_serial(config)  # xdist hands the option on to its workers
    config.pluginmanager.register(EndOfLine(config), "plugstream_eol")
    config.pluginmanager.register(sys.modules[__name__], "plugstream_eol_fixtures")  # the autouse check


# ---------------------------------------------------------------------- the serial number
def resolve_serial(config: pytest.Config) -> str:
    given = config.getoption("--serial")
    serial = (given if given is not None else prompt_serial(config)).strip()
    if not SERIAL_PATTERN.match(serial):
        raise pytest.UsageError(
            f"--eol: {serial!r} is not a serial number (letters, digits, '.', '_', '-'; at most 64)")
    return serial


def prompt_serial(config: pytest.Config) -> str:
    """Read one line from the station's terminal (a barcode scanner types the serial and Enter)."""
    try:
        tty = open("/dev/tty", "r+b", buffering=0)  # unbuffered: a tty cannot seek, as "r+" text needs
    except OSError:
        raise pytest.UsageError(
            "--eol needs the serial number of the unit on the station: give --serial SN "
            "(no terminal to scan it at)") from None
    capman = config.pluginmanager.getplugin("capturemanager")
    with tty, (capman.global_and_fixture_disabled() if capman else nullcontext()):
        for _ in range(PROMPT_TRIES):
            tty.write(PROMPT.encode())
            line = tty.readline().decode("utf-8", errors="replace")
            if not line:  # end of input
                break
            if line.strip():
                return line.strip()
    raise pytest.UsageError("--eol: no serial number was scanned; scan it again or give --serial SN")


# ---------------------------------------------------------------------- the unit on the station
@pytest.fixture(scope="session", autouse=True)
def plugstream_eol_unit_on_station(request: pytest.FixtureRequest):
    """Before the first test: the unit has registered and is the one that was scanned."""
    expected = request.config.getoption("--serial")
    if expected:
        rig = request.getfixturevalue("rig_session")
        if rig.profile.get("connector") == "socket":  # the pilot box reaches a socket through the test plug
            rig.operator.confirm("Fit the Type 2 test plug to the unit's socket, then press Continue")
        rig.await_ready()  # a unit that never registers fails here (its failure, not the rig's)
        reported = reported_serial(rig)
        if reported != expected:
            request.session.shouldstop = "wrong unit on the station"
            from rig.results.recorder import unit_identity

            raise WrongUnit(f"wrong unit on the station: scanned {expected}, "
                            f"the unit on the station reports {reported or 'no serial number'}", unit_identity(rig))
    yield


def reported_serial(rig) -> str | None:
    boots = rig.central.history(action="BootNotification", direction="in")
    payload = boots[-1].payload if boots else None
    return payload.get("chargePointSerialNumber") if isinstance(payload, dict) else None


# ---------------------------------------------------------------------- the plugin
class EndOfLine:
    def __init__(self, config: pytest.Config):
        self.config = config
        self.expected = config.getoption("--serial")
        self.started = time.monotonic()
        self.verdict = None
        self.certificate: Path | None = None
        self.wall_seconds = 0.0

    def pytest_report_header(self, config: pytest.Config) -> str:
        return f"end-of-line run: unit {self.expected}, operator {config.getoption('--operator') or '(login name)'}"

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep = [i for i in items if i.get_closest_marker("eol")]
        drop = [i for i in items if not i.get_closest_marker("eol")]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from rig.results.recorder import recorder_of

        recorder = recorder_of(self.config)
        if recorder is None:
            return
        self.wall_seconds = time.monotonic() - self.started
        self.verdict = recorder.finish(exitstatus)
        if self.verdict.verdict in (PASS, FAIL):
            self.certificate = self._write_certificate(recorder)
        self._tell_station(recorder)
        # pytest returns session.exitstatus after this hook: FAIL and RIG FAULT must not share 1
        session.exitstatus = EXIT_STATUS[self.verdict.verdict]

    def _tell_station(self, recorder) -> None:
        from rig.station.channel import channel_of

        channel = channel_of(self.config)
        if channel is None:
            return
        v, texts = self.verdict, requirement_texts()
        channel.emit("verdict", verdict=v.verdict, wall_seconds=round(self.wall_seconds, 2),
                     failing=[{"id": rid, "text": texts.get(rid, "")} for rid in v.failing_requirements],
                     instruments=v.instruments, rig_faults=v.rig_faults, wrong_unit=v.wrong_unit,
                     certificate=str(self.certificate) if self.certificate else None,
                     record=record_line(recorder).strip(), run_id=recorder.run_id, unit=recorder.run_fields())

    def _write_certificate(self, recorder) -> Path | None:
        from rig.station.certificate import write_certificate

        try:
            return write_certificate(_reports_dir(self.config), certificate_data(recorder, self.verdict))
        except OSError as exc:
            recorder._problem(f"could not write the certificate: {exc}")
            return None

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """The banner comes last, after pytest's own summary: it is what the operator reads."""
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is None or self.verdict is None:
            return
        from rig.results.recorder import recorder_of

        recorder = recorder_of(config)
        for line, colour in banner_lines(self.verdict, recorder, self.certificate, self.wall_seconds):
            tr.write_line(line, **{colour: True, "bold": True} if colour else {})


def _reports_dir(config: pytest.Config) -> Path:
    p = Path(config.getoption("--rig-reports"))
    return p if p.is_absolute() else Path(config.rootpath) / p


def requirement_texts() -> dict[str, str]:
    from rig.product.requirements import load_requirements

    try:
        return {rid: req.text for rid, req in load_requirements().items()}
    except Exception:  # the certificate and the panel still show the IDs
        return {}


def certificate_data(recorder, verdict) -> dict:
    from rig.results.store import utcnow

    fields = recorder.run_fields()
    texts = requirement_texts()
    return {
        "run_id": recorder.run_id,
        "unit": {k: fields.get(k) for k in ("serial", "model", "variant", "firmware", "vendor")},
        "rig": {"name": fields.get("rig_name"), "file": fields.get("rig_file")},
        "operator": fields.get("operator"),
        "host": fields.get("host"),
        "started_at": recorder.started,
        "ended_at": utcnow(),
        "verdict": verdict.verdict,
        "failing_requirements": verdict.failing_requirements,
        "requirement_texts": texts,
        "tests": [vars(t) for t in recorder.results],
    }


# ---------------------------------------------------------------------- the banner
FONT_ROWS = 5
FONT = {
    "A": [" ### ", "#   #", "#####", "#   #", "#   #"],
    "D": ["#### ", "#   #", "#   #", "#   #", "#### "],
    "E": ["#####", "#    ", "#### ", "#    ", "#####"],
    "F": ["#####", "#    ", "#### ", "#    ", "#    "],
    "G": [" ####", "#    ", "#  ##", "#   #", " ### "],
    "I": ["#####", "  #  ", "  #  ", "  #  ", "#####"],
    "L": ["#    ", "#    ", "#    ", "#    ", "#####"],
    "N": ["#   #", "##  #", "# # #", "#  ##", "#   #"],
    "O": [" ### ", "#   #", "#   #", "#   #", " ### "],
    "P": ["#### ", "#   #", "#### ", "#    ", "#    "],
    "R": ["#### ", "#   #", "#### ", "#  # ", "#   #"],
    "S": [" ####", "#    ", " ### ", "    #", "#### "],
    "T": ["#####", "  #  ", "  #  ", "  #  ", "  #  "],
    "U": ["#   #", "#   #", "#   #", "#   #", " ### "],
    "W": ["#   #", "#   #", "# # #", "## ##", "#   #"],
    " ": ["   ", "   ", "   ", "   ", "   "],
}


def big(text: str) -> list[str]:
    """`text` in 5-line block letters (the letters the verdicts need)."""
    return ["  " + " ".join(FONT[c][row] for c in text.upper()) for row in range(FONT_ROWS)]


HEADLINE = {
    PASS: (["PASS"], "green"),
    FAIL: (["FAIL"], "red"),
    RIG_FAULT: (["RIG FAULT", "RETEST"], "yellow"),
    WRONG_UNIT: (["WRONG UNIT"], "yellow"),
    INTERRUPTED: (["INTERRUPTED"], "yellow"),
    NO_TESTS: (["NO RESULT"], "yellow"),
}


def banner_lines(verdict, recorder, certificate: Path | None, wall_seconds: float) -> list[tuple[str, str | None]]:
    words, colour = HEADLINE[verdict.verdict]
    rule = "=" * 72
    out: list[tuple[str, str | None]] = [("", None), (rule, colour)]
    for word in words:
        out += [(line, colour) for line in big(word)] + [("", None)]
    out += [(line, colour) for line in _explanation(verdict)]
    fields = recorder.run_fields() if recorder else {}
    counts: dict[str, int] = {}
    for t in recorder.results if recorder else []:
        counts[t.verdict] = counts.get(t.verdict, 0) + 1
    out.append((f"  unit {fields.get('serial') or '?'}  {fields.get('model') or ''} ({fields.get('variant') or '?'})"
                f"  firmware {fields.get('firmware') or '?'}", None))
    out.append(("  tests: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
                + f"  in {wall_seconds:.1f} s  operator {fields.get('operator') or '?'}  rig {fields.get('rig_name') or '?'}",
                None))
    if recorder is not None:
        out.append((record_line(recorder), None))
    if certificate is not None:
        out.append((f"  certificate: {certificate}", None))
    out.append((rule, colour))
    return out


def record_line(recorder) -> str:
    """Where the run's record is, never more than is true."""
    from rig.results.recorder import printable_url

    if recorder.store_problem or not recorder.run_open:
        return f"  record: NOT in the results store ({recorder.store_problem or 'never opened'}); see run.json"
    if recorder.problems:
        return (f"  record: run {recorder.run_id} INCOMPLETE in the results store ({len(recorder.problems)} "
                f"problem(s), first: {recorder.problems[0][:120]}); run.json keeps every result")
    outcome = recorder.forward_outcome()
    if outcome is not None:
        return f"  record: run {recorder.run_id} in the local journal {printable_url(recorder.url)}; {outcome[1]}"
    return f"  record: run {recorder.run_id} in the results store {printable_url(recorder.url)}"


def _explanation(verdict) -> list[str]:
    if verdict.verdict == PASS:
        return ["  The unit passed every end-of-line test."]
    if verdict.verdict == FAIL:
        return [f"  FAILED REQUIREMENTS: {', '.join(verdict.failing_requirements)}",
                "  The unit did not meet these requirements: route it to repair."]
    if verdict.verdict == RIG_FAULT:
        lines = [f"  RIG FAULT on: {', '.join(verdict.instruments)}"]
        lines += [f"    {fault[:200]}" for fault in verdict.rig_faults]
        lines.append("  The rig could not measure. This is NOT a unit failure: fix the rig, then retest the unit.")
        if verdict.failing_requirements:
            lines.append(f"  Also failed (confirm on the retest): {', '.join(verdict.failing_requirements)}")
        return lines
    if verdict.verdict == WRONG_UNIT:
        return [f"  {verdict.wrong_unit}", "  Neither unit was judged: put the right unit on the station or scan again."]
    if verdict.verdict == INTERRUPTED:
        return ["  The run was interrupted before it finished: retest the unit."]
    return ["  No end-of-line test ran: check the selection (--eol, --hazardous) and retest."]
