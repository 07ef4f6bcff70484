"""The rig's network services and the emulated unit's network stack, against each other, on loopback.

Wire formats (DHCP, DNS, SNTP, pcap) are checked with hand-built bytes as well, so the two sides
cannot agree on a private mistake.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from datetime import datetime, timedelta, timezone

import pytest

from rig.core.aio import LoopThread
from rig.core.clock import RealClock, VirtualClock
from rig.instruments.capture import Capture
from rig.network import NTP_HOST, OCPP_HOST, SETUP_HOST
from rig.network import dhcp as D
from rig.network import dns as N
from rig.network import ntp as T
from rig.network.ca import TestAuthority
from rig.network.pcap import read_pcap, tcp_packet, udp_packet, PcapWriter
from rig.network.services import NetworkServices
from rig.sim.charger_network import UnitNetwork, unit_password
from rig.sim.emulated_link import EmulatedLink

BASE = "127.61.{}."


def control_address(unit: str) -> str:
    """An address beside the unit's that nothing binds: ports open there are the host's wildcard listeners."""
    head, last = unit.rsplit(".", 1)
    return f"{head}.{int(last) + 1}"


def network_config(n: int) -> dict:
    base = BASE.format(n)
    return {"ports": "auto", "address": base + "1", "unit_address": base + "10", "netmask": "255.255.255.0",
            "dns_primary": base + "53", "dns_secondary": base + "54", "cloudflare_primary": base + "111",
            "cloudflare_secondary": base + "112", "ocpp_address": base + "80", "setup_address": base + "81",
            "ntp_address": base + "123"}


class Bench:
    """Rig services + the unit's stack on one virtual clock, without a charger."""

    def __init__(self, tmp_path, n: int, defect: str | None = None):
        self.clock = VirtualClock(seed=3)
        self.services = NetworkServices("network", network_config(n), self.clock).open()
        self.loop = LoopThread("unit").start()
        self.pcap = tmp_path / "unit.pcap"
        self.link = EmulatedLink(self.clock, self.loop, self.services.unit_address, str(self.pcap))
        self.link.set_routes(self.services.endpoints(("127.0.0.1", 9)))
        self.lock = threading.RLock()
        self.rtc_offset = timedelta(0)
        self.unit = UnitNetwork(
            self.clock, self.loop, self.link, self.lock, "SIM-9", self.services.ca.ca_pem,
            self.services.ca.firmware_public_pem, unit_password("SIM-9"),
            rtc_now=lambda: self.clock.utc_now() + self.rtc_offset,
            set_rtc=lambda when: setattr(self, "rtc_offset", when - self.clock.utc_now()),
            alive=lambda: True, defect=defect)
        self.ready_at: float | None = None

    def boot(self) -> None:
        self.unit.bring_up(lambda: setattr(self, "ready_at", self.clock.now()))

    def resolve(self, name: str, within_s: float = 30.0):
        got = []
        with self.lock:
            self.unit.resolve(name, got.append)
        self.clock.sleep(within_s)
        return got, self.clock.now()

    def close(self) -> None:
        self.loop.stop()
        self.services.close()
        self.link.close()


@pytest.fixture
def bench(tmp_path, request):
    b = Bench(tmp_path, 1 + request.node.name.__hash__() % 200)
    yield b
    b.close()


# -- wire formats ---------------------------------------------------------------------------------


def test_dhcp_message_round_trip_and_layout():
    msg = D.DhcpMessage(D.BOOTREPLY, 0xDEADBEEF, bytes.fromhex("02504c530001"), D.OFFER, yiaddr="10.0.0.10",
                        options={D.OPT_DNS: D.ip_bytes("10.0.0.53") + D.ip_bytes("10.0.0.54")})
    raw = msg.encode()
    assert raw[0] == 2 and raw[1] == 1 and raw[2] == 6  # op, htype ethernet, hlen
    assert struct.unpack("!I", raw[4:8])[0] == 0xDEADBEEF
    assert raw[16:20] == bytes([10, 0, 0, 10])  # yiaddr
    assert raw[236:240] == b"\x63\x82\x53\x63"  # magic cookie
    assert raw[240:243] == bytes([53, 1, D.OFFER])
    back = D.DhcpMessage.decode(raw)
    assert back.addresses(D.OPT_DNS) == ["10.0.0.53", "10.0.0.54"] and back.type_name == "OFFER"


