"""libpcap files: the emulated link writes them, the capture driver reads them (and tcpdump's).

Format: the classic libpcap file (24-byte global header, 16-byte record headers), microsecond
or nanosecond magic, either byte order. Link types read: Ethernet (1, as `tcpdump -i eth1`
writes), raw IP (101 and 228, which the emulated link writes), Linux cooked v1 (113) and v2
(276, `tcpdump -i any`). Byte counts use the IP header's total length, so a capture taken with
a short snap length (`tcpdump -s 128`) still counts every byte.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Iterator

MAGIC_US, MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
LINKTYPE_ETHERNET, LINKTYPE_RAW, LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_LINUX_SLL2 = 1, 101, 113, 228, 276
PROTO_TCP, PROTO_UDP = 6, 17
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
SNAPLEN = 65535


@dataclass(frozen=True)
class Packet:
    time: float  # seconds since 1970 (UTC)
    proto: str  # "udp" | "tcp" | "icmp" | "ipv4-<n>" | "ipv6-<n>" | "arp" | "other" | "truncated"
    src: str
    sport: int
    dst: str
    dport: int
    length: int  # bytes on the wire above the link layer (IP total length)
    payload: int  # bytes of UDP/TCP payload
    tcp_flags: int = 0


# -- writing ---------------------------------------------------------------------------------


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(src: str, dst: str, proto: int, body: bytes, ident: int) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), ident & 0xFFFF, 0x4000, 64, proto, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return header[:10] + struct.pack("!H", _checksum(header)) + header[12:] + body


def udp_packet(src: str, sport: int, dst: str, dport: int, payload: bytes, ident: int = 0) -> bytes:
    """An IPv4/UDP packet (UDP checksum 0 = none, allowed over IPv4)."""
    return _ipv4(src, dst, PROTO_UDP, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, ident)


def tcp_packet(src: str, sport: int, dst: str, dport: int, flags: int, seq: int, ack: int, payload: bytes = b"",
               ident: int = 0) -> bytes:
    """An IPv4/TCP packet with a 20-byte TCP header (no options)."""
    header = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    return _ipv4(src, dst, PROTO_TCP, header + payload, ident)


class PcapWriter:
    """Appends raw-IPv4 packets to a libpcap file (link type 101), flushing after each record."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file: BinaryIO = self.path.open("wb")
        self._file.write(struct.pack("<IHHiIII", MAGIC_US, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW))
        self._file.flush()

    def write(self, when: datetime, packet: bytes) -> None:
        stamp = when.timestamp()
        seconds = int(stamp)
        micros = round((stamp - seconds) * 1_000_000)
        if micros >= 1_000_000:
            seconds, micros = seconds + 1, micros - 1_000_000
        self._file.write(struct.pack("<IIII", seconds, micros, len(packet), len(packet)) + packet)
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


# -- reading ---------------------------------------------------------------------------------


def read_pcap(path: str | Path) -> list[Packet]:
    with Path(path).open("rb") as f:
        return list(iter_pcap(f))


def iter_pcap(f: BinaryIO) -> Iterator[Packet]:
    header = f.read(24)
    if len(header) < 24:
        return
    for order in ("<", ">"):
        magic = struct.unpack(order + "I", header[:4])[0]
        if magic in (MAGIC_US, MAGIC_NS):
            break
    else:
        raise ValueError(f"not a libpcap file (magic {header[:4].hex()}); pcapng? convert with `editcap -F pcap`")
    divisor = 1e9 if magic == MAGIC_NS else 1e6
    linktype = struct.unpack(order + "I", header[20:24])[0] & 0x0FFFFFFF
    while len(record := f.read(16)) == 16:
        seconds, fraction, incl, _orig = struct.unpack(order + "IIII", record)
        data = f.read(incl)
        if len(data) < incl:
            return  # the writer is still writing this record
        yield _decode(seconds + fraction / divisor, linktype, data)


def _network_layer(linktype: int, data: bytes) -> tuple[int, bytes]:
    """(ethertype, bytes from the IP header on) for the link types we read."""
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4):
        return (0x86DD if data and data[0] >> 4 == 6 else 0x0800), data
    if linktype == LINKTYPE_ETHERNET:
        ethertype, offset = struct.unpack_from("!H", data, 12)[0], 14
        while ethertype in (0x8100, 0x88A8):  # VLAN tags
            ethertype, offset = struct.unpack_from("!H", data, offset + 2)[0], offset + 4
        return ethertype, data[offset:]
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.unpack_from("!H", data, 14)[0], data[16:]
    if linktype == LINKTYPE_LINUX_SLL2:
        return struct.unpack_from("!H", data, 0)[0], data[20:]
    raise ValueError(f"link type {linktype} not supported (use Ethernet, raw IP or Linux cooked capture)")


def _decode(when: float, linktype: int, data: bytes) -> Packet:
    """One captured frame; a frame cut short (snap length, a damaged capture) is a "truncated"
    packet, never a struct.error escaping to the caller."""
    try:
        return _decode_frame(when, linktype, data)
    except struct.error:
        return Packet(when, "truncated", "", 0, "", 0, len(data), 0)


def _decode_frame(when: float, linktype: int, data: bytes) -> Packet:
    ethertype, ip = _network_layer(linktype, data)
    if ethertype == 0x0806:
        return Packet(when, "arp", "", 0, "", 0, len(ip), 0)
    if ethertype == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        total, proto = struct.unpack_from("!H", ip, 2)[0], ip[9]
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        return _transport(when, proto, src, dst, total, total - ihl, ip[ihl:], "ipv4")
    if ethertype == 0x86DD and len(ip) >= 40:
        length, proto = struct.unpack_from("!HB", ip, 4)
        src, dst = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40]))
        return _transport(when, proto, src, dst, 40 + length, length, ip[40:], "ipv6")
    return Packet(when, "other", "", 0, "", 0, len(ip), 0)


def _transport(when, proto, src, dst, total, l4_length, l4: bytes, family: str) -> Packet:
    if proto == PROTO_UDP and len(l4) >= 8:
        sport, dport = struct.unpack_from("!HH", l4)
        return Packet(when, "udp", src, sport, dst, dport, total, l4_length - 8)
    if proto == PROTO_TCP and len(l4) >= 14:
        sport, dport = struct.unpack_from("!HH", l4)
        offset, flags = (l4[12] >> 4) * 4, l4[13]
        return Packet(when, "tcp", src, sport, dst, dport, total, l4_length - offset, flags)
    name = "icmp" if proto in (1, 58) else f"{family}-{proto}"
    return Packet(when, name, src, 0, dst, 0, total, 0)
