"""The line between one end-of-line pytest run and the station that started it (`rig station`).

The station gives `--station-channel DIR`. The run appends one JSON object per line to
DIR/events.jsonl as things happen (the plan, each test starting and finishing with its
measurements, long waits, operator prompts, the rig left safe, the verdict), flushing each line,
and reads the operator's answers from DIR/answer-<n>.json, which the station writes whole (a
rename). Files rather than a socket: the run never depends on the station's web server to go on,
a panel reloaded or a station restarted re-reads everything that happened, and what the operator
saw stays beside the run's reports.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from rig.bench.operator import Prompt, valid
from rig.core.errors import plain_message

log = logging.getLogger(__name__)

EVENTS = "events.jsonl"
ANSWER_POLL_S = 0.05  # how often a waiting prompt looks for the operator's answer
channel_key = pytest.StashKey["StationChannel"]()


def add_options(group) -> None:
    group.addoption("--station-channel", metavar="DIR", default=None,
                    help="used by `rig station`: write the run's events to DIR/events.jsonl and take "
                         "operator answers from DIR (with --prompts panel)")


def answer_path(directory: Path, prompt_id: int) -> Path:
    return Path(directory) / f"answer-{prompt_id}.json"


class StationChannel:
    """Writes events; waits for answers. One per pytest run (the controller process)."""

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._file = open(self.dir / EVENTS, "a", encoding="utf-8")
        self._lock = threading.Lock()  # the rig's progress thread and the test thread both emit
        self._prompts = 0

    def emit(self, event: str, **fields) -> None:
        line = json.dumps({"type": event, "t": time.time(), **fields}, default=str)
        with self._lock:
            if self._file.closed:
                return
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()

    # ------------------------------------------------------------------ operator prompts
    def answerer(self, prompt: Prompt, timeout_s: float) -> str | None:
        """The panel's dialog as an operator-prompt answerer (rig/bench/operator.py)."""
        self._prompts += 1
        pid = self._prompts
        self.emit("prompt", id=pid, text=prompt.text, kind=prompt.kind, unit=prompt.unit, timeout_s=timeout_s)
        path = answer_path(self.dir, pid)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = _read_answer(path)
            if answer is not None and valid(prompt, answer):
                self.emit("prompt-closed", id=pid, answer=answer)
                return answer
            if answer is not None:  # the station checks answers too; a wrong one waits for a right one
                log.warning("panel answer %r to %r not understood; waiting for another", answer, prompt.text)
                path.unlink(missing_ok=True)
            time.sleep(ANSWER_POLL_S)
        self.emit("prompt-closed", id=pid, answer=None)
        return None


def _read_answer(path: Path) -> str | None:
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["answer"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError) as exc:
        log.warning("unreadable panel answer %s: %s", path, exc)
        path.unlink(missing_ok=True)
        return None


def write_answer(directory: Path, prompt_id: int, answer: str) -> None:
    """The station's side: the answer appears whole or not at all."""
    path = answer_path(directory, prompt_id)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"answer": answer}), encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------- the pytest side
def register(config: pytest.Config) -> None:
    """Called from the rig plugin's pytest_configure: only the controller process reports."""
    directory = config.getoption("--station-channel", default=None)
    if not directory or hasattr(config, "workerinput") or config.option.help or config.option.collectonly:
        return
    channel = StationChannel(directory)
    config.stash[channel_key] = channel
    config.pluginmanager.register(ChannelReporter(config, channel), "plugstream_station_channel")


def channel_of(config: pytest.Config) -> StationChannel | None:
    return config.stash.get(channel_key, None)


class ChannelReporter:
    """What the panel shows, as pytest learns it."""

    def __init__(self, config: pytest.Config, channel: StationChannel):
        self.config, self.channel = config, channel
        channel.emit("start", pid=os.getpid(), serial=config.getoption("--serial", default=None))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.channel.emit("plan", tests=[{"nodeid": item.nodeid, "title": _title(item),
                                          "requirements": _requirements(item)} for item in session.items])

    def pytest_runtest_logstart(self, nodeid: str, location) -> None:
        self.channel.emit("test-start", nodeid=nodeid)

    def pytest_runtest_logfinish(self, nodeid: str, location) -> None:
        """After every phase's report: the recorder holds the test's result with its measurements."""
        from rig.results.recorder import recorder_of

        recorder = recorder_of(self.config)
        result = next((r for r in reversed(recorder.results) if r.nodeid == nodeid), None) if recorder else None
        if result is None:  # skipped before the rig was used, or deselected on the way
            self.channel.emit("test-done", nodeid=nodeid, verdict="skipped", measurements=[], requirements=[])
            return
        self.channel.emit("test-done", nodeid=nodeid, verdict=result.verdict, requirements=result.requirements,
                          message=plain_message(result.message), rig_fault=result.rig_fault,
                          wall_seconds=round(result.wall_seconds, 3), measurements=result.measurements)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.channel.emit("end")
        self.channel.close()


def _title(item: pytest.Item) -> str:
    doc = getattr(getattr(item, "function", None), "__doc__", None)
    first = (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""
    return first or item.name.replace("test_", "", 1).replace("_", " ")


def _requirements(item: pytest.Item) -> list[str]:
    return [rid for m in item.iter_markers("req") for rid in m.args]
