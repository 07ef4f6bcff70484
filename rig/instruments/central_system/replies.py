"""Scripted answers to what the charge point sends: accept, pending, reject, delay (clock time),
drop, a custom payload or a CallError, per action, used once each before the default applies."""

from __future__ import annotations

from typing import TYPE_CHECKING

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass, field


from rig.instruments import ocppj
from rig.instruments.ocppj import CallErrorReply, Frame

if TYPE_CHECKING:  # annotations only: the server imports this module
    from rig.instruments.central_system.server import CentralSystem, _Connection


# -- scripted replies --------------------------------------------------------------------------

#: charge-point-initiated actions the central system answers by default
_NOTIFICATIONS = frozenset(
    {
        "Heartbeat",
        "StatusNotification",
        "MeterValues",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "SecurityEventNotification",
        "LogStatusNotification",
    }
)
#: actions whose answer carries a status, and the status reject() gives them
_REJECTED_STATUS = {
    "BootNotification": "Rejected",
    "Authorize": "Invalid",
    "StartTransaction": "Invalid",
    "StopTransaction": "Invalid",
    "DataTransfer": "Rejected",
    "SignCertificate": "Rejected",
}
ANSWERED_ACTIONS = _NOTIFICATIONS | frozenset(_REJECTED_STATUS)
RETRY_INTERVAL_S = 30  # BootNotification Pending/Rejected interval when a test gives none


class Reply(ABC):
    """One scripted way of answering one call from the charge point."""

    def check(self, action: str) -> None:
        """Raise ValueError if this reply makes no sense for `action` (a mistake in the test)."""

    @abstractmethod
    def respond(self, cs: "CentralSystem", conn: "_Connection", call: Frame) -> None:
        """Act on `call` (in the central system's loop thread)."""


class _Answer(Reply):
    """A reply that answers at once with a payload or a CallError."""

    @abstractmethod
    def answer(self, cs: "CentralSystem", action: str) -> dict | CallErrorReply: ...

    def respond(self, cs: "CentralSystem", conn: "_Connection", call: Frame) -> None:
        cs._send_answer(conn, call, self.answer(cs, call.action))


def _only_boot_has_interval(action: str, interval: int | None) -> None:
    if interval is not None and action != "BootNotification":
        raise ValueError(f"an interval only belongs in a BootNotification answer, not {action}")


@dataclass(frozen=True)
class Accept(_Answer):
    interval: int | None = None  # BootNotification only: heartbeat interval (default heartbeat_s)

    def check(self, action: str) -> None:
        if action not in ANSWERED_ACTIONS:
            raise ValueError(f"no standard answer to {action}; script custom(payload) instead")
        _only_boot_has_interval(action, self.interval)

    def answer(self, cs: "CentralSystem", action: str) -> dict | CallErrorReply:
        return cs._standard_answer(action, "Accepted", self.interval)


@dataclass(frozen=True)
class Pending(_Answer):
    interval: int = RETRY_INTERVAL_S  # seconds before the charger sends BootNotification again

    def check(self, action: str) -> None:
        if action != "BootNotification":
            raise ValueError(f"Pending is a BootNotification status, not one of {action}")

    def answer(self, cs: "CentralSystem", action: str) -> dict | CallErrorReply:
        return cs._standard_answer(action, "Pending", self.interval)


@dataclass(frozen=True)
class Reject(_Answer):
    interval: int | None = None  # BootNotification only (default RETRY_INTERVAL_S)
    status: str | None = None  # override, e.g. "Blocked" for Authorize (default per action)

    def check(self, action: str) -> None:
        if action not in _REJECTED_STATUS:
            raise ValueError(f"the answer to {action} has no status to reject with; use call_error()")
        _only_boot_has_interval(action, self.interval)

    def answer(self, cs: "CentralSystem", action: str) -> dict | CallErrorReply:
        interval = self.interval if self.interval is not None else RETRY_INTERVAL_S
        return cs._standard_answer(action, self.status or _REJECTED_STATUS[action], interval)


@dataclass(frozen=True)
class Custom(_Answer):
    payload: dict  # sent as given, even if invalid (the history flags it)

    def answer(self, cs: "CentralSystem", action: str) -> dict | CallErrorReply:
        return copy.deepcopy(self.payload)


@dataclass(frozen=True)
class ScriptedCallError(_Answer):
    code: str
    description: str = ""
    details: dict = field(default_factory=dict)

    def answer(self, cs: "CentralSystem", action: str) -> dict | CallErrorReply:
        return CallErrorReply(self.code, self.description, dict(self.details))


@dataclass(frozen=True)
class Delay(Reply):
    seconds: float  # clock time, so virtual on the emulated bench
    then: Reply

    def check(self, action: str) -> None:
        if self.seconds < 0:
            raise ValueError(f"cannot answer {action} {self.seconds} s in the past")
        self.then.check(action)

    def respond(self, cs: "CentralSystem", conn: "_Connection", call: Frame) -> None:
        ocppj.call_later(cs.clock, cs._loop.loop, self.seconds, lambda: self.then.respond(cs, conn, call))


@dataclass(frozen=True)
class Drop(Reply):
    def respond(self, cs: "CentralSystem", conn: "_Connection", call: Frame) -> None:
        return None  # never answer: the charger's own timeout must cope


class _Default(_Answer):
    """What the central system answers when nothing is scripted."""

    def answer(self, cs: "CentralSystem", action: str) -> dict | CallErrorReply:
        if action in ANSWERED_ACTIONS:
            return cs._standard_answer(action, "Accepted", None)
        if ocppj.has_schema(action):
            return CallErrorReply("NotSupported", f"the rig's central system does not handle {action}")
        return CallErrorReply("NotImplemented", f"{action} is not an OCPP 1.6 action")


def accept(interval: int | None = None) -> Accept:
    """Accepted (BootNotification: `interval` = heartbeat interval, default heartbeat_s)."""
    return Accept(interval)


def pending(interval: int = RETRY_INTERVAL_S) -> Pending:
    """BootNotification Pending; the charger should boot again after `interval` s."""
    return Pending(interval)


def reject(interval: int | None = None, status: str | None = None) -> Reject:
    """Rejected / Invalid (per action); BootNotification: retry after `interval` s."""
    return Reject(interval, status)


def delay(seconds: float, then: Reply | None = None) -> Delay:
    """Answer `seconds` of clock time later with `then` (default accept())."""
    return Delay(seconds, then if then is not None else _Default())


def drop() -> Drop:
    """Never answer."""
    return Drop()


def custom(payload: dict) -> Custom:
    """Answer with exactly `payload`."""
    return Custom(payload)


def call_error(code: str, description: str = "", details: dict | None = None) -> ScriptedCallError:
    """Answer with a CallError (`code` must be an OCPP 1.6 error code)."""
    CallErrorReply(code)  # validates the code now, in the test, not later in the loop
    return ScriptedCallError(code, description, details or {})
