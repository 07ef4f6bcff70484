"""The emulated unit's Ethernet port: every packet it sends goes through `EmulatedLink`, which
routes the documented destinations to the rig's loopback services and writes both directions to
a pcap with the documented addresses and ports. A destination with no route is recorded and
dropped: no packet leaves loopback. `UnitUdpSocket` is the unit's UDP socket on that link."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import socket
import threading
from typing import Callable


from rig.core.aio import LoopThread
from rig.core.clock import VirtualClock
from rig.network import (BROADCAST, DHCP_CLIENT_PORT, DHCP_SERVER_PORT)
from rig.network.pcap import TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, PcapWriter, tcp_packet, udp_packet
from rig.network.udp import udp_tag

SEGMENT = 1460  # TCP payload per packet (Ethernet MSS)


def _is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


# ------------------------------------------------------------------------------------------------
# the link: documented destinations -> rig services on loopback, with a capture of every packet
# ------------------------------------------------------------------------------------------------

Route = tuple[str, str, int]  # (protocol, address, port) as the unit addresses it


class EmulatedLink:
    def __init__(self, clock: VirtualClock, loop: LoopThread, unit_address: str, pcap_path: str,
                 loopback_only: bool = True):
        # the emulated bench keeps every packet on loopback; `rig device serve` is a unit on a real
        # segment (a veth into a network namespace, or loopback addresses) and sets loopback_only=False
        self.loopback_only = loopback_only
        if loopback_only and not _is_loopback(unit_address):
            raise ValueError(f"the emulated unit must live on loopback, not {unit_address}")
        self.clock, self.loop, self.unit_address = clock, loop, unit_address
        self.routes: dict[Route, tuple[str, int]] = {}
        self._reverse: dict[tuple[str, str, int], tuple[str, int]] = {}
        self.pcap = PcapWriter(pcap_path)
        self._lock = threading.Lock()
        self._ident = itertools.count(1)
        self.dropped: list[Route] = []  # destinations the unit sent to that the rig does not serve

    def set_routes(self, routes: dict[Route, tuple[str, int]]) -> None:
        for (proto, address, port), target in routes.items():
            if self.loopback_only and not _is_loopback(target[0]):
                raise ValueError(f"route {proto}/{address}:{port} -> {target}: the emulated link only reaches loopback")
        self.routes = dict(routes)
        self._reverse = {(proto, *target): (address, port) for (proto, address, port), target in routes.items()
                         if address != BROADCAST}

    def record(self, packet: bytes) -> None:
        with self._lock:
            self.pcap.write(self.clock.utc_now(), packet)

    def ident(self) -> int:
        return next(self._ident)

    def documented(self, proto: str, real: tuple[str, int]) -> tuple[str, int]:
        """The documented (address, port) behind a real loopback peer."""
        return self._reverse.get((proto, real[0], real[1]), real)

    def close(self) -> None:
        self.pcap.close()

    # -- UDP ---------------------------------------------------------------------------------
    def udp_socket(self, deliver: Callable[[bytes, tuple[str, int]], None]) -> "UnitUdpSocket":
        return UnitUdpSocket(self, deliver)

    # -- TCP ---------------------------------------------------------------------------------
    async def open_tcp(self, address: str, port: int) -> tuple[socket.socket, int]:
        """Connect to documented (address, port); the unit's end of the connection (a socket pair
        end the link relays and records) and the connection's TCP source port. Loop thread only."""
        route = self.routes.get(("tcp", address, port))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind((self.unit_address, 0))
        sport = tcp.getsockname()[1]
        conn = _TcpRecord(self, sport, address, port)
        conn.send(TCP_SYN, b"")
        if route is None:
            tcp.close()
            self.dropped.append(("tcp", address, port))
            raise ConnectionRefusedError(f"no route to {address}:{port} on the bench network")
        tcp.setblocking(False)
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # relay each write now: no Nagle wait
        try:
            await asyncio.get_running_loop().sock_connect(tcp, route)
        except OSError:
            tcp.close()
            raise
        conn.receive(TCP_SYN | TCP_ACK, b"")
        conn.send(TCP_ACK, b"")
        unit_end, link_end = socket.socketpair()
        link_end.setblocking(False)
        unit_end.setblocking(False)
        _relay(link_end, tcp, conn)
        return unit_end, sport


