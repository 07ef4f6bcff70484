"""A real PostgreSQL server for the records tests: the operating system's package (Debian's
`postgresql`, installed by .ci/run), started in a temporary data directory on a free port, on
loopback only, with trust authentication for its one user. Stopped and started again on demand
(the server going down mid-run is one of the things tested).

PostgreSQL refuses to run as root: as root (CI) the server runs as the package's `postgres` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from pathlib import Path

USER, DATABASE = "rig", "records"


def binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self):
        import tempfile

        self.bin = binaries()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install -y postgresql")
        # its own folder straight under /tmp: pytest's tmp_path is private to root, where the
        # `postgres` user could not reach its data directory
        self.base = base = Path(tempfile.mkdtemp(prefix="rig-pg-"))
        base.chmod(0o755)
        self.data = base / "data"
        self.sockets = base / "sockets"
        self.port = _free_port()
        self.as_postgres = os.geteuid() == 0
        for d in (base, self.sockets):
            d.mkdir(parents=True, exist_ok=True)
            if self.as_postgres:
                shutil.chown(d, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, DATABASE)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd="/")
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} failed: {proc.stdout[-1500:]} {proc.stderr[-1500:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "server.log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def close(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.base, ignore_errors=True)
