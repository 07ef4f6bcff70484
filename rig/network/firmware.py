"""The rig's firmware server: HTTPS GET of images and their detached signatures.

The document says the unit verifies the server certificate before downloading an update and
verifies the update cryptographically before installing it (FW-02). So the rig serves, for each
published version, `/firmware/<name>.bin` and `/firmware/<name>.bin.sig` (Ed25519 over the
image, by the rig CA's firmware key) over TLS with a certificate for setup.plugstream.co.uk,
and can serve a tampered image (the signature of the original with altered bytes) or an
unsigned one. Minimal HTTP/1.1: GET, Content-Length, Connection: close.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import threading
from dataclasses import dataclass

from rig.core.aio import LoopThread
from rig.core.clock import Clock
from rig.core.errors import InstrumentError
from rig.network import HTTPS_PORT
from rig.network.ca import TestAuthority

IMAGE_BYTES = 128 * 1024  # big enough to be an image, small enough that a download costs nothing
REQUEST_LIMIT = 16 * 1024
READ_TIMEOUT_S = 10.0  # real seconds a client gets to send its request


@dataclass(frozen=True)
class Download:
    time: float
    path: str
    status: int
    bytes_sent: int


def image_name(version: str) -> str:
    """'PS-FW 4.3.0' -> 'PS-FW-4.3.0.bin' (the issue-4 contract: the version is in the file name)."""
    return version.replace(" ", "-") + ".bin"


class FirmwareServer:
    """Config: host, port (443 on a real bench, 0 = any free). `ssl_context` presents the server's
    certificate (TestAuthority.server_context(setup host)); `authority` signs what is published."""

    def __init__(self, name: str, config: dict, clock: Clock, authority: TestAuthority,
                 ssl_context: ssl.SSLContext, loop: LoopThread | None = None):
        self.name, self.clock, self.authority = name, clock, authority
        self.ssl_context = ssl_context
        self.host = str(config.get("host") or "127.0.0.1")
        port = config.get("port", HTTPS_PORT)
        self._wanted_port = 0 if port in (None, "", "auto") else int(port)
        self._loop, self._own_loop = loop, loop is None
        self._server: asyncio.AbstractServer | None = None
        self.address: tuple[str, int] | None = None
        self._files: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._downloads: list[Download] = []

    # -- life cycle ------------------------------------------------------------------------
    def open(self) -> "FirmwareServer":
        if self._server is not None:
            return self
        if self._loop is None:
            self._loop = LoopThread(f"{self.name}-https").start()
        try:
            self._loop.run(self._listen(), timeout=10)
        except OSError as exc:
            raise InstrumentError(self.name, f"cannot listen on tcp {self.host}:{self._wanted_port}: {exc}") from exc
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._wanted_port, ssl=self.ssl_context)
        self.address = self._server.sockets[0].getsockname()[:2]

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None and self._loop is not None:
            async def shut():
                server.close()
            try:
                self._loop.run(shut(), timeout=5)
            except (TimeoutError, RuntimeError):
                pass
        if self._own_loop and self._loop is not None:
            self._loop.stop()
            self._loop = None

    # -- content ---------------------------------------------------------------------------
    def publish(self, version: str, tampered: bool = False, signed: bool = True) -> str:
        """Serve firmware `version`; returns its path. `tampered`: the image served differs from
        the one signed; `signed=False`: no signature file at all."""
        name = image_name(version)
        image = _image_bytes(version)
        signature = self.authority.sign_firmware(image)
        if tampered:
            image = bytearray(image)
            image[len(image) // 2] ^= 0xFF
            image = bytes(image)
        with self._lock:
            self._files[f"/firmware/{name}"] = image
            if signed:
                self._files[f"/firmware/{name}.sig"] = signature
            else:
                self._files.pop(f"/firmware/{name}.sig", None)
        return f"/firmware/{name}"

    def downloads(self) -> list[Download]:
        with self._lock:
            return list(self._downloads)

    # -- HTTP ------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            status, body = self._answer(head[:REQUEST_LIMIT])
            reason = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request"}[status]
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n"
                         f"Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError, ssl.SSLError):
            pass  # a client that fails TLS or goes away gets nothing; the unit's side reports it
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[int, bytes]:
        try:
            method, path, _version = head.split(b"\r\n", 1)[0].decode("ascii").split(" ")
        except ValueError:
            return 400, b""
        if method != "GET":
            return 405, b""
        with self._lock:
            body = self._files.get(path)
            status = 200 if body is not None else 404
            self._downloads.append(Download(self.clock.now(), path, status, len(body or b"")))
        return status, body or b""


def _image_bytes(version: str) -> bytes:
    """A deterministic stand-in image for `version` (hash chain), IMAGE_BYTES long."""
    seed = hashlib.sha256(version.encode()).digest()
    blocks, block = [], seed
    while len(blocks) * 32 < IMAGE_BYTES:
        block = hashlib.sha256(block).digest()
        blocks.append(block)
    return (b"PSFW" + version.encode().ljust(28, b"\0") + b"".join(blocks))[:IMAGE_BYTES]
