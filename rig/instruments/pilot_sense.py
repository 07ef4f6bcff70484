"""The pilot-signal box's contact sense: opto inputs that say whether L1-L3 and N are live at the
vehicle connector and whether PE is continuous. Every edge is logged with its time from the pin
factory's ticks (the pigpio daemon's microseconds, or the emulated bench's virtual clock), which is
how the rig times contactor events to the microsecond without polling.

A mixin of rig.instruments.pilot.PilotBox (the seam: the box's outputs drive the vehicle, these
inputs watch the charger); it uses the box's pin factory, lock, clock and open sense devices.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from gpiozero.exc import GPIOZeroError

from rig.core.errors import InstrumentError
from rig.core.retry import TRANSIENT, with_retries

SENSE = ("sense_l1", "sense_l2", "sense_l3", "sense_n", "sense_pe")
GPIO_TRANSIENT = TRANSIENT + (GPIOZeroError, RuntimeError)

SenseCallback = Callable[[float, str, bool], None]  # (clock time s, pin name, value)

# How long a notification may still be on its way after the pin it reports already reads its new
# level (pigpiod sends notifications in blocks over TCP; on a LAN they arrive within milliseconds,
# this allows for a loaded Pi and network). Real time: it waits for the box, not for the unit.
NOTIFICATION_LATENCY_MAX_S = 0.5


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

        return ContactSense(*(self._read_sense(name) if name in self._sense else None for name in SENSE))

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
            self._logged_level[name] = bool(value)
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

    def confirmed_sense_events(self) -> list[tuple[float, str, bool]]:
        """`sense_events()`, once the log is shown to agree with the pins read now.

        Edges reach the log over the pigpio daemon's notification stream, reads over its command
        socket. A stream that stalled or a box that stopped must not read as "the contactor never
        opened": every pin's level, read live, must equal its last logged level. A pin that differs
        is given NOTIFICATION_LATENCY_MAX_S for a notification in flight; still differing, the
        lost edge is the rig's fault (InstrumentError), and a box that does not answer the read is
        one already.
        """
        self._require_open()
        deadline = time.monotonic() + NOTIFICATION_LATENCY_MAX_S
        while True:
            live = {name: self._read_sense(name) for name in self._sense}
            with self._lock:
                lost = {name: level for name, level in live.items() if self._logged_level.get(name) != level}
                if not lost:
                    return list(self._events)
            if time.monotonic() >= deadline:
                text = ", ".join(f"{name} reads {int(level)}" for name, level in lost.items())
                raise InstrumentError(self.name, f"{text} but the edge that got it there was never notified "
                                      f"(within {NOTIFICATION_LATENCY_MAX_S} s): the pigpio daemon's "
                                      "notification stream lost it; check the Pi's network and pigpiod")
            time.sleep(0.02)

    def _read_sense(self, name: str) -> bool:
        device = self._sense[name]
        return with_retries(self.name, f"read {name}", lambda: bool(device.is_active), transient=GPIO_TRANSIENT)

    def _start_sense_log(self) -> None:
        """Each pin's level as the log starts (after its edge handler is attached, so an edge
        that comes between is logged rather than lost)."""
        for name in self._sense:
            level = self._read_sense(name)
            with self._lock:
                self._logged_level.setdefault(name, level)

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
        if found is None:  # "it never switched" only if no edge was lost on the way
            self.confirmed_sense_events()
        return arrived()

    def _sense_value(self, name: str) -> bool | None:
        device = self._sense.get(name)
        return None if device is None else bool(device.is_active)
