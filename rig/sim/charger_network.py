"""The emulated unit's network stack, over real sockets on loopback, as the network document says.

* DHCP client (DISCOVER, OFFER, REQUEST, ACK): its address and the DNS servers of option 6.
* Resolver: DHCP primary -> DHCP secondary -> 1.1.1.1 -> 1.0.0.1, DNS_TIMEOUT_S per server; a
  server that refuses or fails is passed over at once, an NXDOMAIN is final.
* SNTP client to pool.ntp.org before authenticating (and every NTP_POLL_S); it sets the unit's
  real-time clock (the charger's RTC, which OCPP currentTime also sets).
* TLS to ocpp.ampnexus.net: the server certificate is verified against the unit's trust anchor
  AND ITS OWN RTC (cryptography's X.509 verifier, not OpenSSL's, which would use the host's
  clock), before a single byte of HTTP (credentials) goes out. A wrong clock makes the
  certificate "not yet valid" or "expired": authentication fails until NTP corrects the clock.
* OCPP security profile 2: HTTP Basic auth, user = charge point id, password = per-unit secret
  derived at manufacture (`unit_password`), never a shared default.
* Firmware: fetched over HTTPS only after the server certificate verifies; installable only if
  its detached Ed25519 signature verifies against the key installed at manufacture
  (charger_network_firmware.py).
* Nothing listening.

Everything the unit sends goes through `EmulatedLink`: it maps the documented destinations
(1.1.1.1:53, the DHCP broadcast, the rig addresses DNS hands out) to the rig's loopback services
and writes every packet both ways to a pcap file with synthesised IPv4/UDP/TCP headers carrying
the DOCUMENTED addresses and ports and the real payload lengths. A destination the link has no
route for is recorded and dropped, never sent: no packet leaves loopback.

Threads: the stack's logic runs in virtual-clock callbacks (the test thread) under the charger's
lock, like the rest of the firmware; sockets live in the bench's asyncio loop. Datagrams are
counted for settling (rig/network/udp.py); TCP connects and fetches hold the clock until done.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from rig.core.aio import LoopThread
from rig.core.clock import VirtualClock
from rig.network import (BROADCAST, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DNS_PORT, HTTPS_PORT, NTP_HOST, NTP_PORT,
                         PUBLIC_DNS)
from rig.network import dhcp as D
from rig.network import dns as N
from rig.network import ntp as T
from rig.sim.charger_network_firmware import FirmwareFetch
from rig.sim.emulated_link import EmulatedLink

DHCP_RETRIES_S = (4.0, 8.0, 16.0, 32.0)  # RFC 2131 4.1 back-off, then the cycle starts again
DHCP_RESTART_S = 60.0
DHCP_UNSTATED_LEASE_S = 86400  # an ACK without option 51 (RFC 2131 table 3 requires it): taken for a day
DNS_TIMEOUT_S = 2.0  # per server: "if it does not respond promptly"
NTP_TIMEOUT_S = 5.0
NTP_TRIES = 2
NTP_POLL_S = 3600.0
DEBUG_PORT = 2323  # what the debug-port-listening defect leaves open
WRONG_NTP_SERVER = "216.239.35.0"  # the ntp-wrong-server defect's hard-coded server
CHATTY_HEARTBEAT_S = 60.0  # the chatty-heartbeat defect's own interval, and what it sends:
CHATTY_DIAGNOSTICS_CHARS = 6000  # a 6 kB diagnostic dump with every beat (over 6 MB a day)
FACTORY_SECRET = b"PlugStream emulated factory provisioning key"  # the simulated factory's HSM secret


def unit_password(serial: str, factory_secret: bytes = FACTORY_SECRET) -> str:
    """The per-unit password the factory derives and prints on the unit's label (20 characters)."""
    digest = hmac.new(factory_secret, serial.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:20]


def chatty_heartbeat(serial: str) -> dict:
    """The chatty-heartbeat defect's DataTransfer: a diagnostic dump nobody asked for."""
    # a trace buffer: noise-like, so the websocket's permessage-deflate cannot shrink it much
    blocks, block = [], serial.encode()
    while len(blocks) * 44 < CHATTY_DIAGNOSTICS_CHARS:
        block = hashlib.sha256(block).digest()
        blocks.append(base64.b64encode(block).decode())
    return {"vendorId": "PlugStream", "messageId": "Heartbeat", "data": "".join(blocks)[:CHATTY_DIAGNOSTICS_CHARS]}


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()