def test_dns_query_and_answer_wire_format():
    q = N.query(0x1234, "ocpp.ampnexus.net")
    assert q[:2] == b"\x12\x34" and q[2:4] == b"\x01\x00" and q[4:6] == b"\x00\x01"
    assert q[12:] == b"\x04ocpp\x08ampnexus\x03net\x00\x00\x01\x00\x01"
    reply = N.DnsMessage(0x1234, N.QR | N.AA, "ocpp.ampnexus.net", N.TYPE_A, ("10.1.2.3",)).encode()
    assert reply[len(q):len(q) + 2] == b"\xc0\x0c"  # answer name: pointer to the question
    assert N.DnsMessage.decode(reply).answers == ("10.1.2.3",)


def test_sntp_packet_layout_and_timestamps():
    when = datetime(2026, 1, 5, 6, 0, 0, 500000, tzinfo=timezone.utc)
    raw = T.client_request(when)
    assert len(raw) == 48 and raw[0] == 0x23  # LI 0, VN 4, mode 3
    assert struct.unpack("!I", raw[40:44])[0] == int((when - T.NTP_EPOCH).total_seconds())
    assert abs((T.from_ntp(T.to_ntp(when)) - when).total_seconds()) < 1e-5


def test_pcap_written_and_read_back(tmp_path):
    path = tmp_path / "x.pcap"
    w = PcapWriter(path)
    t = datetime(2026, 1, 5, tzinfo=timezone.utc)
    w.write(t, udp_packet("127.0.0.10", 5555, "1.1.1.1", 53, b"x" * 30))
    w.write(t, tcp_packet("127.0.0.10", 40000, "10.0.0.80", 443, 0x18, 1, 1, b"y" * 100))
    w.close()
    a, b = read_pcap(path)
    assert (a.proto, a.dst, a.dport, a.length, a.payload) == ("udp", "1.1.1.1", 53, 58, 30)
    assert (b.proto, b.dst, b.dport, b.length, b.payload) == ("tcp", "10.0.0.80", 443, 140, 100)
    assert a.time == t.timestamp()


def test_pcap_reader_takes_tcpdump_ethernet_captures(tmp_path):
    ip = udp_packet("10.0.0.10", 123, "10.0.0.123", 123, b"z" * 148)
    frame = b"\x00" * 12 + b"\x08\x00" + ip
    path = tmp_path / "eth.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 96, 1)
                     + struct.pack("<IIII", 1, 0, 96, len(frame)) + frame[:96])  # snap length 96
    (p,) = read_pcap(path)
    assert (p.proto, p.dst, p.dport, p.length) == ("udp", "10.0.0.123", 123, 176)


# -- services against the stack -------------------------------------------------------------------


def test_boot_dhcp_then_ntp_and_documented_destinations(bench):
    bench.boot()
    bench.clock.sleep(5.0)
    assert bench.ready_at is not None and bench.ready_at == 0.0, bench.unit.log
    assert bench.unit.lease.address == bench.services.unit_address
    assert bench.unit.lease.dns == [bench.services.config["dns_primary"], bench.services.config["dns_secondary"]]
    seen = {(p.proto, p.dst, p.dport) for p in read_pcap(bench.pcap) if p.src in ("0.0.0.0", bench.link.unit_address)}
    assert seen == {("udp", "255.255.255.255", 67), ("udp", bench.services.config["dns_primary"], 53),
                    ("udp", bench.services.config["ntp_address"], 123)}
    assert [q.what for q in bench.services.dhcp.queries()] == ["DISCOVER", f"REQUEST {bench.services.unit_address}"]


