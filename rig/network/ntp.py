"""SNTP v4 (RFC 4330 / RFC 5905 packet format): the rig serves its TimeService's time, optionally wrong.

The document says a wrong real-time clock stops the unit authenticating and that it takes its
time from pool.ntp.org (NET-03). `error_s` shifts what is served, so a test can give the unit
a wrong time and then correct it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from rig.network import NTP_PORT
from rig.network.udp import ANSWER, SILENT, UdpService

NTP_EPOCH = datetime(1900, 1, 1, tzinfo=timezone.utc)
_PACKET = struct.Struct("!BBbbII4sQQQQ")  # 48 bytes
MODE_CLIENT, MODE_SERVER = 3, 4
#: answers, but not the request it got: the originate field is not the client's transmit time (a
#: reply to another request, or forged). RFC 5905 8: a client discards such a reply ("bogus")
STRAY = "stray"


def to_ntp(when: datetime) -> int:
    """64-bit NTP timestamp: seconds since 1900 in the high 32 bits, binary fraction in the low."""
    delta = when - NTP_EPOCH
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    seconds, fraction_us = divmod(micros, 1_000_000)
    return ((seconds & 0xFFFFFFFF) << 32) | (fraction_us * (1 << 32) // 1_000_000)


def from_ntp(stamp: int) -> datetime:
    seconds, fraction = stamp >> 32, stamp & 0xFFFFFFFF
    return NTP_EPOCH + timedelta(seconds=seconds, microseconds=fraction * 1_000_000 // (1 << 32))


@dataclass(frozen=True)
class NtpPacket:
    mode: int
    version: int = 4
    stratum: int = 0
    reference_id: bytes = b"\0\0\0\0"
    reference: int = 0
    originate: int = 0
    receive: int = 0
    transmit: int = 0

    def encode(self) -> bytes:
        first = (0 << 6) | (self.version << 3) | self.mode  # leap indicator 0: no warning
        return _PACKET.pack(first, self.stratum, 6, -20, 0, 0, self.reference_id, self.reference, self.originate,
                            self.receive, self.transmit)

    @classmethod
    def decode(cls, data: bytes) -> "NtpPacket":
        if len(data) < _PACKET.size:
            raise ValueError(f"NTP packet of {len(data)} bytes (at least 48)")
        first, stratum, _poll, _prec, _delay, _disp, ref_id, ref, orig, recv, xmit = _PACKET.unpack_from(data)
        return cls(first & 7, (first >> 3) & 7, stratum, ref_id, ref, orig, recv, xmit)

    @property
    def transmit_time(self) -> datetime:
        return from_ntp(self.transmit)


def client_request(now: datetime) -> bytes:
    """What an SNTP client sends: mode 3, version 4, its own clock in the transmit field."""
    return NtpPacket(MODE_CLIENT, transmit=to_ntp(now)).encode()


class NtpServer(UdpService):
    """Config: host, port (123 on a real bench), mode (answer | silent | stray), error_s.
    `time_source()` is the rig's TimeService.now (tz-aware UTC)."""

    default_port = NTP_PORT
    modes = (ANSWER, SILENT, STRAY)

    def __init__(self, name, config, clock, loop=None, time_source: Callable[[], datetime] | None = None):
        super().__init__(name, config, clock, loop)
        self.time_source = time_source or clock.utc_now
        self.error_s = float(config.get("error_s", 0.0))

    def served_time(self) -> datetime:
        return self.time_source() + timedelta(seconds=self.error_s)

    def set_error(self, seconds: float) -> None:
        """Serve the time `seconds` off (0: right again)."""
        self.error_s = float(seconds)

    def answer(self, data: bytes, peer) -> tuple[str, bytes | None]:
        request = NtpPacket.decode(data)
        if request.mode != MODE_CLIENT:
            return f"mode {request.mode} (not a client)", None
        now = to_ntp(self.served_time())
        # stray: the originate of a request one second older, as a late or forged reply would carry
        originate = request.transmit if self.mode != STRAY else (request.transmit - (1 << 32)) % (1 << 64)
        reply = NtpPacket(MODE_SERVER, request.version, 1, b"GPS\0", now, originate, now, now)
        return f"SNTP v{request.version} client", reply.encode()
