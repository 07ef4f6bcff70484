"""The central system's calls toward the charger (`CentralSystem.call`): sent from the test
thread, answered in the loop thread, matched by unique id and judged against the OCPP 1.6 schemas.

`ChargerCalls` is a mixin of CentralSystem (server.py), like History: it needs `self._connection`,
`self._ids`, `self._settle`, `self._in_loop`, `self._wait` and `self._record`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from rig.instruments import ocppj
from rig.instruments.central_system.messages import IN, OUT, CallErrorReceived, CentralSystemTimeout, InvalidOcppMessage
from rig.instruments.ocppj import CALL, CALL_ERROR, CALL_RESULT, Frame, Violation

if TYPE_CHECKING:
    from rig.instruments.central_system.server import _Connection


class _Awaited:
    """A call from the test thread waiting for the charger's answer."""

    def __init__(self, action: str):
        self.action = action
        self.done = threading.Event()
        self.payload: Any = None
        self.violation: Violation | None = None
        self.error: Frame | None = None  # the CallError, if that was the answer
        self.lost: str | None = None  # why no answer can come any more

    def answered(self, frame: Frame, violation: Violation | None) -> None:
        if frame.kind == CALL_ERROR:
            self.error = frame
        self.payload = frame.payload
        self.violation = violation
        self.done.set()

    def give_up(self, why: str) -> None:
        self.lost = why
        self.done.set()


class ChargerCalls:
    """Calls toward the charger (see the module docstring)."""

    def call(
        self,
        action: str,
        payload: dict,
        timeout: float = 30.0,
        cp_id: str | None = None,
        validate: bool = True,
        strict: bool = True,
    ) -> dict:
        """Send `action` to the charger and return its answer's payload.

        validate=False sends a payload the schemas reject (for negative tests); strict=False
        returns an answer that is not valid OCPP 1.6 instead of failing. Must be called from
        the test thread, never from a clock timer callback.
        """
        conn = self._connection(cp_id)
        if validate:
            ocppj.check(CALL, action, payload)
        unique_id = self._ids.next()
        text = ocppj.encode_call(unique_id, action, payload)
        awaited = _Awaited(action)
        self._settle()  # let what is in flight land first, so the history order is the same every run
        self._in_loop(lambda: self._send_call(conn, unique_id, action, payload, text, awaited))
        if not self._wait(awaited.done.is_set, timeout, f"waiting for the charger to answer {action}"):
            raise CentralSystemTimeout(f"charge point {conn.cp_id} did not answer {action} within {timeout:g} s")
        if awaited.lost is not None:
            raise CentralSystemTimeout(f"charge point {conn.cp_id} did not answer {action}: {awaited.lost}")
        if awaited.error is not None:
            e = awaited.error
            raise CallErrorReceived(conn.cp_id, action, e.error_code, e.error_description, e.error_details)
        if strict and awaited.violation is not None:
            raise InvalidOcppMessage(
                f"charge point {conn.cp_id} answered {action} with invalid OCPP 1.6: {awaited.violation}"
            )
        return awaited.payload

    def _send_call(self, conn: _Connection, unique_id: str, action: str, payload: dict, text: str,
                   awaited: _Awaited) -> None:
        if not conn.link.open:
            awaited.give_up("the connection ended before the call was sent")
            return
        conn.awaited[unique_id] = awaited
        frame = Frame(CALL, unique_id, action=action, payload=payload)
        self._record(conn, OUT, frame.kind_name, frame, action, ocppj.validate(CALL, action, payload), text)
        conn.link.send(text)

    def _on_answer(self, conn: _Connection, frame: Frame, text: str) -> None:
        """A CallResult or CallError from the charger: match it to our call."""
        awaited = conn.awaited.pop(frame.unique_id, None)
        action = awaited.action if awaited else None
        if awaited is None:
            violation: Violation | str | None = f"answers no call the central system has open ({frame.unique_id})"
        elif frame.kind == CALL_RESULT:
            violation = ocppj.validate(CALL_RESULT, action, frame.payload)
        elif frame.error_code not in ocppj.ERROR_CODES:
            violation = f"{frame.error_code!r} is not an OCPP 1.6 CallError code"
        else:
            violation = None
        self._record(conn, IN, frame.kind_name, frame, action, violation, text)
        if awaited is not None:
            awaited.answered(frame, violation if isinstance(violation, Violation) else None)