# ------------------------------------------------------------------------------------------------
# the unit's stack
# ------------------------------------------------------------------------------------------------


@dataclass
class Lease:
    address: str
    server: str
    dns: list[str]
    expires_at: float  # clock time


class CertificateRejected(ssl.SSLCertVerificationError):
    """The server certificate did not verify (against the trust anchor and the unit's RTC)."""


class UnitNetwork(FirmwareFetch):
    """The unit's network stack. `rtc_now()` / `set_rtc(dt)` are the charger's real-time clock;
    `alive()` says the unit is powered (a dead unit sends nothing)."""

    def __init__(self, clock: VirtualClock, loop: LoopThread, link: EmulatedLink, lock, cp_id: str,
                 trust_anchor_pem: bytes, firmware_key_pem: bytes, password: str,
                 rtc_now: Callable[[], datetime], set_rtc: Callable[[datetime], None],
                 alive: Callable[[], bool], defect: str | None = None):
        self.clock, self.loop, self.link, self.lock = clock, loop, link, lock
        self.cp_id, self.password, self.defect = cp_id, password, defect
        self.rtc_now, self.set_rtc, self.alive = rtc_now, set_rtc, alive
        self._anchors = x509.load_pem_x509_certificates(trust_anchor_pem)
        self._firmware_key = serialization.load_pem_public_key(firmware_key_pem)
        self.lease: Lease | None = None
        self._generation = 0
        self._ids = itertools.count(0x1000)
        self._cache: dict[str, tuple[str, float]] = {}
        self._clock_suspect = False  # the last TLS failure was about time: ask NTP before retrying
        self.last_failure: str | None = None
        self._debug_server = None
        self.log: list[tuple[float, str]] = []

    # -- helpers ---------------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        self.log.append((self.clock.now(), text))

    def _after(self, delay_s: float, fn: Callable[[], None]):
        """A stack timer: dies with a power cycle or a new bring-up."""
        generation = self._generation

        def fire():
            with self.lock:
                if generation == self._generation and self.alive():
                    fn()

        return self.clock.call_later(delay_s, fire)

    def _exchange(self, payload: bytes, address: str, port: int, timeout_s: float,
                  accept: Callable[[bytes], object], on_answer: Callable[[object], None],
                  on_timeout: Callable[[], None], src: tuple[str, int] | None = None) -> None:
        """Send one datagram and wait (clock time) for the answer `accept` recognises (not None)."""
        generation, state = self._generation, {"done": False, "timer": None}

        def deliver(data: bytes, _peer) -> None:
            with self.lock:
                if state["done"] or generation != self._generation or not self.alive():
                    return
                try:
                    result = accept(data)
                except (ValueError, IndexError, KeyError):
                    result = None  # garbage: keep waiting, as a real stack would
                if result is None:
                    return
                state["done"] = True
                state["timer"].cancel()
                sock.close()
                on_answer(result)

        def expired() -> None:
            if not state["done"]:
                state["done"] = True
                sock.close()
                on_timeout()

        sock = self.link.udp_socket(deliver)
        state["timer"] = self._after(timeout_s, expired)
        sock.sendto(payload, address, port, src)

    # -- power and boot --------------------------------------------------------------------------
    def bring_up(self, on_ready: Callable[[], None]) -> None:
        """A fresh boot: DHCP, then NTP, then `on_ready()` (whether or not NTP answered)."""
        self._generation += 1
        self.lease, self._cache = None, {}
        self._close_debug_port()
        self._dhcp_discover(on_ready, attempt=0)

    def _dhcp_discover(self, on_ready, attempt: int) -> None:
        xid, mac = next(self._ids), bytes.fromhex("02504c530001")
        discover = D.DhcpMessage(D.BOOTREQUEST, xid, mac, D.DISCOVER, flags=D.BROADCAST_FLAG,
                                 options={D.OPT_PARAMS: bytes([D.OPT_SUBNET, D.OPT_ROUTER, D.OPT_DNS])})

        def offered(msg: D.DhcpMessage) -> None:
            self._dhcp_request(msg, xid, mac, on_ready, attempt)

        self._exchange(discover.encode(), BROADCAST, DHCP_SERVER_PORT, DHCP_RETRIES_S[attempt % len(DHCP_RETRIES_S)],
                       lambda data: _dhcp_reply(data, self._xid_taken(xid), (D.OFFER,)), offered,
                       lambda: self._dhcp_retry(on_ready, attempt), src=("0.0.0.0", DHCP_CLIENT_PORT))

    def _dhcp_retry(self, on_ready, attempt: int) -> None:
        self._note("DHCP: no answer")
        if attempt + 1 < len(DHCP_RETRIES_S):
            self._dhcp_discover(on_ready, attempt + 1)
        else:
            self._after(DHCP_RESTART_S, lambda: self._dhcp_discover(on_ready, 0))

    def _xid_taken(self, xid: int) -> int | None:
        """The transaction whose DHCP replies the unit takes (None: any; the bug: replies to other clients)."""
        return None if self.defect == "dhcp-xid-unchecked" else xid

    def _dhcp_request(self, offer: D.DhcpMessage, xid: int, mac: bytes, on_ready, attempt: int) -> None:
        server = offer.addresses(D.OPT_SERVER_ID)
        request = D.DhcpMessage(D.BOOTREQUEST, xid, mac, D.REQUEST, flags=D.BROADCAST_FLAG, options={
            D.OPT_REQUESTED_IP: D.ip_bytes(offer.yiaddr), D.OPT_SERVER_ID: D.ip_bytes(server[0] if server else "0.0.0.0"),
            D.OPT_PARAMS: bytes([D.OPT_SUBNET, D.OPT_ROUTER, D.OPT_DNS])})

        def acked(msg: D.DhcpMessage) -> None:
            refused = msg.message_type == D.NAK and self.defect != "dhcp-nak-taken"  # (the bug: a NAK taken as an ACK)
            if refused:
                self._after(1.0, lambda: self._dhcp_discover(on_ready, 0))
                return
            lease_s = msg.seconds(D.OPT_LEASE_TIME) or DHCP_UNSTATED_LEASE_S
            if self.defect == "dhcp-lease-time-ignored":
                lease_s = DHCP_UNSTATED_LEASE_S  # the bug: a day, whatever the server gave
            self.lease = Lease(msg.yiaddr, (msg.addresses(D.OPT_SERVER_ID) or [""])[0], msg.addresses(D.OPT_DNS),
                               self.clock.now() + lease_s)
            self._after(lease_s / 2, lambda: self._dhcp_renew(xid, mac))  # T1 (RFC 2131 4.4.5)
            self._note(f"DHCP: {msg.yiaddr}, DNS {self.lease.dns}")
            if self.defect == "debug-port-listening":
                self._open_debug_port()
            self.sync_time(on_ready)
            self._after(NTP_POLL_S, self._poll_time)

        self._exchange(request.encode(), BROADCAST, DHCP_SERVER_PORT, DHCP_RETRIES_S[0],
                       lambda data: _dhcp_reply(data, self._xid_taken(xid), (D.ACK, D.NAK)), acked,
                       lambda: self._dhcp_retry(on_ready, attempt), src=("0.0.0.0", DHCP_CLIENT_PORT))

    def _dhcp_renew(self, xid: int, mac: bytes) -> None:
        """RENEWING: a unicast REQUEST to the server that gave the lease; retried every minute."""
        lease = self.lease
        request = D.DhcpMessage(D.BOOTREQUEST, xid, mac, D.REQUEST, ciaddr=lease.address,
                                options={D.OPT_PARAMS: bytes([D.OPT_SUBNET, D.OPT_ROUTER, D.OPT_DNS])})

        def acked(msg: D.DhcpMessage) -> None:
            if msg.message_type == D.ACK:
                lease_s = msg.seconds(D.OPT_LEASE_TIME) or DHCP_UNSTATED_LEASE_S
                lease.expires_at = self.clock.now() + lease_s
                self._after(lease_s / 2, lambda: self._dhcp_renew(xid, mac))

        self._exchange(request.encode(), lease.server, DHCP_SERVER_PORT, DHCP_RETRIES_S[0],
                       lambda data: _dhcp_reply(data, self._xid_taken(xid), (D.ACK, D.NAK)), acked,
                       lambda: self._after(60.0, lambda: self._dhcp_renew(xid, mac)),
                       src=(lease.address, DHCP_CLIENT_PORT))

    # -- DNS ---------------------------------------------------------------------------------
    def resolver_order(self) -> list[str]:
        """DHCP primary, DHCP secondary, then Cloudflare (NET: DNS Server Priority)."""
        places = 3 if self.defect == "dns-third-dhcp-server" else 2  # (the bug: every server DHCP names)
        dhcp = list(self.lease.dns[:places]) if self.lease else []
        if self.defect == "resolver-skips-dhcp":
            dhcp = []
        return dhcp + [a for a in PUBLIC_DNS if a not in dhcp]

    def resolve(self, name: str, on_done: Callable[[str | None], None]) -> None:
        cached = self._cache.get(name)
        if cached and cached[1] > self.clock.now():
            on_done(cached[0])
            return
        self._ask(name, self.resolver_order(), on_done)

    def _ask(self, name: str, servers: list[str], on_done) -> None:
        if not servers:
            self._note(f"DNS: {name} not resolved")
            on_done(None)
            return
        ident = next(self._ids) & 0xFFFF
        server, rest = servers[0], servers[1:]

        def accept(data: bytes):
            reply = N.DnsMessage.decode(data)
            ours = reply.id == ident or self.defect == "dns-id-unchecked"  # (the bug: any response)
            return reply if reply.is_response and ours else None

        def answered(reply: N.DnsMessage) -> None:
            if reply.rcode == N.NOERROR and reply.answers:
                self._cache[name] = (reply.answers[0], self.clock.now() + reply.ttl)
                on_done(reply.answers[0])
            elif reply.rcode == N.NXDOMAIN or (reply.rcode == N.NOERROR and self.defect == "dns-no-address-final"):
                on_done(None)  # (the defect takes "no address here" for "no address anywhere")
            else:  # REFUSED, SERVFAIL, no address: the next server may know
                self._ask(name, rest, on_done)

        self._exchange(N.query(ident, name), server, DNS_PORT, DNS_TIMEOUT_S, accept, answered,
                       lambda: self._ask(name, rest, on_done))

    # -- time --------------------------------------------------------------------------------
    def sync_time(self, then: Callable[[], None], tries: int = NTP_TRIES) -> None:
        """Ask pool.ntp.org and set the RTC; `then()` either way."""
        if self.defect == "ntp-wrong-server":
            self._ntp_query(WRONG_NTP_SERVER, then, tries)
            return
        self.resolve(NTP_HOST, lambda address: self._ntp_query(address, then, tries) if address else then())

    def _ntp_query(self, address: str, then, tries: int) -> None:
        sent = self.rtc_now()

        def accept(data: bytes):
            packet = T.NtpPacket.decode(data)
            ours = packet.originate == T.to_ntp(sent) or self.defect == "ntp-origin-unchecked"  # (the bug: any)
            return packet if packet.mode == T.MODE_SERVER and ours else None

        def answered(packet: T.NtpPacket) -> None:
            self.set_rtc(packet.transmit_time)
            self._clock_suspect = False
            self._note(f"NTP: {packet.transmit_time.isoformat()}")
            then()

        def timed_out() -> None:
            if tries > 1 or self.defect == "ntp-required":  # (the defect asks until it is answered)
                self._ntp_query(address, then, tries - 1)
            else:
                self._note("NTP: no answer")
                then()

        self._exchange(T.client_request(sent), address, NTP_PORT, NTP_TIMEOUT_S, accept, answered, timed_out)

    def _poll_time(self) -> None:
        self.sync_time(lambda: None)
        self._after(NTP_POLL_S, self._poll_time)

    # -- the central system ------------------------------------------------------------------
    def connect_ocpp(self, client, host: str, on_fail: Callable[[], None]) -> None:
        """NTP first if the clock is in doubt, resolve `host`, then let the OCPP client connect
        through `open_tls(host, address)`. `on_fail()` if there is no address to connect to."""
        if self.lease is None:
            on_fail()  # no DHCP lease yet: bring_up is still trying
            return

        def resolved(address: str | None) -> None:
            if address is None:
                self.last_failure = f"cannot resolve {host}"
                on_fail()
                return
            client.open_socket = lambda: self.open_tls(host, address)
            client.connect()

        if self._clock_suspect:
            self.sync_time(lambda: self.resolve(host, resolved))
        else:
            self.resolve(host, resolved)

    def client_headers(self) -> dict[str, str]:
        password = "plugstream" if self.defect == "default-password" else self.password
        return {"Authorization": basic_auth(self.cp_id, password)}

    async def open_tls(self, host: str, address: str, port: int = HTTPS_PORT) -> tuple[socket.socket, int]:
        """TCP via the link, TLS, certificate verified against the RTC: the plaintext side as a
        socket, and the TCP source port (what the server sees as the client's port)."""
        raw, sport = await self.link.open_tcp(address, port)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # verified below, against the unit's RTC
        reader, writer = await asyncio.open_connection(sock=raw, ssl=ctx, server_hostname=host)
        try:
            self.verify_server(writer.get_extra_info("ssl_object").getpeercert(binary_form=True), host)
        except CertificateRejected:
            writer.close()
            raise
        plain, inner = socket.socketpair()
        inner.setblocking(False)
        _pipe_tls(inner, reader, writer)
        plain.setblocking(False)
        return plain, sport

    def verify_server(self, der: bytes | None, host: str) -> None:
        if self.defect == "tls-no-verify":
            return
        when = self.rtc_now()
        leaf = x509.load_der_x509_certificate(der) if der else None
        try:
            if leaf is None:
                raise VerificationError("no certificate")
            verifier = (PolicyBuilder().store(Store(self._anchors)).time(when.replace(tzinfo=None))
                        .build_server_verifier(x509.DNSName(host)))
            verifier.verify(leaf, [])
        except VerificationError as exc:
            # outside its validity period by the unit's clock: the clock may be what is wrong
            about_time = leaf is not None and not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc
            self._clock_suspect = self._clock_suspect or about_time
            self.last_failure = f"certificate of {host} rejected at RTC {when.isoformat()}: {exc}"
            self._note(self.last_failure)
            raise CertificateRejected(self.last_failure) from None

    # -- the debug-port-listening defect -------------------------------------------------------
    def _open_debug_port(self) -> None:
        address = self.lease.address

        async def start():
            async def banner(reader, writer):
                writer.write(b"debug> ")
                writer.close()
            self._debug_server = await asyncio.start_server(banner, address, DEBUG_PORT)

        try:
            self.loop.run(start(), timeout=5)
        except OSError:
            pass  # already open from a previous boot

    def _close_debug_port(self) -> None:
        server, self._debug_server = self._debug_server, None
        if server is not None:
            self.loop.call(server.close)


def _dhcp_reply(data: bytes, xid: int | None, kinds: tuple[int, ...]):
    """The reply to our transaction `xid` (None: any transaction, the known-bad unit's)."""
    msg = D.DhcpMessage.decode(data)
    ours = xid is None or msg.xid == xid
    return msg if msg.op == D.BOOTREPLY and ours and msg.message_type in kinds else None


def _pipe_tls(inner: socket.socket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy between the plaintext socket pair end and the TLS stream, both ways. A socket is
    closed only once neither direction reads it any more (closing one under a pending read
    would leave its file descriptor registered in the loop, to be reused by the next socket)."""
    loop = asyncio.get_running_loop()
    done = {"up": False, "down": False}

    def finish(direction: str) -> None:
        done[direction] = True
        if all(done.values()):
            writer.close()
            inner.close()

    async def up() -> None:  # plaintext from the unit's application -> TLS
        try:
            while data := await loop.sock_recv(inner, 65536):
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            writer.close()  # TLS has no half-close: the application is done, so is the connection
            finish("up")

    async def down() -> None:  # TLS -> the unit's application
        try:
            while data := await reader.read(65536):
                await loop.sock_sendall(inner, data)
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                inner.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            finish("down")

    loop.create_task(up())
    loop.create_task(down())

