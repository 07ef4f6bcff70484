"""The rig's one clock.

Every wait and every timing measurement in the harness goes through a `Clock`.

* `RealClock` is wall time, for a real bench. Long waits report progress.
* `VirtualClock` is simulated time for the emulated bench. It is an event
  scheduler: emulated instruments and the emulated charger register timers,
  and time only moves when the test thread sleeps or waits. A 600 s wait costs
  milliseconds and, with the same seed, every run is the same.

Determinism with real sockets: the emulated bench talks real protocols over
loopback, so a message can be "in flight" while the test thread wants to
advance time. Every asynchronous hop (an OCPP frame sent, a timer callback
handed to an asyncio loop) is counted with `io_begin()` and `io_end()`; the
virtual clock never moves while that count is above zero ("settling").
Request/response instruments (Modbus, SCPI with *OPC?, serial commands with an
acknowledgement, in-process GPIO) are synchronous from the test thread and need
no counting.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
import itertools
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from rig.errors import RigFault

US = 1_000_000  # virtual time is kept in integer microseconds: no float drift

ProgressFn = Callable[[str, float, float], None]  # (reason, elapsed_s, total_s)


class Clock(ABC):
    """What every part of the rig uses to wait and to timestamp."""

    #: smallest time step this clock can tell apart, in seconds
    resolution_s: float = 1e-6
    virtual: bool = False

    @abstractmethod
    def now(self) -> float:
        """Seconds since the clock started."""

    @abstractmethod
    def sleep(self, seconds: float, reason: str | None = None) -> None:
        """Let `seconds` pass; `reason` is shown on long real waits."""

    def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float,
        poll: float = 0.05,
        reason: str | None = None,
    ) -> float | None:
        """Poll `predicate` every `poll` seconds until it is true or `timeout` passes.

        Returns the clock time at which the predicate was first seen true, or None.
        The answer is only as fine as `poll`: callers that time events state it.
        """
        deadline = self.now() + timeout
        while True:
            if predicate():
                return self.now()
            remaining = deadline - self.now()
            if remaining <= 0:
                return None
            self.sleep(min(poll, remaining), reason)

    # The emulated bench's settle accounting; a real bench has nothing to settle.
    def io_begin(self, tag: str = "") -> None:
        pass

    def io_end(self, tag: str = "") -> None:
        pass

    def io_release(self, tag: str) -> None:
        pass


class RealClock(Clock):
    """Wall-clock time for a real bench; waits longer than `progress_after_s` report progress."""

    def __init__(self, progress: ProgressFn | None = None, progress_after_s: float = 5.0):
        self.resolution_s = time.get_clock_info("monotonic").resolution
        self.progress = progress
        self.progress_after_s = progress_after_s
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def sleep(self, seconds: float, reason: str | None = None) -> None:
        if seconds <= 0:
            return
        if self.progress is None or seconds < self.progress_after_s:
            time.sleep(seconds)
            return
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            self.progress(reason or "waiting", elapsed, seconds)
            time.sleep(min(1.0, seconds - elapsed))
        self.progress(reason or "waiting", seconds, seconds)


@dataclass(order=True)
class _Timer:
    at_us: int
    seq: int
    fn: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class BenchStalled(RigFault):
    """The emulated bench did not settle: a message was sent and never handled."""


class VirtualClock(Clock):
    """Deterministic simulated time for the emulated bench.

    Timer callbacks run in the thread that advances the clock (the test
    thread). Code that lives in an asyncio loop schedules through
    `call_later_threadsafe`, which keeps the settle count right.
    """

    virtual = True

    def __init__(self, seed: int = 0, settle_timeout_s: float = 10.0):
        self.resolution_s = 1 / US
        self.seed = seed
        self.rng = random.Random(seed)
        self.settle_timeout_s = settle_timeout_s
        self._now_us = 0
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()
        self._io: dict[str, int] = {}
        self._io_cv = threading.Condition()
        self._advancing = threading.Lock()
        self.failure: BaseException | None = None  # first exception raised by a callback

    # -- reading time -------------------------------------------------------------------------
    def now(self) -> float:
        return self._now_us / US

    def now_us(self) -> int:
        return self._now_us

    # -- scheduling -------------------------------------------------------------------------
    def call_at(self, at_s: float, fn: Callable[[], None]) -> _Timer:
        with self._lock:
            at_us = max(self._now_us, round(at_s * US))
            timer = _Timer(at_us, next(self._seq), fn)
            heapq.heappush(self._timers, timer)
            return timer

    def call_later(self, delay_s: float, fn: Callable[[], None]) -> _Timer:
        return self.call_at(self.now() + max(0.0, delay_s), fn)

    def call_later_threadsafe(self, loop, delay_s: float, fn: Callable[[], None]) -> _Timer:
        """Run `fn` inside asyncio `loop` once `delay_s` of virtual time has passed."""

        def hand_over():
            self.io_begin("timer")

            def run():
                try:
                    fn()
                except Exception as exc:  # surfaced by the next settle() as a rig fault
                    self.failure = self.failure or exc
                finally:
                    self.io_end("timer")

            loop.call_soon_threadsafe(run)

        return self.call_later(delay_s, hand_over)

    # -- settle accounting ------------------------------------------------------------------
    def io_begin(self, tag: str = "") -> None:
        """Something was handed to another thread or socket; hold time until it is handled."""
        with self._io_cv:
            self._io[tag] = self._io.get(tag, 0) + 1

    def io_end(self, tag: str = "") -> None:
        """The thing counted by `io_begin(tag)` has been fully handled."""
        with self._io_cv:
            left = self._io.get(tag, 0) - 1
            if left > 0:
                self._io[tag] = left
            else:
                self._io.pop(tag, None)
            if not self._io:
                self._io_cv.notify_all()

    def io_release(self, tag: str) -> None:
        """Forget everything in flight under `tag` (its connection closed: it will never arrive)."""
        with self._io_cv:
            self._io.pop(tag, None)
            if not self._io:
                self._io_cv.notify_all()

    def in_flight(self) -> int:
        with self._io_cv:
            return sum(self._io.values())

    def settle(self) -> None:
        """Block (in real time) until nothing is in flight on the emulated bench."""
        with self._io_cv:
            if not self._io_cv.wait_for(lambda: not self._io, self.settle_timeout_s):
                raise BenchStalled(
                    "emulated bench",
                    f"still in flight after {self.settle_timeout_s:.0f} s real time: {dict(self._io)}",
                )
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise RigFault("emulated bench", f"internal error: {failure!r}") from failure

    # -- moving time ------------------------------------------------------------------------
    def _pop_due(self, until_us: int) -> _Timer | None:
        with self._lock:
            while self._timers and self._timers[0].cancelled:
                heapq.heappop(self._timers)
            if self._timers and self._timers[0].at_us <= until_us:
                return heapq.heappop(self._timers)
            return None

    def advance_to_us(self, until_us: int) -> None:
        with self._advancing:
            self.settle()
            while (timer := self._pop_due(until_us)) is not None:
                self._now_us = max(self._now_us, timer.at_us)
                try:
                    timer.fn()
                except RigFault:
                    raise
                except Exception as exc:  # a bug in the emulation is a rig fault, never a verdict
                    raise RigFault("emulated bench", f"timer callback failed: {exc!r}") from exc
                self.settle()
            self._now_us = max(self._now_us, until_us)

    def sleep(self, seconds: float, reason: str | None = None) -> None:
        self.advance_to_us(self._now_us + max(0, round(seconds * US)))

    def next_timer_s(self) -> float | None:
        with self._lock:
            live = [t.at_us for t in self._timers if not t.cancelled]
        return min(live) / US if live else None