def test_resolver_order_with_each_server_silenced_in_turn(bench):
    bench.boot()
    bench.clock.sleep(5.0)
    servers = bench.services.dns_servers()
    for silenced in range(4):
        for i, (_, server) in enumerate(servers):
            server.set_mode("silent" if i < silenced else "answer")
        bench.unit._cache.clear()
        t0 = bench.clock.now()
        got, _ = bench.resolve(OCPP_HOST)
        assert got == [bench.services.hosts[OCPP_HOST]]
        asked = [i for i, (_, s) in enumerate(servers) if any(q.time >= t0 for q in s.queries())]
        assert asked == list(range(silenced + 1))
        answered_at = max(q.time for q in servers[silenced][1].queries())
        assert answered_at - t0 == pytest.approx(2.0 * silenced)  # DNS_TIMEOUT_S per silent server


def test_refusing_server_is_passed_over_at_once_and_nxdomain_is_final(bench):
    bench.boot()
    bench.clock.sleep(5.0)
    (_, primary), (_, secondary) = bench.services.dns_servers()[:2]
    primary.set_mode("refuse")
    bench.unit._cache.clear()
    t0 = bench.clock.now()
    got, _ = bench.resolve(SETUP_HOST)
    assert got == [bench.services.hosts[SETUP_HOST]]
    assert max(q.time for q in secondary.queries()) == t0
    got, _ = bench.resolve("nowhere.example")
    assert got == [None]


def test_all_dns_silent_gives_up_after_four_timeouts(bench):
    bench.boot()
    bench.clock.sleep(5.0)
    for _, server in bench.services.dns_servers():
        server.set_mode("silent")
    bench.unit._cache.clear()
    done = []
    t0 = bench.clock.now()
    with bench.lock:
        bench.unit.resolve(NTP_HOST, lambda a: done.append((a, bench.clock.now())))
    bench.clock.sleep(20)
    assert done == [(None, t0 + 8.0)]


def test_ntp_sets_the_units_clock_to_the_served_time_with_its_error(bench):
    bench.services.ntp.set_error(-3 * 365 * 86400)
    bench.boot()
    bench.clock.sleep(5.0)
    skew = (bench.unit.rtc_now() - bench.clock.utc_now()).total_seconds()
    assert skew == pytest.approx(-3 * 365 * 86400, abs=1e-3)
    assert bench.services.ntp.queries()[0].what == "SNTP v4 client"


def test_lease_renewed_at_half_time_by_unicast_from_port_68(bench):
    bench.boot()
    bench.clock.sleep(43200.0 + 5.0)
    renew = [p for p in read_pcap(bench.pcap) if p.dport == 67 and p.src == bench.link.unit_address]
    assert [(p.sport, p.dst) for p in renew] == [(68, bench.services.address)]
    assert bench.unit.lease.expires_at == pytest.approx(43200.0 + 86400.0)


def test_dhcp_silent_means_no_address_and_retries(bench):
    bench.services.dhcp.set_mode("silent")
    bench.boot()
    bench.clock.sleep(30.0)
    assert bench.unit.lease is None and bench.ready_at is None
    assert [round(q.time) for q in bench.services.dhcp.queries()] == [0, 4, 12, 28]


def _tls(bench, kind: str, rtc_skew_days: float = 0.0):
    bench.boot()
    bench.clock.sleep(5.0)
    bench.rtc_offset = timedelta(days=rtc_skew_days)
    ctx = bench.services.ca.server_context(OCPP_HOST, kind)
    srv = LoopThread("tls-server").start()

    async def serve():
        import asyncio

        async def echo(reader, writer):
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()
        return await asyncio.start_server(echo, "127.0.0.1", 0, ssl=ctx)

    server = srv.run(serve())
    routes = dict(bench.link.routes)
    routes[("tcp", bench.services.hosts[OCPP_HOST], 443)] = server.sockets[0].getsockname()[:2]
    bench.link.set_routes(routes)

    async def talk():
        import asyncio
        sock, _ = await bench.unit.open_tls(OCPP_HOST, bench.services.hosts[OCPP_HOST])
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"hello\n")
        line = await reader.readline()
        writer.close()
        return line

    try:
        return bench.loop.run(talk())
    finally:
        srv.run(_close(server))
        srv.stop()


