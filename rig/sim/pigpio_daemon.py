"""An emulated pigpio daemon: pigpiod's socket protocol in front of the emulated Pi's pins.

A real pilot box is a Raspberry Pi that the harness reaches over the network through pigpiod;
gpiozero's `PiGPIOFactory` and the `pigpio` client speak its protocol. This daemon speaks the same
protocol, so the real client code runs unchanged against the emulated bench's pins:

* command socket: 16-byte requests (cmd, p1, p2, p3 as little-endian uint32; for the extended
  commands p3 more bytes follow), 16-byte replies (cmd, p1, p2 echoed, the result as int32, pigpio's
  negative error codes included); SPIX's reply is followed by the bytes read;
* notification socket: a second connection that sends NOIB becomes a stream of 12-byte reports
  (seqno uint16, flags uint16, tick uint32 in microseconds, level uint32 of GPIO 0-31), one per edge
  of the GPIOs monitored with NB.

Implemented: modes, pull-ups, read, write, bank read, PWM (duty, range, frequency), glitch and
noise filters (accepted; the emulated lines do not bounce), tick, hardware revision, version,
notifications, and SPI open/transfer/close answered by an MCP3208-style ADC. Anything else gets
pigpio's own PI_UNKNOWN_COMMAND, as the real daemon answers a command it does not know.

Why hand-written: no package serves pigpiod's protocol (the `pigpio` package is only the client,
and it is used as the client in the tests); the command codes and error numbers are pigpio's own.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from typing import Callable

from gpiozero.pins.mock import MockFactory

from rig.core.aio import LoopThread

log = logging.getLogger(__name__)

# command codes and error numbers from pigpio's pigpio.py / pigpio.h
MODES, MODEG, PUD, READ, WRITE, PWM, PRS, PFS = 0, 1, 2, 3, 4, 5, 6, 7
BR1, TICK, HWVER, NB, NC, PRG, PFG, PRRG, PIGPV = 10, 16, 17, 19, 21, 22, 23, 24, 26
SPIO, SPIC, SPIX, GDC, FG, FN, NOIB = 71, 72, 75, 83, 97, 98, 99
#: commands whose p3 announces that many extension bytes after the 16-byte header
EXTENDED = frozenset({28, 29, 37, 38, 40, 43, 48, 54, 57, 58, 59, 60, 62, 64, 66, 68, 69, 70, 71, 74, 75,
                      76, 79, 81, 82, 88, 89, 90, 91, 92, 93, 94, 96, 100, 104, 107, 108, 109, 110, 112, 113,
                      114, 117})
PI_BAD_GPIO, PI_BAD_MODE, PI_BAD_LEVEL, PI_BAD_PUD = -3, -4, -5, -6
PI_BAD_DUTYCYCLE, PI_BAD_DUTYRANGE, PI_BAD_HANDLE = -8, -21, -25
PI_BAD_SPI_CHANNEL, PI_BAD_SPI_COUNT, PI_UNKNOWN_COMMAND, PI_NOT_PWM_GPIO = -76, -84, -88, -92
INPUT, OUTPUT = 0, 1
PUD_OFF, PUD_DOWN, PUD_UP = 0, 1, 2
GPIOS = range(0, 54)
USER_GPIOS = range(0, 32)
HARDWARE_REVISION = 0xA02082  # a Raspberry Pi 3 Model B: gpiozero knows it and its SPI pins
DAEMON_VERSION = 79
PWM_FREQUENCIES = (8000, 4000, 2000, 1600, 1000, 800, 500, 400, 320, 250, 200, 160, 100, 80, 50, 40, 20, 10)
HEADER = struct.Struct("<IIII")
REPORT = struct.Struct("<HHII")

Adc = Callable[[int], int]  # ADC channel -> counts (12 bits)


class PigpioDaemon:
    """Serves pigpiod's protocol on `host:port` (0 = a free port) for the pins of `factory`.

    `adc(channel)` answers SPI transfers in the MCP3208's framing. `ticks()` gives the tick in
    microseconds (default: the factory's ticks, seconds, as microseconds).
    """

    def __init__(self, factory: MockFactory, host: str = "127.0.0.1", port: int = 0, adc: Adc | None = None,
                 ticks: Callable[[], int] | None = None, loop: LoopThread | None = None):
        self.factory, self.host, self._wanted_port, self.adc = factory, host, port, adc
        self._ticks = ticks or (lambda: int(round(factory.ticks() * 1e6)))
        self._loop, self._own_loop = loop, loop is None
        self._server: asyncio.AbstractServer | None = None
        self.port: int | None = None
        # Two locks, always taken in this order and never the other way round:
        # `_lock` serialises commands, which call into the pins and through them take the
        # plant's lock; `_notify_lock` guards the notifier table only and is a leaf (nothing
        # else is taken while it is held). An edge report arrives from the plant's side with
        # the plant's lock held, so it may take `_notify_lock` but never `_lock`: a report
        # taking `_lock` deadlocked against a command unhooking a pin (seen under CPU load).
        self._lock = threading.RLock()
        self._notify_lock = threading.Lock()
        self._pwm: dict[int, dict] = {}
        self._spi: dict[int, int] = {}  # handle -> SPI channel
        self._notifiers: dict[int, "_Notifier"] = {}
        self._next_handle = 0
        self._watched: dict[int, Callable] = {}  # strong references: gpiozero holds callbacks weakly
        self.commands_seen: list[int] = []

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> "PigpioDaemon":
        if self._loop is None:
            self._loop = LoopThread("pigpiod").start()
        self._loop.run(self._listen(), timeout=10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._wanted_port)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None and self._loop is not None:
            async def shut():
                server.close()
                for notifier in list(self._notifiers.values()):
                    notifier.writer.close()
            try:
                self._loop.run(shut(), timeout=5)
            except (TimeoutError, RuntimeError):
                pass
        for gpio in list(self._watched):
            self._unwatch(gpio)
        if self._own_loop and self._loop is not None:
            self._loop.stop()
            self._loop = None

    # -- one connection --------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(HEADER.size)
                cmd, p1, p2, p3 = HEADER.unpack(header)
                ext = await reader.readexactly(p3) if cmd in EXTENDED and p3 else b""
                if cmd == NOIB:
                    handle = self._open_notifier(writer)
                    writer.write(HEADER.pack(cmd, p1, p2, handle))
                    await writer.drain()
                    continue  # from now on this socket carries reports
                result, data = self._command(cmd, p1, p2, p3, ext)
                writer.write(HEADER.pack(cmd, p1, p2, result & 0xFFFFFFFF) + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._close_notifiers_of(writer)
            writer.close()

    def _command(self, cmd: int, p1: int, p2: int, p3: int, ext: bytes) -> tuple[int, bytes]:
        self.commands_seen.append(cmd)
        handler = self._HANDLERS.get(cmd)
        if handler is None:
            log.debug("pigpiod: unknown command %d", cmd)
            return PI_UNKNOWN_COMMAND, b""
        with self._lock:
            try:
                out = handler(self, p1, p2, p3, ext)
            except Exception as exc:  # a bug of ours must not kill the connection: pigpio's generic failure
                log.exception("pigpiod: command %d failed", cmd)
                return PI_UNKNOWN_COMMAND if isinstance(exc, KeyError) else -1, b""
        return out if isinstance(out, tuple) else (out, b"")

    # -- GPIO --------------------------------------------------------------------------------
    def _pin(self, gpio: int):
        return self.factory.pin(gpio)

    def _modes(self, gpio, mode, _p3, _ext):
        if gpio not in GPIOS:
            return PI_BAD_GPIO
        if mode not in (INPUT, OUTPUT):
            return PI_BAD_MODE if mode > 7 else 0  # ALT modes: accepted, nothing emulated behind them
        self._pin(gpio).function = "output" if mode == OUTPUT else "input"
        return 0

    def _modeg(self, gpio, _p2, _p3, _ext):
        if gpio not in GPIOS:
            return PI_BAD_GPIO
        return OUTPUT if self._pin(gpio).function == "output" else INPUT

    def _pud(self, gpio, pud, _p3, _ext):
        if gpio not in GPIOS:
            return PI_BAD_GPIO
        if pud not in (PUD_OFF, PUD_DOWN, PUD_UP):
            return PI_BAD_PUD
        pin = self._pin(gpio)
        if pin.function == "input":
            pin.pull = {PUD_OFF: "floating", PUD_DOWN: "down", PUD_UP: "up"}[pud]
        return 0

    def _read(self, gpio, _p2, _p3, _ext):
        if gpio not in GPIOS:
            return PI_BAD_GPIO
        return int(bool(self._pin(gpio).state))

    def _write(self, gpio, level, _p3, _ext):
        if gpio not in GPIOS:
            return PI_BAD_GPIO
        if level not in (0, 1):
            return PI_BAD_LEVEL
        self._pwm.pop(gpio, None)
        pin = self._pin(gpio)
        pin.function = "output"  # as pigpio: writing a GPIO makes it an output
        pin.state = bool(level)
        return 0

    def _bank1(self, _p1, _p2, _p3, _ext):
        return self._levels()

    def _levels(self) -> int:
        """Levels of GPIO 0-31 as bits; only pins that exist (someone opened them) can be high."""
        bits = 0
        for info, pin in list(getattr(self.factory, "pins", {}).items()):
            gpio = _bcm_number(info)
            if gpio is not None and gpio in USER_GPIOS and pin.state:
                bits |= 1 << gpio
        return bits

    # -- PWM ---------------------------------------------------------------------------------
    def _pwm_of(self, gpio) -> dict:
        return self._pwm.setdefault(gpio, {"duty": 0, "range": 255, "frequency": 800})

    def _set_pwm(self, gpio, duty, _p3, _ext):
        if gpio not in USER_GPIOS:
            return PI_BAD_GPIO
        pwm = self._pwm_of(gpio)
        if duty > pwm["range"]:
            return PI_BAD_DUTYCYCLE
        pwm["duty"] = duty
        pin = self._pin(gpio)
        pin.function = "output"
        pin.state = duty > 0  # the emulated line shows on (any duty) or off: no waveform behind it
        return 0

    def _get_pwm(self, gpio, _p2, _p3, _ext):
        if gpio not in USER_GPIOS:
            return PI_BAD_GPIO
        return self._pwm[gpio]["duty"] if gpio in self._pwm else PI_NOT_PWM_GPIO

    def _set_range(self, gpio, rng, _p3, _ext):
        if gpio not in USER_GPIOS:
            return PI_BAD_GPIO
        if not 25 <= rng <= 40000:
            return PI_BAD_DUTYRANGE
        self._pwm_of(gpio)["range"] = rng
        return rng

    def _get_range(self, gpio, _p2, _p3, _ext):
        return PI_BAD_GPIO if gpio not in USER_GPIOS else self._pwm_of(gpio)["range"]

    def _set_frequency(self, gpio, hz, _p3, _ext):
        if gpio not in USER_GPIOS:
            return PI_BAD_GPIO
        best = min(PWM_FREQUENCIES, key=lambda f: abs(f - hz))  # the daemon picks the closest it has
        self._pwm_of(gpio)["frequency"] = best
        return best

    def _get_frequency(self, gpio, _p2, _p3, _ext):
        return PI_BAD_GPIO if gpio not in USER_GPIOS else self._pwm_of(gpio)["frequency"]

    # -- filters, time, identity ------------------------------------------------------------
    def _filter(self, gpio, _steady, _p3, ext):
        return PI_BAD_GPIO if gpio not in USER_GPIOS else 0

    def _tick(self, *_args):
        return self._ticks() & 0xFFFFFFFF

    def _hwver(self, *_args):
        return HARDWARE_REVISION

    def _version(self, *_args):
        return DAEMON_VERSION

    # -- SPI: an MCP3208 on each channel ----------------------------------------------------
    def _spi_open(self, channel, _baud, _p3, _ext):
        if channel > 2:
            return PI_BAD_SPI_CHANNEL
        handle = self._new_handle()
        self._spi[handle] = channel
        return handle

    def _spi_close(self, handle, *_args):
        return 0 if self._spi.pop(handle, None) is not None else PI_BAD_HANDLE

    def _spi_xfer(self, handle, _p2, count, ext):
        if handle not in self._spi:
            return PI_BAD_HANDLE
        if not 1 <= count <= 65536:
            return PI_BAD_SPI_COUNT
        return count, self._mcp3208(bytes(ext))

    def _mcp3208(self, tx: bytes) -> bytes:
        """The MCP3208's answer: start bit, single-ended bit and channel in the first bits sent;
        a null bit and 12 data bits follow, MSB first (datasheet figure 6-1). Found by bit position,
        so any byte alignment a driver uses is answered."""
        bits = "".join(f"{b:08b}" for b in tx)
        start = bits.find("1")
        if start < 0 or start + 5 > len(bits) or self.adc is None:
            return bytes(len(tx))
        channel = int(bits[start + 2:start + 5], 2)
        value = max(0, min(4095, int(self.adc(channel))))
        answer = ["0"] * len(bits)
        first = start + 6  # after start, SGL, D2-D0 and the sample clock: the null bit, then data
        for i, bit in enumerate(f"{value:012b}"):
            if first + 1 + i < len(answer):
                answer[first + 1 + i] = bit
        text = "".join(answer)
        return bytes(int(text[i:i + 8], 2) for i in range(0, len(text), 8))

    # -- notifications ------------------------------------------------------------------------
    def _new_handle(self) -> int:
        self._next_handle += 1
        return self._next_handle

    def _open_notifier(self, writer: asyncio.StreamWriter) -> int:
        with self._lock, self._notify_lock:
            handle = self._new_handle()
            self._notifiers[handle] = _Notifier(writer)
            return handle

    def _notify_bits(self, handle, bits, _p3, _ext):
        with self._notify_lock:
            notifier = self._notifiers.get(handle)
            if notifier is not None:
                notifier.bits = bits
        if notifier is None:
            return PI_BAD_HANDLE
        self._rewatch()
        return 0

    def _notify_close(self, handle, *_args):
        with self._notify_lock:
            notifier = self._notifiers.pop(handle, None)
        if notifier is None:
            return PI_BAD_HANDLE
        self._loop.call(notifier.writer.close)
        self._rewatch()
        return 0

    def _close_notifiers_of(self, writer) -> None:
        with self._lock:
            with self._notify_lock:
                for handle, notifier in list(self._notifiers.items()):
                    if notifier.writer is writer:
                        del self._notifiers[handle]
            self._rewatch()

    def _rewatch(self) -> None:
        with self._notify_lock:
            wanted = {g for n in self._notifiers.values() for g in USER_GPIOS if n.bits >> g & 1}
        for gpio in set(self._watched) - wanted:
            self._unwatch(gpio)
        for gpio in wanted - set(self._watched):
            self._watch(gpio)

    def _watch(self, gpio: int) -> None:
        pin = self._pin(gpio)

        def changed(ticks, state, _gpio=gpio):
            self._report()

        self._watched[gpio] = changed
        pin.edges = "both"
        pin.when_changed = changed

    def _unwatch(self, gpio: int) -> None:
        # unhooked first, forgotten after: gpiozero holds the callback weakly, and an edge that
        # finds it dead unhooks the pin itself, taking the pin's callback lock with the plant's
        # lock held, while this thread holds the callback lock and (through the comparator's
        # watch) waits for the plant's lock. That deadlock froze the whole device in CI.
        try:
            self._pin(gpio).when_changed = None
        except Exception:  # a pin closed with its factory: nothing left to unhook
            pass
        self._watched.pop(gpio, None)

    def _report(self) -> None:
        """An edge on a monitored GPIO: one report to every notifier watching any changed GPIO.

        Called from whichever thread moved the pin, often with the plant's lock held: only the
        leaf `_notify_lock` is taken here (see __init__)."""
        with self._notify_lock:  # levels and tick read under it too (pin states, no lock): reports in order
            level, tick = self._levels(), self._ticks() & 0xFFFFFFFF
            for notifier in self._notifiers.values():
                if notifier.bits:
                    data = REPORT.pack(notifier.seq, 0, tick, level)
                    notifier.seq = (notifier.seq + 1) & 0xFFFF
                    if self._loop is not None:
                        self._loop.call(notifier.writer.write, data)

    _HANDLERS = {
        MODES: _modes, MODEG: _modeg, PUD: _pud, READ: _read, WRITE: _write, BR1: _bank1,
        PWM: _set_pwm, GDC: _get_pwm, PRS: _set_range, PRG: _get_range, PRRG: _get_range,
        PFS: _set_frequency, PFG: _get_frequency, FG: _filter, FN: _filter, TICK: _tick, HWVER: _hwver,
        PIGPV: _version, SPIO: _spi_open, SPIC: _spi_close, SPIX: _spi_xfer, NB: _notify_bits,
        NC: _notify_close,
    }


def _bcm_number(info) -> int | None:
    """gpiozero keys its pins by PinInfo, whose names include the BCM number as an int."""
    numbers = [n for n in getattr(info, "names", ()) if isinstance(n, int)]
    return numbers[0] if numbers else None


class _Notifier:
    def __init__(self, writer: asyncio.StreamWriter):
        self.writer, self.bits, self.seq = writer, 0, 0
