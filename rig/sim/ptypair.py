"""Two pseudo-terminals joined back to back: an emulated serial cable.

A serial instrument and its driver each want a device path to open (pyserial and
pymodbus open serial ports by name). One `os.openpty()` gives only one path (the
slave; the master is just an fd), so this joins two of them and relays bytes between
their masters in a daemon thread, like `socat pty,raw pty,raw`. The emulated
instrument opens `device_a`, the driver opens `device_b`.

Both slaves are put in raw mode (no echo, no CR/LF translation: Modbus RTU and binary
protocols must pass unchanged), and this object keeps its own fd on each slave open
for its whole life. That matters: a pty master whose slave has no open fd reads EIO,
so without it a driver that closes and reopens its port (a reconnect) would break the
relay.

`connected = False` models a pulled cable: bytes are read and dropped in both
directions, so neither end hears the other, exactly what an RS-485 line does when
unplugged (there is no hang-up signal on RS-485).
"""

from __future__ import annotations

import errno
import os
import selectors
import threading
import tty

_CHUNK = 4096


class PtyPair:
    def __init__(self, name: str = "pty-pair"):
        self.name = name
        self.connected = True
        self._master_a, self._slave_a = os.openpty()
        self._master_b, self._slave_b = os.openpty()
        for fd in (self._slave_a, self._slave_b):
            tty.setraw(fd)
        self.device_a = os.ttyname(self._slave_a)
        self.device_b = os.ttyname(self._slave_b)
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> "PtyPair":
        if self._thread is None:
            self._thread = threading.Thread(target=self._relay, name=self.name, daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop the relay and release every fd; idempotent."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(2)
        for fd in (self._master_a, self._slave_a, self._master_b, self._slave_b, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "PtyPair":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the relay ------------------------------------------------------------------------------
    def _relay(self) -> None:
        peer = {self._master_a: self._master_b, self._master_b: self._master_a}
        with selectors.DefaultSelector() as selector:
            for fd in peer:
                selector.register(fd, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fd == self._wake_r:
                        return
                    data = self._read(key.fd)
                    if data and self.connected:
                        self._write_all(peer[key.fd], data)

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, _CHUNK)
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EAGAIN, errno.EINTR):
                return b""  # no slave fd open at the moment, or a spurious wake-up
            raise

    @staticmethod
    def _write_all(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(fd, view)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                return  # the far side is gone; a real cable would drop the bytes too
            view = view[written:]
