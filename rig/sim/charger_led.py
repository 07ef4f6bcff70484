"""The emulated charger's status LED: which colour and pattern the firmware shows for its state,
by the precedence of the product profile's [led] table (the manual's LED table). A mixin of
`EmulatedCharger` (rig/sim/charger.py), which holds the state it reads."""

from __future__ import annotations

from rig.sim.plant import LedShown


class ChargerLed:
    """Mixin: the LED choice and showing it on the plant."""

    def led_state(self) -> tuple[str, str]:
        """(colour, pattern) the firmware wants to show, by the profile's [led.precedence]."""
        if not self.powered:
            return "off", "solid"
        if self.booting:
            return "rainbow", "rainbow"
        if self.fault:
            return "red", "solid"
        if self.firmware.installing:
            return "purple", "solid"
        if self.locked:
            plugged = self.cp_state != "A" and self.defect != "locked-no-pulse"
            return ("orange", "pulsing") if plugged else ("orange", "solid")
        network = self._network_led()
        if network is not None:
            return network
        if self.contactor_closed:
            return ("green", "solid") if self.defect == "wrong-led-charging" else ("green", "pulsing")
        waiting = self._waiting()
        if waiting == "delay":
            return ("green", "solid") if self.defect == "no-green-circle" else ("green", "circle")
        if waiting in ("peak", "schedule", "sense"):
            # waiting for the selected schedule (peak hours are the regulations' default schedule)
            if waiting == "schedule" and self.defect == "schedule-no-blue-pulse":
                return "green", "solid"
            return "blue", "pulsing"
        if self.cp_state != "A":
            return "green", "solid"
        return "blue", "solid"

    def _network_led(self) -> tuple[str, str] | None:
        """White: not yet accepted (solid), no connection to the central system (pulsing)."""
        offline = "solid" if self.defect == "offline-white-solid" else "pulsing"
        if not self.network_up or not self.online:
            if self.registration != "accepted":
                return ("white", offline) if self.network_up else ("white", "solid")
            return "white", offline
        if self.registration != "accepted" or self.defect == "stuck-white":
            return "white", "solid"
        return None

    def _update_led(self) -> None:
        colour, pattern = self.led_state()
        self._show(colour, pattern)

    def _show(self, colour: str, pattern: str) -> None:
        led = self.plant.led
        if (led.colour, led.pattern) != (colour, pattern):
            with self.plant.change("led"):
                self.plant.led = LedShown(colour, pattern, self.clock.now())
