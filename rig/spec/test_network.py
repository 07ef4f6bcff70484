"""The unit on the rig's network (NET-01..NET-04, SEC-01, SEC-02, FW-02).

The rig is the unit's whole network (rig/network, docs/network.md): DHCP, the DNS servers, NTP,
the central system over TLS with a certificate from the rig's test authority, the firmware
server, and a capture of every packet the unit sends. Addresses in the capture are as the unit
sees them: the DHCP broadcast, the DNS servers DHCP gave, 1.1.1.1, 1.0.0.1, and what the rig's
DNS answered for the documented host names.
"""

from __future__ import annotations

import pytest

from rig.core.errors import ChargerFailure
from rig.instruments.central_system.messages import CentralSystemTimeout
from rig.network import DHCP_CLIENT_PORT, DHCP_SERVER_PORT, DNS_PORT, OCPP_HOST, SETUP_HOST
from rig.network.ca import EXPIRED, GOOD, UNTRUSTED
from rig.network.dhcp import REFUSE as DHCP_REFUSE
from rig.network.dhcp import STRAY as DHCP_STRAY
from rig.network.dns import NO_ADDRESS, STRAY
from rig.spec.steps import reboot, start_charging

#: passwords a unit must never share with every other unit (Schedule 1: no universal default)
COMMON_DEFAULTS = {"", "admin", "password", "1234", "12345678", "plugstream", "PlugStream", "default", "ocpp"}
CHARGE_CYCLE_S = 3600.0  # one charging session of an hour, plug-in to unplug (the document names no length)
IDLE_DAY_S = 86400.0
SHORT_LEASE_S = 120  # the lease the rig's DHCP gives in the renewal test (a test condition)
REFUSED_DHCP_S = 30.0  # DHCP NAKs every REQUEST this long after the unit's power-up (a test condition)
STRAY_DHCP_S = 30.0  # DHCP answers only other clients' transactions this long after power-up (a test condition)
#: after that, the unit's next DISCOVER may wait out its back-off (RFC 2131 4.1: up to 64 s) and a
#: restart of the cycle; the document gives no DHCP timing, so this is generous, not a limit
DHCP_RECOVERY_S = 180.0


@pytest.fixture
def net(ready):
    """A registered unit on the rig's network."""
    if ready.network is None:  # a bench that cannot test this must say so, not fail or fault the unit
        pytest.skip("the rig file has no [network] section: the rig is not the unit's network")
    return ready


def _boot_dns_order(rig) -> list[str]:
    """The DNS servers the unit asked, in the order it first asked each, from the capture."""
    order: list[str] = []
    for p in rig.capture.traffic(since=rig._net_mark).sent():
        if p.proto == "udp" and p.dport == DNS_PORT and p.dst not in order:
            order.append(p.dst)
    return order


@pytest.mark.req("NET-01")
def test_sends_only_to_the_documented_destinations_and_ports(net):
    rig = net
    since = rig.capture.mark()
    reboot(rig)
    start_charging(rig)
    rig.clock.sleep(600.0, "charging, heartbeats")
    rig.ev.unplug()
    rig.clock.sleep(10.0)
    traffic = rig.capture.traffic(since=since)
    allowed = rig.network.allowed_destinations()
    sent = traffic.per_destination()
    stray = {d: n for d, n in sent.items() if d not in allowed}
    assert not stray, f"the unit sent to destinations the document does not list: {stray}; all: {traffic.describe()}"
    dhcp_ports = {p.sport for p in traffic.sent() if p.dport == 67}
    assert dhcp_ports == {68}, f"DHCP must go out from UDP 68; seen source ports {dhcp_ports}"
    for needed in [("udp", "255.255.255.255", 67), ("tcp", rig.network.hosts[OCPP_HOST], 443)]:
        assert needed in sent, f"expected traffic to {needed}; the unit sent: {traffic.describe()}"


@pytest.mark.req("NET-01")
def test_nothing_listens_on_the_unit(net):
    open_ports = net.capture.listening_ports()
    assert open_ports == [], f"the unit accepts TCP connections on {open_ports}; the document says no incoming ports"


