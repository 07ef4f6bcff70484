"""The pilot-signal box's Raspberry Pi, emulated on gpiozero's MockFactory.

The pilot box driver (`rig/instruments/pilot.py`) runs unchanged against this: it
switches relays on output pins, reads sense inputs, times CP edges on a capture input
and reads an MCP3208 over (bit-banged) SPI. Here those pins are wired to the Plant:

* `BenchPinFactory` is a MockFactory whose ticks are the bench's virtual clock, so edge
  timestamps are virtual time to the microsecond, and which tells the circuit when an
  output pin changes or when a driver attaches an edge callback.
* `EmulatedPilotCircuit` is the copper behind the pins: relay outputs become the
  vehicle side of the pilot circuit in the plant; the plant drives the sense inputs,
  the CP comparator (PWM edges from virtual-clock timers, only while someone listens)
  and the ADC's peak detectors (`EmulatedMCP3208`).

One factory per bench; it is handed to the driver as `PilotBox(pin_factory=...)` and
never installed as gpiozero's global `Device.pin_factory`, so benches in one process
(xdist workers, the harness's own tests) stay apart.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

from threading import RLock

from gpiozero import InputDevice, OutputDevice
from gpiozero.devices import Device
from gpiozero.mixins import SharedMixin
from gpiozero.pins.data import SPI_HARDWARE_PINS
from gpiozero.pins.mock import MockFactory, MockPin, MockSPIClockPin, MockSPIDevice, MockSPISelectPin, PinState
from gpiozero.pins.spi import SPISoftware, SPISoftwareBus

from rig.product import cp
from rig.core.clock import VirtualClock
from rig.sim.plant import Plant, Vehicle

OutputHook = Callable[["BenchPin"], None]
WatchHook = Callable[["BenchPin", bool], None]


# -- pins and factory ------------------------------------------------------------------------
class _BenchPinMixin:
    """Virtual-time stamps, output-change and edge-watch notifications, external drive.

    `external_level`: set by the circuit on inputs it drives. A pull resistor cannot
    overpower an actively driven line, so choosing a pull (which a driver does when it
    opens the pin) keeps the driven level instead of resetting the pin to the pull.
    """

    def __init__(self, factory, info, **kwargs):
        self.external_level: bool | None = None
        super().__init__(factory, info, **kwargs)

    def _change_state(self, value):
        if self._state == value:
            return False
        t = self.factory.ticks()
        self._state = value
        self.states.append(PinState(t - self._last_change, value))
        self._last_change = t
        if self._function == "output":
            self.factory.output_changed(self)
        return True

    def clear_states(self):
        self._last_change = self.factory.ticks()
        self.states = [PinState(0.0, self._state)]

    def _set_function(self, value):
        super()._set_function(value)
        if value == "input" and self.external_level is not None:
            self._change_state(self.external_level)
        # a relay whose pin stops being an output drops out, whatever its last state
        self.factory.output_changed(self)

    def _set_pull(self, value):
        super()._set_pull(value)
        if self.external_level is not None:
            self._change_state(self.external_level)

    def _enable_event_detect(self):
        super()._enable_event_detect()
        self.factory.watch_changed(self, True)

    def _disable_event_detect(self):
        super()._disable_event_detect()
        self.factory.watch_changed(self, False)

    def drive(self, level: bool, quietly: bool = False) -> None:
        """Drive an input from outside (the circuit); edge callbacks fire as on a real pin.

        `quietly` brings a pin whose level was not kept up to date back in line without an
        edge callback: the line was already there, only the emulation had not looked.
        """
        self.external_level = bool(level)
        if self._function != "input":
            return  # misconfigured as output by the driver: nothing to drive into
        if quietly:
            self._change_state(bool(level))
        elif level:
            self.drive_high()
        else:
            self.drive_low()

    @property
    def relay_on(self) -> bool:
        """A relay driver is energised only while its pin is an output and high."""
        return self._function == "output" and bool(self._state)


class BenchPin(_BenchPinMixin, MockPin):
    pass


class BenchSPIClockPin(_BenchPinMixin, MockSPIClockPin):
    pass


class BenchSPISelectPin(_BenchPinMixin, MockSPISelectPin):
    pass


class BenchSPIBus(SPISoftwareBus):
    """gpiozero's bit-banged SPI bus, fixed for a factory that is not the global one.

    gpiozero 2.0's `SPISoftwareBus.__init__` calls `Device.__init__()` without its
    pin factory, which loads (and installs globally) a default factory; off a Pi that
    fails. Its shared-instance key also ignores the factory, so two benches in one
    process would share one bus. Same transfer code, factory passed, factory in the key.
    """

    def __init__(self, clock_pin, mosi_pin, miso_pin, *, pin_factory):
        self.lock = self.clock = self.mosi = self.miso = None
        Device.__init__(self, pin_factory=pin_factory)
        self.lock = RLock()
        try:
            self.clock = OutputDevice(clock_pin, active_high=True, pin_factory=pin_factory)
            if mosi_pin is not None:
                self.mosi = OutputDevice(mosi_pin, pin_factory=pin_factory)
            if miso_pin is not None:
                self.miso = InputDevice(miso_pin, pin_factory=pin_factory)
        except BaseException:
            self.close()
            raise

    @classmethod
    def _shared_key(cls, clock_pin, mosi_pin, miso_pin, *, pin_factory=None):
        return (pin_factory, clock_pin, mosi_pin, miso_pin)


class BenchSPIInterface(SPISoftware):
    """`SPISoftware` on `BenchSPIBus` (see there for why)."""

    def __init__(self, clock_pin, mosi_pin, miso_pin, select_pin, *, pin_factory):
        self._bus = None
        self._select = None
        super(SPISoftware, self).__init__(pin_factory=pin_factory)
        try:
            self._clock_phase = False
            self._lsb_first = False
            self._bits_per_word = 8
            self._bus = BenchSPIBus(clock_pin, mosi_pin, miso_pin, pin_factory=pin_factory)
            self._select = OutputDevice(select_pin, active_high=False, pin_factory=pin_factory)
        except BaseException:
            self.close()
            raise


class BenchSPIInterfaceShared(SharedMixin, BenchSPIInterface):
    @classmethod
    def _shared_key(cls, clock_pin, mosi_pin, miso_pin, select_pin, pin_factory):
        return (pin_factory, clock_pin, select_pin)


class BenchPinFactory(MockFactory):
    """MockFactory on the bench's virtual clock: ticks are virtual seconds (float)."""

    def __init__(self, clock: VirtualClock):
        self.clock = clock
        self.tick_resolution_s = clock.resolution_s
        self._output_hooks: list[OutputHook] = []
        self._watch_hooks: list[WatchHook] = []
        super().__init__(pin_class=BenchPin)

    def ticks(self):  # MockFactory's is a staticmethod on time.monotonic
        return self.clock.now()

    @staticmethod
    def ticks_diff(later, earlier):
        return later - earlier

    def _get_spi_class(self, shared, hardware):
        return BenchSPIInterfaceShared if shared else BenchSPIInterface

    def add_output_hook(self, fn: OutputHook) -> None:
        self._output_hooks.append(fn)

    def remove_output_hook(self, fn: OutputHook) -> None:
        if fn in self._output_hooks:
            self._output_hooks.remove(fn)

    def add_watch_hook(self, fn: WatchHook) -> None:
        self._watch_hooks.append(fn)

    def remove_watch_hook(self, fn: WatchHook) -> None:
        if fn in self._watch_hooks:
            self._watch_hooks.remove(fn)

    def output_changed(self, pin: BenchPin) -> None:
        for fn in list(self._output_hooks):
            fn(pin)

    def watch_changed(self, pin: BenchPin, armed: bool) -> None:
        for fn in list(self._watch_hooks):
            fn(pin, armed)


