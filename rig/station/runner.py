"""The station: N sockets, each testing one unit at a time in a pytest process of its own (the
end-of-line selection through the plugin, exactly as `pytest --eol` runs it by hand), all watched
from one asyncio loop (the web panel's).

Why a process per unit: a unit's run is the plugin's whole session (its rig, its record, its
certificate, its signal handling); a rig fault or a crash on one socket cannot touch another, and
what the station adds is only the watching (a file tailed every POLL_S).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

from rig.station.channel import write_answer
from rig.station.shift import ShiftLog
from rig.station.stationfile import Socket, StationFile
from rig.station.unit_run import UnitRun

log = logging.getLogger(__name__)

POLL_S = 0.025  # how often a run's events are read: well inside the panel's 200 ms to show a result
ABORT_GRACE_S = 30.0  # after SIGTERM the run makes the rig safe; then it is killed
ANSWERS = {"continue": None, "yes_no": ("yes", "no"), "number": None}


class Refused(Exception):
    """A request the station will not carry out; the message tells the operator why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Slot:
    def __init__(self, socket: Socket):
        self.socket = socket
        self.run: UnitRun | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.task: asyncio.Task | None = None

    @property
    def busy(self) -> bool:
        return self.run is not None and self.run.ended is None

    def view(self) -> dict:
        return {"name": self.socket.name, "emulated": self.socket.emulated, "busy": self.busy,
                "run": self.run.view() if self.run else None}