@pytest.mark.req("NET-01")
def test_dhcp_replies_to_another_clients_request_are_not_taken(net):
    """After power-up the rig's DHCP first answers only as it would another client on the segment:
    another transaction's xid, another address. A unit that takes only replies to its own
    transaction (RFC 2131 4.4.1) never uses that address; once DHCP answers it, it takes its own
    lease and registers."""
    rig = net
    dhcp = rig.network.dhcp
    dhcp.set_mode(DHCP_STRAY)
    since, t0 = rig.capture.mark(), rig.clock.now()
    rig.power_cycle()
    rig.clock.sleep(STRAY_DHCP_S, "DHCP answering other clients' transactions only")
    dhcp.set_mode("answer")
    rig.await_ready(timeout_s=DHCP_RECOVERY_S)
    asked = [q.what for q in dhcp.queries(since=t0)]
    claimed = [w for w in asked if w == f"REQUEST {dhcp.stray_address}"]
    sent_from = [p for p in rig.capture.traffic(since=since).packets if p.src == dhcp.stray_address]
    assert not claimed and not sent_from, (
        f"the unit took {dhcp.stray_address}, offered only in replies to another transaction: it asked DHCP "
        f"{asked} and sent {len(sent_from)} packet(s) from that address")


@pytest.mark.req("NET-01")
def test_a_refused_dhcp_request_sends_the_unit_back_to_discover_without_using_the_address(net):
    """A server that NAKs the REQUEST (the address went to another client meanwhile). RFC 2131 3.1
    and 4.4.1: the client starts again with DISCOVER and uses no address without an ACK. While DHCP
    refuses, the unit sends nothing but DHCP and DISCOVERs again after a NAK; once DHCP answers it
    takes its lease and registers."""
    rig = net
    dhcp = rig.network.dhcp
    dhcp.set_mode(DHCP_REFUSE)
    t0 = rig.clock.now()
    rig.power_cycle()
    since = rig.capture.mark()  # after the power-off: the old connection's closing is not the unit's doing
    rig.clock.sleep(REFUSED_DHCP_S, "DHCP refusing every REQUEST")
    until = rig.capture.mark()
    asked = [q.what for q in dhcp.queries(since=t0)]
    dhcp.set_mode("answer")
    rig.await_ready(timeout_s=DHCP_RECOVERY_S)
    refused = [i for i, what in enumerate(asked) if what.startswith("REQUEST")]
    assert refused, f"test condition: the unit never asked for its offered address while DHCP refused ({asked})"
    assert "DISCOVER" in asked[refused[0] + 1:], f"no DISCOVER after a NAKed REQUEST (RFC 2131 3.1): DHCP heard {asked}"
    dhcp_ports = {DHCP_SERVER_PORT, DHCP_CLIENT_PORT}
    other = [p for p in rig.capture.traffic(since=since, until=until).packets
             if p.proto in ("udp", "tcp") and not {p.sport, p.dport} & dhcp_ports]
    assert not other, (
        f"with every REQUEST refused the unit has no address, yet it sent {len(other)} packet(s) other than DHCP, "
        f"the first {other[0].proto} {other[0].src}:{other[0].sport} -> {other[0].dst}:{other[0].dport}")


@pytest.mark.req("NET-01")
def test_a_short_lease_is_renewed_before_it_expires_again_and_again(net):
    """RFC 2131 4.4.5: the client renews its lease (a REQUEST for its address to the server that
    gave it) before the lease expires, at T1 (half the lease by default), and so on with each
    renewed lease. A 120 s lease from power-up, watched for three lease times: no gap between the
    unit's REQUESTs as long as a lease."""
    rig = net
    dhcp = rig.network.dhcp
    dhcp.lease_s = SHORT_LEASE_S
    t0 = rig.clock.now()
    rig.power_cycle()
    rig.clock.sleep(3 * SHORT_LEASE_S, "three short leases")
    asked = [q for q in dhcp.queries(since=t0) if q.what == f"REQUEST {dhcp.lease_address}"]
    times = [q.time for q in asked]
    assert len(times) >= 3, f"in {3 * SHORT_LEASE_S} s with a {SHORT_LEASE_S} s lease the unit asked for it " \
                            f"{len(times)} time(s) (the first REQUEST and at least two renewals expected)"
    gaps = [b - a for a, b in zip(times, times[1:])] + [rig.clock.now() - times[-1]]
    assert max(gaps) < SHORT_LEASE_S, (
        f"{max(gaps):.1f} s without a REQUEST for a {SHORT_LEASE_S} s lease: it expired before the unit renewed it "
        f"(REQUESTs at {[round(t - t0, 1) for t in times]} s after power-off)")


