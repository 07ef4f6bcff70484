"""Private temporary folders of a run (the emulated bench's ptys and capture, the rig CA's keys).

Each is created private (mode 0700, by `tempfile.mkdtemp`) and carries an owner file naming the
process and the run, so that a run killed with SIGKILL, whose folders no `finally` removed, is
found by the next run: `sweep_leftovers()` removes folders whose process is gone and says which
run they belonged to. The rig CA's private keys live in such a folder: they must not outlive the
run that made them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "rig-"
OWNER_FILE = ".rig-owner.json"
ENV_RUN_ID = "RIG_RUN_ID"  # set by the pytest plugin for the run, inherited by its xdist workers


class PrivateDir:
    """A private temporary folder with an owner file; `cleanup()` removes it (idempotent)."""

    def __init__(self, prefix: str):
        self.name = tempfile.mkdtemp(prefix=f"{PREFIX}{prefix}")
        owner = {"pid": os.getpid(), "run_id": os.environ.get(ENV_RUN_ID), "started": time.time()}
        (Path(self.name) / OWNER_FILE).write_text(json.dumps(owner))

    def write_private(self, name: str, data: bytes) -> Path:
        """A file only this user can read (keys)."""
        path = Path(self.name) / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path

    def cleanup(self) -> None:
        shutil.rmtree(self.name, ignore_errors=True)


@dataclass(frozen=True)
class Leftover:
    path: str
    pid: int
    run_id: str | None
    started: float

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        run = f"run {self.run_id}" if self.run_id else "a run"
        return f"{run} (pid {self.pid}, started {when}) was killed; removed its leftovers {self.path}"


def sweep_leftovers(base: str | None = None) -> list[Leftover]:
    """Remove the private folders of runs whose process no longer exists; what was removed."""
    base = base or tempfile.gettempdir()
    found: list[Leftover] = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        owner = _owner(Path(entry.path))
        if owner is None or _alive(owner["pid"]):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        leftover = Leftover(entry.path, owner["pid"], owner.get("run_id"), owner.get("started", 0.0))
        log.warning("%s", leftover.describe())
        found.append(leftover)
    return found


def _owner(path: Path) -> dict | None:
    try:
        owner = json.loads((path / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None  # not ours, or not readable by us
    return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive, and not ours to judge
        return True
    return True
