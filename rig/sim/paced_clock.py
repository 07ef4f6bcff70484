"""The emulated bench's event scheduler paced by the wall clock: the time base of `rig device serve`.

Inside a pytest run the emulated bench lives on `VirtualClock`: time moves only when the test
thread sleeps. A device that other processes talk to cannot wait for them; its time is wall time.
`PacedClock` keeps the same scheduler (every emulated instrument and the charger register the same
timers) and a pacer thread runs each timer when the wall clock reaches it. `speed` > 1 runs a demo
faster than life; the harness on a real clock must then be told nothing: it is for people watching.

What changes against `VirtualClock`:
* `now()` is wall time since the device started (times `speed`), read at the instant it is asked,
  so a command that arrives between two timers is stamped when it arrived, not at the last timer;
  inside a timer callback (the pacer's thread) it is the timer's own time: the event happened
  then, the pacer only delivered it a little late. That is what a pigpio tick is on a real Pi
  (the edge's sample time, not the time the daemon got round to reporting it), and a callback
  that schedules the next step of a sequence schedules it from the true time, not the late one;
* `settle()` does not wait: in real time nobody holds the clock for a message in flight. An
  exception from an emulation callback is logged (the device keeps serving) instead of raised
  into a test thread that does not exist here;
* `utc_now()` is the calendar time now: the unit's RTC starts right.

Why hand-written: the timers are the emulation's own (VirtualClock's heap); asyncio's loop or
`sched` would mean a second scheduler and two notions of "now" inside one device.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from rig.core.clock import US, VirtualClock, _Timer

log = logging.getLogger(__name__)

IDLE_WAKE_S = 0.2  # the pacer wakes this often with nothing due, to notice stop()


class PacedClock(VirtualClock):
    """VirtualClock's timers, run by a pacer thread when wall time reaches them."""

    def __init__(self, seed: int = 1, speed: float = 1.0):
        if not speed > 0:
            raise ValueError(f"speed must be > 0, not {speed!r}")
        super().__init__(seed, epoch=datetime.now(timezone.utc))
        self.speed = speed
        self._origin = time.monotonic()
        self._wake = threading.Condition(self._lock)
        self._stopping = False
        self.late_us_worst = 0  # how late the pacer ran a timer at worst (the journal's stop line)
        self._pacer = threading.Thread(target=self._run, name="device-pacer", daemon=True)

    # -- reading time ----------------------------------------------------------------------
    def now_us(self) -> int:
        if threading.get_ident() == self._pacer.ident:
            return self._now_us  # inside a timer: the timer's time (see the module's notes)
        return max(self._now_us, round((time.monotonic() - self._origin) * self.speed * US))

    def now(self) -> float:
        return self.now_us() / US

    def _wall_us(self) -> int:
        return round((time.monotonic() - self._origin) * self.speed * US)

    def utc_now(self) -> datetime:
        return self.epoch + timedelta(microseconds=self.now_us())

    # -- scheduling --------------------------------------------------------------------------
    def call_at(self, at_s: float, fn: Callable[[], None]) -> _Timer:
        with self._wake:
            at_us = max(self.now_us(), round(at_s * US))
            timer = _Timer(at_us, next(self._seq), fn)
            heapq.heappush(self._timers, timer)
            self._wake.notify()  # it may be due before what the pacer is waiting for
            return timer

    def settle(self) -> None:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            log.error("emulation callback failed (the device keeps serving): %r", failure, exc_info=failure)

    def _sleep(self, seconds: float, reason: str | None = None) -> None:
        time.sleep(max(0.0, seconds) / self.speed)

    # -- the pacer ---------------------------------------------------------------------------
    def start(self) -> "PacedClock":
        self._pacer.start()
        return self

    def stop(self) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._pacer.is_alive() and self._pacer is not threading.current_thread():
            self._pacer.join(timeout=5)

    def _next_due_us(self) -> int | None:
        while self._timers and self._timers[0].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0].at_us if self._timers else None

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
                due, now = self._next_due_us(), self._wall_us()
                if due is None or due > now:
                    wait = IDLE_WAKE_S if due is None else min(IDLE_WAKE_S, (due - now) / US / self.speed)
                    self._wake.wait(wait)
                    continue
                self.late_us_worst = max(self.late_us_worst, now - due)
            try:
                self.advance_to_us(self._wall_us())
            except Exception:  # one broken emulation callback must not stop the device's time
                log.exception("device timer failed; the device keeps running")