async def _close(server):
    server.close()


def test_tls_with_the_rig_ca_certificate_verifies_and_carries_data(bench):
    assert _tls(bench, "good") == b"hello\n"
    sent = [p for p in read_pcap(bench.pcap) if p.proto == "tcp" and p.src == bench.link.unit_address]
    assert sent and {p.dport for p in sent} == {443} and sum(p.payload for p in sent) > 100


@pytest.mark.parametrize("kind, skew, why", [("untrusted", 0, "issuer"), ("expired", 0, "validity"),
                                             ("good", -3 * 365, "validity")])
def test_tls_refuses_untrusted_expired_and_not_yet_valid(bench, kind, skew, why):
    with pytest.raises(ssl.SSLCertVerificationError) as err:
        _tls(bench, kind, skew)
    assert "rejected" in str(err.value)


def test_tls_no_verify_defect_accepts_anything(tmp_path):
    b = Bench(tmp_path, 201, defect="tls-no-verify")
    try:
        assert _tls(b, "untrusted") == b"hello\n"
    finally:
        b.close()


def _fetch(bench, url):
    got = []
    with bench.lock:
        bench.unit.fetch(url, lambda body, why: got.append((body, why)))
    bench.clock.sleep(5.0)
    return got[0]


def test_firmware_fetch_and_signature_check(bench):
    bench.boot()
    bench.clock.sleep(5.0)
    fw = bench.services.firmware
    good = fw.publish("PS-FW 4.3.0")
    bad = fw.publish("PS-FW 4.3.1", tampered=True)
    base = f"https://{SETUP_HOST}"
    for path, valid in ((good, True), (bad, False)):
        image, why = _fetch(bench, base + path)
        signature, _ = _fetch(bench, base + path + ".sig")
        assert image is not None and len(image) == 128 * 1024, why
        assert bench.unit.signature_valid(image, signature) is valid
    assert _fetch(bench, f"http://{SETUP_HOST}{good}")[0] is None  # plain HTTP is refused
    assert [d.status for d in fw.downloads()] == [200, 200, 200, 200]


def test_capture_counts_per_destination_and_scan_finds_no_port(bench):
    bench.boot()
    bench.clock.sleep(5.0)
    cap = Capture("capture", {"file": str(bench.pcap), "unit_address": bench.link.unit_address,
                                 "scan_control_address": control_address(bench.link.unit_address)}, bench.clock).open()
    traffic = cap.traffic()
    per = traffic.per_destination()
    assert per[("udp", "255.255.255.255", 67)][0] == 2
    assert traffic.sent_bytes == sum(b for _, b in per.values()) and traffic.received_bytes > 0
    assert cap.listening_ports(range(1, 4096)) == []


def test_debug_port_defect_is_found_by_the_scan(tmp_path):
    b = Bench(tmp_path, 202, defect="debug-port-listening")
    try:
        b.boot()
        b.clock.sleep(5.0)
        cap = Capture("capture", {"file": str(b.pcap), "unit_address": b.link.unit_address,
                                 "scan_control_address": control_address(b.link.unit_address)}, b.clock).open()
        assert cap.listening_ports(range(2000, 2400)) == [2323]
    finally:
        b.close()