# -- the ADC -----------------------------------------------------------------------------------
class EmulatedMCP3208(MockSPIDevice):
    """The slave side of an MCP3208 as gpiozero's `MCP3208` talks to it.

    Request (MSB first): 5 zero bits, start 1, single/diff bit, 3 channel bits, then
    don't-care; the chip answers with a null bit and 12 result bits so that the
    result ends the 3-byte transfer. `read_counts(channel)` supplies the value.

    `fault` emulates a broken SPI link for the harness's own tests: "silent" (MISO
    stuck low, every reading 0), "disconnect" (MISO pulled high, 4095), "garbage"
    (random counts).
    """

    BITS = 12
    CHANNEL_BITS = 3

    def __init__(self, pin_factory: BenchPinFactory, spi_device: int,
                 read_counts: Callable[[int], int], noise: Callable[[], float]):
        # gpiozero maps every SPI port onto port 0's clock/MOSI/MISO pins (see its
        # PiFactory._extract_spi_args); the emulated chip sits where the driver will look
        hw = SPI_HARDWARE_PINS[0]
        select_pin = hw["select"][spi_device]
        # create clock and select with the bench's pin classes first; MockSPIDevice then reuses them
        clock = pin_factory.pin(hw["clock"], pin_class=BenchSPIClockPin)
        select = pin_factory.pin(select_pin, pin_class=BenchSPISelectPin)
        if not (isinstance(clock, BenchSPIClockPin) and isinstance(select, BenchSPISelectPin)):
            raise RuntimeError("the SPI pins are already plain pins: start the EmulatedPilotCircuit "
                               "before the pilot box opens")
        super().__init__(hw["clock"], hw["mosi"], hw["miso"], select_pin, pin_factory=pin_factory)
        self.read_counts = read_counts
        self.noise = noise
        self.fault: str | None = None
        self.phase = "idle"

    def on_start(self):
        super().on_start()
        self.phase = "idle"

    def on_bit(self):
        if self.phase == "idle":
            if self.rx_buf[-1]:  # start bit
                self.phase, self.rx_buf = "mode", []
        elif self.phase == "mode":
            self.phase = "single" if self.rx_buf[-1] else "diff"
            self.rx_buf = []
        elif self.phase in ("single", "diff"):
            if len(self.rx_buf) == self.CHANNEL_BITS:
                # one don't-care bit has just gone out; then null bit + 12 result bits
                self.tx_word(self._answer(self.rx_word()), self.BITS + 2)
                self.phase = "result"

    def _answer(self, channel: int) -> int:
        full_scale = (1 << self.BITS) - 1
        if self.fault == "silent":
            return 0
        if self.fault == "disconnect":
            return full_scale
        if self.fault == "garbage":
            return int(self.noise() * full_scale) % (full_scale + 1)
        return max(0, min(full_scale, self.read_counts(channel)))


