"""Reachability of a real bench: every instrument's address tried, in parallel, one line per
unreachable one (`rig check`)."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rig.core.errors import RigFileError

from rig.core.rigfile.typed import RigFile
from rig.core.rigfile.validate import _one_line

# --- reachability (real benches) --------------------------------------------------------------

def _serial_problem(device: str) -> str | None:
    if not os.path.exists(device):
        return f"no such device {device} (adapter unplugged? see ls /dev/serial/by-id)"
    if not os.access(device, os.R_OK | os.W_OK):
        return f"{device} is not readable and writable by this user (dialout group?)"
    return None


def _tcp_problem(host: str, port: int, timeout_s: float) -> str | None:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.timeout:
        return f"nothing answers at {host}:{port} within {timeout_s:g} s"
    except OSError as exc:
        return f"cannot connect to {host}:{port}: {exc.strerror or exc}"


def _listen_problem(host: str, port: int) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return f"the central system cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def _visa_endpoint(resource: str) -> tuple[str, str | int] | None:
    """("tcp", (host, port)) or ("serial", device) for the resources we can probe cheaply."""
    from pyvisa import rname

    parsed = rname.parse_resource_name(resource)
    if isinstance(parsed, rname.TCPIPSocket):
        return "tcp", (parsed.host_address, int(parsed.port))
    if isinstance(parsed, rname.TCPIPInstr):
        # HiSLIP listens on 4880; VXI-11 starts at the portmapper on 111
        port = 4880 if parsed.lan_device_name.lower().startswith("hislip") else 111
        return "tcp", (parsed.host_address, port)
    if isinstance(parsed, rname.ASRLInstr) and parsed.board.startswith("/"):
        return "serial", parsed.board
    return None  # USB and GPIB need the VISA library itself; opening them is the driver's job


def _serial_probe(key: str, port: str) -> tuple[str, str, Any]:
    """A serial port, or a serial-over-LAN adapter (socket://HOST:PORT, rfc2217://HOST:PORT) probed
    as the TCP endpoint it is."""
    scheme, _, rest = port.partition("://")
    if rest and scheme in ("socket", "rfc2217"):
        host, _, tcp_port = rest.split("/")[0].split("?")[0].rpartition(":")
        if host and tcp_port.isdigit():
            return key, "tcp", (host.strip("[]"), int(tcp_port))
    return key, "serial", port


def _probes(rig: RigFile) -> list[tuple[str, str, Any]]:
    """(key, "serial" | "tcp" | "listen", address) for every address on the bench."""
    probes: list[tuple[str, str, Any]] = []
    if rig.meter.transport == "rtu":
        probes.append(_serial_probe("meter.port", rig.meter.port))
    else:
        probes.append(("meter.port", "tcp", (rig.meter.host, rig.meter.port)))
    for name in ("load", "source", "injector"):
        endpoint = _visa_endpoint(getattr(rig, name).resource)
        if endpoint:
            probes.append((f"{name}.resource", *endpoint))
    probes.append(_serial_probe("led_sensor.port", rig.led_sensor.port))
    probes.append(_serial_probe("console.port", rig.console.port))
    if rig.pilot.pin_factory == "pigpio":
        probes.append(("pilot.host", "tcp", (rig.pilot.host or "localhost", rig.pilot.port)))
    probes.append(("central.port", "listen", (rig.central.host, rig.central.port)))
    return probes


def check_reachable(rig: RigFile, timeout_s: float = 1.0) -> list[str]:
    """One line per instrument of a real bench that cannot be reached, naming its key.

    TCP endpoints are tried in parallel so a bench with several dead hosts still answers
    within about `timeout_s`. Not for the emulated bench: its "auto" addresses exist only
    once the emulated instruments start.
    """
    if rig.bench.kind != "real":
        raise RigFileError(str(rig.path), "bench.kind", "reachability is only checked on a real bench")

    def run(probe: tuple[str, str, Any]) -> str | None:
        key, how, address = probe
        if how == "serial":
            problem = _serial_problem(address)
        elif how == "tcp":
            problem = _tcp_problem(*address, timeout_s)
        else:
            problem = _listen_problem(*address)
        return str(RigFileError(str(rig.path), key, _one_line(problem))) if problem else None

    probes = _probes(rig)
    with ThreadPoolExecutor(max_workers=len(probes)) as pool:
        return [line for line in pool.map(run, probes) if line]
