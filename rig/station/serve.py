"""`rig station`: load the station file (or make an emulated station), bind the panel's port, and
serve until Ctrl-C / SIGTERM; stopping aborts every unit on test (its rig made safe) first."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys

from rig.station.stationfile import StationFileError, emulated_station, load_station_file

log = logging.getLogger(__name__)


class StationError(Exception):
    """One line for the station's terminal: what to fix."""


def load(station_file: str | None, emulated: int | None, reports: str | None):
    from pathlib import Path

    if station_file and emulated:
        raise StationError("give a station file or --emulated N, not both")
    if station_file:
        try:
            return load_station_file(station_file)
        except StationFileError as exc:
            raise StationError(str(exc)) from None
    if not emulated or not 1 <= emulated <= 8:
        raise StationError("which station? give a station file (docs/factory.md) or --emulated N (1 to 8 sockets)")
    return emulated_station(emulated, reports=Path(reports or "reports").resolve(), hazardous=True)


def bind(host: str, port: int) -> socket.socket:
    """The panel's listening socket, bound here so a port in use is one line, not a traceback."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "in use (another station?)" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StationError(f"cannot listen on {host}:{port}: {why}; choose another with --port") from None
    sock.listen(64)
    return sock


def serve(station_file: str | None, emulated: int | None, host: str, port: int, reports: str | None = None,
          out=sys.stdout) -> int:
    from rig.station.panel import make_server
    from rig.station.runner import Station

    station = Station(load(station_file, emulated, reports))
    sock = bind(host, port)
    address = sock.getsockname()
    server = make_server(station, host, address[1])
    shown = f"[{address[0]}]" if ":" in address[0] else address[0]
    print(f"station {station.file.name}: {len(station.slots)} socket(s) "
          f"({', '.join(station.slots)}); reports under {station.home}", file=out)
    print(f"panel: http://{shown}:{address[1]}/", file=out, flush=True)
    asyncio.run(server.serve(sockets=[sock]))
    return 0
