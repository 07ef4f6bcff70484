"""OCPP 1.6J plumbing shared by the rig's central system and the emulated charger's client.

Three things live here:

* framing: `[2, id, action, payload]` (Call), `[3, id, payload]` (CallResult),
  `[4, id, code, description, details]` (CallError): `encode_*` and `decode`;
* schema validation against the OCPP 1.6 JSON schemas shipped by the `ocpp` package
  (`validate` gives the OCPP error code a receiver would answer with);
* `Link`: one websocket connection as either end sees it, with the virtual clock's
  settle accounting, so that on the emulated bench time never moves while a frame is
  in flight.

Settle accounting on a link (see rig/core/clock.py). Each direction of a connection has its
own tag, named after the charge point and the client's TCP port, so that a dead
connection can be forgotten without touching a new one to the same charge point:

* the sender calls `io_begin(tag toward the peer)` before a frame leaves;
* the receiver calls `io_end(its incoming tag)` once it has fully handled the frame;
* a frame that could not be sent is ended by its sender;
* whoever starts a close counts the close frame toward the peer (only while the
  socket is still OPEN, so the peer has not released yet), and its own end of the
  connection until its receive loop has ended;
* when a side's receive loop ends it will never handle anything again, so it
  releases its incoming tag, which also ends the peer's close frame.

On a `RealClock` all of this is a no-op.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import itertools
import json
import re
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import ocpp
from jsonschema import Draft4Validator, FormatChecker
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from rig.core.clock import Clock

log = logging.getLogger(__name__)

CALL = 2
CALL_RESULT = 3
CALL_ERROR = 4
TYPE_NAMES = {CALL: "Call", CALL_RESULT: "CallResult", CALL_ERROR: "CallError"}

SUBPROTOCOL = "ocpp1.6"
OCPP_VERSION = "1.6"

#: CallError codes of OCPP-J 1.6 (section 4.2.3), spelled as the standard spells them
ERROR_CODES = frozenset(
    {
        "NotImplemented",
        "NotSupported",
        "InternalError",
        "ProtocolError",
        "SecurityError",
        "FormationViolation",
        "PropertyConstraintViolation",
        "OccurenceConstraintViolation",
        "TypeConstraintViolation",
        "GenericError",
    }
)

#: where virtual time 0 sits on the calendar: timestamps on the emulated bench are
#: epoch + clock.now(), so two runs with the same seed send the same bytes
VIRTUAL_EPOCH = dt.datetime(2026, 1, 5, 6, 0, 0, tzinfo=dt.timezone.utc)  # = rig.sim.charger.BENCH_EPOCH


# -- time ------------------------------------------------------------------------------------


def wall_time(clock: Clock) -> dt.datetime:
    """The calendar time to put in OCPP timestamps: fixed epoch + clock time on a virtual clock."""
    if clock.virtual:
        return VIRTUAL_EPOCH + dt.timedelta(seconds=clock.now())
    return dt.datetime.now(dt.timezone.utc)


def iso_time(when: dt.datetime) -> str:
    """RFC 3339 UTC with milliseconds, the form OCPP 1.6J examples use."""
    utc = when.astimezone(dt.timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> dt.datetime:
    """An OCPP dateTime (RFC 3339, 'Z' or an offset) as an aware UTC datetime."""
    return dt.datetime.fromisoformat(text.strip().upper().replace("Z", "+00:00")).astimezone(dt.timezone.utc)


def iso_now(clock: Clock) -> str:
    return iso_time(wall_time(clock))


# -- message ids -----------------------------------------------------------------------------


class MessageIds:
    """Unique ids for the Calls one end sends: a prefix and a counter.

    A counter (not uuid4) so that the emulated bench sends the same bytes every run;
    OCPP only asks that an id be unique among the sender's outstanding calls (<= 36 chars).
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self._count = itertools.count(1)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            return f"{self.prefix}{next(self._count)}"


# -- framing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallErrorReply:
    """What a handler returns instead of a payload to answer a Call with a CallError."""

    code: str
    description: str = ""
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.code not in ERROR_CODES:
            raise ValueError(f"{self.code!r} is not an OCPP 1.6 CallError code: {sorted(ERROR_CODES)}")


