"""Every network service of the rig, from the rig file's [network] section: `rig.network`.

Addresses (the `[network]` keys): the rig's own address (`address`: DHCP server and router), the
address leased to the unit (`unit_address`), the two DNS servers DHCP hands out (`dns_primary`,
`dns_secondary`), the rig addresses that answer for Cloudflare's 1.1.1.1 and 1.0.0.1
(`cloudflare_primary`, `cloudflare_secondary`; on a real bench the rig holds 1.1.1.1 and 1.0.0.1
itself) and the A records of the documented host names (`ocpp_address`, `setup_address`,
`ntp_address`). Ports: `ports = "standard"` (67, 53, 123, 443: a real bench) or "auto" (free
ports: the emulated bench, whose link maps each documented port to the real one).
"""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from rig.core.aio import LoopThread
from rig.core.clock import Clock
from rig.core.errors import ServiceFaults
from rig.network import (BROADCAST, DHCP_SERVER_PORT, DNS_PORT, HTTPS_PORT, NTP_HOST, NTP_PORT, OCPP_HOST, PUBLIC_DNS,
                         SETUP_HOST)
from rig.network.ca import TestAuthority
from rig.network.dhcp import DEFAULT_LEASE_S, DhcpServer
from rig.network.dns import DnsServer
from rig.network.firmware import FirmwareServer
from rig.network.ntp import NtpServer

#: the DNS servers in the unit's documented priority order: DHCP primary, secondary, 1.1.1.1, 1.0.0.1
DNS_ORDER = ("dns_primary", "dns_secondary", "cloudflare_primary", "cloudflare_secondary")


def standard_routes(config: dict, central: tuple[str, int]) -> dict[tuple[str, str, int], tuple[str, int]]:
    """Where a unit's own IP stack reaches each documented destination when the rig serves the
    standard ports at the [network] addresses (a real bench, `ports = "standard"`): the same
    addresses, except that DHCP's broadcast reaches the rig's address, Cloudflare's 1.1.1.1 and
    1.0.0.1 reach the rig addresses that answer for them, and the central system is `central`."""
    ocpp, setup, ntp = config["ocpp_address"], config["setup_address"], config["ntp_address"]
    routes = {("udp", BROADCAST, DHCP_SERVER_PORT): (config["address"], DHCP_SERVER_PORT),
              ("udp", config["address"], DHCP_SERVER_PORT): (config["address"], DHCP_SERVER_PORT),
              ("udp", ntp, NTP_PORT): (ntp, NTP_PORT), ("tcp", ocpp, HTTPS_PORT): central,
              ("tcp", setup, HTTPS_PORT): (setup, HTTPS_PORT)}
    public = dict(zip(("cloudflare_primary", "cloudflare_secondary"), PUBLIC_DNS))
    for role in DNS_ORDER:
        routes[("udp", public.get(role, config[role]), DNS_PORT)] = (config[role], DNS_PORT)
    return routes


