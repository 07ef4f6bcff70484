"""The physical world of the emulated bench.

One `Plant` holds what the copper and the instruments would hold on a real bench:
the supply the AC source gives, the current the AC load draws, the DC residual
current the injector drives, the vehicle-side pilot circuit the Pi's relays switch,
and what the charger does (contactor, CP generator, LED).

Emulated instruments write their side under `plant.lock` inside `plant.change(topic)`,
which integrates energy up to "now" before anything moves and tells subscribers
(the emulated charger) afterwards. The emulated charger writes its side the same way.
Nothing here knows protocols: the servers in `rig/sim/` translate between wire and plant.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import Callable

from rig.core.clock import VirtualClock

NOMINAL_V = 230.0
NOMINAL_HZ = 50.0
CP_SOURCE_OHMS = 1000.0  # IEC 61851-1 generator source resistance
CP_DIODE_DROP_V = 0.7


@dataclass
class Injection:
    """DC residual current from the injector: a level, optionally ramping at a rate."""

    on: bool = False
    start_s: float = 0.0
    start_a: float = 0.0
    rate_a_per_s: float = 0.0  # 0 = a step; >0 = ramp towards stop_a
    stop_a: float = 0.0

    def current_at(self, t: float) -> float:
        if not self.on:
            return 0.0
        if self.rate_a_per_s == 0.0:
            return self.start_a
        a = self.start_a + self.rate_a_per_s * max(0.0, t - self.start_s)
        return min(a, self.stop_a) if self.rate_a_per_s > 0 else max(a, self.stop_a)


@dataclass
class Vehicle:
    """The vehicle side of the pilot circuit, as the pilot box's relays set it."""

    cp_ohms: float | None = None  # None = nothing connected (state A)
    diode_bypassed: bool = False  # vehicle diode shorted or missing
    cp_pe_short: bool = False  # state E
    pp_ohms: float | None = None  # None = PP open


@dataclass
class LedShown:
    """What the charger's status LED shows: a documented colour and pattern."""

    colour: str = "off"  # off, white, blue, green, purple, orange, red, rainbow
    pattern: str = "solid"  # solid, pulsing, circle, rainbow
    since_s: float = 0.0


@dataclass
class Generator:
    """The charger's CP generator: steady +12 V, PWM at a duty, or -12 V (state F)."""

    mode: str = "off"  # off (unpowered, 0 V), steady (+12 V), pwm, minus12
    duty: float = 1.0  # fraction 0..1 when mode == pwm
    freq_hz: float = 1000.0
    amplitude_v: float = 12.0


Subscriber = Callable[[str], None]


@dataclass
class Plant:
    clock: VirtualClock
    phases: int = 1
    lock: threading.RLock = field(default_factory=threading.RLock)

    # AC source
    supply_on: bool = True
    supply_v: list[float] = field(default_factory=list)
    supply_hz: float = NOMINAL_HZ
    # AC load (the vehicle's on-board charger)
    load_on: bool = False
    load_a: list[float] = field(default_factory=list)
    load_pf: float = 1.0
    # DC residual-current injector
    injection: Injection = field(default_factory=Injection)
    # pilot box (vehicle side)
    vehicle: Vehicle = field(default_factory=Vehicle)
    # charger side
    line_closed: bool = False  # contactor: line conductors
    neutral_closed: bool = False
    earth_closed: bool = True  # protective earth to the vehicle
    generator: Generator = field(default_factory=Generator)
    led: LedShown = field(default_factory=LedShown)

    # meter accumulators (kWh per phase), integrated on every change
    import_kwh: list[float] = field(default_factory=list)
    _last_integration_s: float = 0.0
    _subscribers: list[Subscriber] = field(default_factory=list)

    def __post_init__(self):
        if not self.supply_v:
            self.supply_v = [NOMINAL_V] * self.phases
        if not self.load_a:
            self.load_a = [0.0] * self.phases
        if not self.import_kwh:
            self.import_kwh = [0.0] * self.phases

    # -- change protocol -------------------------------------------------------------------
    def subscribe(self, fn: Subscriber) -> None:
        self._subscribers.append(fn)

    @contextlib.contextmanager
    def change(self, topic: str):
        """Mutate the plant: energy is integrated up to now first; subscribers hear `topic` after."""
        with self.lock:
            self.integrate()
            yield self
            for fn in list(self._subscribers):
                fn(topic)

    def integrate(self) -> None:
        now = self.clock.now()
        dt_h = (now - self._last_integration_s) / 3600.0
        if dt_h > 0:
            for i in range(self.phases):
                self.import_kwh[i] += self.phase_power_w(i) * dt_h / 1000.0
        self._last_integration_s = now

    # -- what instruments measure ------------------------------------------------------------
    def phase_voltage(self, i: int) -> float:
        """Line-neutral voltage at the charger's supply terminals (what the meter sees)."""
        return self.supply_v[i] if self.supply_on else 0.0

    def output_live(self, i: int) -> bool:
        """Is phase `i` live at the vehicle connector (downstream of the contactor)?"""
        return self.supply_on and self.line_closed and self.phase_voltage(i) > 0

    def phase_current(self, i: int) -> float:
        if not (self.output_live(i) and self.neutral_closed and self.load_on):
            return 0.0
        return max(0.0, self.load_a[i])

    def phase_power_w(self, i: int) -> float:
        return self.phase_voltage(i) * self.phase_current(i) * self.load_pf

    def residual_dc_a(self) -> float:
        return self.injection.current_at(self.clock.now())

    def cp_state_letter(self) -> str:
        """Vehicle-side state as the resistors say (A-E), ignoring the generator."""
        v = self.vehicle
        if v.cp_pe_short:
            return "E"
        if v.cp_ohms is None:
            return "A"
        if v.cp_ohms < 500:
            return "D"
        if v.cp_ohms < 2000:
            return "C"
        return "B"

    def cp_levels(self) -> tuple[float, float]:
        """(high, low) CP voltage at the charger's CP pin, from generator and vehicle load."""
        g, v = self.generator, self.vehicle
        if g.mode == "off" or v.cp_pe_short:
            return 0.0, 0.0
        high = g.amplitude_v if g.mode in ("steady", "pwm") else -g.amplitude_v
        low = -g.amplitude_v if g.mode in ("pwm", "minus12") else high
        return self._loaded(high, forward=True), self._loaded(low, forward=False)

    def _loaded(self, source_v: float, forward: bool) -> float:
        v = self.vehicle
        if v.cp_ohms is None:
            return source_v
        if source_v > 0:
            drop = 0.0 if v.diode_bypassed else CP_DIODE_DROP_V
            current = max(0.0, source_v - drop) / (CP_SOURCE_OHMS + v.cp_ohms)
            return source_v - CP_SOURCE_OHMS * current
        if v.diode_bypassed:  # no diode: the negative half is loaded too
            return source_v * v.cp_ohms / (CP_SOURCE_OHMS + v.cp_ohms)
        return source_v  # diode blocks: low level stays at -12 V
