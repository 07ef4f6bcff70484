"""Traffic capture: what the unit sends, from a libpcap file, and which ports it listens on.

On a real bench the file is written by tcpdump on the rig's interface toward the unit, e.g.
`tcpdump -i enp3s0 -U -w /var/tmp/bench3-unit.pcap host 10.20.0.10` (see docs/network.md);
on the emulated bench the emulated link writes it. Either way this driver reads it:

* `traffic(since, until)`: per destination (protocol, address, port) the packets and bytes the
  unit sent, plus the totals both ways (bytes = IP total length, headers included, as a data
  plan counts them);
* `listening_ports()`: a TCP connect scan of every port of the unit's address.

Config keys: `file` (the pcap), `unit_address`, `scan_control_address` (optional: an address
with no unit behind it; a port open there too belongs to the rig machine's own wildcard
listeners, not to the unit: the emulated bench's units live on the rig machine's loopback),
`scan_timeout_s` (per port, default 0.5), `scan_concurrency` (default 512).
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from rig.core.clock import Clock
from rig.core.errors import InstrumentError
from rig.network.pcap import Packet, read_pcap

Destination = tuple[str, str, int]  # (protocol, address, port)


@dataclass
class Traffic:
    """What the capture saw between two instants."""

    unit_address: str
    packets: list[Packet] = field(default_factory=list)

    def sent(self) -> list[Packet]:
        return [p for p in self.packets if p.src in (self.unit_address, "0.0.0.0")]

    def received(self) -> list[Packet]:
        return [p for p in self.packets if p.dst == self.unit_address]

    def per_destination(self) -> dict[Destination, tuple[int, int]]:
        """(protocol, address, port) -> (packets, bytes) the unit sent there."""
        counts: dict[Destination, list[int]] = defaultdict(lambda: [0, 0])
        for p in self.sent():
            entry = counts[(p.proto, p.dst, p.dport)]
            entry[0] += 1
            entry[1] += p.length
        return {d: (n, b) for d, (n, b) in sorted(counts.items())}

    @property
    def sent_bytes(self) -> int:
        return sum(p.length for p in self.sent())

    @property
    def received_bytes(self) -> int:
        return sum(p.length for p in self.received())

    @property
    def total_bytes(self) -> int:
        return self.sent_bytes + self.received_bytes

    def describe(self) -> str:
        rows = [f"{proto}/{addr}:{port}: {n} packets, {b} bytes" for (proto, addr, port), (n, b)
                in self.per_destination().items()]
        return "; ".join(rows) or "nothing sent"


class CaptureApi(Protocol):
    def open(self) -> "CaptureApi": ...
    def close(self) -> None: ...
    def mark(self) -> float: ...
    def traffic(self, since: float | None = None, until: float | None = None) -> Traffic: ...
    def listening_ports(self, ports: range = range(1, 65536)) -> list[int]: ...


class Capture:
    def __init__(self, name: str, config: dict, clock: Clock):
        self.name, self.clock = name, clock
        self.file = Path(config["file"])
        self.unit_address = str(config["unit_address"])
        self.control_address = config.get("scan_control_address") or None
        self.scan_timeout_s = float(config.get("scan_timeout_s", 0.5))
        self.scan_concurrency = int(config.get("scan_concurrency", 512))
        self._open = False

    def open(self) -> "Capture":
        if not self.file.exists():
            raise InstrumentError(self.name, f"no capture file {self.file} (is tcpdump running? see docs/network.md)")
        self._open = True
        return self

    def close(self) -> None:
        self._open = False

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- traffic ---------------------------------------------------------------------------
    def mark(self) -> float:
        """Now, as a capture timestamp (seconds since 1970): pass it as `since=` later."""
        return self.clock.utc_now().timestamp()

    def traffic(self, since: float | None = None, until: float | None = None) -> Traffic:
        try:
            packets = read_pcap(self.file)
        except (OSError, ValueError, IndexError) as exc:
            raise InstrumentError(self.name, f"cannot read capture {self.file}: {exc}") from exc
        chosen = [p for p in packets if (since is None or p.time >= since) and (until is None or p.time <= until)]
        return Traffic(self.unit_address, chosen)

    # -- listening ports -------------------------------------------------------------------
    def listening_ports(self, ports: range = range(1, 65536)) -> list[int]:
        """TCP ports that accept a connection on the unit's address (and not on the control address)."""
        open_ports = self._scan(self.unit_address, ports)
        if self.control_address and open_ports:
            open_ports -= self._scan(self.control_address, sorted(open_ports))
        return sorted(open_ports)

    def _scan(self, address: str, ports) -> set[int]:
        try:
            return connect_scan(address, list(ports), self.scan_timeout_s, self.scan_concurrency)
        except OSError as exc:
            raise InstrumentError(self.name, f"port scan of {address} failed: {exc}") from exc


def connect_scan(address: str, ports: list[int], timeout_s: float, batch: int) -> set[int]:
    """TCP connect scan, `batch` non-blocking connects at a time: a refused port answers at once,
    a filtered one costs `timeout_s` per batch, not per port."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    found: set[int] = set()
    for start in range(0, len(ports), batch):
        pending: dict[socket.socket, int] = {}
        with selectors.DefaultSelector() as sel:
            try:
                for port in ports[start:start + batch]:
                    sock = socket.socket(family, socket.SOCK_STREAM)
                    sock.setblocking(False)
                    code = sock.connect_ex((address, port))
                    if code == 0:
                        found.add(port)
                        sock.close()
                    elif code in (errno.EINPROGRESS, errno.EWOULDBLOCK):
                        pending[sock] = port
                        sel.register(sock, selectors.EVENT_WRITE)
                    else:
                        sock.close()
                deadline = time.monotonic() + timeout_s  # real time: a property of the network, not the unit
                while pending and (left := deadline - time.monotonic()) > 0:
                    for key, _ in sel.select(left):
                        sock = key.fileobj
                        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                            found.add(pending[sock])
                        sel.unregister(sock)
                        sock.close()
                        del pending[sock]
            finally:
                for sock in pending:
                    sock.close()
    return found