class NetworkServices:
    """DHCP, four DNS servers, NTP, the test CA and the firmware server, in one loop thread.

    `endpoints()` says where each documented destination is really served, for the emulated link.
    """

    def __init__(self, name: str, config: dict, clock: Clock, time_source: Callable[[], datetime] | None = None,
                 faults: ServiceFaults | None = None):
        self.name, self.config, self.clock = name, config, clock
        self.faults = faults if faults is not None else ServiceFaults()
        self.time_source = time_source or clock.utc_now
        self.standard_ports = config.get("ports", "standard") == "standard"
        self.address = config["address"]
        self.unit_address = config["unit_address"]
        self.hosts = {OCPP_HOST: config["ocpp_address"], SETUP_HOST: config["setup_address"],
                      NTP_HOST: config["ntp_address"]}
        self.dns_addresses = {role: config[role] for role in DNS_ORDER}
        self._loop: LoopThread | None = None
        self.ca: TestAuthority | None = None
        self.dhcp: DhcpServer | None = None
        self.dns: dict[str, DnsServer] = {}
        self.ntp: NtpServer | None = None
        self.firmware: FirmwareServer | None = None

    def _port(self, standard: int) -> int:
        return standard if self.standard_ports else 0

    # -- life cycle ------------------------------------------------------------------------
    def open(self) -> "NetworkServices":
        if self._loop is not None:
            return self
        self._loop = LoopThread(f"{self.name}-services", self.faults).start()
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        c, loop = self.config, self._loop
        self.ca = TestAuthority(self.time_source, c.get("ca_dir") or None)
        self.dhcp = DhcpServer("dhcp", {
            "host": "0.0.0.0" if self.standard_ports else self.address, "port": self._port(DHCP_SERVER_PORT),
            "lease_address": self.unit_address, "netmask": c.get("netmask", "255.255.255.0"),
            "router": self.address, "server_id": self.address, "lease_s": c.get("dhcp_lease_s", DEFAULT_LEASE_S),
            "dns": [c["dns_primary"], c["dns_secondary"]],
        }, self.clock, loop).open()
        for role in DNS_ORDER:
            self.dns[role] = DnsServer(f"dns {role}", {
                "host": self.dns_addresses[role], "port": self._port(DNS_PORT), "records": self.hosts,
                "ttl_s": c.get("dns_ttl_s", 300)}, self.clock, loop).open()
        self.ntp = NtpServer("ntp", {"host": self.hosts[NTP_HOST], "port": self._port(NTP_PORT)}, self.clock, loop,
                             time_source=self.time_source).open()
        self.firmware = FirmwareServer("firmware", {"host": self.hosts[SETUP_HOST], "port": self._port(HTTPS_PORT)},
                                       self.clock, self.ca, self.ca.server_context(SETUP_HOST), loop).open()

    def close(self) -> None:
        for service in [self.firmware, self.ntp, *self.dns.values(), self.dhcp]:
            if service is not None:
                try:
                    service.close()
                except Exception:  # closing the others matters more
                    pass
        if self._loop is not None:
            self._loop.stop()
            self._loop = None
        if self.ca is not None:
            self.ca.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what tests use --------------------------------------------------------------------
    def restore(self) -> None:
        """Every service answering and the time right: the state each test starts from."""
        for server in self.dns.values():
            server.set_mode("answer")
        self.dhcp.set_mode("answer")
        self.dhcp.dns = [self.config["dns_primary"], self.config["dns_secondary"]]
        self.dhcp.lease_s = self.dhcp.configured_lease_s
        self.ntp.set_mode("answer")
        self.ntp.set_error(0.0)

    def dns_servers(self) -> list[tuple[str, DnsServer]]:
        """(address the unit sends to, server) in the documented priority order."""
        public = dict(zip(("cloudflare_primary", "cloudflare_secondary"), PUBLIC_DNS))
        return [(public.get(role, self.dns_addresses[role]), self.dns[role]) for role in DNS_ORDER]

    def allowed_destinations(self) -> set[tuple[str, str, int]]:
        """What NET-01 allows the unit to send to, as (protocol, address, port), addresses as the
        unit sees them: DHCP broadcast and the DHCP server, the DNS servers in order, pool.ntp.org
        on 123, the two HTTPS hosts on 443."""
        allowed = {("udp", "255.255.255.255", DHCP_SERVER_PORT), ("udp", self.address, DHCP_SERVER_PORT)}
        allowed |= {("udp", address, DNS_PORT) for address, _ in self.dns_servers()}
        allowed.add(("udp", self.hosts[NTP_HOST], NTP_PORT))
        allowed |= {("tcp", self.hosts[h], HTTPS_PORT) for h in (OCPP_HOST, SETUP_HOST)}
        return allowed

    def endpoints(self, central: tuple[str, int]) -> dict[tuple[str, str, int], tuple[str, int]]:
        """Documented destination (protocol, address, port) -> where it is really served.
        `central` is where the central system listens."""
        routes = {("udp", "255.255.255.255", DHCP_SERVER_PORT): self.dhcp.address,
                  ("udp", self.address, DHCP_SERVER_PORT): self.dhcp.address,
                  ("udp", self.hosts[NTP_HOST], NTP_PORT): self.ntp.address,
                  ("tcp", self.hosts[OCPP_HOST], HTTPS_PORT): central,
                  ("tcp", self.hosts[SETUP_HOST], HTTPS_PORT): self.firmware.address}
        for address, server in self.dns_servers():
            routes[("udp", address, DNS_PORT)] = server.address
        return routes
