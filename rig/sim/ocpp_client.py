"""The emulated charger's OCPP 1.6J client: transport only, no charger behaviour.

The emulated charger (written on top of this) decides what to send and how to answer;
this class frames, validates, times out and counts every hop for the virtual clock:

* `connect()` from any thread; the charger's `on_connected()` runs in the loop thread
  before the virtual clock may move again, so its BootNotification is already in flight.
  Failing to connect and losing the connection both call `on_disconnected()` (the reason
  is in `disconnect_reason`); reconnecting is the charger's decision (call `connect()` again).
* `on_call(action, payload)` answers each call from the central system synchronously in
  the loop thread, with a payload dict or a `CallErrorReply`. It only sees schema-valid
  calls: an invalid one is answered with the matching CallError by the client itself.
* `call(action, payload, on_result, on_error)` from any thread. `on_result(payload)` or
  `on_error(code, description)` runs later in the loop thread. `code` is the CallError code,
  or one of TIMEOUT, CONNECTION_CLOSED, NOT_CONNECTED (client-side, not OCPP codes).
  `on_result` only sees schema-valid answers; an invalid answer goes to `on_error`.

Transport: plain `ws://` straight to the URL, or, when `open_socket` is set (the emulated unit's
network stack: DNS, TCP through the emulated link, TLS verified against the unit's own clock),
the websocket runs over the socket that coroutine returns; `headers` go with the handshake
(HTTP Basic credentials, OCPP security profile 2). A socket that cannot be opened (no route,
certificate rejected) or a refused handshake (401) is a failed connect: `on_disconnected()`.

Everything the client sends is schema-valid OCPP 1.6: an invalid payload from the charger
is an emulator bug (ValueError in `call()`; for an `on_call` answer, a rig fault at the next
settle and an InternalError CallError on the wire).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import WebSocketException

from rig.instruments import ocppj
from rig.core.aio import LoopThread
from rig.core.clock import Clock
from rig.instruments.ocppj import CALL, CALL_ERROR, CALL_RESULT, CallErrorReply, Frame, Link

__all__ = ["OcppClient", "CallErrorReply", "TIMEOUT", "CONNECTION_CLOSED", "NOT_CONNECTED"]

TIMEOUT = "Timeout"  # no answer within timeout_s (clock time)
CONNECTION_CLOSED = "ConnectionClosed"  # the connection ended before the answer came
NOT_CONNECTED = "NotConnected"  # call() while there was no connection

OnCall = Callable[[str, dict], "dict | CallErrorReply"]
OnResult = Callable[[dict], None]
OnError = Callable[[str, str], None]


@dataclass
class _PendingCall:
    action: str
    on_result: OnResult
    on_error: OnError | None
    timer: Any = None


class OcppClient:
    """Charge-point side of one OCPP-J websocket, living in `loop` (the bench's LoopThread)."""

    def __init__(
        self,
        clock: Clock,
        loop: LoopThread,
        url: str,
        cp_id: str,
        on_call: OnCall,
        on_connected: Callable[[], None],
        on_disconnected: Callable[[], None],
        open_timeout_s: float = 10.0,  # real seconds: how long a TCP/websocket handshake may take
        open_socket: Callable[[], Awaitable[tuple[socket.socket, int]]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.clock = clock
        self._thread = loop
        self.url = url
        self.cp_id = cp_id
        self.on_call = on_call
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.open_timeout_s = open_timeout_s
        self.open_socket = open_socket  # set (or replaced) by the unit's network stack before connect()
        self.headers = headers
        self._ids = ocppj.MessageIds("cp-")
        self._link: Link | None = None
        self._connecting = False
        self._hung_up = False  # close() asked: nothing more goes out, before the loop has closed the link
        self._session_task: asyncio.Task | None = None
        self._pending: dict[str, _PendingCall] = {}
        self._connect_tag = f"ocpp-connect:{cp_id}"
        self._handover_tag = f"ocpp-client:{cp_id}"
        #: why the last connection ended or the last connect failed (None before that)
        self.disconnect_reason: str | None = None
        #: (direction "in"/"out", frame text) for every frame: the device's ground-truth journal
        self.observer: Callable[[str, str], None] | None = None

    @property
    def connected(self) -> bool:
        link = self._link
        return link is not None and link.open and not link.closing and not self._hung_up

    # -- connection --------------------------------------------------------------------------
    def connect(self) -> None:
        """Start connecting (non-blocking); a no-op while connected or connecting."""
        self._hung_up = False
        self.clock.io_begin(self._connect_tag)  # held until on_connected/on_disconnected has run
        self._run_in_loop(self._start_connecting, counted=False)

    def close(self) -> None:
        """Close the connection from the charger's side (non-blocking); on_disconnected follows.
        `connected` is False from here on, so nothing sent after this call goes out."""
        self._hung_up = True
        self._run_in_loop(self._close_now)

    def _start_connecting(self) -> None:
        if self._link is not None or self._connecting:
            self.clock.io_end(self._connect_tag)
            return
        self._connecting = True
        self._session_task = self._thread.loop.create_task(self._session())

    def _close_now(self) -> None:
        if self._link is not None:
            self._link.close(1000, "closed by the charge point")
        elif self._connecting and self._session_task is not None:
            self._session_task.cancel()

    async def _session(self) -> None:
        """Connect, serve the connection until it ends, then tell the charger."""
        link = await self._open_link()
        if link is None:
            return
        await link.run(self._on_message)
        self._link = None
        reason = link.close_reason()
        self._fail_pending(CONNECTION_CLOSED, f"connection ended before the answer: {reason}")
        self.disconnect_reason = reason
        self._notify(self.on_disconnected)
        link.release()

    async def _open_link(self) -> Link | None:
        try:
            url, extra, client_port = self.url, {}, None
            if self.open_socket is not None:  # TLS is the network stack's: the websocket runs over its socket
                extra["sock"], client_port = await asyncio.wait_for(self.open_socket(), self.open_timeout_s)
                url = url.replace("wss://", "ws://", 1)
            ws = await ws_connect(
                url,
                subprotocols=[ocppj.SUBPROTOCOL],
                open_timeout=self.open_timeout_s,
                ping_interval=None,  # no keepalive traffic of our own: OCPP has Heartbeat
                additional_headers=self.headers,
                **extra,
            )
            if ws.subprotocol != ocppj.SUBPROTOCOL:
                await ws.close(1002, "ocpp1.6 required")
                raise WebSocketException(f"central system did not agree to {ocppj.SUBPROTOCOL}")
        except (OSError, TimeoutError, EOFError, WebSocketException, asyncio.CancelledError) as exc:
            self._connecting = False
            self.disconnect_reason = f"cannot connect to {self.url}: {exc or type(exc).__name__}"
            try:
                self._notify(self.on_disconnected)
            finally:
                self.clock.io_end(self._connect_tag)
            return None
        if client_port is None:
            client_port = ws.local_address[1]  # the central system names the link by our TCP port too
        link = Link(
            ws,
            self.clock,
            in_tag=ocppj.link_tag(self.cp_id, client_port, "cp"),
            out_tag=ocppj.link_tag(self.cp_id, client_port, "cs"),
        )
        self._link = link
        self._connecting = False
        try:
            self._notify(self.on_connected)
        finally:
            self.clock.io_end(self._connect_tag)
        return link

    # -- calls to the central system -------------------------------------------------------------
    def call(
        self,
        action: str,
        payload: dict,
        on_result: OnResult,
        on_error: OnError | None = None,
        timeout_s: float = 30.0,
        validate: bool = True,
    ) -> str:
        """Send a call (non-blocking, any thread); returns its unique id.

        validate=False is only for deliberately broken emulated chargers (rig/sim/defects.py)
        and the harness's own tests of the central system's validation.
        """
        if validate:
            ocppj.check(CALL, action, payload)
        unique_id = self._ids.next()
        text = ocppj.encode_call(unique_id, action, payload)
        pending = _PendingCall(action, on_result, on_error)
        self._run_in_loop(lambda: self._send_call(unique_id, text, pending, timeout_s))
        return unique_id

    def _send_call(self, unique_id: str, text: str, pending: _PendingCall, timeout_s: float) -> None:
        if not self.connected:
            self._report_error(pending, NOT_CONNECTED, f"not connected to the central system ({pending.action})")
            return
        self._pending[unique_id] = pending
        # the timer is set before the frame leaves, so a timeout and a delayed answer at the
        # same clock time always run in the same order
        pending.timer = ocppj.call_later(
            self.clock, self._thread.loop, timeout_s, lambda: self._time_out(unique_id, timeout_s)
        )
        self._observe("out", text)
        self._link.send(text)

    def _time_out(self, unique_id: str, timeout_s: float) -> None:
        pending = self._pending.pop(unique_id, None)
        if pending is not None:
            self._report_error(pending, TIMEOUT, f"no answer to {pending.action} within {timeout_s:g} s")

    def _fail_pending(self, code: str, description: str) -> None:
        pending, self._pending = self._pending, {}
        for call in pending.values():
            call.timer.cancel()
            self._report_error(call, code, description)

    def _report_error(self, call: _PendingCall, code: str, description: str) -> None:
        if call.on_error is not None:
            self._notify(call.on_error, code, description)

    # -- incoming ----------------------------------------------------------------------------
    def _on_message(self, text: str | bytes) -> None:
        self._observe("in", text)
        try:
            frame = ocppj.decode(text)
        except ocppj.FrameError as bad:
            if bad.answerable:
                self._send_error(bad.unique_id, CallErrorReply(bad.code, bad.description))
            return
        if frame.kind == CALL:
            self._on_call(frame)
        else:
            self._on_answer(frame)

    def _on_call(self, frame: Frame) -> None:
        violation = ocppj.validate(CALL, frame.action, frame.payload)
        if violation is not None:
            self._send_error(frame.unique_id, CallErrorReply(violation.code, violation.text))
            return
        try:
            answer = self.on_call(frame.action, frame.payload)
        except Exception as exc:
            ocppj.report_bug(self.clock, f"emulated charger answering {frame.action}", exc)
            answer = CallErrorReply("InternalError", f"emulated charger failed on {frame.action}")
        if isinstance(answer, CallErrorReply):
            self._send_error(frame.unique_id, answer)
            return
        violation = ocppj.validate(CALL_RESULT, frame.action, answer)
        if violation is not None:
            bug = ValueError(f"emulated charger answered {frame.action} with invalid OCPP 1.6: {violation}")
            ocppj.report_bug(self.clock, "emulated charger", bug)
            self._send_error(frame.unique_id, CallErrorReply("InternalError", "emulated charger bug"))
            return
        self._send(ocppj.encode_result(frame.unique_id, answer))

    def _on_answer(self, frame: Frame) -> None:
        pending = self._pending.pop(frame.unique_id, None)
        if pending is None:
            return  # a late answer to a call that already timed out
        pending.timer.cancel()
        if frame.kind == CALL_ERROR:
            self._report_error(pending, frame.error_code, frame.error_description)
            return
        violation = ocppj.validate(CALL_RESULT, pending.action, frame.payload)
        if violation is not None:
            self._report_error(pending, violation.code, f"invalid answer from the central system: {violation.text}")
            return
        self._notify(pending.on_result, frame.payload)

    def _send_error(self, unique_id: str, error: CallErrorReply) -> None:
        self._send(ocppj.encode_error(unique_id, error.code, error.description, error.details))

    def _send(self, text: str) -> None:
        if self._link is not None:
            self._observe("out", text)
            self._link.send(text)

    def _observe(self, direction: str, text: str | bytes) -> None:
        if self.observer is not None:
            try:
                self.observer(direction, text if isinstance(text, str) else text.decode("utf-8", "replace"))
            except Exception as exc:  # a journal that cannot write must not cut the unit off
                ocppj.report_bug(self.clock, "OCPP frame observer", exc)

    # -- threads -----------------------------------------------------------------------------
    def _run_in_loop(self, fn: Callable[[], None], counted: bool = True) -> None:
        """Run `fn` in the loop thread; the hand-over counts as in flight on the emulated bench."""
        tag = self._handover_tag if counted else None
        ocppj.hand_over(self._thread, self.clock, fn, f"OCPP client {self.cp_id}", tag)

    def _notify(self, callback: Callable[..., None], *args) -> None:
        """Call into the charger; its exceptions are emulator bugs, reported, never swallowed silently."""
        try:
            callback(*args)
        except Exception as exc:
            ocppj.report_bug(self.clock, f"emulated charger callback {getattr(callback, '__name__', callback)}", exc)
