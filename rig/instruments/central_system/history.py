"""The central system's history of frames and the test thread's ways to wait on it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Callable


from rig.instruments.ocppj import Frame, Violation

if TYPE_CHECKING:  # annotations only: the server imports this module
    from rig.instruments.central_system.server import _Connection
from rig.instruments.central_system.messages import (CentralSystemTimeout, IN, InvalidOcppMessage, Message, _satisfies)



class History:
    """Mixin of CentralSystem: the recorded frames (`history`, `mark`, `wait_for`). Needs
    `self._lock`, `self._history`, `self.clock` and `self._wait`."""

    # -- history -----------------------------------------------------------------------------
    def history(
        self, action: str | None = None, direction: str | None = None, cp_id: str | None = None
    ) -> list[Message]:
        """Every frame so far, oldest first, optionally only one action / direction / charger."""
        with self._lock:
            return [
                m
                for m in self._history
                if (action is None or m.action == action)
                and (direction is None or m.direction == direction)
                and (cp_id is None or m.cp_id == cp_id)
            ]

    def mark(self) -> int:
        """A history index to pass as `after=` to see only what comes from now on."""
        with self._lock:
            return len(self._history)

    def assert_valid(self, message: Message) -> Message:
        """Fail (the charger) if `message` is not valid OCPP 1.6."""
        if not message.valid:
            raise InvalidOcppMessage(
                f"{message.message_type} {message.action or ''} from charge point {message.cp_id} "
                f"at {message.time:.3f} s is not valid OCPP 1.6: {message.error}"
            )
        return message

    def _record(self, conn: _Connection, direction: str, kind: str, frame: Frame | None, action: str | None,
                violation: Violation | str | None, raw: str) -> Message:
        with self._lock:
            message = Message(
                index=len(self._history),
                time=self.clock.now(),
                cp_id=conn.cp_id,
                direction=direction,
                message_type=kind,
                action=action,
                unique_id=frame.unique_id if frame else None,
                payload=frame.payload if frame else None,
                valid=violation is None,
                error=None if violation is None else str(violation),
                raw=raw if isinstance(raw, str) else repr(raw),
                error_code=frame.error_code if frame else None,
                error_description=frame.error_description if frame else None,
            )
            self._history.append(message)
        return message

    def wait_for(
        self,
        action: str,
        predicate: Callable[[dict], bool] | None = None,
        timeout: float = 60.0,
        after: int | float | Message | None = None,
        since: float | None = None,
        cp_id: str | None = None,
    ) -> Message:
        """The first call of `action` from the charger (whose payload satisfies `predicate`).

        Looks at the whole history unless narrowed by `after`: an int is a history index from
        mark(), a float a clock time (messages at or after it, like `since`), a Message means
        only later ones. Waits in clock time.
        """
        if isinstance(after, float):
            after, since = None, after if since is None else max(since, after)
        start = self._start_index(after)
        found: list[Message] = []

        def arrived() -> bool:
            found[:] = self._matching_calls(action, predicate, start, since, cp_id)[:1]
            return bool(found)

        if not self._wait(arrived, timeout, f"waiting for the charger to send {action}"):
            raise CentralSystemTimeout(self._what_arrived(action, predicate, timeout, start, since, cp_id))
        return found[0]

    def _start_index(self, after: int | Message | None) -> int:
        if after is None:
            return 0
        if isinstance(after, Message):
            return after.index + 1
        return int(after)

    def _calls_in(self, start: int, since: float | None, cp_id: str | None) -> list[Message]:
        with self._lock:
            window = self._history[start:]
        return [
            m
            for m in window
            if m.direction == IN
            and m.message_type == "Call"
            and (since is None or m.time >= since)
            and (cp_id is None or m.cp_id == cp_id)
        ]

    def _matching_calls(self, action, predicate, start, since, cp_id) -> list[Message]:
        return [
            m
            for m in self._calls_in(start, since, cp_id)
            if m.action == action and (predicate is None or _satisfies(predicate, m.payload))
        ]

    def _what_arrived(self, action, predicate, timeout, start, since, cp_id) -> str:
        wanted = action + (" matching the condition" if predicate is not None else "")
        calls = self._calls_in(start, since, cp_id)
        if not calls:
            seen = "nothing"
        else:
            seen = "; ".join(f"{m.time:.3f} s {m.action} {json.dumps(m.payload)[:160]}" for m in calls[-20:])
            if len(calls) > 20:
                seen = f"(last 20 of {len(calls)}) " + seen
        return f"the charger did not send {wanted} within {timeout:g} s; it sent: {seen}"