@pytest.mark.req("NET-02")
@pytest.mark.parametrize("silenced, how", [(0, "silent"), (1, "silent"), (2, "silent"), (3, "silent"),
                                           (1, "refuse"), (1, NO_ADDRESS), (1, STRAY)])
def test_dns_servers_asked_in_the_documented_order(net, silenced, how):
    """A server that gives no address for the name (dead, refusing, or knowing the name without an
    address) sends the unit to the next in the documented order, and the unit still connects. A
    server that answers only with another query's ID (stray: a late or forged reply, RFC 5452 9.1)
    is a server that did not answer: a unit that takes its address connects nowhere."""
    rig = net
    servers = rig.network.dns_servers()  # (address the unit sends to, server) by priority
    for address, server in servers[:silenced]:
        server.set_mode(how)
    rig._net_mark, mark = rig.capture.mark(), rig.central.mark()
    rig.power_cycle()
    try:
        rig.central.wait_for("BootNotification", after=mark,
                             timeout=rig.limit("boot.self_test_max_s") + rig.limit("boot.accept_max_s"))
    except CentralSystemTimeout:
        boot = None  # judged below, after the order: which server the unit stopped at says why
    else:
        boot = True
    asked = _boot_dns_order(rig)
    expected = [address for address, _ in servers[:silenced + 1]]
    assert asked[:silenced + 1] == expected, (
        f"with the first {silenced} DNS server(s) {how} the unit should ask {expected} in that order "
        f"(DHCP primary, secondary, 1.1.1.1, 1.0.0.1); it asked {asked}")
    if boot is None:
        raise ChargerFailure(f"with the first {silenced} DNS server(s) {how} the unit asked {asked} and never "
                             f"registered with the central system")
    rig.await_ready()


@pytest.mark.req("NET-02")
def test_a_third_dns_server_from_dhcp_is_not_asked_before_cloudflare(net):
    """DHCP gives three DNS servers, the third being 1.0.0.1 (the document's fourth). The priority
    table has two DHCP places, then 1.1.1.1, then 1.0.0.1: with the DHCP primary and secondary
    silent the unit asks 1.1.1.1 next, not the third server DHCP named."""
    rig = net
    servers = rig.network.dns_servers()
    (primary, p_server), (secondary, s_server), (cloudflare, _), (cloudflare_2, _) = servers
    rig.network.dhcp.dns = [rig.network.dhcp.dns[0], rig.network.dhcp.dns[1], cloudflare_2]
    p_server.set_mode("silent")
    s_server.set_mode("silent")
    rig._net_mark, mark = rig.capture.mark(), rig.central.mark()
    rig.power_cycle()
    rig.central.wait_for("BootNotification", after=mark,
                         timeout=rig.limit("boot.self_test_max_s") + rig.limit("boot.accept_max_s"))
    asked = _boot_dns_order(rig)
    assert asked[:3] == [primary, secondary, cloudflare], (
        f"DHCP named {rig.network.dhcp.dns}; with the first two silent the unit should ask {primary}, "
        f"{secondary}, then {cloudflare} (DHCP primary, secondary, 1.1.1.1, 1.0.0.1); it asked {asked}")
    rig.await_ready()


