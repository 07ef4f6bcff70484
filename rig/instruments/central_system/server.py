"""The central system's server: listening, connections and answers to the charger (calls toward
it: calls.py; the recorded frames: history.py).
The package docstring (rig/instruments/central_system/__init__.py) says what it gives a test."""


from __future__ import annotations

import asyncio
import base64
import http
import datetime
import itertools
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

from websockets.asyncio.server import serve

from rig.instruments import ocppj
from rig.core.aio import LoopThread
from rig.core.clock import Clock
from rig.core.errors import InstrumentError, ServiceFaults, describe
from rig.instruments.ocppj import CALL, CALL_ERROR, CALL_RESULT, CallErrorReply, Frame, Link
from rig.instruments.central_system.messages import (BIND_ATTEMPTS, CLOSE_HANDSHAKE_S, CLOSE_TIMEOUT_S, CentralSystemTimeout, ConnectionEvent, IN, INVALID, Message, OUT)
from rig.instruments.central_system.replies import (RETRY_INTERVAL_S, Reply, _Default)

from rig.instruments.central_system.calls import ChargerCalls, _Awaited
from rig.instruments.central_system.history import History

# -- the server --------------------------------------------------------------------------------


class CentralSystemApi(Protocol):
    """What tests and the plugin use of a central system."""

    port: int | None

    def open(self) -> "CentralSystemApi": ...
    def close(self) -> None: ...
    def url_for(self, cp_id: str) -> str: ...
    def script(self, action: str, *replies: Reply) -> None: ...
    def history(self, action: str | None = None, direction: str | None = None) -> list[Message]: ...
    def wait_for(self, action: str, predicate: Callable[[dict], bool] | None = None,
                 timeout: float = 60.0, after: int | float | Message | None = None) -> Message: ...
    def call(self, action: str, payload: dict, timeout: float = 30.0) -> dict: ...
    def connected(self, cp_id: str | None = None) -> bool: ...


@dataclass
class _Connection:
    cp_id: str
    link: Link
    subprotocol: str | None
    path: str
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    awaited: dict[str, "_Awaited"] = field(default_factory=dict)  # our calls without an answer yet


class _Hold:
    """One io_begin that is ended exactly once, by whichever path gets there first."""

    NONE: "_Hold"

    def __init__(self, clock: Clock | None, tag: str):
        self.clock = clock
        self.tag = tag
        if clock is not None:
            clock.io_begin(tag)

    def end(self) -> None:
        clock, self.clock = self.clock, None
        if clock is not None:
            clock.io_end(self.tag)


_Hold.NONE = _Hold(None, "")


def _charge_point_id(path: str) -> str:
    """OCPP-J: the charge point id is the last segment of the URL path."""
    return urllib.parse.unquote(path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])


def _pick_subprotocol(connection, offered) -> str | None:
    """Prefer ocpp1.6 but accept a charger that offers none, so a test can see and fail it."""
    return ocppj.SUBPROTOCOL if ocppj.SUBPROTOCOL in offered else None


@dataclass(frozen=True)
class AuthAttempt:
    """The credentials one websocket handshake presented (security profile 2)."""

    time: float
    cp_id: str
    user: str | None
    password: str | None
    accepted: bool


def _basic_credentials(header: str) -> tuple[str | None, str | None]:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None, None
    return (user, password) if sep else (user, None)


def _port(value) -> int:
    return 0 if value in (None, "", "auto") else int(value)


