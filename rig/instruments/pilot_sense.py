"""The pilot-signal box's contact sense: opto inputs that say whether L1-L3 and N are live at the
vehicle connector and whether PE is continuous. Every edge is logged with its time from the pin
factory's ticks (the pigpio daemon's microseconds, or the emulated bench's virtual clock), which is
how the rig times contactor events to the microsecond without polling.

A mixin of rig.instruments.pilot.PilotBox (the seam: the box's outputs drive the vehicle, these
inputs watch the charger); it uses the box's pin factory, lock, clock and open sense devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gpiozero.exc import GPIOZeroError

from rig.core.retry import TRANSIENT, with_retries

SENSE = ("sense_l1", "sense_l2", "sense_l3", "sense_n", "sense_pe")
GPIO_TRANSIENT = TRANSIENT + (GPIOZeroError, RuntimeError)

SenseCallback = Callable[[float, str, bool], None]  # (clock time s, pin name, value)


@dataclass(frozen=True)
class ContactSense:
    """What is live / continuous at the vehicle connector; None where the bench has no sensor."""

    l1: bool | None
    l2: bool | None
    l3: bool | None
    n: bool | None
    pe: bool | None


class ContactSensing:
    """Reading, logging and waiting on the sense inputs (see the module docstring)."""

    def sense(self) -> ContactSense:
        self._require_open()

        def read(name: str) -> bool | None:
            device = self._sense.get(name)
            if device is None:
                return None
            return with_retries(self.name, f"read {name}", lambda: bool(device.is_active), transient=GPIO_TRANSIENT)

        return ContactSense(*(read(name) for name in SENSE))

    def _sense_handler(self, name: str) -> Callable[[object, int], None]:
        active_level = self._sense_active_level

        def changed(ticks, state) -> None:
            self._on_sense_edge(name, ticks, bool(state) == active_level)

        return changed

    def _on_sense_edge(self, name: str, ticks, value) -> None:
        anchor_ticks, anchor_t = self._anchor
        # rounded to the tick grid: float noise must not put an edge before an instant it
        # happened at (the emulated bench's edges land exactly on clock.now() values)
        t = round(anchor_t + self.factory.ticks_diff(ticks, anchor_ticks), self._tick_decimals)
        event = (t, name, bool(value))
        with self._lock:
            self._events.append(event)
            # re-anchor on every edge: pigpio ticks wrap after 71.6 min, so anchors stay recent
            self._anchor = (ticks, t)
            watchers = list(self._watchers)
        for fn in watchers:
            fn(*event)

    def watch_sense(self, callback: SenseCallback) -> Callable[[], None]:
        """Call `callback(t_s, pin_name, value)` on every sense edge; returns an unsubscribe function."""
        with self._lock:
            self._watchers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._watchers:
                    self._watchers.remove(callback)

        return unsubscribe

    on_output_change = watch_sense  # the name the charger-facing tests think in

    def sense_events(self) -> list[tuple[float, str, bool]]:
        """(clock time s, pin name, value) of every sense edge since `clear_sense_events()`."""
        with self._lock:
            return list(self._events)

    def clear_sense_events(self) -> None:
        with self._lock:
            self._events = []
            if self.factory is not None:
                self._anchor = (self.factory.ticks(), self.clock.now())

    def wait_sense(self, name: str, value: bool, timeout_s: float, poll_s: float = 0.01) -> float | None:
        """Wait until `name` reads `value`; returns the time of the edge that got it there
        (exact, from the pin's timestamp, not the poll), or None on timeout.

        If the pin already reads `value`, that is the time of its last recorded edge
        (or now, when the edge happened before `clear_sense_events()`).
        """
        self._require_open()
        if self._sense_value(name) == value:
            mine = [(t, v) for t, pin, v in self.sense_events() if pin == name]
            return mine[-1][0] if mine and mine[-1][1] == value else self.clock.now()
        seen = len(self.sense_events())

        def arrived() -> float | None:
            for t, pin, v in self.sense_events()[seen:]:
                if pin == name and v == value:
                    return t
            return None

        found = self.clock.wait_until(lambda: arrived() is not None, timeout_s, poll_s,
                                      f"waiting for {name}={int(value)}")
        return None if found is None else arrived()

    def _sense_value(self, name: str) -> bool | None:
        device = self._sense.get(name)
        return None if device is None else bool(device.is_active)