@pytest.mark.req("NET-03")
def test_wrong_clock_blocks_authentication_until_ntp_corrects_it(net):
    rig = net
    ntp = rig.network.ntp
    ntp.set_error(-3 * 365 * 86400.0)  # three years behind: every certificate is "not yet valid"
    mark, t0 = rig.central.mark(), rig.clock.now()
    attempts_before = len(rig.central.auth_attempts)
    rig.power_cycle()
    rig.clock.sleep(120.0, "unit boots with a wrong clock")
    asked = [q for q in ntp.queries(since=t0) if q.answered]
    assert asked, "the unit never asked pool.ntp.org for the time (NET: NTP)"
    boots = [m for m in rig.central.history(action="BootNotification", direction="in") if m.index >= mark]
    assert not boots, (f"with its clock set three years wrong by NTP the unit still authenticated and sent "
                       f"BootNotification at {boots[0].time:.1f} s")
    assert len(rig.central.auth_attempts) == attempts_before, "credentials went to a server the unit could not verify"
    ntp.set_error(0.0)
    fixed_at = rig.clock.now()
    boot = rig.central.wait_for("BootNotification", timeout=rig.limit("net.ntp_recovery_max_s") + 10.0, after=mark)
    rig.check_limit("registered after NTP served the right time", boot.time - fixed_at, high="net.ntp_recovery_max_s",
                    resolution=rig.clock.resolution_s)
    rig.await_ready()


@pytest.mark.req("NET-03")
def test_an_unreachable_time_server_does_not_keep_a_unit_with_a_right_clock_offline(net):
    """NTP corrects a wrong clock; it is not a condition for connecting. A site firewall that drops
    UDP 123 must not leave a unit with a right clock unregistered for ever."""
    rig = net
    ntp = rig.network.ntp
    ntp.set_mode("silent")
    mark, t0 = rig.central.mark(), rig.clock.now()
    rig.power_cycle()
    allowed = rig.limit("boot.self_test_max_s") + rig.limit("boot.accept_max_s") + rig.limit("net.ntp_unreachable_max_s")
    try:
        boot = rig.central.wait_for("BootNotification", timeout=allowed, after=mark)
    except CentralSystemTimeout:
        raise ChargerFailure(f"with pool.ntp.org unreachable and its clock right the unit did not register within "
                             f"{allowed:g} s ({rig.source_of('net.ntp_unreachable_max_s')})") from None
    assert ntp.queries(since=t0), "the unit registered without asking pool.ntp.org for the time at boot"
    rig.check_limit("registered with NTP unreachable, after the self-test", boot.time - t0 - rig.limit("boot.self_test_max_s"),
                    high="net.ntp_unreachable_max_s", resolution=rig.clock.resolution_s)
    rig.await_ready()


@pytest.mark.req("NET-03")
def test_a_time_reply_that_does_not_answer_the_units_request_is_not_taken(net):
    """pool.ntp.org answers every query with a time three years behind, but in replies whose
    originate timestamp is not the request's transmit time (a late or forged reply; RFC 5905 8:
    the client discards it). A unit that checks its replies keeps its right clock and registers
    as with NTP unreachable; one that takes them cannot authenticate."""
    rig = net
    ntp = rig.network.ntp
    ntp.set_error(-3 * 365 * 86400.0)
    ntp.set_mode("stray")
    mark, t0 = rig.central.mark(), rig.clock.now()
    rig.power_cycle()
    allowed = rig.limit("boot.self_test_max_s") + rig.limit("boot.accept_max_s") + rig.limit("net.ntp_unreachable_max_s")
    try:
        rig.central.wait_for("BootNotification", timeout=allowed, after=mark)
    except CentralSystemTimeout:
        raise ChargerFailure(f"with pool.ntp.org answering only in replies to other requests (three years behind) "
                             f"the unit did not register within {allowed:g} s: it took a reply it should have "
                             "discarded") from None
    assert [q for q in ntp.queries(since=t0) if q.answered], "the unit never asked pool.ntp.org for the time"
    rig.await_ready()


@pytest.mark.req("NET-04")
def test_traffic_of_one_charge_cycle(net):
    rig = net
    since = rig.capture.mark()
    start_charging(rig)
    rig.clock.sleep(CHARGE_CYCLE_S, "one charge cycle")
    rig.ev.unplug()
    rig.clock.sleep(10.0, "session closes")
    traffic = rig.capture.traffic(since=since)
    rig.check_limit("traffic of a one-hour charge cycle (IP bytes both ways)", traffic.total_bytes,
                    high="net.charge_cycle_max_bytes", resolution=1)