class _TcpRecord:
    """Sequence numbers and capture of one TCP connection, from the unit's side."""

    def __init__(self, link: EmulatedLink, sport: int, address: str, port: int):
        self.link, self.sport, self.address, self.port = link, sport, address, port
        self.seq, self.ack = 1000, 5000

    def send(self, flags: int, payload: bytes) -> None:
        chunks = [payload[i:i + SEGMENT] for i in range(0, len(payload), SEGMENT)] or [b""]
        for chunk in chunks:
            self.link.record(tcp_packet(self.link.unit_address, self.sport, self.address, self.port, flags, self.seq,
                                        self.ack, chunk, self.link.ident()))
            self.seq += len(chunk) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)

    def receive(self, flags: int, payload: bytes) -> None:
        chunks = [payload[i:i + SEGMENT] for i in range(0, len(payload), SEGMENT)] or [b""]
        for chunk in chunks:
            self.link.record(tcp_packet(self.address, self.port, self.link.unit_address, self.sport, flags, self.ack,
                                        self.seq, chunk, self.link.ident()))
            self.ack += len(chunk) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
        if payload or flags & TCP_FIN:
            self.send(TCP_ACK, b"")  # the unit acknowledges what it received


def _relay(unit_side: socket.socket, tcp: socket.socket, conn: _TcpRecord) -> None:
    """Copy both ways between the unit's socket pair end and the real TCP connection, recording."""
    loop = asyncio.get_running_loop()
    done = {"out": False, "in": False}

    def finish(direction: str) -> None:
        done[direction] = True
        if all(done.values()):
            unit_side.close()
            tcp.close()

    async def pump(src: socket.socket, dst: socket.socket, record, direction: str) -> None:
        """Copy one direction of the connection, recording each segment in the capture."""
        try:
            while data := await loop.sock_recv(src, 65536):
                record(TCP_ACK | TCP_PSH, data)
                await loop.sock_sendall(dst, data)
            record(TCP_FIN | TCP_ACK, b"")
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            finish(direction)

    def outbound():  # unit -> server
        return pump(unit_side, tcp, conn.send, "out")

    def inbound():  # server -> unit
        return pump(tcp, unit_side, conn.receive, "in")

    loop.create_task(outbound())
    loop.create_task(inbound())


class UnitUdpSocket:
    """One UDP socket of the unit on its loopback address; datagrams in are delivered on the clock."""

    def __init__(self, link: EmulatedLink, deliver: Callable[[bytes, tuple[str, int]], None]):
        self.link, self.deliver = link, deliver
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((link.unit_address, 0))
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()[:2]
        self.closed = False
        link.loop.call(self._watch)

    def _watch(self) -> None:
        if not self.closed:
            self.link.loop.loop.add_reader(self.sock, self._readable)

    def sendto(self, payload: bytes, address: str, port: int, src: tuple[str, int] | None = None) -> None:
        """Send to documented (address, port); `src` overrides the recorded source (DHCP: 0.0.0.0:68)."""
        src_address, sport = src or self.address
        self.link.record(udp_packet(src_address, sport, address, port, payload, self.link.ident()))
        route = self.link.routes.get(("udp", address, port))
        if route is None:
            self.link.dropped.append(("udp", address, port))
            return  # nothing on the bench network answers there: recorded, never sent
        self.link.clock.io_begin(udp_tag(route))
        try:
            self.sock.sendto(payload, route)
        except OSError:
            self.link.clock.io_end(udp_tag(route))

    def _readable(self) -> None:
        try:
            while True:
                try:
                    data, peer = self.sock.recvfrom(65536)
                except (BlockingIOError, InterruptedError):
                    return
                try:
                    src = self.link.documented("udp", peer[:2])
                    dst_port = DHCP_CLIENT_PORT if src[1] == DHCP_SERVER_PORT else self.address[1]
                    self.link.record(udp_packet(src[0], src[1], self.link.unit_address, dst_port, data,
                                                self.link.ident()))
                    self.link.clock.call_later(0.0, lambda d=data, s=src: self.deliver(d, s))
                finally:
                    self.link.clock.io_end(udp_tag(self.address))
        except OSError:
            return

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True

        def shut():
            try:
                self.link.loop.loop.remove_reader(self.sock)
            except (ValueError, OSError):
                pass
            self.sock.close()
            self.link.clock.io_release(udp_tag(self.address))

        self.link.loop.call(shut)
