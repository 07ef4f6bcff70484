"""The emulated LED colour sensor: the wire protocol of `rig.instruments.led_sensor` on a pty.

Commands arrive in the bench's loop thread and are answered at once. While streaming, a
periodic timer on the plant's virtual clock writes one sample line per 1/rate seconds; the
timer runs in the test thread whenever it sleeps, reads `plant.led` under the plant lock and
turns it into counts with `rig.sim.led_emitter` (noise from `clock.rng`, so a seed replays
the same samples). Sample times are exact multiples of the period after START, stamped by
the sensor's own millisecond counter, which started `boot_ms` before the bench clock's zero
(a real sensor's clock has nothing to do with the rig's; the driver maps it with TIME?).

Faults, for the harness's own tests (`fault` may be set at any time):
    None          normal
    "silent"      answers nothing and streams nothing (a hung microcontroller)
    "garbage"     every line it sends is corrupted (high bit set on every byte)
    "disconnect"  the USB cable is pulled: the pty disappears; there is no coming back
`garble_one_in = n` (n > 0) corrupts every n-th sample line only, to test the driver's
tolerance of the odd bad line. The pty's life cycle and the faults come from
`rig.sim.pty_link.PtyInstrument`.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Mapping

from rig.core.aio import LoopThread
from rig.product.led_classifier import led_table, load_led_profile
from rig.sim.led_emitter import Optics, sensor_counts
from rig.sim.plant import Plant
from rig.sim.pty_link import FAULTS, PtyInstrument, garble  # noqa: F401  (FAULTS, garble re-exported)

IDENTITY = "ID,RigOptics,TCS34725-USB,EMU-0001,1.2"
MAX_RATE_HZ = 1000.0


class EmulatedLedSensor(PtyInstrument):
    link_name = "led_sensor"

    def __init__(
        self,
        plant: Plant,
        loop: LoopThread,
        config: dict,
        *,
        led: Mapping | None = None,
        optics: Optics | None = None,
        boot_ms: int = 7_000,
    ):
        super().__init__(plant, loop, config)
        self.clock = plant.clock
        table = led_table(led) if led is not None else load_led_profile()
        self.colours, self.waveforms = table["colours"], table["waveforms"]
        self.optics = optics or Optics.from_config(config)
        self.rate_hz = float(config.get("sample_rate_hz", 50))
        self.boot_ms = boot_ms
        self.garble_one_in = 0
        self.samples_sent = 0
        self._lock = threading.Lock()  # streaming state: loop thread (commands) vs test thread (timer)
        self._streaming = False
        self._timer = None
        self._stream_t0 = 0.0
        self._stream_rate = self.rate_hz
        self._k = 0

    # -- life cycle -----------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop_stream()
        super().stop()

    @property
    def streaming(self) -> bool:
        return self._streaming

    # -- commands (loop thread) -----------------------------------------------------------------
    def _on_text(self, text: str) -> None:
        if not text:
            return
        word, _, arg = text.partition(" ")
        word = word.upper()
        if word == "ID?":
            reply = IDENTITY
        elif word == "TIME?":
            reply = f"T,{self._sensor_ms()}"
        elif word == "RATE":
            reply = self._set_rate(arg)
        elif word == "START":
            reply = self._start_stream()
        elif word == "STOP":
            reply = self._stop_stream()
        else:
            reply = f"ERR unknown command {word}"
        self._send(reply)

    def _set_rate(self, arg: str) -> str:
        try:
            rate = float(arg)
        except ValueError:
            return f"ERR bad rate {arg!r}"
        if not 0 < rate <= MAX_RATE_HZ:
            return f"ERR rate out of range 0..{MAX_RATE_HZ:g}"
        self.rate_hz = rate  # applies from the next START
        return "OK"

    def _start_stream(self) -> str:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._streaming = True
            self._stream_t0 = self.clock.now()
            self._stream_rate = self.rate_hz
            self._k = 0
            self._timer = self.clock.call_at(self._stream_t0, self._tick)
        return "OK"

    def _stop_stream(self) -> str:
        with self._lock:
            self._streaming = False
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        return "OK"

    # -- the stream (test thread, from the virtual clock) ---------------------------------------
    def _tick(self) -> None:
        with self._lock:
            if not self._streaming:
                return
            if self._fault != "silent":
                self._send_sample()
            self._k += 1
            self._timer = self.clock.call_at(self._stream_t0 + self._k / self._stream_rate, self._tick)

    def _send_sample(self) -> None:
        with self.plant.lock:
            shown = replace(self.plant.led)
        r, g, b = sensor_counts(shown, self.clock.now(), self.colours, self.waveforms, self.optics, self.clock.rng)
        self.samples_sent += 1
        line = f"S,{self._sensor_ms()},{r},{g},{b}"
        bad = self.garble_one_in > 0 and self.samples_sent % self.garble_one_in == 0
        self._send(line, corrupt=bad)

    # -- helpers --------------------------------------------------------------------------------
    def _sensor_ms(self) -> int:
        return round(self.clock.now() * 1000) + self.boot_ms

    def _send(self, line: str, corrupt: bool = False) -> None:
        self._send_bytes(line.encode("ascii") + b"\r\n", corrupt)
