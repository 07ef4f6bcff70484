"""The emulated vehicle: what the pilot box and the AC load do together, in EV terms.

Tests speak of plugging in and asking for power; this turns that into relay states and load
settings, the same on a real bench and the emulated one.
"""

from __future__ import annotations

from rig.core.clock import Clock


class Vehicle:
    def __init__(self, pilot, load, clock: Clock, profile: dict, default_cable_ohms: float | None = 220.0):
        self.pilot, self.load, self.clock = pilot, load, clock
        self.profile = profile
        # a socket variant needs a cable: 220 ohm codes 32 A (STANDARDS "Proximity pilot")
        self.cable_ohms = default_cable_ohms if profile["connector"] == "socket" else None

    def plug_in(self, cable_ohms: float | None = None) -> None:
        """Connect the vehicle (state B). On socket variants the cable's PP coding comes first."""
        if self.profile["connector"] == "socket":
            self.pilot.set_pp(cable_ohms if cable_ohms is not None else self.cable_ohms)
        self.pilot.set_state("B")

    def request_power(self) -> None:
        """The vehicle asks for energy (state C)."""
        self.pilot.set_state("C")

    def stop_requesting(self) -> None:
        """The vehicle stops asking (state C -> B), e.g. battery full."""
        self.pilot.set_state("B")

    def unplug(self) -> None:
        self.load.off()
        self.pilot.set_state("A")
        if self.profile["connector"] == "socket":
            self.pilot.set_pp(None)

    def draw(self, amps: float | list[float]) -> None:
        """The on-board charger draws `amps` per phase (only flows if the charger's contactor is closed)."""
        self.load.set_current(amps)
        self.load.on()

    def follow_pwm(self, window_s: float = 0.02) -> float:
        """Read the offered current from the pilot's duty and draw exactly that; returns the amps."""
        m = self.pilot.measure_cp(window_s)
        amps = m.offered_current_a or 0.0
        self.draw(amps)
        return amps
