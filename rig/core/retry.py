"""Bounded retries for instrument I/O, ending in an `InstrumentError` that names the instrument."""

from __future__ import annotations

import logging
import time
from typing import Callable, TypeVar

from rig.core.errors import InstrumentError, RigFault

T = TypeVar("T")
log = logging.getLogger("rig.instruments")

#: what counts as a transient instrument problem worth another try
TRANSIENT = (OSError, TimeoutError, EOFError, ValueError, ConnectionError)


def with_retries(
    instrument: str,
    what: str,
    fn: Callable[[], T],
    attempts: int = 3,
    transient: tuple[type[BaseException], ...] = TRANSIENT,
    recover: Callable[[], None] | None = None,
    pause_s: float = 0.05,
) -> T:
    """Call `fn` up to `attempts` times; between tries call `recover` (e.g. reconnect).

    The pause between tries is real time on purpose: it waits for a real instrument
    or socket, not for the unit under test, so it must not move the rig's clock.
    """
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except RigFault:
            raise
        except transient as exc:
            last = exc
            if attempt == attempts:
                break
            # every retry is logged: pytest's "Captured log" shows what the instrument did before
            # it recovered (or before the rig fault)
            log.warning("%s: %s, attempt %d of %d: %r; retrying", instrument, what, attempt, attempts, exc)
            time.sleep(pause_s)
            if recover is not None:
                try:
                    recover()
                except transient as rexc:
                    last = rexc
    log.error("%s: %s failed after %d attempts: %r", instrument, what, attempts, last)
    raise InstrumentError(instrument, f"{what} failed after {attempts} attempts: {last!r}") from last
