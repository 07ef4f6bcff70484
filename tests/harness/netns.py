"""A network namespace joined to this one by a veth pair: the device on the far side of a wire.

The harness stays in the machine's namespace on the rig's end of the veth (its address and the
addresses of the documented services, all on one /24); the device runs inside the namespace with
the unit's address and the instruments' address. Nothing reaches the device except over the veth.
Needs root (CAP_NET_ADMIN) and iproute2; `available()` says whether this machine allows it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from itertools import count

#: host numbers on the /24 the rig's end holds: the rig (DHCP server), DNS x4, OCPP, setup, NTP
RIG_HOSTS = (1, 53, 54, 111, 112, 80, 81, 123)
UNIT_HOST, INSTRUMENTS_HOST = 10, 20
_numbers = count()


def available() -> str | None:
    """None if a namespace can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = subprocess.run(["ip", "netns", "add", "rig-probe-%d" % os.getpid()], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"this machine refuses network namespaces: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "rig-probe-%d" % os.getpid()], capture_output=True)
    return None


class Namespace:
    def __init__(self, prefix: str | None = None):
        n = next(_numbers)
        tag = f"{os.getpid() % 10000}{n}"
        self.name = f"rigdev{tag}"
        self.host_if, self.device_if = f"vrh{tag}", f"vrd{tag}"
        self.prefix = prefix or f"10.{77 + n}.{os.getpid() % 250}"
        self.unit = f"{self.prefix}.{UNIT_HOST}"
        self.instruments = f"{self.prefix}.{INSTRUMENTS_HOST}"

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def create(self) -> "Namespace":
        self._ip("netns", "add", self.name)
        try:
            self._ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.device_if)
            self._ip("link", "set", self.device_if, "netns", self.name)
            for host in RIG_HOSTS:
                self._ip("addr", "add", f"{self.prefix}.{host}/24" if host == 1 else f"{self.prefix}.{host}/32",
                         "dev", self.host_if)
            self._ip("link", "set", self.host_if, "up")
            inside = ["netns", "exec", self.name, "ip"]
            self._ip(*inside, "addr", "add", f"{self.unit}/24", "dev", self.device_if)
            self._ip(*inside, "addr", "add", f"{self.instruments}/24", "dev", self.device_if)
            self._ip(*inside, "link", "set", self.device_if, "up")
            self._ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self.delete()
            raise
        return self

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)  # takes its peer with it
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
