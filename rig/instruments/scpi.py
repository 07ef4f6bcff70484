"""One VISA session to an SCPI instrument over a raw socket, shared by the load, source and injector.

`ScpiSession` is the session; `ScpiInstrument` (and `PhasedScpiInstrument`, for instruments
with 1..3 phases) is the driver base class around it: life cycle and the helpers every SCPI
driver repeats.

Why a shared session: every SCPI driver needs the same discipline, and getting it wrong once
blames a good charger for a rig problem.

* Every setting command is followed by `*OPC?`: when a driver call returns, the instrument has
  applied the setting. On the emulated bench that is what keeps the virtual clock
  deterministic (the plant has changed before the test thread moves time); on a real bench it
  stops a test from measuring before the instrument has settled.
* After every setting the error queue is read (`SYST:ERR?`). A rejected command is a rig
  fault (InstrumentError naming the instrument), raised at once: sending it again would not help.
* Timeouts, garbage answers and dropped links are retried a bounded number of times with a
  fresh connection (`rig.retry.with_retries`), then raised as InstrumentError. A driver
  wraps a whole exchange (set, synchronise, check, read back) in one `transaction`, so a retry
  repeats all of it on the new connection rather than half of it.
* Nothing is ever `query()`-ed that sends no answer: the instrument would stay silent and the
  read would time out.

Config keys: `resource` (e.g. "TCPIP0::10.20.0.21::5025::SOCKET"), `timeout_s` (per read),
optional `attempts` (default 3).
"""

from __future__ import annotations

import math
import re
from typing import Callable, Self, TypeVar

from rig.core.clock import Clock
from rig.core.errors import InstrumentError, RigFault
from rig.core.retry import TRANSIENT, with_retries

T = TypeVar("T")

_ERROR_ANSWER = re.compile(r'^\s*([+-]?\d+)\s*,\s*"(.*)"\s*$')
MAX_ERRORS_DRAINED = 16  # bound on reading a queue that never empties (a broken instrument)


def _transient() -> tuple[type[BaseException], ...]:
    """What is worth a retry: socket trouble, timeouts, garbled answers, any VISA I/O error."""
    import pyvisa.errors  # imported lazily: a bench without SCPI instruments needs no pyvisa

    return TRANSIENT + (pyvisa.errors.Error,)