@dataclass(frozen=True)
class Frame:
    """One decoded OCPP-J message."""

    kind: int  # CALL | CALL_RESULT | CALL_ERROR
    unique_id: str
    action: str | None = None  # Calls only
    payload: Any = None  # Call and CallResult
    error_code: str | None = None  # CallError only
    error_description: str | None = None
    error_details: Any = None

    @property
    def kind_name(self) -> str:
        return TYPE_NAMES[self.kind]


class FrameError(ValueError):
    """A websocket message that is not an OCPP-J frame; carries the code a receiver answers with."""

    def __init__(self, code: str, description: str, unique_id: str | None = None, kind: int | None = None):
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.unique_id = unique_id
        self.kind = kind  # the message type id, when the frame got that far

    @property
    def answerable(self) -> bool:
        """A broken Call with a usable id is answered with a CallError; anything else is only logged."""
        return self.kind == CALL and self.unique_id is not None


def _dumps(message: list) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def encode_call(unique_id: str, action: str, payload: dict) -> str:
    return _dumps([CALL, unique_id, action, payload])


def encode_result(unique_id: str, payload: dict) -> str:
    return _dumps([CALL_RESULT, unique_id, payload])


def encode_error(unique_id: str, code: str, description: str = "", details: dict | None = None) -> str:
    return _dumps([CALL_ERROR, unique_id, code, description, details or {}])


def decode(text: str | bytes) -> Frame:
    """Parse one websocket message; raise FrameError saying what is wrong with it."""
    if isinstance(text, bytes):
        raise FrameError("FormationViolation", "binary websocket frame; OCPP-J uses text frames")
    try:
        message = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FrameError("FormationViolation", f"not JSON: {exc}") from None
    if not isinstance(message, list) or not message:
        raise FrameError("FormationViolation", "not a JSON array with a message type id")
    kind = message[0]
    unique_id = message[1] if len(message) > 1 and isinstance(message[1], str) else None
    if len(message) < 2 or unique_id is None:
        raise FrameError("FormationViolation", "missing or non-string unique id")
    if len(unique_id) > 36:
        raise FrameError("FormationViolation", "unique id longer than 36 characters", unique_id, kind)
    if kind == CALL:
        return _decode_call(message, unique_id)
    if kind == CALL_RESULT:
        if len(message) != 3:
            raise FrameError("FormationViolation", f"CallResult has {len(message)} elements, not 3", unique_id)
        return Frame(CALL_RESULT, unique_id, payload=message[2])
    if kind == CALL_ERROR:
        return _decode_call_error(message, unique_id)
    raise FrameError("PropertyConstraintViolation", f"unknown message type id {kind!r}", unique_id)


def _decode_call(message: list, unique_id: str) -> Frame:
    if len(message) != 4:
        raise FrameError("FormationViolation", f"Call has {len(message)} elements, not 4", unique_id, CALL)
    if not isinstance(message[2], str):
        raise FrameError("FormationViolation", "action is not a string", unique_id, CALL)
    return Frame(CALL, unique_id, action=message[2], payload=message[3])


def _decode_call_error(message: list, unique_id: str) -> Frame:
    if len(message) != 5:
        raise FrameError("FormationViolation", f"CallError has {len(message)} elements, not 5", unique_id)
    _, _, code, description, details = message
    if not isinstance(code, str) or not isinstance(description, str) or not isinstance(details, dict):
        raise FrameError("FormationViolation", "CallError code/description/details of the wrong type", unique_id)
    return Frame(CALL_ERROR, unique_id, error_code=code, error_description=description, error_details=details)


# -- schema validation -----------------------------------------------------------------------

_FORMATS = FormatChecker(formats=())


@_FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    """RFC 3339 date-time: a date, a 'T', a time and a zone (jsonschema needs an extra package for this)."""
    if not isinstance(value, str):
        return True  # the type keyword reports it
    if not _RFC3339.match(value):
        raise ValueError("not an RFC 3339 date-time (YYYY-MM-DDThh:mm:ss[.fff] and 'Z' or +hh:mm)")
    dt.datetime.fromisoformat(value.upper())  # the calendar: month 13, day 32, hour 25 are refused here
    return True