class Station:
    def __init__(self, station: StationFile, python: str = sys.executable):
        self.file, self.python = station, python
        self.slots = {s.name: Slot(s) for s in station.sockets}
        self.home = Path(station.reports) / "station"
        self.home.mkdir(parents=True, exist_ok=True)
        self.shift = ShiftLog(self.home / "units.jsonl")
        self.subscribers: set[asyncio.Queue] = set()
        self._ini = self.home / "pytest.ini"  # the runs' own ini: no project's pytest settings leak in
        self._ini.write_text("[pytest]\n", encoding="utf-8")

    # ------------------------------------------------------------------ what the panel reads
    def snapshot(self) -> dict:
        return {"station": self.file.name, "pattern": self.file.serial_pattern.pattern,
                "slots": [s.view() for s in self.slots.values()], "shift": self.shift_view()}

    def shift_view(self) -> dict:
        return {"counts": self.shift.counts(), "recent": self.shift.recent()}

    def _publish(self, kind: str, data: dict) -> None:
        for queue in list(self.subscribers):
            queue.put_nowait((kind, data))

    # ------------------------------------------------------------------ the operator's requests
    def _slot(self, name: str) -> Slot:
        slot = self.slots.get(name)
        if slot is None:
            raise Refused(404, f"no socket {name!r} on this station (sockets: {', '.join(self.slots)})")
        return slot

    async def start(self, socket: str, serial: str) -> None:
        slot = self._slot(socket)
        serial = serial.strip()
        if not self.file.serial_pattern.fullmatch(serial):
            raise Refused(400, f"{serial!r} is not a serial this station tests "
                               f"(pattern {self.file.serial_pattern.pattern}): scan the unit's label again")
        if slot.busy:
            raise Refused(409, f"socket {socket} is already testing {slot.run.serial}: wait for its verdict or abort it")
        busy = next((s for s in self.slots.values() if s.busy and s.run.serial == serial), None)
        if busy is not None:
            raise Refused(409, f"{serial} is already on test in socket {busy.socket.name}")
        run_dir = self.home / socket / f"{time.strftime('%Y%m%dT%H%M%S')}-{serial}"
        run_dir.mkdir(parents=True, exist_ok=True)
        slot.run = UnitRun(socket, serial, run_dir)
        slot.process = await asyncio.create_subprocess_exec(
            *self.command(slot.socket, serial, run_dir), cwd=str(self.home),
            stdin=asyncio.subprocess.DEVNULL, stdout=open(run_dir / "pytest.log", "wb"),
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,  # Ctrl-C at the station's terminal is the station's
            env={**os.environ, "PYTHONUNBUFFERED": "1", "RIG_STATION": f"{self.file.name}/{socket}"})
        log.info("socket %s: testing %s (pid %d) in %s", socket, serial, slot.process.pid, run_dir)
        slot.task = asyncio.create_task(self._watch(slot))
        self._publish("slot", slot.view())

    def command(self, socket: Socket, serial: str, run_dir: Path) -> list[str]:
        f = self.file
        cmd = [self.python, "-m", "pytest", "--pyargs", "rig.spec", "-c", str(self._ini), "-p", "no:cacheprovider",
               "--rig", socket.rig, "--eol", "--serial", serial, "--station-channel", str(run_dir),
               "--prompts", f.prompts, "--prompt-timeout", str(f.prompt_timeout_s), "--rig-reports", str(run_dir),
               "--results-db", f.results_db or f"sqlite:///{self.home / 'results.sqlite'}", "-q"]
        if f.results_db and not f.results_db.startswith("sqlite"):
            # a shared server: every socket's runs go first to one station journal, so the runs a server
            # outage left pending are forwarded at the next run's end, whichever socket it is on
            cmd += ["--results-journal", str(self.home / "journal.sqlite")]
        if f.operator:
            cmd += ["--operator", f.operator]
        if f.hazardous:
            cmd.append("--hazardous")
        if socket.emulated:  # the emulated unit is the one scanned
            cmd += ["--sim-serial", serial]
        return cmd + list(socket.args)

    async def answer(self, socket: str, prompt_id: int, answer: str) -> None:
        slot = self._slot(socket)
        prompt = slot.run.prompt if slot.busy else None
        if prompt is None or prompt["id"] != prompt_id:
            raise Refused(409, f"socket {socket} is not asking anything now")
        from rig.bench.operator import Prompt, valid

        if not valid(Prompt(prompt["text"], prompt["kind"]), answer):
            raise Refused(400, f"{answer!r} does not answer {prompt['text']!r}")
        write_answer(slot.run.dir, prompt_id, answer)

    async def abort(self, socket: str) -> None:
        slot = self._slot(socket)
        if not slot.busy or slot.process is None:
            raise Refused(409, f"socket {socket} is not testing")
        slot.run.aborting = True
        self._publish("slot", slot.view())
        log.warning("socket %s: abort requested for %s", socket, slot.run.serial)
        if slot.process.returncode is None:
            slot.process.send_signal(signal.SIGTERM)  # the plugin unwinds: safe state, record, verdict
            asyncio.create_task(self._kill_after_grace(slot.process))

    async def _kill_after_grace(self, process) -> None:
        try:
            await asyncio.wait_for(process.wait(), ABORT_GRACE_S)
        except asyncio.TimeoutError:
            log.error("the run did not stop within %.0f s of SIGTERM: killed", ABORT_GRACE_S)
            process.kill()

    # ------------------------------------------------------------------ watching a run
    async def _watch(self, slot: Slot) -> None:
        run, process = slot.run, slot.process
        try:
            while process.returncode is None:
                if run.read_events():
                    self._publish("slot", slot.view())
                try:
                    await asyncio.wait_for(process.wait(), POLL_S)
                except asyncio.TimeoutError:
                    pass
            run.read_events()
            run.finish(process.returncode, _log_tail(run.dir / "pytest.log"))
        except Exception as exc:  # the station's own bug: the unit is not judged, say so
            log.exception("socket %s: watching the run failed", slot.socket.name)
            run.verdict = None
            run.finish(-1, f"station: {type(exc).__name__}: {exc}")
        self.shift.add(run.unit_entry())
        log.info("socket %s: %s %s", slot.socket.name, run.serial, run.verdict["verdict"])
        self._publish("slot", slot.view())
        self._publish("shift", self.shift_view())

    async def shutdown(self) -> None:
        """The station stops: every running unit is aborted (rig made safe) and waited for."""
        for name, slot in self.slots.items():
            if slot.busy:
                await self.abort(name)
        tasks = [s.task for s in self.slots.values() if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=ABORT_GRACE_S + 5)

    def certificate(self, socket: str) -> Path:
        slot = self._slot(socket)
        path = (slot.run.verdict or {}).get("certificate") if slot.run else None
        if not path:
            raise Refused(404, f"socket {socket} has no certificate (only PASS and FAIL runs have one)")
        return Path(path)


def _log_tail(path: Path) -> str:
    """The last line worth showing of a run that ended without a verdict (pytest's ERROR line)."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if ln.startswith(("ERROR", "E ", "rig:"))]
    return (errors or lines or ["no output"])[-1][:300]
