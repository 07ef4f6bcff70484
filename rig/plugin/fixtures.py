"""The fixtures tests use: `rig_session` (the open bench, one per process) and `rig` (one test:
safe state before and after, measurements, Allure steps, a timeline). Registered as a plugin only
in sessions that use the rig (rig/plugin/__init__.py).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import pytest

from rig.plugin.options import reports_dir, rig_summary, wants_reports
from rig.plugin.verdicts import rig_key

log = logging.getLogger(__name__)


@pytest.fixture(scope="session")
def rig_session(request: pytest.FixtureRequest):
    """The open rig (emulated or real) for the whole session: one bench per xdist worker."""
    from rig.bench.rig import open_rig

    opt = request.config.getoption
    rig = open_rig(
        rig_path=opt("--rig"),
        model=opt("--sim-model"),
        seed=opt("--sim-seed"),
        defect=opt("--sim-defect"),
        serial=opt("--sim-serial"),
        limits_path=opt("--limits"),
        progress=progress_printer(request.config),
    )
    rig.operator = make_operator(request.config, rig)
    request.config.stash[rig_key] = rig
    try:
        yield rig
    finally:
        del request.config.stash[rig_key]
        rig.close()
        _tell_station_safe(request.config, rig)


@pytest.fixture
def rig(rig_session, request: pytest.FixtureRequest):
    """The rig for one test: safe state checked before and after, measurements recorded,
    every call on the rig an Allure step, and a timeline of the test."""
    from rig.bench.journal import allure_active, measurement_step
    from rig.reports.timeline import TimelineRecorder

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
        close_timeline(request.node)  # a test that never reached its call phase
        request.node.user_properties.append(("sim_seconds", rig_session.clock.now() - t0))
        request.node.user_properties.append(("measurements", rig_session.end_test()))
        _write_allure_environment(request.config, rig_session)


_timeline_key = pytest.StashKey["object"]()


def _wants_timeline(config: pytest.Config) -> bool:
    return wants_reports(config)


def close_timeline(item: pytest.Item, failed: bool = True) -> None:
    """End the test's timeline: CSV and PNG under <reports>/timelines/ and attached to Allure."""
    from rig.reports import timeline_plot as timeline
    from rig.bench.journal import allure_active
    from rig.reports.allure import attach, reserver

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
        reports_dir(config),
        attach=attach if allure_on else None,
        reserve=reserver(getattr(config.option, "allure_report_dir", None)) if allure_on else None,
        renderer=config.stash[_renderer_key],
        draw=_draws_png(config, failed),
    )


def _draws_png(config: pytest.Config, failed: bool) -> bool:
    which = config.getoption("--rig-timeline-png")
    return which == "all" or (which == "failed" and failed)


_renderer_key = pytest.StashKey["object"]()


def finish_timelines(config: pytest.Config) -> None:
    """Wait for the timeline pictures still being drawn; say which could not be."""
    renderer = config.stash.get(_renderer_key, None)
    if renderer is None:
        return
    failures = renderer.finish()
    if failures:
        log.warning("%d timeline pictures could not be drawn, e.g. %s", len(failures), failures[0])


def _write_allure_environment(config: pytest.Config, rig) -> None:
    """environment.properties: the rig, the unit (model, serial, firmware), seed, defect, instruments."""
    from rig.reports.allure import environment, write_environment

    results = getattr(config.option, "allure_report_dir", None)
    if results:
        write_environment(Path(results), environment(rig, rig_summary(config)))


def _skip_if_not_applicable(request: pytest.FixtureRequest, rig) -> None:
    """Model- and connector-specific tests do not apply to other units; that is a skip, not a pass."""
    m = request.node.get_closest_marker("models")
    if m and rig.model_name not in m.args:
        pytest.skip(f"applies to {', '.join(m.args)}; unit is {rig.model_name}")
    c = request.node.get_closest_marker("connector")
    if c and rig.profile["connector"] not in c.args:
        pytest.skip(f"applies to {c.args[0]} variants; unit is {rig.profile['connector']}")


def _tell_station_safe(config: pytest.Config, rig) -> None:
    from rig.station.channel import channel_of

    channel = channel_of(config)
    if channel is not None:
        channel.emit("safe", ok=rig.closed_safe, detail=rig.closed_problem)


def make_operator(config: pytest.Config, rig):
    """Operator prompts (rig/bench/operator.py), answered as --prompts says."""
    from rig.bench.operator import Operator, TerminalAnswerer, emulated_answerer
    from rig.station.channel import channel_of

    who = config.getoption("--prompts")
    if who == "auto":
        who = "emulated" if rig.bench is not None else "terminal"
    if who == "panel":
        channel = channel_of(config)
        if channel is None:
            raise pytest.UsageError("--prompts panel needs the station's panel: run the unit from `rig station`")
        answerer = channel.answerer
    else:
        answerer = emulated_answerer if who == "emulated" else TerminalAnswerer(terminal_writer(config))
    return Operator(answerer, float(config.getoption("--prompt-timeout")))


def terminal_writer(config: pytest.Config):
    """Write to the terminal now, past pytest's output capture (which would hold it until the end)."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.getplugin("capturemanager")

    def write(text: str) -> None:
        with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
            if tr is None:
                sys.stderr.write(text)
                sys.stderr.flush()
            else:
                tr.ensure_newline()
                tr.write(text, flush=True)

    return write


def progress_printer(config: pytest.Config):
    """Long real-bench waits on the terminal as they happen (the clock reports every few seconds).

    pytest captures the test's output at the file-descriptor level, so a plain write would only
    show in the captured-output section after the test: the capture is suspended for each line.
    On a terminal the wait is one line updated in place; in a log, one line per report."""
    from rig.bench.journal import progress_line
    from rig.station.channel import channel_of

    tr = config.pluginmanager.get_plugin("terminalreporter")
    capman = config.pluginmanager.getplugin("capturemanager")
    tty = tr is not None and tr.isatty()

    def show(reason: str, elapsed: float, total: float, done: bool = False) -> None:
        line = progress_line(reason, elapsed, total, done)
        log.info("%s", line)
        channel = channel_of(config)
        if channel is not None:
            channel.emit("wait", reason=reason, elapsed=round(elapsed, 1), total=round(total, 1), done=done)
        with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
            if tr is None:
                sys.stderr.write(line + "\n")
            elif tty:
                tr.write("\r" + line.ljust(tr._tw.fullwidth - 1)[: tr._tw.fullwidth - 1], flush=True)
                if done:
                    tr.write("\n")
            else:
                tr.ensure_newline()
                tr.write_line(line, flush=True)

    return show