class CentralSystem(History, ChargerCalls):
    """OCPP 1.6J central system in its own asyncio loop thread.

    Config keys: host (default 127.0.0.1), port (0 or "auto" = any free), path_prefix
    (default "/ocpp/"), heartbeat_s (default 300), poll_s (how finely waits look, clock seconds),
    ssl (an ssl.SSLContext: serve wss:// with its certificate; absent = plain ws://), passwords
    ({charge point id: password}: OCPP security profile 2, HTTP Basic auth required and checked;
    absent = no authentication).
    """

    def __init__(self, name: str, config: dict, clock: Clock,
                 time_source: Callable[[], "datetime.datetime"] | None = None, faults: ServiceFaults | None = None):
        self.name = name
        self._faults = faults if faults is not None else ServiceFaults()
        self.clock = clock
        # the calendar time answered as currentTime (the rig's TimeService.now); default: the clock's
        self.time_source = time_source
        self.host = str(config.get("host") or "127.0.0.1")
        self.port: int | None = None
        self._wanted_port = _port(config.get("port", 0))
        prefix = str(config.get("path_prefix", "/ocpp/"))
        self.path_prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        self.heartbeat_s = int(config.get("heartbeat_s", 300))
        self.poll_s = float(config.get("poll_s", 0.05 if clock.virtual else 0.01))
        self.ssl_context = config.get("ssl")
        self.passwords: dict[str, str] | None = config.get("passwords")
        self.auth_attempts: list[AuthAttempt] = []  # every handshake's credentials, when passwords are set
        self._loop: LoopThread | None = None
        self._server = None
        self._lock = threading.Lock()
        self._history: list[Message] = []
        self._events: list[ConnectionEvent] = []
        self._connections: dict[str, _Connection] = {}
        self._scripts: dict[str, deque[Reply]] = {}
        self._ids = ocppj.MessageIds("cs-")
        self._transaction_ids = itertools.count(1)
        self._handover_tag = f"ocpp-cs:{name}"

    # -- life cycle --------------------------------------------------------------------------
    def open(self) -> "CentralSystem":
        if self._loop is not None:
            return self
        self._loop = LoopThread(f"{self.name}-ocpp", self._faults).start()
        try:
            self._listen()
        except BaseException:
            self._loop.stop()
            self._loop = None
            raise
        return self

    def close(self) -> None:
        if self._loop is None:
            return
        try:
            self._stop_server(settle=False)  # the charger's side may already be gone: do not wait on it
        finally:
            self._loop.stop()
            self._loop = None

    def __enter__(self) -> "CentralSystem":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def url_for(self, cp_id: str) -> str:
        """Where charge point `cp_id` connects to."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{host}:{self.port}{self.path_prefix}{urllib.parse.quote(cp_id, safe='')}"

    def stop_listening(self) -> None:
        """Make the central system unreachable: drop every connection and refuse new ones.

        Returns once the charger has seen its connection end (on the emulated bench: settled).
        """
        self._stop_server(settle=True)

    def _stop_server(self, settle: bool) -> None:
        loop = self._require_loop()
        if self._server is None:
            return
        if settle:
            self._settle()  # what is already in flight lands first, the same way every run
        try:
            loop.run(self._shut_down(), timeout=CLOSE_TIMEOUT_S)
        except TimeoutError:
            raise InstrumentError(self.name, "could not close its own server and connections") from None
        self._server = None
        if settle:
            self._settle()

    def set_tls(self, context) -> None:
        """Serve from now on with another TLS context (e.g. a certificate the charger must refuse):
        listen again on the same port with it; every connection is dropped on the way."""
        self.ssl_context = context
        if self._server is not None:
            self.stop_listening()
        self.start_listening()

    def start_listening(self) -> None:
        """Listen again on the same port after stop_listening()."""
        self._require_loop()
        if self._server is None:
            self._listen()

    def _listen(self) -> None:
        port = self.port if self.port is not None else self._wanted_port
        last: BaseException | None = None
        for attempt in range(BIND_ATTEMPTS):
            try:
                self._loop.run(self._serve(port), timeout=10)
                return
            except OSError as exc:  # port taken (or still in TIME_WAIT after stop_listening)
                last = exc
                time.sleep(0.05 * (attempt + 1))  # real time: waiting for the OS, not the charger
        raise InstrumentError(self.name, f"cannot listen on {self.host}:{port}: {last}") from last

    async def _serve(self, port: int) -> None:
        self._server = await serve(
            self._handler,
            self.host,
            port,
            subprotocols=[ocppj.SUBPROTOCOL],
            select_subprotocol=_pick_subprotocol,
            process_response=self._hold_until_registered,
            process_request=self._check_credentials if self.passwords is not None else None,
            ssl=self.ssl_context,
            ping_interval=None,  # the rig never drops a charger on its own; OCPP has Heartbeat
            close_timeout=CLOSE_HANDSHAKE_S,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shut_down(self) -> None:
        for conn in self._live_connections():
            conn.link.close(1001, "central system going away")
        self._server.close(close_connections=False)
        await self._server.wait_closed()

    # -- connections -------------------------------------------------------------------------
    def connected(self, cp_id: str | None = None) -> bool:
        with self._lock:
            if cp_id is None:
                return any(c.link.open for c in self._connections.values())
            conn = self._connections.get(cp_id)
            return conn is not None and conn.link.open

    def connection_ids(self) -> list[str]:
        with self._lock:
            return sorted(cp for cp, c in self._connections.items() if c.link.open)

    def subprotocol(self, cp_id: str | None = None) -> str | None:
        """The subprotocol agreed with the charger (None: it offered no ocpp1.6)."""
        return self._connection(cp_id).subprotocol

    def wait_connected(self, timeout: float = 60.0, cp_id: str | None = None) -> str:
        """Wait (clock time) for a charger to connect; return its charge point id."""
        if not self._wait(lambda: self.connected(cp_id), timeout, "waiting for the charger to connect"):
            who = f"charge point {cp_id}" if cp_id else "no charge point"
            where = self.url_for(cp_id) if cp_id else f"ws://{self.host}:{self.port}{self.path_prefix}<id>"
            raise CentralSystemTimeout(f"{who} connected to {where} within {timeout:g} s")
        return cp_id if cp_id is not None else self.connection_ids()[0]

    def disconnect(self, cp_id: str | None = None) -> bool:
        """Close the charger's websocket from the rig's side; False if it was not connected."""
        loop = self._require_loop()
        try:
            conn = self._connection(cp_id)
        except AssertionError:
            return False
        self._settle()  # what is already in flight lands first, the same way every run
        try:
            loop.run(self._close_connection(conn), timeout=CLOSE_TIMEOUT_S)
        except TimeoutError:
            raise InstrumentError(self.name, f"could not close the connection of {conn.cp_id}") from None
        self._settle()
        return True

    def events(self) -> list[ConnectionEvent]:
        with self._lock:
            return list(self._events)

    async def _close_connection(self, conn: _Connection) -> None:
        conn.link.close(1000, "disconnected by the test rig")
        await conn.finished.wait()

    def _live_connections(self) -> list[_Connection]:
        with self._lock:
            return [c for c in self._connections.values() if c.link.open]

    def _connection(self, cp_id: str | None) -> _Connection:
        with self._lock:
            live = {cp: c for cp, c in self._connections.items() if c.link.open}
        if cp_id is None and len(live) == 1:
            return next(iter(live.values()))
        if cp_id is None:
            raise AssertionError(
                "no charge point connected" if not live else f"several charge points connected: {sorted(live)}"
            )
        if cp_id not in live:
            raise AssertionError(f"charge point {cp_id} not connected")
        return live[cp_id]

    def _check_credentials(self, connection, request):
        """OCPP security profile 2: HTTP Basic, user = charge point id, its own password; 401 otherwise."""
        cp_id = _charge_point_id(request.path)
        user, password = _basic_credentials(request.headers.get("Authorization", ""))
        ok = user == cp_id and password is not None and self.passwords.get(cp_id) == password
        with self._lock:
            self.auth_attempts.append(AuthAttempt(self.clock.now(), cp_id, user, password, ok))
            if not ok:
                self._events.append(ConnectionEvent(self.clock.now(), cp_id, "refused", "401 bad or no credentials"))
        if ok:
            return None
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "charge point credentials required\n")

    def _hold_until_registered(self, ws, request, response) -> None:
        """Count an accepted handshake as in flight until the handler has registered the charger.

        The client stops counting its connect once it has the 101 answer; without this the
        virtual clock could move before the central system knows the charger is there.
        """
        if response.status_code == 101:
            hold = _Hold(self.clock, f"ocpp-accept:{_charge_point_id(request.path)}")
            ws.rig_hold = hold
            # if the handler never runs (connection lost right after the handshake), end it anyway
            asyncio.get_running_loop().create_task(ws.wait_closed()).add_done_callback(lambda _t: hold.end())
        return None

    async def _handler(self, ws) -> None:
        cp_id = _charge_point_id(ws.request.path)
        client_port = ws.remote_address[1]
        link = Link(
            ws,
            self.clock,
            in_tag=ocppj.link_tag(cp_id, client_port, "cs"),
            out_tag=ocppj.link_tag(cp_id, client_port, "cp"),
        )
        conn = _Connection(cp_id, link, ws.subprotocol, ws.request.path)
        with self._lock:
            old = self._connections.get(cp_id)
            self._connections[cp_id] = conn
            self._events.append(ConnectionEvent(self.clock.now(), cp_id, "connected", f"subprotocol {ws.subprotocol}"))
        if old is not None:
            old.link.close(1000, "replaced by a new connection from the same charge point")
        getattr(ws, "rig_hold", _Hold.NONE).end()
        try:
            await link.run(lambda text: self._on_message(conn, text))
        finally:
            self._forget(conn, link)
            conn.finished.set()

    def _forget(self, conn: _Connection, link: Link) -> None:
        reason = link.close_reason()
        with self._lock:
            if self._connections.get(conn.cp_id) is conn:
                del self._connections[conn.cp_id]
            self._events.append(ConnectionEvent(self.clock.now(), conn.cp_id, "disconnected", reason))
        for awaited in conn.awaited.values():
            awaited.give_up(f"the connection ended ({reason})")
        conn.awaited.clear()
        link.release()

    # -- charge-point-initiated calls ------------------------------------------------------------
    def script(self, action: str, *replies: Reply) -> None:
        """Queue answers for the next calls of `action`; once they are used the default applies."""
        for reply in replies:
            if not isinstance(reply, Reply):
                raise TypeError(f"script({action!r}, ...) takes replies such as accept(), not {reply!r}")
            reply.check(action)
        with self._lock:
            self._scripts.setdefault(action, deque()).extend(replies)

    def clear_scripts(self, action: str | None = None) -> None:
        with self._lock:
            if action is None:
                self._scripts.clear()
            else:
                self._scripts.pop(action, None)

    def _on_message(self, conn: _Connection, text: str | bytes) -> None:
        """One websocket message from the charger (loop thread). An exception here is the central
        system's own failure: kept as a service fault, so the test that then misses an answer
        blames the rig, not the unit."""
        try:
            self._handle_message(conn, text)
        except Exception as exc:
            self.faults.add(self.name, f"could not handle a message from {conn.cp_id}: {describe(exc)}",
                            exc)

    @property
    def faults(self) -> ServiceFaults:
        return self._faults

    def _handle_message(self, conn: _Connection, text: str | bytes) -> None:
        try:
            frame = ocppj.decode(text)
        except ocppj.FrameError as bad:
            self._record(conn, IN, INVALID, None, None, f"{bad.code}: {bad.description}", text)
            if bad.answerable:
                self._send_error(conn, bad.unique_id, None, CallErrorReply(bad.code, bad.description))
            return
        if frame.kind == CALL:
            violation = ocppj.validate(CALL, frame.action, frame.payload)
            self._record(conn, IN, frame.kind_name, frame, frame.action, violation, text)
            self._next_reply(frame.action).respond(self, conn, frame)
        else:
            self._on_answer(conn, frame, text)

    def _next_reply(self, action: str) -> Reply:
        with self._lock:
            queue = self._scripts.get(action)
            if queue:
                return queue.popleft()
        return _Default()

    def _send_answer(self, conn: _Connection, call: Frame, answer: dict | CallErrorReply) -> None:
        if not conn.link.open:
            return  # the charger went away while the answer waited; nobody to tell
        if isinstance(answer, CallErrorReply):
            self._send_error(conn, call.unique_id, call.action, answer)
            return
        text = ocppj.encode_result(call.unique_id, answer)
        violation = ocppj.validate(CALL_RESULT, call.action, answer)
        frame = Frame(CALL_RESULT, call.unique_id, payload=answer)
        self._record(conn, OUT, frame.kind_name, frame, call.action, violation, text)
        conn.link.send(text)

    def _send_error(self, conn: _Connection, unique_id: str, action: str | None, error: CallErrorReply) -> None:
        text = ocppj.encode_error(unique_id, error.code, error.description, error.details)
        frame = Frame(CALL_ERROR, unique_id, error_code=error.code, error_description=error.description,
                      error_details=error.details)
        self._record(conn, OUT, frame.kind_name, frame, action, None, text)
        conn.link.send(text)

    def _current_time(self) -> str:
        if self.time_source is not None:
            return ocppj.iso_time(self.time_source())
        return ocppj.iso_now(self.clock)

    def _standard_answer(self, action: str, status: str, interval: int | None) -> dict:
        now = self._current_time()
        if action == "BootNotification":
            if interval is None:
                interval = self.heartbeat_s if status == "Accepted" else RETRY_INTERVAL_S
            return {"status": status, "currentTime": now, "interval": interval}
        if action == "Heartbeat":
            return {"currentTime": now}
        if action in ("Authorize", "StopTransaction"):
            return {"idTagInfo": {"status": status}}
        if action == "StartTransaction":
            return {"transactionId": next(self._transaction_ids), "idTagInfo": {"status": status}}
        if action in ("DataTransfer", "SignCertificate"):
            return {"status": status}
        return {}  # the notifications answer with an empty payload

    # -- threads and time --------------------------------------------------------------------
    def _require_loop(self) -> LoopThread:
        if self._loop is None:
            raise InstrumentError(self.name, "central system is not open")
        return self._loop

    def _in_loop(self, fn: Callable[[], None]) -> None:
        """Run `fn` in the loop thread; on the emulated bench the hand-over counts as in flight."""
        ocppj.hand_over(self._require_loop(), self.clock, fn, f"{self.name} loop call", self._handover_tag)

    def _settle(self) -> None:
        settle = getattr(self.clock, "settle", None)
        if settle is not None:
            settle()

    def _wait(self, predicate: Callable[[], bool], timeout: float, reason: str) -> bool:
        self._settle()
        if predicate():
            return True
        return self.clock.wait_until(predicate, timeout, self.poll_s, reason) is not None