def test_services_answer_a_plain_client_on_a_real_clock():
    """The same services on a RealClock, queried by hand-made datagrams (what a real unit sends)."""
    services = NetworkServices("network", network_config(203), RealClock()).open()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2)
            s.sendto(N.query(7, NTP_HOST), services.dns["dns_primary"].address)
            reply = N.DnsMessage.decode(s.recv(512))
            assert reply.answers == (services.hosts[NTP_HOST],)
            services.dns["dns_primary"].set_mode("refuse")
            s.sendto(N.query(8, NTP_HOST), services.dns["dns_primary"].address)
            assert N.DnsMessage.decode(s.recv(512)).rcode == N.REFUSED
            s.sendto(T.client_request(datetime.now(timezone.utc)), services.ntp.address)
            served = T.NtpPacket.decode(s.recv(512)).transmit_time
            assert abs((served - datetime.now(timezone.utc)).total_seconds()) < 2
    finally:
        services.close()


def test_central_system_serves_wss_and_checks_per_unit_credentials():
    """Security profile 2 on the rig's side: TLS with the rig CA's certificate, HTTP Basic checked."""
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    from rig.instruments.central_system import CentralSystem
    from rig.network.ca import TestAuthority
    from rig.sim.charger_network import basic_auth

    clock = RealClock()
    ca = TestAuthority(clock.utc_now)
    cs = CentralSystem("central_system", {"ssl": ca.server_context(OCPP_HOST), "passwords": {"CP-1": "s3cret-unit-1"}},
                       clock).open()
    assert cs.url_for("CP-1").startswith("wss://")

    async def attempt(password: str) -> str:
        try:
            async with connect(f"wss://{OCPP_HOST}:{cs.port}/ocpp/CP-1", host="127.0.0.1", port=cs.port,
                               ssl=ca.client_context(), subprotocols=["ocpp1.6"],
                               additional_headers={"Authorization": basic_auth("CP-1", password)}):
                return "connected"
        except InvalidStatus as exc:
            return str(exc.response.status_code)

    try:
        assert asyncio.run(attempt("plugstream")) == "401"
        assert asyncio.run(attempt("s3cret-unit-1")) == "connected"
        assert [(a.user, a.password, a.accepted) for a in cs.auth_attempts] == [
            ("CP-1", "plugstream", False), ("CP-1", "s3cret-unit-1", True)]
    finally:
        cs.close()
        ca.close()


def test_a_lasting_rig_ca_is_made_once_and_read_back(tmp_path):
    """network.ca_dir: a real unit is provisioned once with the rig's CA and firmware key, so every
    later run must present certificates from the same CA and sign with the same key."""
    import os
    import stat

    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    from rig.network.ca import provisioning

    clock = VirtualClock(1)
    folder = tmp_path / "rig-ca"
    first = TestAuthority(clock.utc_now, folder)
    second = TestAuthority(clock.utc_now, folder)
    try:
        assert first.ca_pem == second.ca_pem and first.firmware_public_pem == second.firmware_public_pem
        assert provisioning(folder) == (first.ca_pem, first.firmware_public_pem)
        for private in ("ca.key", "firmware.key"):
            assert stat.S_IMODE(os.stat(folder / private).st_mode) == 0o600, private
        image = b"PS-FW 9.9.9"
        load_pem_public_key(first.firmware_public_pem).verify(second.sign_firmware(image), image)
        # a certificate the second run issues verifies against the CA the first run made
        from cryptography import x509

        cert_file, _key = second.certificate("ocpp.ampnexus.net")
        issued = x509.load_pem_x509_certificate(cert_file.read_bytes())
        issued.verify_directly_issued_by(x509.load_pem_x509_certificate(first.ca_pem))  # raises if not
        fresh = TestAuthority(clock.utc_now)  # no folder: a new CA every run (the emulated bench)
        assert fresh.ca_pem != first.ca_pem
        fresh.close()
    finally:
        first.close()
        second.close()


def test_a_folder_that_is_not_a_rig_ca_is_named(tmp_path):
    from rig.network.ca import provisioning

    (tmp_path / "ca.key").write_text("not a key")
    (tmp_path / "ca.crt").write_text("not a certificate")
    with pytest.raises(ValueError, match=str(tmp_path)):
        TestAuthority(VirtualClock(1).utc_now, tmp_path)
    with pytest.raises(ValueError, match="no rig CA here"):
        provisioning(tmp_path / "elsewhere")