# -- answer parsing: a malformed answer is a ValueError, i.e. garbage worth a retry ---------------
def parse_float(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def parse_floats(text: str, count: int | None = None) -> tuple[float, ...]:
    values = tuple(parse_float(part) for part in text.split(","))
    if count is not None and len(values) != count:
        raise ValueError(f"expected {count} values, got {text!r}")
    return values


def parse_bool(text: str) -> bool:
    word = text.strip().upper()
    if word in ("1", "ON"):
        return True
    if word in ("0", "OFF"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def parse_word(text: str, allowed: tuple[str, ...]) -> str:
    word = text.strip().upper()
    if word not in allowed:
        raise ValueError(f"expected one of {allowed}, got {text!r}")
    return word


def parse_phase_count(text: str) -> int:
    count = int(text.strip())
    if count not in (1, 2, 3):
        raise ValueError(f"implausible phase count {text!r}")
    return count


def close_enough(read: float, wanted: float, abs_tol: float) -> bool:
    """Read-back comparison: within half the instrument's resolution (abs_tol) or 1 ppm."""
    return math.isclose(read, wanted, rel_tol=1e-6, abs_tol=abs_tol)


class ScpiSession:
    """A pyvisa-py socket session with synchronised commands, error checks and bounded retries."""

    def __init__(self, name: str, config: dict, clock: Clock | None = None):
        self.name = name
        self.clock = clock
        self.resource_name = str(config["resource"])
        self.timeout_s = float(config.get("timeout_s", 2.0))
        self.attempts = int(config.get("attempts", 3))
        # "@py": pyvisa-py (pure Python: TCP sockets, serial); "": the system's VISA (NI-VISA, Keysight
        # IO Libraries) for USB-TMC and GPIB; or the path of a VISA library
        self.visa_library = str(config.get("visa_library", "@py"))
        self.identity: str | None = None
        self._resource = None  # the live pyvisa resource, None when the link is down
        self._pending: str | None = None  # a message to put in front of the next one
        self._opened = False

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> str:
        """Connect and identify (`*IDN?`); returns the identity. Idempotent."""
        if self._opened:
            return self.identity
        self._opened = True
        try:
            self.identity = self.transaction("identify (*IDN?)", self._identify)
        except BaseException:
            self.close()
            raise
        return self.identity

    def close(self) -> None:
        self._opened = False
        self._drop_link()

    @property
    def is_open(self) -> bool:
        return self._opened

    def _connect(self) -> None:
        import pyvisa

        try:
            rm = pyvisa.ResourceManager(self.visa_library)
            # The manager is shared process-wide by pyvisa: close resources, never the manager.
            self._resource = rm.open_resource(
                self.resource_name,
                read_termination="\n",
                write_termination="\n",
                timeout=max(1, round(self.timeout_s * 1000)),
                open_timeout=max(1, round(self.timeout_s * 1000)),
            )
        except Exception as exc:  # pyvisa-py raises bare Exception("could not connect: ...")
            self._resource = None
            raise ConnectionError(f"cannot open {self.resource_name}: {exc}") from exc
        # A fresh link starts with an empty error queue, so errors read later are ours. The *CLS
        # rides in the same TCP segment as the first message (see `write`).
        self._pending = "*CLS"

    def _drop_link(self) -> None:
        resource, self._resource = self._resource, None
        if resource is not None:
            try:
                resource.close()
            except Exception:  # closing a dead socket can fail; it is gone either way
                pass

    def _link(self):
        if not self._opened:
            raise InstrumentError(self.name, "used before open()")
        if self._resource is None:
            self._connect()
        return self._resource

    def _identify(self) -> str:
        identity = self.ask("*IDN?")
        if len(identity.split(",")) < 4 or not identity.isprintable():
            raise ValueError(f"not an *IDN? answer: {identity!r}")
        return identity

    # -- the retried unit ----------------------------------------------------------------------
    def transaction(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn` (built from `send`/`ask`) with bounded retries, reconnecting between tries."""
        try:
            return with_retries(
                self.name,
                what,
                fn,
                attempts=self.attempts,
                transient=_transient(),
                recover=self._reconnect,
            )
        except RigFault:
            # Whatever is left on the wire (a late answer, a half-read line) must not be read as
            # the answer to the next question: start the next transaction on a fresh link.
            self._drop_link()
            raise

    def _reconnect(self) -> None:
        self._drop_link()
        self._connect()

    # -- single exchanges, unretried: use inside `transaction` ---------------------------------
    def write(self, *messages: str) -> None:
        """Send program messages (one line each) in one write; nothing is read.

        Why one write: two small writes in a row are held back by Nagle's algorithm until the
        instrument ACKs the first, which a silent command delays by the peer's delayed-ACK
        timer (40 ms on Linux). Whole lines in one segment are still separate messages to the
        instrument, so an error in one cannot swallow the next (as it may inside a ";" message).
        """
        link = self._link()
        if self._pending is not None:
            messages = (self._pending, *messages)
            self._pending = None
        link.write("\n".join(messages))

    def read(self) -> str:
        """One answer line (a non-ASCII answer raises UnicodeDecodeError: garbage, a ValueError)."""
        return self._link().read().strip()

    def ask(self, query: str) -> str:
        """Send a query and return its one-line answer."""
        self.write(query)
        return self.read()

    def send(self, command: str) -> None:
        """A setting command, synchronised with `*OPC?` and checked with `SYST:ERR?`."""
        self.write(command, "*OPC?")
        done = self.read()
        if done not in ("1", "+1"):
            raise ValueError(f"*OPC? answered {done!r}")
        self.check_errors(command)

    def check_errors(self, context: str) -> None:
        """Read the error queue; any entry is a rig fault naming the instrument and the command."""
        errors = []
        for _ in range(MAX_ERRORS_DRAINED):
            code, message = self._next_error()
            if code == 0:
                break
            errors.append(f'{code},"{message}"')
        if errors:
            raise InstrumentError(self.name, f"{context!r} rejected: {'; '.join(errors)}")

    def _next_error(self) -> tuple[int, str]:
        answer = self.ask("SYST:ERR?")
        match = _ERROR_ANSWER.match(answer)
        if match is None:
            raise ValueError(f"not a SYST:ERR? answer: {answer!r}")
        return int(match.group(1)), match.group(2)

    # -- retried conveniences ------------------------------------------------------------------
    def command(self, command: str) -> None:
        self.transaction(command, lambda: self.send(command))

    def query(self, query: str, parse: Callable[[str], T] = str) -> T:
        """Ask and parse; a parse failure counts as a garbled answer and is retried."""
        return self.transaction(query, lambda: parse(self.ask(query)))


class ScpiInstrument:
    """What every SCPI driver shares: one session, the open/close life cycle, an on/off switch.

    A subclass adds its own commands on `self.session`; `_discover()` is its hook for asking
    the instrument what it is right after the link comes up (inside `open()`, so a failure
    there closes the session again instead of leaving a half-open driver).
    """

    def __init__(self, name: str, config: dict, clock: Clock):
        self.name = name
        self.config = config
        self.clock = clock
        self.session = ScpiSession(name, config, clock)

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        if self.session.is_open:
            return
        self.session.open()
        try:
            self._discover()
        except BaseException:
            self.session.close()
            raise

    def _discover(self) -> None:
        """Ask the instrument what the driver needs to know about it (nothing, by default)."""

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers (unretried: use inside a `transaction`) ---------------------------------------
    def _switch(self, header: str, what: str, state: bool) -> None:
        """Turn `header` (e.g. "OUTP") ON or OFF and make sure it reads back so."""
        word = "ON" if state else "OFF"
        self.session.send(f"{header} {word}")
        if parse_bool(self.session.ask(f"{header}?")) != state:
            raise InstrumentError(self.name, f"{what} does not read back {word}")


class PhasedScpiInstrument(ScpiInstrument):
    """An SCPI instrument with 1..3 phases: `phases` from the config, otherwise `SYST:PHAS?`.

    Config keys (besides the session's): optional `phases`.
    """

    def __init__(self, name: str, config: dict, clock: Clock):
        super().__init__(name, config, clock)
        self.phases: int = int(config["phases"]) if "phases" in config else 0

    def _discover(self) -> None:
        if not self.phases:
            self.phases = self.session.query("SYST:PHAS?", parse_phase_count)

    def _parse_per_phase(self, text: str) -> tuple[float, ...]:
        """An answer with one number per phase; any other count is a garbled answer."""
        return parse_floats(text, self.phases)

    def _query_per_phase(self, query: str) -> tuple[float, ...]:
        """Retried query of one number per phase."""
        return self.session.query(query, self._parse_per_phase)

    def _ask_per_phase(self, query: str) -> tuple[float, ...]:
        """Unretried query of one number per phase (use inside a `transaction`)."""
        return self._parse_per_phase(self.session.ask(query))
