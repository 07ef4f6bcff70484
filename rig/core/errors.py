"""Who is to blame.

Only the charger fails a test (a plain `AssertionError`, or `ChargerFailure`).
Everything the rig itself gets wrong is a `RigFault`: the test is reported as an
error (Allure: broken) naming the instrument, never as a charger failure. On an
end-of-line station that difference decides whether a good unit is scrapped.
"""

from __future__ import annotations

import logging
import sys
import threading

log = logging.getLogger("rig.faults")


class RigFault(Exception):
    """The rig could not measure. Carries the name of the instrument to look at."""

    def __init__(self, instrument: str, message: str):
        super().__init__(f"{instrument}: {message}")
        self.instrument = instrument
        self.message = message


class InstrumentError(RigFault):
    """An instrument timed out, answered garbage or dropped the connection (after retries)."""


class SafeStateError(RigFault):
    """The rig could not be brought to, or confirmed in, its safe state."""


class WrongUnit(RigFault):
    """The unit on the station is not the one whose serial number was given: neither unit is
    judged (a fault of the station's set-up, not of a unit)."""

    def __init__(self, message: str, identity: dict | None = None):
        super().__init__("station", message)
        self.identity = identity  # who is on the station instead, for the record


class UserMistake(Exception):
    """Something the user can fix (a file, a URL): one line on stderr, no traceback."""


class RigFileError(Exception):
    """A rig file is wrong. The message is one line and names the key to fix."""

    def __init__(self, path: str, key: str, problem: str):
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


class ChargerFailure(AssertionError):
    """The charger did not meet a requirement (an ordinary test failure)."""


# ---------------------------------------------------------------------- who is to blame
UNIT, RIG, HARNESS = "unit", "rig", "harness"


class Blame:
    """Whose fault an exception is: the unit's (a failed test), the rig's (an instrument or a rig
    service, naming it) or the harness's (any other exception: our own bug)."""

    __slots__ = ("kind", "text")

    def __init__(self, kind: str, text: str):
        self.kind, self.text = kind, text

    def __repr__(self) -> str:
        return f"Blame({self.kind!r}, {self.text!r})"


def blame(exc: BaseException) -> Blame:
    """Classify what a test, fixture or teardown raised.

    Only an assertion about the unit (`AssertionError`, `ChargerFailure`, pytest.fail) is the
    unit's; a `RigFault` is the rig's; everything else (a TypeError in a step, a struct.error
    from a packet, a KeyError in the harness) is the harness's own bug, which must never scrap a
    good unit. An exception group (hypothesis reports several failures as one) takes the worst
    of its parts for the unit: any rig fault makes it a rig fault, any harness error a harness
    error, and only a group of nothing but unit failures fails the unit.
    """
    leaves = list(_leaves(exc))
    faults = [e for e in leaves if isinstance(e, RigFault)]
    if faults:
        return Blame(RIG, str(faults[0]))
    others = [e for e in leaves if not _is_unit_failure(e)]
    if others:
        first = others[0]
        return Blame(HARNESS, describe(first))
    return Blame(UNIT, str(exc))


def describe(exc: BaseException) -> str:
    """ "TypeError: message", with the module for names that say little alone ("struct.error")."""
    kind = type(exc)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__.lstrip('_')}.{kind.__qualname__}"
    text = str(exc)
    return f"{name}: {text}" if text else name


def _is_unit_failure(exc: BaseException) -> bool:
    if isinstance(exc, AssertionError):
        return True
    # pytest.fail() in a test: the test's author judged the unit (looked up, not imported: the
    # rig's bottom layer must not need pytest)
    outcomes = sys.modules.get("_pytest.outcomes")
    return outcomes is not None and isinstance(exc, outcomes.Failed)


def _leaves(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


class ServiceFaults:
    """Errors a rig service (central system, DHCP, DNS, NTP, firmware server) hit while serving the
    unit, in its own thread where no test sees them. A test that then finds "the unit did not
    register" cannot blame the unit: the rig did not show its own side worked."""

    def __init__(self):
        self._items: list[str] = []
        self._lock = threading.Lock()

    def add(self, service: str, what: str, exc: BaseException | None = None) -> None:
        log.error("%s: %s", service, what, exc_info=exc)
        with self._lock:
            self._items.append(f"{service}: {what}")

    def mark(self) -> int:
        with self._lock:
            return len(self._items)

    def since(self, mark: int = 0) -> list[str]:
        with self._lock:
            return list(self._items[mark:])


def plain_message(message: str | None) -> str:
    """What the operator reads of a test's failure: the exception's own words, not the source
    lines pytest shows around it ("E rig.core.errors.ChargerFailure: duty for 32 A = ...")."""
    all_lines = (message or "").strip().splitlines()
    lines = [ln[1:].strip() for ln in all_lines if ln.startswith("E ")]
    text = " ".join(lines) if lines else (all_lines[-1] if all_lines else "")
    head, sep, rest = text.partition(": ")
    if sep and "." in head and " " not in head:  # a dotted exception name
        text = rest
    return text[:300]
