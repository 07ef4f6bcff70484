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
from datetime import datetime, timedelta, timezone
from typing import Callable

from rig.core.errors import RigFault

US = 1_000_000  # virtual time is kept in integer microseconds: no float drift

#: where virtual time 0 sits on the calendar by default: a Monday, 06:00 UTC (winter, so UK = UTC)
DEFAULT_EPOCH = datetime(2026, 1, 5, 6, 0, 0, tzinfo=timezone.utc)

ProgressFn = Callable[..., None]  # (reason, elapsed_s, total_s, done=False); done closes the wait


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

    @abstractmethod
    def utc_now(self) -> datetime:
        """Calendar time now (tz-aware UTC): what the rig's time service serves the unit."""

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
        if self.wait_observer is not None:  # one report step per wait, not one per poll
            return self.wait_observer(self._poll_until, predicate, timeout, poll, reason)
        return self._poll_until(predicate, timeout, poll, reason)

    def _poll_until(self, predicate, timeout: float, poll: float, reason: str | None) -> float | None:
        start = self.now()
        deadline = start + timeout
        while True:
            if predicate():
                self._wait_progress(reason, self.now() - start, timeout, done=True)
                return self.now()
            remaining = deadline - self.now()
            # less than one tick left (float deadline vs integer microseconds) is over: sleeping
            # it would advance nothing and poll forever
            if remaining < self.resolution_s:
                self._wait_progress(reason, timeout, timeout, done=True)
                return None
            self._wait_progress(reason, self.now() - start, timeout)
            self.sleep(min(poll, remaining), reason)

    def _wait_progress(self, reason: str | None, elapsed: float, total: float, done: bool = False) -> None:
        """Where a long wait stands (a real bench shows it; simulated time needs no progress)."""

    #: rig.bench.journal's wait step: called as observer(poll_until, predicate, timeout, poll, reason)
    wait_observer: Callable | None = None
    #: rig.reports.timeline's sampler: `sampler.sleep(clock, seconds, reason, plain_sleep)` takes the test's
    #: sleep in pieces to read the instruments at its sample times; it never adds time to a test
    sampler = None

    # The emulated bench's settle accounting; a real bench has nothing to settle.
    def io_begin(self, tag: str = "") -> None:
        pass

    def io_end(self, tag: str = "") -> None:
        pass

    def io_release(self, tag: str) -> None:
        pass


class RealClock(Clock):
    """Wall-clock time for a real bench; waits longer than `progress_after_s` report progress."""

    def __init__(self, progress: ProgressFn | None = None, progress_after_s: float = 5.0,
                 progress_every_s: float = 5.0):
        self.resolution_s = time.get_clock_info("monotonic").resolution
        self.progress = progress
        self.progress_after_s = progress_after_s
        self.progress_every_s = progress_every_s  # a 600 s wait prints a line every 5 s, not every poll
        self._t0 = time.monotonic()
        self._last_report: float | None = None
        self._in_wait = False  # a wait_until reports for its polls' sleeps

    def now(self) -> float:
        return time.monotonic() - self._t0

    def utc_now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float, reason: str | None = None) -> None:
        if self.sampler is not None:
            self.sampler.sleep(self, seconds, reason, self._sleep)
        else:
            self._sleep(seconds, reason)

    def _sleep(self, seconds: float, reason: str | None = None) -> None:
        if seconds <= 0:
            return
        if self.progress is None or seconds < self.progress_after_s or self._in_wait:
            time.sleep(seconds)
            return
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            self._report(reason, elapsed, seconds, at_once=True)
            time.sleep(min(1.0, self.progress_every_s, seconds - elapsed))
        self._report(reason, seconds, seconds, done=True)

    def _poll_until(self, predicate, timeout: float, poll: float, reason: str | None) -> float | None:
        self._in_wait = True
        try:
            return super()._poll_until(predicate, timeout, poll, reason)
        finally:
            self._in_wait = False

    def _wait_progress(self, reason: str | None, elapsed: float, total: float, done: bool = False) -> None:
        self._report(reason, elapsed, total, done)

    def _report(self, reason: str | None, elapsed: float, total: float, done: bool = False,
                at_once: bool = False) -> None:
        """Tell the progress function, at most every `progress_every_s`, about waits that are long.
        A sleep (`at_once`) is announced when it starts; a wait_until only once it has lasted
        `progress_every_s` (most end at once)."""
        if self.progress is None or total < self.progress_after_s:
            return
        now = time.monotonic()
        if done:
            if self._last_report is not None:  # only close a wait that showed progress
                self.progress(reason or "waiting", elapsed, total, done=True)
            self._last_report = None
            return
        if self._last_report is None and elapsed < self.progress_every_s and not at_once:
            return  # a long wait that ends quickly prints nothing
        if self._last_report is not None and now - self._last_report < self.progress_every_s:
            return
        self._last_report = now
        self.progress(reason or "waiting", elapsed, total)


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

    def __init__(self, seed: int = 0, settle_timeout_s: float = 10.0, epoch: datetime = DEFAULT_EPOCH):
        self.resolution_s = 1 / US
        self.seed = seed
        self.epoch = epoch  # the calendar time at virtual t = 0
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

    def utc_now(self) -> datetime:
        """The epoch plus virtual time: the same calendar instants every run."""
        return self.epoch + timedelta(microseconds=self._now_us)

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
        if self.sampler is not None:
            self.sampler.sleep(self, seconds, reason, self._sleep)
        else:
            self._sleep(seconds, reason)

    def _sleep(self, seconds: float, reason: str | None = None) -> None:
        self.advance_to_us(self._now_us + max(0, round(seconds * US)))

    def next_timer_s(self) -> float | None:
        with self._lock:
            live = [t.at_us for t in self._timers if not t.cancelled]
        return min(live) / US if live else None