# RFC 3339 section 5.6 (the profile of ISO 8601 that JSON schema's date-time means): basic forms
# such as 20260105T060000Z, week dates and ordinal dates, which fromisoformat also accepts, are not
# date-times to a central system
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


_SCHEMA_DIR = Path(ocpp.__file__).parent / "v16" / "schemas"
_validators: dict[tuple[int, str], Draft4Validator | None] = {}
_validators_lock = threading.Lock()


def _validator(kind: int, action: str) -> Draft4Validator | None:
    """The 1.6 schema of `action` for a Call or CallResult, or None if 1.6 has no such action."""
    key = (kind, action)
    with _validators_lock:
        if key not in _validators:
            _validators[key] = _load_validator(kind, action)
        return _validators[key]


def _load_validator(kind: int, action: str) -> Draft4Validator | None:
    name = action + ("Response" if kind == CALL_RESULT else "")
    if not name.isidentifier():
        return None
    path = _SCHEMA_DIR / f"{name}.json"
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError:
        return None
    # Decimal floats: the charging-profile schemas say multipleOf 0.1, which binary floats
    # fail (0.30000000000000004); the ocpp package parses them the same way.
    schema = json.loads(text, parse_float=decimal.Decimal)
    return Draft4Validator(schema, format_checker=_FORMATS)


def has_schema(action: str) -> bool:
    return _validator(CALL, action) is not None


@dataclass(frozen=True)
class Violation:
    """Why a payload is not valid OCPP 1.6, and the CallError code a receiver answers with."""

    code: str
    text: str

    def __str__(self) -> str:
        return f"{self.code}: {self.text}"


# jsonschema keyword -> OCPP-J 1.6 error code (section 4.2.3)
_KEYWORD_CODES = {
    "type": "TypeConstraintViolation",
    "maxLength": "TypeConstraintViolation",
    "format": "TypeConstraintViolation",
    "required": "OccurenceConstraintViolation",
    "minItems": "OccurenceConstraintViolation",
    "maxItems": "OccurenceConstraintViolation",
    "additionalProperties": "FormationViolation",
    "enum": "PropertyConstraintViolation",
    "minimum": "PropertyConstraintViolation",
    "maximum": "PropertyConstraintViolation",
    "multipleOf": "PropertyConstraintViolation",
}


def validate(kind: int, action: str, payload: Any) -> Violation | None:
    """None if `payload` is a valid 1.6 Call (kind=CALL) or CallResult (kind=CALL_RESULT) of `action`."""
    validator = _validator(kind, action)
    if validator is None:
        return Violation("NotImplemented", f"OCPP 1.6 has no action {action!r}")
    try:
        instance = json.loads(json.dumps(payload), parse_float=decimal.Decimal)
    except (TypeError, ValueError) as exc:
        return Violation("FormationViolation", f"payload is not JSON: {exc}")
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    what = "request" if kind == CALL else "response"
    problems = "; ".join(f"{_where(e)}: {e.message}" for e in errors)
    return Violation(_KEYWORD_CODES.get(errors[0].validator, "FormationViolation"), f"{action} {what}: {problems}")


def _where(error) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(payload)"


def check(kind: int, action: str, payload: Any) -> None:
    """Raise ValueError if `payload` is not valid OCPP 1.6 (for what the rig itself sends)."""
    violation = validate(kind, action, payload)
    if violation is not None:
        raise ValueError(f"not valid OCPP 1.6: {violation}")


# -- timers ----------------------------------------------------------------------------------


def call_later(clock: Clock, loop: asyncio.AbstractEventLoop, delay_s: float, fn: Callable[[], None]):
    """Run `fn` in `loop` after `delay_s` of CLOCK time; returns something with `.cancel()`.

    A virtual clock runs the timer when the test thread moves time past it; a real clock
    uses the loop's own timer. Cancelling is best effort: `fn` must itself check that it
    is still wanted (a virtual timer may already be on its way into the loop).
    """
    if hasattr(clock, "call_later_threadsafe"):
        return clock.call_later_threadsafe(loop, delay_s, fn)
    return loop.call_later(delay_s, fn)  # RealClock: called from the loop thread only


