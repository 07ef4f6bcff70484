"""The pilot-signal box: the vehicle side of the charging cable, on a Raspberry Pi.

Relays on GPIO outputs switch the vehicle's CP resistors (states A-E), short the vehicle
diode and select a PP resistance from a ladder; a comparator on CP gives edges for
frequency and duty; an MCP3208 reads CP's positive and negative peak detectors; opto
inputs tell whether L1-L3 and N are live at the vehicle connector and whether PE is
continuous, which is how the rig times contactor events (rig.instruments.pilot_sense).

The same code drives a real Pi (pigpio remotely from a PC, or lgpio / RPi.GPIO on the
Pi itself) and the emulated bench (`rig.sim.gpio.BenchPinFactory`, a gpiozero
MockFactory handed in as `pin_factory=`). Edge times come from the pin factory's ticks,
never from wall time in this process: on pigpio they are the daemon's microsecond
ticks, on the emulated bench the virtual clock.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from statistics import fmean
from typing import Callable, Protocol

from gpiozero import InputDevice, OutputDevice

from rig.product import cp
from rig.core.clock import Clock
from rig.core.errors import InstrumentError, SafeStateError
from rig.instruments import pigpio_link
from rig.instruments.pigpio_link import DEFAULT_COMMAND_TIMEOUT_S
from rig.core.retry import with_retries
from rig.instruments.pilot_sense import (  # noqa: F401 (names the box's users import from here)
    GPIO_TRANSIENT, SENSE, ContactSense, ContactSensing, SenseCallback)

#: relays switched on in each vehicle state (everything else off)
STATE_RELAYS: dict[str, frozenset[str]] = {
    "A": frozenset(),
    "B": frozenset({"cp_b"}),
    "C": frozenset({"cp_b", "cp_c"}),
    "D": frozenset({"cp_b", "cp_d"}),
    "E": frozenset({"cp_e"}),
}
CP_RELAYS = ("cp_b", "cp_c", "cp_d", "cp_e")
PP_SELECT = ("pp_select_0", "pp_select_1", "pp_select_2")
RELAYS = CP_RELAYS + ("diode_bypass",) + PP_SELECT

ADC_SPREAD_LIMIT_V = 1.0  # readings of one channel further apart than this: a bad SPI link
DEFAULT_ADC_SAMPLES = 3  # per channel and measurement (bit-banged SPI on the mock is slow-ish)

@dataclass(frozen=True)
class CpMeasurement:
    """One look at CP from the vehicle side."""

    high_v: float  # positive peak
    low_v: float  # negative peak (equals high_v when CP is steady)
    frequency_hz: float | None  # None when CP is steady
    duty: float | None  # fraction of the period CP is high; None when steady
    offered_current_a: float | None  # what a vehicle reads from the duty; None without PWM or offer
    pwm: bool
    resolution_s: float  # edge timestamp resolution (the pin factory's tick)
    window_s: float
    ev_reading: str  # rig.cp meaning of the duty: current / digital / error / no-charging
    level_state: str | None  # state letter whose detection band holds high_v (rig.cp)


class PilotSignalBox(Protocol):
    """What the rig needs from any vehicle emulator."""

    def open(self) -> None: ...
    def close(self) -> None: ...
    def set_state(self, letter: str) -> None: ...
    def set_diode(self, present: bool) -> None: ...
    def set_pp(self, ohms: float | None) -> None: ...
    def measure_cp(self, window_s: float = 0.02) -> CpMeasurement: ...
    def sense(self) -> ContactSense: ...
    def sense_events(self) -> list[tuple[float, str, bool]]: ...
    def confirmed_sense_events(self) -> list[tuple[float, str, bool]]: ...
    def clear_sense_events(self) -> None: ...
    def safe(self) -> None: ...


def _tick_resolution(factory) -> float:
    """Smallest step of the factory's edge timestamps."""
    declared = getattr(factory, "tick_resolution_s", None)
    if declared is not None:
        return float(declared)
    kind = type(factory).__name__
    if kind == "PiGPIOFactory":
        return 1e-6  # pigpio ticks are microseconds
    if kind == "LGPIOFactory":
        return 1e-9  # lgpio alert timestamps are nanoseconds
    return time.get_clock_info("monotonic").resolution  # local factories stamp with monotonic()


