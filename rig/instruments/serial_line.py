"""The serial-port side shared by the line-oriented serial drivers (service console, LED sensor).

Why shared: both drivers talk ASCII lines over a USB-serial port that can vanish mid-test, and
both must blame such trouble on the rig, not the charger. Getting the port life cycle right
(bounded retries on open, a reconnect between tries, remembering why a reconnect failed so
the final error names it, never leaving a half-open port behind) is the same job for both;
only what the lines mean differs.

Config keys read here: `port`, optional `baudrate` (115200), `timeout_s` (the driver's
default, real seconds per exchange), `attempts` (3).
"""

from __future__ import annotations

from typing import Callable, Self, TypeVar

import serial

from rig.core.clock import Clock
from rig.core.retry import TRANSIENT, with_retries

try:  # pyserial's POSIX backend lets termios.error (not an OSError) escape from flushes
    from termios import error as _TermiosError
except ImportError:  # Windows: no termios
    _TermiosError = OSError
#: what a serial link throws when the device misbehaves or vanishes; worth a retry
SERIAL_TRANSIENT = TRANSIENT + (serial.SerialException, _TermiosError)

#: how long one port read waits for a byte, so that loops polling a deadline stay prompt
READ_POLL_S = 0.05
#: the longest line either device sends is about 100 bytes; a stream this long with no line end
#: is not our device (wrong baud rate, another device on the port): garbage, not a line to wait for
MAX_LINE_BYTES = 4096

T = TypeVar("T")


def read_available(port: serial.Serial, pending: bytearray) -> None:
    """Append what the port holds to `pending` (waits up to the read timeout for one byte).
    A stream with no line end within MAX_LINE_BYTES is dropped and raised as garbage, so the buffer
    never grows without bound."""
    pending += port.read(port.in_waiting or 1)
    if len(pending) > MAX_LINE_BYTES and b"\n" not in pending:
        size = len(pending)
        pending.clear()
        raise ValueError(f"{size} bytes without a line end (wrong baud rate, or not the expected device?)")


def pop_line(pending: bytearray) -> bytes | None:
    """Remove the first LF-terminated line from `pending` and return it without CR/LF, or None."""
    end = pending.find(b"\n")
    if end < 0:
        return None
    line = bytes(pending[:end]).rstrip(b"\r")
    del pending[: end + 1]
    return line


class SerialLineDriver:
    """Base of a driver on one serial port: open/close, reconnects and retries.

    A subclass extends `_connect` (greet the device once the port is up) and `_disconnect`
    (stop whatever it runs on the port), and wraps each exchange in `_retried`.
    """

    DEFAULT_TIMEOUT_S = 2.0

    def __init__(self, name: str, config: dict, clock: Clock):
        self.name, self.clock = name, clock
        self.port = str(config["port"])
        self.baudrate = int(config.get("baudrate", 115200))
        self.timeout_s = float(config.get("timeout_s", self.DEFAULT_TIMEOUT_S))
        self.attempts = int(config.get("attempts", 3))
        self._serial: serial.Serial | None = None
        self._lost: BaseException | None = None  # why the last reconnect failed

    # -- life cycle -----------------------------------------------------------------------------
    def open(self) -> None:
        if self._serial is not None:
            return
        try:
            with_retries(
                self.name, f"opening {self.port}", self._connect, self.attempts, SERIAL_TRANSIENT,
                recover=self._disconnect,
            )
        except BaseException:
            self._disconnect()  # never leave a half-open port behind a failed open()
            raise

    def close(self) -> None:
        self._disconnect()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- retried exchanges ----------------------------------------------------------------------
    def _retried(self, what: str, fn: Callable[[], T]) -> T:
        """Run one exchange with bounded retries, reconnecting between tries."""
        return with_retries(self.name, what, fn, self.attempts, SERIAL_TRANSIENT, recover=self._reconnect)

    # -- the link -------------------------------------------------------------------------------
    def _connect(self) -> None:
        self._lost = None
        # serial_for_url: a device path, or rfc2217:// and socket:// for serial-over-LAN adapters
        self._serial = serial.serial_for_url(self.port, self.baudrate, timeout=READ_POLL_S,
                                             write_timeout=self.timeout_s)
        self._serial.reset_input_buffer()

    def _disconnect(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except Exception:  # a vanished device may refuse even to close
                pass

    def _reconnect(self) -> None:
        self._disconnect()
        try:
            self._connect()
        except Exception as exc:
            self._lost = exc  # named by the next attempt's error, which is what the report shows
            raise

    def _require_port(self) -> serial.Serial:
        if self._serial is None:
            raise self._not_open()
        return self._serial

    def _not_open(self) -> ConnectionError:
        why = f" (reconnecting failed: {self._lost})" if self._lost else ""
        return ConnectionError(f"{self.port} is not open{why}")