# -- the circuit -------------------------------------------------------------------------------
RELAYS = ("cp_b", "cp_c", "cp_d", "cp_e", "diode_bypass", "pp_select_0", "pp_select_1", "pp_select_2")
PP_SELECT = ("pp_select_0", "pp_select_1", "pp_select_2")
SENSE = ("sense_l1", "sense_l2", "sense_l3", "sense_n", "sense_pe")
ADC_NOISE_COUNTS = 1.0  # standard deviation of the emulated ADC noise


class EmulatedPilotCircuit:
    """The pilot box's copper: relays -> plant.vehicle; plant -> sense, comparator, ADC.

    Relays act at once, each on its own, like the real relays (the driver orders them so
    the vehicle only passes through states a real vehicle passes through). The PP
    selector is the exception: its three relays form one binary code, and the codes seen
    between two relay writes mean nothing, so the selector is applied once per instant
    (a zero-delay timer), and before any other relay change so the order is kept.
    """

    def __init__(self, plant: Plant, factory: BenchPinFactory, config: dict):
        self.plant = plant
        self.factory = factory
        self.config = config
        pins = config["pins"]
        self._relay_numbers = {name: pins[name] for name in RELAYS}
        self._sense_numbers = {name: pins[name] for name in SENSE if pins.get(name) is not None}
        self._capture_number = pins["cp_capture"]
        self._ladder = [float(v) for v in config["pp_ladder"]["codes"]]
        adc = config["adc"]
        self._channels = {int(adc["cp_high_channel"]): 0, int(adc["cp_low_channel"]): 1}
        self._volts_per_count = float(adc["volts_per_count"])
        self._offset_volts = float(adc["offset_volts"])
        self._spi_device = int(adc.get("spi_device", 0))
        self.adc: EmulatedMCP3208 | None = None
        self._relay_pins: dict[str, BenchPin] = {}
        self._sense_pins: dict[str, BenchPin] = {}
        self._capture_pin: BenchPin | None = None
        self._running = False
        self._capture_armed = False
        self._capture_timer = None
        self._pp_timer = None
        self._pwm_key: tuple | None = None
        self._pwm_origin_us = 0
        self._fault: str | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> dict:
        """Wire the pins to the plant; call before the driver opens the pins."""
        if self._running:
            return copy.deepcopy(self.config)
        self.adc = EmulatedMCP3208(self.factory, self._spi_device, self._adc_counts, self.plant.clock.rng.random)
        self.adc.fault = self._fault
        self._relay_pins = {name: self.factory.pin(n) for name, n in self._relay_numbers.items()}
        self._sense_pins = {name: self.factory.pin(n) for name, n in self._sense_numbers.items()}
        self._capture_pin = self.factory.pin(self._capture_number)
        self.factory.add_output_hook(self._on_output)
        self.factory.add_watch_hook(self._on_watch)
        self.plant.subscribe(self._on_plant)
        self._running = True
        with self.plant.lock:
            self._drive_inputs()
        return copy.deepcopy(self.config)

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self.factory.remove_output_hook(self._on_output)
        self.factory.remove_watch_hook(self._on_watch)
        for timer in (self._capture_timer, self._pp_timer):
            if timer is not None:
                timer.cancel()
        self._capture_timer = self._pp_timer = None
        if self.adc is not None:
            self.adc.close()
            self.adc = None

    @property
    def fault(self) -> str | None:
        """None | "silent" | "garbage" | "disconnect": a broken ADC link (see EmulatedMCP3208)."""
        return self._fault

    @fault.setter
    def fault(self, value: str | None) -> None:
        self._fault = value
        if self.adc is not None:
            self.adc.fault = value

    # -- relays -> plant.vehicle -----------------------------------------------------------
    def _on_output(self, pin) -> None:
        if not self._running:
            return
        name = self._relay_name(pin)
        if name is None:
            return  # an SPI line or another output
        if name in PP_SELECT:
            if self._pp_timer is None:
                self._pp_timer = self.plant.clock.call_later(0.0, self._apply_pp)
            return
        self._apply_pp()  # a pending selector change happened first
        self._update_vehicle()

    def _relay_name(self, pin) -> str | None:
        for name, p in self._relay_pins.items():
            if p is pin:
                return name
        return None

    def _apply_pp(self) -> None:
        if self._pp_timer is None:
            return
        self._pp_timer.cancel()
        self._pp_timer = None
        self._update_vehicle()

    def _update_vehicle(self) -> None:
        wanted = self._vehicle_from_relays()
        with self.plant.lock:
            if wanted == self.plant.vehicle:
                return
            with self.plant.change("vehicle"):
                self.plant.vehicle = wanted

    def _vehicle_from_relays(self) -> Vehicle:
        on = {name: pin.relay_on for name, pin in self._relay_pins.items()}
        resistors = [ohms for name, ohms in (("cp_b", cp.VEHICLE_B_OHMS),
                                             ("cp_c", cp.VEHICLE_C_PARALLEL_OHMS),
                                             ("cp_d", cp.VEHICLE_D_PARALLEL_OHMS)) if on[name]]
        cp_ohms = 1.0 / sum(1.0 / r for r in resistors) if resistors else None
        code = sum(1 << bit for bit, name in enumerate(PP_SELECT) if on[name])
        pp = self._ladder[code] if code < len(self._ladder) else 0.0
        return Vehicle(cp_ohms=cp_ohms, diode_bypassed=on["diode_bypass"], cp_pe_short=on["cp_e"],
                       pp_ohms=pp if pp > 0 else None)

    # -- plant -> inputs -------------------------------------------------------------------
    def _on_plant(self, topic: str) -> None:
        if self._running:
            self._drive_inputs()

    def _drive_inputs(self) -> None:
        """Called with plant.lock held."""
        p = self.plant
        levels = {"sense_n": p.neutral_closed, "sense_pe": p.earth_closed}
        for i in range(3):
            levels[f"sense_l{i + 1}"] = i < p.phases and p.output_live(i)
        for name, pin in self._sense_pins.items():
            pin.drive(levels[name])
        self._note_generator()
        self._refresh_capture()

    # -- the CP comparator -----------------------------------------------------------------
    def _on_watch(self, pin, armed: bool) -> None:
        if not self._running or pin is not self._capture_pin:
            return
        with self.plant.lock:
            self._capture_armed = armed
            # while nobody listened the comparator line was not followed edge by edge: catch
            # up without a callback, or the driver would time an edge that never happened
            self._refresh_capture(quietly=armed)

    def _note_generator(self) -> None:
        """Restart the PWM phase when PWM starts or its frequency changes; a duty change
        keeps the phase, as a PWM peripheral does."""
        g = self.plant.generator
        key = (g.mode, g.freq_hz) if g.mode == "pwm" else None
        if key != self._pwm_key:
            self._pwm_key = key
            self._pwm_origin_us = self.plant.clock.now_us()

    def _pwm_edges(self) -> tuple[float, float] | None:
        """(period, high time) in microseconds when the comparator sees PWM, else None."""
        g = self.plant.generator
        if g.mode != "pwm" or not 0.0 < g.duty < 1.0 or g.freq_hz <= 0:
            return None
        high_v, low_v = self.plant.cp_levels()
        if not (high_v > 0.0 >= low_v):
            return None
        period_us = 1e6 / g.freq_hz
        return period_us, g.duty * period_us

    def _capture_now(self) -> tuple[bool, int | None]:
        """(comparator level now, virtual time in us of its next edge or None)."""
        now = self.plant.clock.now_us()
        pwm = self._pwm_edges()
        if pwm is None:
            return self.plant.cp_levels()[0] > 0.0, None
        period, high = pwm
        origin = self._pwm_origin_us
        k = math.floor((now - origin) / period)
        while origin + round((k + 1) * period) <= now:
            k += 1
        while origin + round(k * period) > now:
            k -= 1
        fall = origin + round(k * period + high)
        if now < fall:
            return True, fall
        return False, origin + round((k + 1) * period)

    def _refresh_capture(self, quietly: bool = False) -> None:
        if self._capture_timer is not None:
            self._capture_timer.cancel()
            self._capture_timer = None
        level, next_us = self._capture_now()
        self._capture_pin.drive(level, quietly)
        if self._capture_armed and self._running and next_us is not None:
            self._capture_timer = self.plant.clock.call_at(next_us / 1e6, self._on_capture_timer)

    def _on_capture_timer(self) -> None:
        with self.plant.lock:
            self._capture_timer = None
            self._refresh_capture()

    # -- the ADC's peak detectors ------------------------------------------------------------
    def _adc_counts(self, channel: int) -> int:
        which = self._channels.get(channel)
        with self.plant.lock:
            volts = 0.0 if which is None else self.plant.cp_levels()[which]
        noise = self.plant.clock.rng.gauss(0.0, ADC_NOISE_COUNTS)
        return round((volts - self._offset_volts) / self._volts_per_count + noise)