def link_tag(cp_id: str, client_port: int, toward: str) -> str:
    """Settle-accounting tag of one direction of one connection; `toward` is "cs" or "cp"."""
    return f"ocpp:{cp_id}:{client_port}>{toward}"


def report_bug(clock: Clock, where: str, exc: BaseException) -> None:
    """An exception in emulation code: make the next settle() raise it as a rig fault."""
    log.error("%s failed", where, exc_info=exc)
    if hasattr(clock, "failure") and clock.failure is None:
        clock.failure = exc


def hand_over(loop, clock: Clock, fn: Callable[[], None], where: str, tag: str | None) -> None:
    """Run `fn` in the thread of `loop` (a `rig.aio.LoopThread`), at once if already there.

    With a `tag`, the hand-over counts as I/O in flight on the clock until `fn` has run, so
    the emulated bench cannot settle while a frame is still on its way into the loop. An
    exception from `fn` is an emulation bug: reported (`report_bug`, naming `where`), not lost.
    """
    if loop.in_loop_thread:
        fn()
        return
    if tag is not None:
        clock.io_begin(tag)

    def run() -> None:
        try:
            fn()
        except Exception as exc:
            report_bug(clock, where, exc)
        finally:
            if tag is not None:
                clock.io_end(tag)

    loop.call(run)


# -- one connection --------------------------------------------------------------------------


class Link:
    """One OCPP-J websocket connection with settle accounting; lives in its asyncio loop.

    Outgoing frames go through a queue served by one writer task so they leave in the
    order they were sent, whatever websockets does with concurrent sends.
    """

    def __init__(self, ws, clock: Clock, in_tag: str, out_tag: str):
        self.ws = ws
        self.clock = clock
        self.in_tag = in_tag
        self.out_tag = out_tag
        self.open = True
        self.closing = False
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer: asyncio.Task | None = None

    def send(self, text: str) -> bool:
        """Queue one frame (loop thread only). False if the link is already down."""
        if not self.open:
            return False
        self.clock.io_begin(self.out_tag)
        self._queue.put_nowait(text)
        return True

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start closing from this end (loop thread only); `run()` returns when it is done."""
        if not self.open or self.closing:
            return
        self.closing = True
        self.clock.io_begin(self.in_tag)  # until our own run() has ended; our release() ends it
        if self.ws.state is State.OPEN:
            self.clock.io_begin(self.out_tag)  # the close frame; the peer's release ends it
        asyncio.get_running_loop().create_task(self.ws.close(code, reason))

    async def run(self, handle: Callable[[str | bytes], None]) -> str:
        """Hand every incoming message to `handle` until the connection ends; return why it ended."""
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        reason = "closed"
        try:
            async for text in self.ws:
                try:
                    handle(text)
                except Exception as exc:
                    report_bug(self.clock, "OCPP message handler", exc)
                finally:
                    self.clock.io_end(self.in_tag)
        except ConnectionClosed:
            pass
        finally:
            self.open = False
            self._queue.put_nowait(None)  # the writer ends the frames it can no longer send
            reason = self.close_reason()
        return reason

    def release(self) -> None:
        """This end will handle nothing more: forget what is still counted toward it."""
        self.clock.io_release(self.in_tag)

    def close_reason(self) -> str:
        code = self.ws.close_code
        text = self.ws.close_reason
        if code is None:
            return "connection lost"
        return f"closed with code {code}" + (f" ({text})" if text else "")

    async def _write_loop(self) -> None:
        while (text := await self._queue.get()) is not None:
            try:
                await self.ws.send(text)
            except ConnectionClosed:
                self.clock.io_end(self.out_tag)  # never left: nobody else will end it
        while not self._queue.empty():  # queued after the end marker: cannot happen, but never leak
            if self._queue.get_nowait() is not None:
                self.clock.io_end(self.out_tag)
