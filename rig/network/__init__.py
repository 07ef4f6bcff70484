"""The rig as the charger's network: the services a PlugStream unit expects to find.

The product's network document (../shared/seeds/000_cfe9c85084c49961.txt) says what the unit
uses: DHCP (UDP 67/68) for its address and DNS servers; DNS (UDP 53) asking the DHCP-given
servers first, then Cloudflare's 1.1.1.1 and 1.0.0.1; NTP (UDP 123) from pool.ntp.org; HTTPS
(TCP 443) to ocpp.ampnexus.net and setup.plugstream.co.uk; no incoming port. The rig serves all
of it from addresses it owns (one service per module), and records what the unit sends:

* `dhcp.DhcpServer`   BOOTP/DHCP (RFC 2131/2132): DISCOVER/OFFER/REQUEST/ACK, option 6 = DNS servers
* `dns.DnsServer`     DNS (RFC 1035) A records for the documented host names; answer | silent | refuse
* `ntp.NtpServer`     SNTP v4 (RFC 4330) serving the rig's TimeService time plus a settable error
* `ca.TestAuthority`  the rig's test CA: server certificates, an untrusted and an expired one,
                      the firmware signing key
* `firmware.FirmwareServer`  HTTPS GET of firmware images and their detached signatures
* `pcap`              libpcap files: written by the emulated link, read by rig/instruments/capture.py
* `services.NetworkServices`  all of the above from the rig file's [network] section (`rig.network`)

Every service takes a bind address from the rig file: the rig's own address on the bench
network on a real bench, loopback and port 0 on the emulated bench.
"""

from __future__ import annotations

#: What the product's network document says (NET: Network Security, Outgoing Ports, DNS, NTP).
OCPP_HOST = "ocpp.ampnexus.net"
SETUP_HOST = "setup.plugstream.co.uk"  # also where firmware updates come from (NET: HTTPS)
NTP_HOST = "pool.ntp.org"
DOCUMENTED_HOSTS = (OCPP_HOST, SETUP_HOST, NTP_HOST)
PUBLIC_DNS = ("1.1.1.1", "1.0.0.1")  # Cloudflare primary, secondary: priorities 3 and 4
HTTPS_PORT = 443
DNS_PORT = 53
NTP_PORT = 123
DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
BROADCAST = "255.255.255.255"
