"""The emulated unit's firmware download over its network stack (charger_network.py): the image
and its detached signature fetched over HTTPS from the location UpdateFirmware gave, the server
certificate verified first (UnitNetwork.open_tls), and an image installed only if its Ed25519
signature verifies against the key installed at manufacture (FW-02).

`FirmwareFetch` is a mixin of UnitNetwork (it uses its lock, clock, loop, resolver and TLS);
`attach_firmware_download` makes the charger's modelled download (charger_firmware.py) use it.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Callable

from cryptography.exceptions import InvalidSignature

from rig.network import HTTPS_PORT


class FirmwareFetch:
    def fetch(self, url: str, on_done: Callable[[bytes | None, str], None]) -> None:
        """HTTPS GET `url` (certificate verified first); `on_done(body or None, why)` on the clock."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            on_done(None, f"refused: {url} is not an https URL")
            return
        host, port, path = parts.hostname, parts.port or HTTPS_PORT, parts.path or "/"

        def resolved(address: str | None) -> None:
            if address is None:
                on_done(None, f"cannot resolve {host}")
                return
            self.clock.io_begin("unit-fetch")

            async def get() -> None:
                try:
                    body, why = await self._https_get(host, address, port, path), "ok"
                except Exception as exc:  # any failure is a failed download, never a stalled bench
                    body, why = None, f"{type(exc).__name__}: {exc}"
                try:
                    self.clock.call_later(0.0, lambda: self._delivered(on_done, body, why))
                finally:
                    self.clock.io_end("unit-fetch")

            self.loop.submit(get())

        self.resolve(host, resolved)

    def _delivered(self, on_done, body, why) -> None:
        with self.lock:
            if self.alive():
                on_done(body, why)

    async def _https_get(self, host: str, address: str, port: int, path: str) -> bytes:
        sock, _ = await self.open_tls(host, address, port)
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        body = await (reader.readexactly(length) if length is not None else reader.read())
        writer.close()
        if status != 200:
            raise ValueError(f"HTTP {status} for {path}")
        return body

    def signature_valid(self, image: bytes, signature: bytes | None) -> bool:
        """Is `image` signed by the firmware key installed at manufacture?"""
        if self.defect == "unsigned-firmware-installed":
            return True
        if not signature:
            return False
        try:
            self._firmware_key.verify(signature, image)
            return True
        except InvalidSignature:
            return False


def attach_firmware_download(updater, net: "FirmwareFetch") -> None:
    """Make the charger's firmware update (rig/sim/charger_firmware.py, whose download is modelled)
    move real bytes: fetch the image and its detached signature over HTTPS from the location
    (certificate verified first), and refuse to install an image whose signature does not verify:
    FirmwareStatusNotification InstallationFailed, the running version unchanged (FW-02).

    Wired by the emulated bench; relies on the updater's steps `_download(location)` (Downloading,
    then `_downloaded(location)` after the download time) and `_install(version)`."""
    base = type(updater)

    class NetworkedFirmwareUpdater(base):
        fetched: tuple[bytes | None, bytes | None] = (None, None)

        def _download(self, location: str) -> None:
            self._notify("Downloading")
            started = self.c.clock.now()
            download_s = getattr(_timing(), "FW_DOWNLOAD_S", 0.0)

            def finished(image, signature) -> None:
                self.fetched = (image, signature)
                left = max(0.0, download_s - (self.c.clock.now() - started))
                if image is None:
                    self.c._later("fw", left, lambda: self._notify("DownloadFailed"))
                else:
                    self.c._later("fw", left, lambda: self._downloaded(location))

            def got_image(image, _why) -> None:
                if image is None:
                    finished(None, None)
                else:
                    net.fetch(location + ".sig", lambda signature, _w: finished(image, signature))

            net.fetch(location, got_image)

        def _install(self, new_version: str) -> None:
            image, signature = self.fetched
            if image is None or not net.signature_valid(image, signature):
                self._notify("InstallationFailed")  # nothing installed: the running version stays
                return
            super()._install(new_version)

    updater.__class__ = NetworkedFirmwareUpdater


def _timing():
    from rig.sim import firmware_timing

    return firmware_timing
