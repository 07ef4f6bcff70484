"""What the central system records: every frame (`Message`), every connection event, and the
failures that are the charger's (AssertionError subclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


from rig.instruments import ocppj
from rig.instruments.ocppj import CALL_ERROR

IN = "in"  # charge point -> central system
OUT = "out"  # central system -> charge point
INVALID = "Invalid"  # message_type of a websocket message that is not an OCPP-J frame

BIND_ATTEMPTS = 3
CLOSE_HANDSHAKE_S = 2.0  # real seconds a charger gets to answer our close frame before TCP is cut
CLOSE_TIMEOUT_S = 10.0  # real seconds to close our own sockets, handshake included


# -- what goes wrong on the charger's side -----------------------------------------------------


class CentralSystemTimeout(AssertionError):
    """The charger did not send (or answer) something in time: a charger failure."""


class CallErrorReceived(AssertionError):
    """The charger answered a call from the central system with a CallError."""

    def __init__(self, cp_id: str, action: str, code: str, description: str, details: Any):
        super().__init__(f"charge point {cp_id} answered {action} with CallError {code}: {description!r}")
        self.cp_id = cp_id
        self.action = action
        self.code = code
        self.description = description
        self.details = details


class InvalidOcppMessage(AssertionError):
    """The charger sent something that is not valid OCPP 1.6."""


# -- records -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One websocket message in or out, as the central system saw it."""

    index: int  # position in the history
    time: float  # clock time when it was received or sent
    cp_id: str
    direction: str  # IN (charge point -> central system) | OUT
    message_type: str  # "Call" | "CallResult" | "CallError" | "Invalid"
    action: str | None  # for results and errors: the action of the call they answer
    unique_id: str | None
    payload: Any  # Call / CallResult payload; None for CallError and Invalid
    valid: bool
    error: str | None  # why it is not valid OCPP 1.6 (None when valid)
    raw: str
    error_code: str | None = None  # CallError only
    error_description: str | None = None

    def __str__(self) -> str:
        what = self.action or "?"
        body = self.payload if self.message_type != CALL_ERROR_NAME else f"{self.error_code} {self.error_description!r}"
        flag = "" if self.valid else f"  INVALID: {self.error}"
        return f"{self.time:.3f} s {self.direction} {self.message_type} {what} {body}{flag}"


CALL_ERROR_NAME = ocppj.TYPE_NAMES[CALL_ERROR]


@dataclass(frozen=True)
class ConnectionEvent:
    time: float
    cp_id: str
    kind: str  # "connected" | "disconnected"
    detail: str  # subprotocol, or why the connection ended



def _satisfies(predicate: Callable[[dict], bool], payload: Any) -> bool:
    """A predicate that trips over a malformed payload (KeyError...) simply does not match it."""
    try:
        return bool(predicate(payload))
    except (KeyError, TypeError, IndexError, AttributeError, ValueError):
        return False
