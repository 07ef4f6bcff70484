"""A UDP service of the rig (DHCP, DNS, NTP): one socket, one answer per datagram, settle accounting.

Settle accounting for datagrams on the emulated bench (see rig/core/clock.py): whoever sends a
datagram counts it toward the receiving socket's address (`io_begin(udp_tag(dest))`); the
receiver ends it once it has handled the datagram, answered or deliberately dropped
(`io_end(udp_tag(own address))`). So the virtual clock never moves while a query or its answer
is on its way, and a silent server lets time run on to the unit's own timeout. On a real bench
the clock's accounting is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass

from rig.core.aio import LoopThread
from rig.core.clock import Clock
from rig.core.errors import InstrumentError, describe

log = logging.getLogger(__name__)

ANSWER, SILENT, REFUSE = "answer", "silent", "refuse"


def udp_tag(address: tuple[str, int]) -> str:
    """Settle-accounting tag of datagrams on their way to `address`."""
    return f"udp>{address[0]}:{address[1]}"


@dataclass(frozen=True)
class Query:
    """One datagram a service received, as tests see it."""

    time: float  # clock time
    peer: tuple[str, int]
    what: str  # e.g. "DISCOVER", "A ocpp.ampnexus.net", "SNTP v4 client"
    answered: bool


class UdpService:
    """Base of the rig's UDP services. Subclasses implement `answer(data, peer) -> (what, reply)`.

    Config keys: `host` (bind address), `port` (0 = any free, the emulated bench), `mode`.
    """

    modes: tuple[str, ...] = (ANSWER, SILENT)
    default_port = 0

    def __init__(self, name: str, config: dict, clock: Clock, loop: LoopThread | None = None):
        self.name, self.clock = name, clock
        self.host = str(config.get("host") or "127.0.0.1")
        port = config.get("port", self.default_port)
        self._wanted_port = 0 if port in (None, "", "auto") else int(port)
        self.mode = str(config.get("mode", ANSWER))
        self._check_mode(self.mode)
        self._loop, self._own_loop = loop, loop is None
        self._transport: asyncio.DatagramTransport | None = None
        self.address: tuple[str, int] | None = None
        self._queries: list[Query] = []
        self._lock = threading.Lock()

    # -- life cycle ------------------------------------------------------------------------
    def open(self) -> "UdpService":
        if self._transport is not None:
            return self
        if self._loop is None:
            self._loop = LoopThread(f"{self.name}-udp").start()
        try:
            self._loop.run(self._bind(), timeout=10)
        except OSError as exc:
            raise InstrumentError(self.name, f"cannot listen on udp {self.host}:{self._wanted_port}: {exc}") from exc
        return self

    async def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.host, self._wanted_port), allow_broadcast=self.broadcasts())
        self.address = self._transport.get_extra_info("sockname")[:2]

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None and self._loop is not None:
            self._loop.call(transport.close)
            if self.address is not None:
                self.clock.io_release(udp_tag(self.address))
        if self._own_loop and self._loop is not None:
            self._loop.stop()
            self._loop = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- behaviour a test can set ---------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        self._check_mode(mode)
        self.mode = mode

    def _check_mode(self, mode: str) -> None:
        if mode not in self.modes:
            raise ValueError(f"{self.name}: mode {mode!r} is not one of {', '.join(self.modes)}")

    def queries(self, since: float | None = None) -> list[Query]:
        with self._lock:
            return [q for q in self._queries if since is None or q.time >= since]

    def _fault(self, what: str, exc: BaseException) -> None:
        if self._loop is not None:
            self._loop.faults.add(self.name, what, exc)

    # -- subclass interface ----------------------------------------------------------------
    def broadcasts(self) -> bool:
        return False

    def answer(self, data: bytes, peer: tuple[str, int]) -> tuple[str, bytes | None]:
        raise TypeError(f"{type(self).__name__} must define answer()")

    def reply_address(self, peer: tuple[str, int], data: bytes) -> tuple[str, int]:
        return peer

    # -- one datagram ----------------------------------------------------------------------
    def _received(self, data: bytes, peer: tuple[str, int]) -> None:
        try:
            try:
                what, reply = self.answer(data, peer)
            except (ValueError, IndexError) as exc:  # not our protocol: a real server drops it too
                what, reply = f"malformed ({exc})", None
            except Exception as exc:  # our own bug: the unit got no answer, and that is the rig's fault
                what, reply = f"failed ({type(exc).__name__})", None
                self._fault(f"could not answer {peer[0]}:{peer[1]}: {describe(exc)}", exc)
            if self.mode == SILENT:
                reply = None
            with self._lock:
                self._queries.append(Query(self.clock.now(), peer, what, reply is not None))
            if reply is not None and self._transport is not None:
                dest = self.reply_address(peer, data)
                self.clock.io_begin(udp_tag(dest))
                self._transport.sendto(reply, dest)
        finally:
            self.clock.io_end(udp_tag(self.address))


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, service: UdpService):
        self.service = service

    def datagram_received(self, data: bytes, addr) -> None:
        self.service._received(data, addr[:2])

    def error_received(self, exc: Exception) -> None:  # ICMP errors on a real network: nothing to do
        log.debug("%s: %s", self.service.name, exc)
