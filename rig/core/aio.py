"""A background asyncio loop in its own thread, for servers and clients that are async by nature.

The rig's OCPP central system runs in one; the emulated bench runs its servers in another.
The test thread stays synchronous and hands coroutines over with `run()`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from concurrent.futures import Future
from typing import Any, Coroutine

from rig.core.errors import ServiceFaults, describe

log = logging.getLogger(__name__)


class LoopThread:
    """One asyncio loop in a daemon thread. What goes wrong inside it, where no test can see it
    (an exception in a server's callback, a task that died), lands in `faults`: the rig reads them
    to tell its own failure from the unit's."""

    def __init__(self, name: str, faults: ServiceFaults | None = None):
        self.name = name
        self.faults = faults if faults is not None else ServiceFaults()
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._unhandled)
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = threading.Event()
        self._stopping = False

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()
        # drain what is left so sockets close cleanly
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def start(self) -> "LoopThread":
        self._thread.start()
        self._started.wait(5)
        return self

    def submit(self, coro: Coroutine[Any, Any, Any]) -> Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = 10.0) -> Any:
        """Run `coro` in the loop and wait (real time) for its result. On a timeout the coroutine
        is cancelled before TimeoutError is raised: it must not go on acting behind the caller."""
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except (TimeoutError, concurrent.futures.TimeoutError):
            future.cancel()
            raise TimeoutError(f"{self.name}: no result within {timeout:g} s") from None

    def _unhandled(self, loop: asyncio.AbstractEventLoop, context: dict) -> None:
        """asyncio's last resort for an exception nobody awaited: a fault of this service."""
        exc = context.get("exception")
        what = describe(exc) if exc is not None else context.get("message", "unknown error")
        self.faults.add(self.name, what, exc)

    def call(self, fn, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self) -> None:
        self._stopping = True
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    @property
    def died(self) -> bool:
        """Started, not stopped by its owner, and yet no longer running: the service is dead."""
        return self._started.is_set() and not self._stopping and not self._thread.is_alive()

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread
