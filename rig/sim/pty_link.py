"""The instrument end of an emulated USB-serial cable: one pseudo-terminal, served from asyncio.

`os.openpty()` gives a master fd (kept here) and a slave device path (handed to the driver,
which opens it with pyserial exactly as it would open /dev/ttyUSB0). The slave is put in
raw mode and this object keeps its own fd on it open, so a driver that closes and reopens
the port (a reconnect) finds the pty still there.

Reading: the master is watched with `loop.add_reader` in the bench's `LoopThread`; each
complete line (LF-terminated, a trailing CR dropped) goes to `on_line`, in the loop thread.

Writing: `write()` may be called from any thread and never blocks. That matters because
streaming instruments write from virtual-clock timers, which run in the test thread: if the
pty buffer is full (the driver's reader is slow), the rest is queued and flushed by the loop
thread when the master becomes writable. Past `MAX_QUEUED` bytes new data is dropped and
counted, like a real sensor's overflowing USB FIFO, instead of growing without bound.

`close()` is the cable pulled out: the master closes, the device path disappears and the
driver's next read or write fails.

`PtyInstrument` is the base of the emulated serial instruments (console, LED sensor): the
start/stop life cycle around one link, the `fault` modes and garbled sending, which are the
same for every instrument on a pty; what the lines mean is each subclass's business.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import tty
from typing import Callable

from rig.core.aio import LoopThread
from rig.sim.plant import Plant

MAX_QUEUED = 256 * 1024
_CHUNK = 4096


class PtyLink:
    def __init__(self, loop: LoopThread, on_line: Callable[[bytes], None], name: str = "pty"):
        self.name = name
        self.path: str | None = None
        self.overruns = 0  # writes dropped because the queue was full
        self.errors: list[BaseException] = []  # exceptions raised by on_line (kept, never raised)
        self._loop = loop
        self._on_line = on_line
        self._master = self._slave = -1
        self._inbuf = bytearray()
        self._queued = bytearray()
        self._wlock = threading.Lock()
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def open(self) -> str:
        """Create the pty and start serving it; returns the device path for the driver."""
        if not self._closed:
            return self.path
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self._closed = False
        self._in_loop(lambda: self._loop.loop.add_reader(self._master, self._on_readable))
        return self.path

    def close(self) -> None:
        """Pull the cable: stop serving and release both fds. Idempotent."""
        with self._wlock:
            if self._closed:
                return
            self._closed = True
            self._queued.clear()
        master, slave = self._master, self._slave

        def unregister():
            self._loop.loop.remove_reader(master)
            self._loop.loop.remove_writer(master)

        try:
            self._in_loop(unregister)
        except (RuntimeError, ValueError, concurrent.futures.TimeoutError):
            pass  # the loop is already gone: nothing is watching the fd any more
        for fd in (master, slave):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- writing (any thread) -------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        with self._wlock:
            if self._closed:
                return
            if not self._queued:
                data = data[self._write_some(data) :]
                if not data:
                    return
                self._arm_writer()
            if len(self._queued) + len(data) > MAX_QUEUED:
                self.overruns += 1
                return
            self._queued += data

    def _write_some(self, data: bytes | bytearray) -> int:
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0
        except OSError:
            return len(data)  # nobody can hear it: dropped, as on a dead cable

    def _arm_writer(self) -> None:
        try:
            self._loop.loop.call_soon_threadsafe(self._watch_writable)
        except RuntimeError:
            pass  # loop closed: the bench is shutting down

    def _watch_writable(self) -> None:
        if not self._closed:
            self._loop.loop.add_writer(self._master, self._on_writable)

    def _on_writable(self) -> None:
        with self._wlock:
            if self._closed:
                return
            del self._queued[: self._write_some(self._queued)]
            if not self._queued:
                self._loop.loop.remove_writer(self._master)

    # -- reading (loop thread) ------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, _CHUNK)
        except OSError:
            return  # EAGAIN, or EIO while no slave fd is open: nothing to read
        self._inbuf += data
        while (end := self._inbuf.find(b"\n")) >= 0:
            line = bytes(self._inbuf[:end]).rstrip(b"\r")
            del self._inbuf[: end + 1]
            try:
                self._on_line(line)
            except Exception as exc:  # an emulator bug must not kill the bench's loop
                self.errors.append(exc)

    # -- helpers --------------------------------------------------------------------------------
    def _in_loop(self, fn: Callable[[], object]) -> object:
        """Run `fn` in the loop thread and wait for it (directly if there is no running loop)."""
        if self._loop.in_loop_thread or not self._loop.loop.is_running():
            return fn()
        done: concurrent.futures.Future = concurrent.futures.Future()

        def run():
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.loop.call_soon_threadsafe(run)
        return done.result(5)


FAULTS = (None, "silent", "garbage", "disconnect")


def garble(data: bytes) -> bytes:
    """Corrupt bytes the way a wrong baud rate does: every byte's high bit set, line breaks kept
    (so the driver still sees lines, just unreadable ones)."""
    return bytes(b if b in b"\r\n" else b | 0x80 for b in data)


class PtyInstrument:
    """Base of an emulated serial instrument on one `PtyLink`: life cycle, faults, sending.

    A subclass must define `_on_text(text)`, which answers one received line (loop thread; the
    line decoded and stripped, never called while the fault is "silent"), and may greet the
    driver in `_on_open()`.
    `link_name` names the pty in errors and thread names.

    Faults (`fault`, settable any time): None | "silent" (reads and answers nothing) |
    "garbage" (every byte sent has its high bit set; line breaks survive) | "disconnect" (the
    pty disappears; there is no coming back).
    """

    link_name = "pty"

    def __init__(self, plant: Plant, loop: LoopThread, config: dict):
        self.plant, self.loop, self.config = plant, loop, dict(config)
        self._fault: str | None = None
        self._link: PtyLink | None = None

    # -- life cycle -----------------------------------------------------------------------------
    def start(self) -> dict:
        if self._link is None:
            self._link = PtyLink(self.loop, self._on_line, self.link_name)
            self._link.open()
            self._on_open()
        return {**self.config, "port": self._link.path}

    def _on_open(self) -> None:
        """What the instrument sends as soon as the cable is plugged in (nothing, by default)."""

    def stop(self) -> None:
        if self._link is not None:
            self._link.close()

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, mode: str | None) -> None:
        if mode not in FAULTS:
            raise ValueError(f"unknown fault {mode!r}; one of {FAULTS}")
        self._fault = mode
        if mode == "disconnect":
            self.stop()

    # -- the wire -------------------------------------------------------------------------------
    def _on_line(self, raw: bytes) -> None:
        if self._fault == "silent":
            return
        self._on_text(raw.decode("ascii", "replace").strip())

    def _send_bytes(self, data: bytes, corrupt: bool = False) -> None:
        """Write to the driver, garbled if asked or while the fault is "garbage"."""
        if corrupt or self._fault == "garbage":
            data = garble(data)
        if self._link is not None:
            self._link.write(data)