class PilotBox(ContactSensing):
    """Driver for the pilot-signal box. Config: the rig file's [pilot] section.

    Keys read: pin_factory (mock | pigpio | lgpio | rpigpio), host, port (pigpio), chip
    (lgpio, default 0); pins.{cp_b, cp_c, cp_d, cp_e, diode_bypass, pp_select_0..2,
    cp_capture, sense_n, sense_pe, sense_l1} and optional pins.sense_l2 / sense_l3;
    pp_ladder.codes (8 ohm values, 0 = open); adc.{chip, spi_port, spi_device,
    cp_high_channel, cp_low_channel, volts_per_count, offset_volts} and optional
    adc.samples (readings averaged per level, default 3); sense_pull ("none": actively driven
    lines, "up", "down") and sense_active_high (default true, for sense_pull "none").
    """

    def __init__(self, name: str, config: dict, clock: Clock, pin_factory=None):
        self.name = name
        self.config = config
        self.clock = clock
        self._given_factory = pin_factory
        self.factory = None
        self._own_factory = False
        self._relays: dict[str, OutputDevice] = {}
        self._sense: dict[str, InputDevice] = {}
        self._capture: InputDevice | None = None
        self._adc: dict[str, object] = {}
        self._ladder = [float(v) for v in config["pp_ladder"]["codes"]]
        self._state = "A"
        self._diode = True
        self._pp_code = 0
        self._lock = threading.Lock()
        self._edges: list[tuple[object, bool]] = []
        self._events: list[tuple[float, str, bool]] = []
        self._logged_level: dict[str, bool] = {}  # each sense pin's level by its last logged edge
        self._watchers: list[SenseCallback] = []
        # gpiozero keeps only weak references to edge callbacks: these keep them alive
        self._capture_handler = self._on_capture_edge
        self._sense_handlers: dict[str, Callable[[object, int], None]] = {}
        self._anchor: tuple[object, float] = (0, 0.0)
        self._sense_active_level = True
        self._tick_decimals = 9
        self.resolution_s = 0.0

    # -- lifecycle -----------------------------------------------------------------------
    def open(self) -> None:
        if self.factory is not None:
            return
        self.factory = self._make_factory()
        try:
            self._open_devices()
        except Exception as exc:
            self.close()
            if isinstance(exc, InstrumentError):
                raise
            raise InstrumentError(self.name, f"cannot set up the pins: {exc!r}") from exc
        self.resolution_s = _tick_resolution(self.factory)
        self._tick_decimals = max(0, round(-math.log10(self.resolution_s)))
        self._anchor = (self.factory.ticks(), self.clock.now())

    def close(self) -> None:
        if self.factory is not None:
            pigpio_link.release_if_silent(self.factory)
        devices = [*self._relays.values(), *self._sense.values(), *self._adc.values()]
        if self._capture is not None:
            devices.append(self._capture)
        for device in devices:
            try:
                device.close()
            except Exception:  # closing must never mask the error that led here
                pass
        self._relays, self._sense, self._adc, self._capture = {}, {}, {}, None
        self._sense_handlers = {}
        if self.factory is not None and self._own_factory:
            try:
                self.factory.close()
            except Exception:
                pass
        self.factory = None

    def __enter__(self) -> "PilotBox":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _make_factory(self):
        if self._given_factory is not None:
            return self._given_factory
        kind = str(self.config.get("pin_factory", "mock")).lower()
        host = self.config.get("host") or "localhost"
        if kind == "mock":
            raise InstrumentError(
                self.name,
                "pin_factory = 'mock' needs the emulated bench's pin factory: the mock factory only exists "
                "inside the emulated bench, which passes it as PilotBox(pin_factory=...)",
            )
        where = f"on host {host}:{self.config.get('port', 8888)}" if kind == "pigpio" else "on this machine"
        try:
            factory = self._import_factory(kind, host)
        except InstrumentError:
            raise
        except Exception as exc:  # ImportError, daemon unreachable, not a Pi ...
            raise InstrumentError(self.name, f"cannot start pin factory {kind!r} {where}: {exc!r}") from exc
        self._own_factory = True
        return factory

    def _import_factory(self, kind: str, host: str):
        # imported lazily: each needs a library that exists only where that factory makes sense
        if kind == "pigpio":
            timeout_s = float(self.config.get("timeout_s", DEFAULT_COMMAND_TIMEOUT_S))
            return pigpio_link.connect(host, int(self.config.get("port", 8888)), timeout_s)
        if kind == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory(chip=int(self.config.get("chip", 0)))
        if kind == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        raise InstrumentError(self.name, f"unknown pin_factory {kind!r}; use mock, pigpio, lgpio or rpigpio")

    def _open_devices(self) -> None:
        pins = self.config["pins"]
        f = self.factory
        for relay in RELAYS:
            self._relays[relay] = OutputDevice(pins[relay], initial_value=False, pin_factory=f)
        # "none": the sense lines are actively driven (gpiozero wants pull_up=None and a stated level)
        pull_up = {"none": None, "up": True, "down": False}[str(self.config.get("sense_pull", "none"))]
        active = None if pull_up is not None else bool(self.config.get("sense_active_high", True))
        # a pulled-up opto line is active low, a pulled-down one active high (gpiozero's rule)
        self._sense_active_level = (not pull_up) if pull_up is not None else active
        for sense in SENSE:
            if pins.get(sense) is not None:
                self._sense[sense] = InputDevice(pins[sense], pull_up=pull_up, active_state=active, pin_factory=f)
        self._capture = InputDevice(pins["cp_capture"], pull_up=None, active_state=True, pin_factory=f)
        self._open_adc()
        self._state, self._diode, self._pp_code = "A", True, 0
        for sense, device in self._sense.items():
            handler = self._sense_handler(sense)
            self._sense_handlers[sense] = handler
            device.pin.edges = "both"
            device.pin.when_changed = handler
        self._logged_level = {}
        self._start_sense_log()

    def _open_adc(self) -> None:
        import gpiozero

        adc = self.config["adc"]
        chip = getattr(gpiozero, str(adc.get("chip", "MCP3208")), None)
        if chip is None or not str(adc.get("chip", "MCP3208")).startswith("MCP3"):
            raise InstrumentError(self.name, f"adc.chip {adc.get('chip')!r} is not a gpiozero MCP3xxx ADC")
        for role in ("cp_high_channel", "cp_low_channel"):
            self._adc[role] = chip(
                channel=int(adc[role]),
                port=int(adc.get("spi_port", 0)),
                device=int(adc.get("spi_device", 0)),
                pin_factory=self.factory,
            )

    def _require_open(self) -> None:
        if self.factory is None:
            raise InstrumentError(self.name, "pilot box is not open")

    # -- relays --------------------------------------------------------------------------
    def _switch(self, relay: str, on: bool) -> None:
        device = self._relays[relay]

        def write():
            device.value = on

        with_retries(self.name, f"switch relay {relay}", write, transient=GPIO_TRANSIENT)

    def set_state(self, letter: str) -> None:
        """Switch the vehicle to state A-E.

        Order matters on a live charger: relays that must close to reach E close first
        (CP stays shorted while the rest change), relays that open go before relays that
        close (C -> D passes through B, as a real vehicle does), and E is released last.
        """
        letter = letter.upper()
        if letter not in STATE_RELAYS:
            raise ValueError(f"vehicle state {letter!r} unknown; use one of {', '.join(STATE_RELAYS)}")
        self._require_open()
        wanted = STATE_RELAYS[letter]
        if "cp_e" in wanted:
            self._switch("cp_e", True)
        for relay in ("cp_d", "cp_c", "cp_b"):
            if relay not in wanted:
                self._switch(relay, False)
        for relay in ("cp_b", "cp_c", "cp_d"):
            if relay in wanted:
                self._switch(relay, True)
        if "cp_e" not in wanted:
            self._switch("cp_e", False)
        self._state = letter

    @property
    def state(self) -> str:
        """The vehicle state last set (what the relays say, not what was measured)."""
        return self._state

    def set_diode(self, present: bool) -> None:
        """present=False shorts the vehicle diode (a vehicle fault the charger must catch)."""
        self._require_open()
        self._switch("diode_bypass", not present)
        self._diode = bool(present)

    @property
    def diode_present(self) -> bool:
        return self._diode

    def set_pp(self, ohms: float | None) -> None:
        """Select a PP resistance from the ladder; None opens PP (no cable)."""
        self._require_open()
        code = self._ladder_code(ohms)
        # selector bits that turn on go first, so a change between two cables never
        # passes through code 0 (PP open, which stops a charging session)
        bits = [(bit, bool(code >> bit & 1)) for bit in range(len(PP_SELECT))]
        for bit, on in sorted(bits, key=lambda b: not b[1]):
            self._switch(PP_SELECT[bit], on)
        self._pp_code = code

    def _ladder_code(self, ohms: float | None) -> int:
        wanted = 0.0 if ohms is None else float(ohms)
        for code, value in enumerate(self._ladder[: 1 << len(PP_SELECT)]):
            if abs(value - wanted) < 1e-6:
                return code
        available = ", ".join("open" if v == 0 else f"{v:g}" for v in self._ladder)
        shown = "open (None)" if ohms is None else f"{ohms:g} ohm"
        raise ValueError(f"PP {shown} is not on the pilot box's ladder; available: {available}")

    @property
    def pp_ohms(self) -> float | None:
        """The PP resistance last selected; None = open."""
        value = self._ladder[self._pp_code]
        return value if value > 0 else None

    def safe(self) -> None:
        """State A, diode present, PP open: the rig's resting state. Tries every step."""
        problems = []
        for step, action in (("state A", lambda: self.set_state("A")),
                             ("diode present", lambda: self.set_diode(True)),
                             ("PP open", lambda: self.set_pp(None))):
            try:
                action()
            except Exception as exc:
                problems.append(f"{step}: {exc}")
        if problems:
            raise SafeStateError(self.name, "; ".join(problems))

    # -- CP measurement ------------------------------------------------------------------
    def measure_cp(self, window_s: float = 0.02) -> CpMeasurement:
        """Peak levels from the ADC, then frequency and duty from edges over `window_s`."""
        self._require_open()
        adc = self.config["adc"]
        high_v = self._read_volts("cp_high_channel", int(adc["cp_high_channel"]))
        low_v = self._read_volts("cp_low_channel", int(adc["cp_low_channel"]))
        edges = self._capture_edges(window_s)
        frequency, duty = self._pwm_from_edges(edges)
        reading = cp.ev_reading(duty) if duty is not None else None
        return CpMeasurement(
            high_v=high_v,
            low_v=low_v,
            frequency_hz=frequency,
            duty=duty,
            offered_current_a=reading.amps if reading else None,
            pwm=duty is not None,
            resolution_s=self.resolution_s,
            window_s=window_s,
            ev_reading=reading.meaning if reading else cp.NO_CHARGING,
            level_state=cp.state_for_high_v(high_v),
        )

    def _read_volts(self, role: str, channel: int) -> float:
        """Average a few ADC readings; a reading on a rail or a wild spread is a broken link."""
        adc = self.config["adc"]
        device = self._adc[role]
        full_scale = (1 << device.bits) - 1
        samples = int(adc.get("samples", DEFAULT_ADC_SAMPLES))
        per_count, offset = float(adc["volts_per_count"]), float(adc["offset_volts"])

        def read() -> float:
            counts = [device.raw_value for _ in range(samples)]
            if any(c <= 0 or c >= full_scale for c in counts):
                raise ValueError(f"channel {channel} reads a rail {counts} (no answer from the ADC?)")
            volts = [c * per_count + offset for c in counts]
            if max(volts) - min(volts) > ADC_SPREAD_LIMIT_V:
                raise ValueError(f"channel {channel} readings disagree: {[round(v, 2) for v in volts]} V")
            return fmean(volts)

        return with_retries(self.name, f"read CP {role.split('_')[1]} level", read, transient=GPIO_TRANSIENT)

    def _capture_edges(self, window_s: float) -> list[tuple[object, bool]]:
        pin = self._capture.pin
        with self._lock:
            self._edges = []
        try:
            pin.edges = "both"
            pin.when_changed = self._capture_handler
            self.clock.sleep(window_s, "measuring CP")
        except GPIO_TRANSIENT as exc:
            raise InstrumentError(self.name, f"edge capture on CP failed: {exc!r}") from exc
        finally:
            try:
                pin.when_changed = None
            except Exception:
                pass
        with self._lock:
            return list(self._edges)

    def _on_capture_edge(self, ticks, state) -> None:
        with self._lock:
            self._edges.append((ticks, bool(state)))

    def _pwm_from_edges(self, edges: list[tuple[object, bool]]) -> tuple[float | None, float | None]:
        """(frequency, duty) from whole periods between the first and last trusted rising edge.

        A rising edge counts only after a falling edge has been seen: whatever the line did
        at the moment of arming (a glitch, a callback reading a late level) is not a period.
        """
        if not edges:
            return None, None
        t0 = edges[0][0]
        times = [(self.factory.ticks_diff(t, t0), high) for t, high in edges]
        first_fall = next((i for i, (_, high) in enumerate(times) if not high), None)
        if first_fall is None:
            return None, None
        times = times[first_fall:]
        rises = [t for t, high in times if high]
        if len(rises) < 2:
            return None, None
        high_time = 0.0
        for start, end in zip(rises, rises[1:]):
            falls = [t for t, high in times if not high and start < t < end]
            if not falls:
                return None, None  # a missed edge: do not guess
            high_time += falls[0] - start
        span = rises[-1] - rises[0]
        if span <= 0:
            return None, None
        return (len(rises) - 1) / span, high_time / span