@pytest.mark.req("NET-04")
def test_traffic_of_an_idle_day(net):
    rig = net
    since = rig.capture.mark()
    rig.clock.sleep(IDLE_DAY_S, "a day without a vehicle")
    traffic = rig.capture.traffic(since=since)
    rig.check_limit("traffic of an idle day (IP bytes both ways)", traffic.total_bytes,
                    high="net.idle_day_max_bytes", resolution=1)


@pytest.mark.req("SEC-01")
@pytest.mark.parametrize("kind", [UNTRUSTED, EXPIRED])
def test_refuses_a_central_system_whose_certificate_does_not_verify(net, kind):
    rig = net
    ca = rig.network.ca
    assert rig.central.ssl_context is not None, "the rig's central system serves without TLS (central.tls = false)"
    attempts = len(rig.central.auth_attempts)
    rig.central.set_tls(ca.server_context(OCPP_HOST, kind))  # drops the unit; it reconnects to this
    try:
        rig.clock.sleep(60.0, "unit tries to reconnect")
        assert not rig.central.connected(rig.cp_id), (
            f"the unit connected to a central system presenting a certificate that is {kind}")
        assert len(rig.central.auth_attempts) == attempts, (
            f"the unit sent its credentials to a server whose certificate is {kind}")
    finally:
        rig.central.set_tls(ca.server_context(OCPP_HOST, GOOD))
    rig.await_ready(timeout_s=60.0)


@pytest.mark.req("SEC-02")
def test_connects_with_its_own_credentials_over_tls(net):
    rig = net
    assert rig.central.ssl_context is not None, "the rig's central system serves without TLS (central.tls = false)"
    mark = rig.central.mark()
    rig.central.disconnect(rig.cp_id)
    rig.await_ready(timeout_s=60.0)
    attempts = [a for a in rig.central.auth_attempts if a.cp_id == rig.cp_id]
    assert attempts, "the unit connected without presenting credentials"
    last = attempts[-1]
    assert last.user == rig.cp_id, f"HTTP Basic user {last.user!r}, expected the charge point id {rig.cp_id!r}"
    assert last.password not in COMMON_DEFAULTS, f"the unit uses a universal default password {last.password!r}"
    assert last.accepted, "the unit's password is not its own (it does not match its manufacturing record)"
    # connected is not yet spoken: on a real clock the unit's first frame on the new connection can
    # still be on its way when await_ready (registered once, connected now) returns
    spoke = rig.clock.wait_until(lambda: rig.central.history(direction="in")[-1].index >= mark, 60.0, poll=0.05,
                                 reason="the unit speaks on the new connection")
    assert rig.central.connected(rig.cp_id) and spoke is not None, "the unit said nothing on its new TLS connection"


@pytest.mark.req("FW-02")
@pytest.mark.parametrize("image", ["tampered", "unsigned"])
def test_tampered_firmware_is_not_installed(net, image):
    """An image whose signature does not verify, and one served with no signature at all."""
    rig = net
    version_before = rig.central.history(action="BootNotification", direction="in")[-1].payload["firmwareVersion"]
    path = rig.network.firmware.publish("PS-FW 9.9.9", tampered=image == "tampered", signed=image == "tampered")
    mark = rig.central.mark()
    retrieve = rig.time.now().strftime("%Y-%m-%dT%H:%M:%S.000Z")
    rig.central.call("UpdateFirmware", {"location": f"https://{SETUP_HOST}{path}", "retrieveDate": retrieve})
    failed = rig.central.wait_for("FirmwareStatusNotification",
                                  lambda p: p["status"] in ("InstallationFailed", "Installed"), timeout=300.0,
                                  after=mark)
    assert failed.payload["status"] == "InstallationFailed", (
        f"a firmware image whose signature does not verify ({image}) was installed")
    downloads = [d for d in rig.network.firmware.downloads() if d.path == path]
    assert downloads, "the unit reported on the update without fetching the image from the firmware server"
    rig.clock.sleep(30.0)
    boots = [m for m in rig.central.history(action="BootNotification", direction="in") if m.index >= mark]
    versions = {m.payload["firmwareVersion"] for m in boots}
    assert versions <= {version_before}, f"the running version changed to {versions} after a refused image"
    running = rig.console.info().get("firmware")
    assert running == version_before, f"the service console reports firmware {running!r}, not {version_before!r}"
