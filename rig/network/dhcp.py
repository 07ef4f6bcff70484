"""DHCP (RFC 2131 message format, RFC 2132 options): the rig hands the unit its address and DNS servers.

The document says the unit uses DHCP (UDP 68) for its address and its DNS servers; option 6
carries the primary and secondary DNS server in priority order. One lease (one unit per bench).
On a real bench the server binds 0.0.0.0:67 on the bench interface and answers a client that
has no address yet by broadcast to port 68; on the emulated bench the link delivers the unit's
broadcast to this server on loopback and the answer goes back to the sending socket.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from rig.network import DHCP_CLIENT_PORT, DHCP_SERVER_PORT
from rig.network.udp import ANSWER, SILENT, UdpService

STRAY = "stray"
REFUSE = "refuse"

BOOTREQUEST, BOOTREPLY = 1, 2
MAGIC_COOKIE = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_NAMES = {DISCOVER: "DISCOVER", OFFER: "OFFER", REQUEST: "REQUEST", DECLINE: "DECLINE", ACK: "ACK",
                 NAK: "NAK", RELEASE: "RELEASE", INFORM: "INFORM"}
OPT_PAD, OPT_SUBNET, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME = 0, 1, 3, 6, 12
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_MESSAGE_TYPE, OPT_SERVER_ID, OPT_PARAMS, OPT_END = 50, 51, 53, 54, 55, 255
_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # 236 bytes before the magic cookie
BROADCAST_FLAG = 0x8000


def ip_bytes(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


def ip_text(raw: bytes) -> str:
    return str(ipaddress.IPv4Address(raw))


@dataclass
class DhcpMessage:
    op: int
    xid: int
    chaddr: bytes  # client hardware address (6 bytes of MAC)
    message_type: int
    ciaddr: str = "0.0.0.0"
    yiaddr: str = "0.0.0.0"
    siaddr: str = "0.0.0.0"
    flags: int = 0
    options: dict[int, bytes] = field(default_factory=dict)  # everything but 53 and the end marker

    @property
    def type_name(self) -> str:
        return MESSAGE_NAMES.get(self.message_type, f"type {self.message_type}")

    def encode(self) -> bytes:
        fixed = _FIXED.pack(self.op, 1, 6, 0, self.xid, 0, self.flags, ip_bytes(self.ciaddr), ip_bytes(self.yiaddr),
                            ip_bytes(self.siaddr), b"\0" * 4, self.chaddr.ljust(16, b"\0"), b"", b"")
        opts = bytearray([OPT_MESSAGE_TYPE, 1, self.message_type])
        for code, value in self.options.items():
            opts += bytes([code, len(value)]) + value
        opts.append(OPT_END)
        return fixed + MAGIC_COOKIE + bytes(opts)

    @classmethod
    def decode(cls, data: bytes) -> "DhcpMessage":
        if len(data) < _FIXED.size + 4 or data[_FIXED.size:_FIXED.size + 4] != MAGIC_COOKIE:
            raise ValueError("not a DHCP message (short or no magic cookie)")
        op, _htype, hlen, _hops, xid, _secs, flags, ci, yi, si, _gi, chaddr, _sname, _file = _FIXED.unpack_from(data)
        options = _parse_options(data[_FIXED.size + 4:])
        if OPT_MESSAGE_TYPE not in options:
            raise ValueError("BOOTP without DHCP message type (option 53)")
        message_type = options.pop(OPT_MESSAGE_TYPE)[0]
        return cls(op, xid, chaddr[:hlen], message_type, ip_text(ci), ip_text(yi), ip_text(si), flags, options)

    # typed views of the options a client needs
    def addresses(self, code: int) -> list[str]:
        raw = self.options.get(code, b"")
        return [ip_text(raw[i:i + 4]) for i in range(0, len(raw) - len(raw) % 4, 4)]

    def seconds(self, code: int) -> int | None:
        raw = self.options.get(code)
        return struct.unpack("!I", raw)[0] if raw and len(raw) == 4 else None


def _parse_options(raw: bytes) -> dict[int, bytes]:
    options: dict[int, bytes] = {}
    i = 0
    while i < len(raw):
        code = raw[i]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= len(raw) or i + 2 + raw[i + 1] > len(raw):
            raise ValueError(f"option {code} runs past the end of the message")
        length = raw[i + 1]
        options[code] = options.get(code, b"") + raw[i + 2:i + 2 + length]  # RFC 3396 concatenation
        i += 2 + length
    return options


DEFAULT_LEASE_S = 86400  # a day, unless the rig file sets [network] dhcp_lease_s


class DhcpServer(UdpService):
    """One-lease DHCP server. Config: host, port (67 on a real bench), mode (answer | silent | stray:
    every reply carries another transaction's xid and offers another address, as replies to another
    client on the segment would; RFC 2131 4.4.1: a client takes only replies with its own xid |
    refuse: offers the lease but answers every REQUEST with a NAK, as a server whose address was
    taken meanwhile would; RFC 2131 3.1: the client starts again with DISCOVER),
    lease_address, netmask, router, dns (list: primary, secondary), lease_s, server_id (our address
    as the unit sees it; default host)."""

    default_port = DHCP_SERVER_PORT

    modes = (ANSWER, SILENT, STRAY, REFUSE)

    def __init__(self, name, config, clock, loop=None):
        super().__init__(name, config, clock, loop)
        self.lease_address = str(config["lease_address"])
        # stray: replies that answer another client's transaction (another xid), offering another address
        self.stray_address = str(ipaddress.IPv4Address(self.lease_address) + 100)
        self.netmask = str(config.get("netmask", "255.255.255.0"))
        self.router = str(config.get("router") or config.get("server_id") or self.host)
        self.dns: list[str] = [str(a) for a in config.get("dns", [])]
        self.configured_lease_s = int(config.get("lease_s", DEFAULT_LEASE_S))
        self.lease_s = self.configured_lease_s  # a test may shorten it; the services' restore() sets it back
        self.server_id = str(config.get("server_id") or self.host)
        self.leased_to: bytes | None = None  # chaddr of the client holding the lease

    def broadcasts(self) -> bool:
        return True

    def answer(self, data: bytes, peer) -> tuple[str, bytes | None]:
        msg = DhcpMessage.decode(data)
        if msg.op != BOOTREQUEST:
            return f"{msg.type_name} (not a request)", None
        if msg.message_type == DISCOVER:
            return "DISCOVER", self._reply(msg, OFFER).encode()
        if msg.message_type == REQUEST:
            wanted = msg.addresses(OPT_REQUESTED_IP) or [msg.ciaddr]
            server = msg.addresses(OPT_SERVER_ID)
            if server and server[0] != self.server_id:
                return "REQUEST for another server", None
            refused = self.mode == REFUSE or wanted[0] != (self.stray_address if self.mode == STRAY else self.lease_address)
            if refused:
                return f"REQUEST {wanted[0]}", self._reply(msg, NAK).encode()
            self.leased_to = msg.chaddr
            return f"REQUEST {wanted[0]}", self._reply(msg, ACK).encode()
        return msg.type_name, None

    def _reply(self, request: DhcpMessage, kind: int) -> DhcpMessage:
        options = {OPT_SERVER_ID: ip_bytes(self.server_id)}
        yiaddr, stray = "0.0.0.0", self.mode == STRAY
        if kind != NAK:
            yiaddr = self.stray_address if stray else self.lease_address
            options.update({
                OPT_LEASE_TIME: struct.pack("!I", self.lease_s),
                OPT_SUBNET: ip_bytes(self.netmask),
                OPT_ROUTER: ip_bytes(self.router),
            })
            if self.dns:
                options[OPT_DNS] = b"".join(ip_bytes(a) for a in self.dns)
        xid = (request.xid + 1) & 0xFFFFFFFF if stray else request.xid  # stray: RFC 2131 4.4.1, not the client's
        return DhcpMessage(BOOTREPLY, xid, request.chaddr, kind, yiaddr=yiaddr, siaddr=self.server_id,
                           flags=request.flags, options=options)

    def reply_address(self, peer, data) -> tuple[str, int]:
        # RFC 2131 4.1: a client without an address (source 0.0.0.0) is answered by broadcast
        if peer[0] == "0.0.0.0":
            return "255.255.255.255", DHCP_CLIENT_PORT
        return peer
