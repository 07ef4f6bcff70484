"""DNS (RFC 1035 wire format): A records for the documented host names, pointing at rig addresses.

Each server can `answer`, stay `silent` (drop every query, as a dead server does), `refuse`
(RCODE 5, REFUSED) or know the name but hold `no-address` for it (NOERROR with no answer, RFC 2308
"NODATA", as a resolver with a stale or IPv6-only zone does), or answer only `stray`: with the ID
of another query and an address nothing serves, as a late or forged reply would (RFC 5452 9.1: a
resolver accepts a response only if its ID matches the query's), so a test can fail them one at a
time and watch the unit's resolver order (NET-02). A name the rig does not know is answered NXDOMAIN; other record types get an
empty NOERROR answer.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from rig.network import DNS_PORT
from rig.network.udp import ANSWER, REFUSE, SILENT, UdpService

NO_ADDRESS = "no-address"
STRAY = "stray"
STRAY_ADDRESS = "192.0.2.66"  # TEST-NET-1 (RFC 5737): never a rig host
TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
NOERROR, FORMERR, NXDOMAIN, REFUSED = 0, 1, 3, 5
_HEADER = struct.Struct("!HHHHHH")
QR, RD, RA, AA = 0x8000, 0x0100, 0x0080, 0x0400


@dataclass(frozen=True)
class DnsMessage:
    id: int
    flags: int
    name: str  # the (single) question's name, lower case, without the final dot
    qtype: int
    answers: tuple[str, ...] = ()  # A record addresses
    ttl: int = 300

    @property
    def is_response(self) -> bool:
        return bool(self.flags & QR)

    @property
    def rcode(self) -> int:
        return self.flags & 0x000F

    def encode(self) -> bytes:
        question = encode_name(self.name) + struct.pack("!HH", self.qtype, CLASS_IN)
        body = bytearray(_HEADER.pack(self.id, self.flags, 1, len(self.answers), 0, 0) + question)
        for address in self.answers:  # name: a pointer to the question's name at offset 12
            body += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, self.ttl, 4) + ipaddress.IPv4Address(address).packed
        return bytes(body)

    @classmethod
    def decode(cls, data: bytes) -> "DnsMessage":
        """The message in `data`; ValueError (never struct.error) for anything truncated or malformed."""
        try:
            return cls._decode(data)
        except (struct.error, IndexError) as exc:
            raise ValueError(f"truncated ({len(data)} bytes): {exc}") from None

    @classmethod
    def _decode(cls, data: bytes) -> "DnsMessage":
        if len(data) < _HEADER.size:
            raise ValueError("shorter than a DNS header")
        ident, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(data)
        if qdcount != 1:
            raise ValueError(f"{qdcount} questions (expected 1)")
        name, offset = decode_name(data, _HEADER.size)
        qtype, _qclass = struct.unpack_from("!HH", data, offset)
        offset += 4
        answers, ttl = [], 300
        for _ in range(ancount):
            _name, offset = decode_name(data, offset)
            rtype, _rclass, ttl, rdlength = struct.unpack_from("!HHIH", data, offset)
            offset += 10
            if rtype == TYPE_A and rdlength == 4:
                answers.append(str(ipaddress.IPv4Address(data[offset:offset + 4])))
            offset += rdlength
        return cls(ident, flags, name, qtype, tuple(answers), ttl)


def encode_name(name: str) -> bytes:
    out = bytearray()
    for label in name.rstrip(".").split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label {label!r} in {name!r}")
        out += bytes([len(raw)]) + raw
    return bytes(out + b"\0")


def decode_name(data: bytes, offset: int, depth: int = 0) -> tuple[str, int]:
    """The name at `offset` (following compression pointers) and the offset after it."""
    labels = []
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            if depth > 10:
                raise ValueError("DNS name compression loop")
            pointer = struct.unpack_from("!H", data, offset)[0] & 0x3FFF
            rest, _ = decode_name(data, pointer, depth + 1)
            labels.append(rest)
            return ".".join(l for l in labels if l).lower(), offset + 2
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), offset
        labels.append(data[offset:offset + length].decode("ascii"))
        offset += length


def query(ident: int, name: str, qtype: int = TYPE_A) -> bytes:
    """A recursive-desired query for `name`, as a stub resolver sends it."""
    return DnsMessage(ident, RD, name.lower(), qtype).encode()


class DnsServer(UdpService):
    """Config: host, port (53 on a real bench), mode (answer | silent | refuse | no-address | stray),
    records {host name: IPv4 address}, ttl_s."""

    modes = (ANSWER, SILENT, REFUSE, NO_ADDRESS, STRAY)
    default_port = DNS_PORT

    def __init__(self, name, config, clock, loop=None):
        super().__init__(name, config, clock, loop)
        self.records = {k.lower().rstrip("."): str(v) for k, v in dict(config.get("records", {})).items()}
        self.ttl_s = int(config.get("ttl_s", 300))

    def answer(self, data: bytes, peer) -> tuple[str, bytes | None]:
        q = DnsMessage.decode(data)
        if q.is_response:
            return "response (ignored)", None
        what = f"{'A' if q.qtype == TYPE_A else q.qtype} {q.name}"
        flags = QR | RA | (q.flags & RD)
        if self.mode == REFUSE:
            return what, DnsMessage(q.id, flags | REFUSED, q.name, q.qtype).encode()
        if self.mode == STRAY:  # an answer to some other query: the unit must not take its address
            return what, DnsMessage((q.id + 1) & 0xFFFF, flags | AA, q.name, q.qtype, (STRAY_ADDRESS,), self.ttl_s).encode()
        address = self.records.get(q.name)
        if address is None:
            return what, DnsMessage(q.id, flags | NXDOMAIN, q.name, q.qtype).encode()
        answers = (address,) if q.qtype == TYPE_A and self.mode != NO_ADDRESS else ()
        return what, DnsMessage(q.id, flags | AA, q.name, q.qtype, answers, self.ttl_s).encode()
