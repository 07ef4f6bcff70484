"""LED colour sensor: a TCS34725 RGB sensor behind a microcontroller on USB serial.

The sensor is held against the charger's status LED; the rig reads a window of RGB samples
and `rig.led_classifier` names the documented state they show.

Wire protocol (115200 8N1, ASCII lines ending in LF; a CR before the LF is ignored):

    host -> sensor        sensor -> host
    ID?                   ID,<maker>,<model>,<serial>,<firmware>
    TIME?                 T,<sensor_ms>           the sensor's millisecond counter, now
    RATE <hz>             OK                      sample rate for the next START (1..1000)
    START                 OK                      then streams samples until STOP
    STOP                  OK                      no sample follows the OK
    (anything refused)    ERR <reason>
    while started:        S,<sensor_ms>,<r>,<g>,<b>   16-bit raw counts per channel

Every command is acknowledged, and the acknowledgement is written into the same byte stream
as the samples. That ordering is what the driver synchronises on: once the answer to a
command sent after the window has arrived, every sample taken before it has arrived too.
On the emulated bench, where samples are produced by virtual-clock timers while the test
thread sleeps, that is the difference between a deterministic window and a race.

Timing: sample stamps are the sensor's own clock. Before each window the driver asks TIME?
and maps sensor milliseconds onto the rig clock (offset = rig time at the middle of the
exchange - sensor time); drift of the sensor's crystal over a few seconds is negligible.

Reliability: a reader thread drains the port continuously into a buffer (so the stream
never backs up while the test thread is busy) and counts lines it cannot parse. A window
with no samples, a stream that stops before the window's end, more than
`max_garbage_fraction` garbled lines, an unanswered command or a dropped port is retried
(with a reconnect) and then raised as `InstrumentError(name, ...)`.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Mapping, Protocol

import serial

from rig.core.clock import Clock
from rig.core.errors import InstrumentError
from rig.instruments.serial_line import READ_POLL_S, SerialLineDriver, pop_line, read_available
from rig.instruments.serial_line import SERIAL_TRANSIENT  # noqa: F401  (re-exported: it was defined here)
from rig.product.led_classifier import LedObservation, Sample, classify, led_table, load_led_profile

__all__ = ["LedSensor", "LedSensorLike", "Sample", "LedObservation"]

#: how far a sample stamp may sit outside the window and still count (sensor stamps are whole ms)
STAMP_TOLERANCE_S = 0.0015
#: periods the driver waits past the window's end for the sample that closes it
MAX_EXTRA_PERIODS = 3
#: a window must hold at least this share of the samples its length and rate promise
MIN_SAMPLE_SHARE = 0.5
_READ_TIMEOUT_S = READ_POLL_S  # the reader thread's poll, so that close() is prompt


class LedSensorLike(Protocol):
    """What the rig needs from an LED sensor."""

    def sample(self, window_s: float) -> list[Sample]: ...

    def observe(self, window_s: float | None = None) -> LedObservation: ...


class _LineReader(threading.Thread):
    """Drains the port: samples into a list, every other line into a reply queue."""

    def __init__(self, port: serial.Serial, name: str):
        super().__init__(name=f"{name}-reader", daemon=True)
        self.port = port
        self.replies: queue.Queue[str] = queue.Queue()
        self.error: BaseException | None = None  # why the link died, if it did
        self.lines = 0
        self.garbled = 0
        self._samples: list[tuple[int, int, int, int]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def run(self) -> None:
        pending = bytearray()
        while not self._stopping.is_set():
            try:
                read_available(self.port, pending)
            except Exception as exc:  # the link is gone; the test thread raises it
                self.error = exc
                return
            while (line := pop_line(pending)) is not None:
                self._take_line(line)

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(1.0)

    def _take_line(self, raw: bytes) -> None:
        self.lines += 1
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            self.garbled += 1
            return
        if text.startswith("S,"):
            sample = _parse_sample(text)
            if sample is None:
                self.garbled += 1
            else:
                with self._lock:
                    self._samples.append(sample)
            return
        if not _is_reply(text):
            self.garbled += 1
        self.replies.put(text)

    # -- test-thread side -------------------------------------------------------------------
    def counts(self) -> tuple[int, int]:
        return self.lines, self.garbled

    def clear_samples(self) -> None:
        with self._lock:
            self._samples.clear()

    def take_samples(self) -> list[tuple[int, int, int, int]]:
        with self._lock:
            taken, self._samples = self._samples, []
            return taken

    def last_sample_ms(self) -> int | None:
        with self._lock:
            return self._samples[-1][0] if self._samples else None

    def clear_replies(self) -> None:
        while True:
            try:
                self.replies.get_nowait()
            except queue.Empty:
                return


def _parse_sample(text: str) -> tuple[int, int, int, int] | None:
    parts = text.split(",")
    if len(parts) != 5:
        return None
    try:
        ms, r, g, b = (int(p) for p in parts[1:])
    except ValueError:
        return None
    if not all(0 <= c <= 0xFFFF for c in (r, g, b)):
        return None
    return ms, r, g, b


def _is_reply(text: str) -> bool:
    if text == "OK" or text.startswith("ERR") or text.startswith("ID,"):
        return True
    return text.startswith("T,") and text[2:].isdigit()


class LedSensor(SerialLineDriver):
    """Driver. Config keys: port, baudrate (115200), sample_rate_hz (50); optional timeout_s
    (1.0, real seconds per command), attempts (3), max_garbage_fraction (0.05).

    `profile` is the product profile (or just its [led] table); `observe()` classifies
    against it. Without one, the repository's plugstream.toml is read when first needed.
    The port's life cycle (open/close, context manager, reconnects) comes from `SerialLineDriver`.
    """

    DEFAULT_TIMEOUT_S = 1.0

    def __init__(self, name: str, config: dict, clock: Clock, profile: Mapping | None = None):
        super().__init__(name, config, clock)
        self.rate_hz = float(config.get("sample_rate_hz", 50))
        self.max_garbage_fraction = float(config.get("max_garbage_fraction", 0.05))
        self.identity: str | None = None
        self.last_garbled = 0  # garbled lines seen in the last window (tolerated ones included)
        self._led = led_table(profile) if profile is not None else None
        self._reader: _LineReader | None = None

    # -- life cycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._serial is not None:
            try:
                self._command("STOP", "OK")
            except Exception:  # closing anyway: a sensor that cannot hear STOP stops on reconnect
                pass
        super().close()

    # -- measuring ------------------------------------------------------------------------------
    def sample(self, window_s: float) -> list[Sample]:
        """Samples taken over the next `window_s` seconds of rig time, stamped in rig time."""
        if window_s <= 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        return self._retried(f"sampling the LED for {window_s:g} s", lambda: self._sample_once(window_s))

    def observe(self, window_s: float | None = None) -> LedObservation:
        """Watch the LED for `window_s` (default: the profile's [led.waveforms].window_s) and classify."""
        led = self._led_profile()
        window = float(window_s if window_s is not None else led["waveforms"]["window_s"])
        return classify(self.sample(window), led["colours"], led["states"], led["waveforms"])

    def _led_profile(self) -> Mapping:
        if self._led is None:
            self._led = load_led_profile()
        return self._led

    def _sample_once(self, window_s: float) -> list[Sample]:
        reader = self._live_reader()
        offset_s = self._sensor_offset()
        reader.clear_samples()
        lines0, garbled0 = reader.counts()
        self._command("START", "OK")
        t0 = self.clock.now()
        t_end = t0 + window_s
        self.clock.sleep(window_s, "watching the LED")
        self._await_window_end(offset_s, t_end)
        self._command("STOP", "OK")
        lines, garbled = (a - b for a, b in zip(reader.counts(), (lines0, garbled0)))
        self.last_garbled = garbled
        if garbled > max(1, self.max_garbage_fraction * lines):
            raise ValueError(f"{garbled} of {lines} lines from the sensor were garbled")
        stamped = (Sample(offset_s + ms / 1000, r, g, b) for ms, r, g, b in reader.take_samples())
        window = [s for s in stamped if t0 - STAMP_TOLERANCE_S <= s.t_s <= t_end + STAMP_TOLERANCE_S]
        expected = window_s * self.rate_hz
        if len(window) < MIN_SAMPLE_SHARE * expected:
            raise TimeoutError(f"only {len(window)} samples in the window, expected about {expected:.0f}")
        return window

    def _await_window_end(self, offset_s: float, t_end: float) -> None:
        """Make sure the sample that closes the window has arrived (it may lie up to a period late)."""
        reader = self._live_reader()
        for _ in range(MAX_EXTRA_PERIODS + 1):
            self._command("TIME?", "T,")  # barrier: every sample streamed before the answer is in
            last = reader.last_sample_ms()
            if last is not None and offset_s + last / 1000 >= t_end - STAMP_TOLERANCE_S:
                return
            self.clock.sleep(1 / self.rate_hz, "waiting for the last LED sample")
        raise TimeoutError("the sensor stopped streaming before the end of the window")

    def _sensor_offset(self) -> float:
        """Rig-clock time at sensor time zero, from one TIME? exchange."""
        before = self.clock.now()
        reply = self._command("TIME?", "T,")
        after = self.clock.now()
        return (before + after) / 2 - int(reply[2:]) / 1000

    # -- the link -------------------------------------------------------------------------------
    def _connect(self) -> None:
        super()._connect()
        self._reader = _LineReader(self._serial, self.name)
        self._reader.start()
        self._command("STOP", "OK")  # a previous session may have left it streaming
        identity = self._command("ID?", "ID,")[3:]
        if getattr(self, "identity", None) and identity != self.identity:
            # the port was re-enumerated and now reaches another device: never read its data as ours
            raise ConnectionError(f"{self.port} now answers as {identity!r}, not {self.identity!r}")
        self.identity = identity
        self._command(f"RATE {self.rate_hz:g}", "OK")

    def _disconnect(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stop()
        super()._disconnect()

    def _live_reader(self) -> _LineReader:
        if self._serial is None or self._reader is None:
            raise self._not_open()
        if self._reader.error is not None:
            raise ConnectionError(f"{self.port} dropped: {self._reader.error}")
        return self._reader

    def _command(self, command: str, expect: str) -> str:
        """Send one command; return its answer (the line starting with `expect`)."""
        reader = self._live_reader()
        reader.clear_replies()
        self._serial.write(command.encode("ascii") + b"\n")
        deadline = time.monotonic() + self.timeout_s  # real time: this waits for the sensor
        unexpected = 0
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = reader.replies.get(timeout=min(remaining, _READ_TIMEOUT_S))
            except queue.Empty:
                self._live_reader()  # a dropped link fails now, not at the deadline
                continue
            if line.startswith("ERR"):
                raise InstrumentError(self.name, f"sensor refused {command!r}: {line}")
            if line.startswith(expect):
                return line
            unexpected += 1
        extra = f" ({unexpected} unexpected lines)" if unexpected else ""
        garbled = f", {reader.garbled} garbled lines so far" if reader.garbled else ""
        raise TimeoutError(f"no answer to {command!r} within {self.timeout_s:g} s{extra}{garbled}")
