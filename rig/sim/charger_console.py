"""The emulated unit's service console: the text commands a technician types on its serial line
(`info`, `status`), answered from the unit's state. Kept apart from the charger's decisions: it
only reads them."""

from __future__ import annotations


class ChargerConsole:
    """Mixed into EmulatedCharger: needs plant, model, serial, firmware, cp_state, status,
    registration, online, offered_current_a, generator_on_pwm and fault."""

    def console(self, line: str) -> str:
        with self.plant.lock:
            words = line.strip().split()
            if not words:
                return ""
            cmd = words[0].lower()
            if cmd == "info":
                return "\n".join(
                    [
                        f"model={self.model['ocpp_model']}",
                        f"serial={self.serial}",
                        f"firmware={self.firmware.version}",
                        f"phases={self.model['phases']}",
                        f"connector={self.model['connector']}",
                    ]
                )
            if cmd == "status":
                return "\n".join(
                    [
                        f"cp={self.cp_state}",
                        f"connector={self.status}",
                        f"registration={self.registration}",
                        f"online={'yes' if self.online else 'no'}",
                        f"offered_a={self.offered_current_a() if self.generator_on_pwm else 0:g}",
                        f"fault={self.fault or 'none'}",
                    ]
                )
            raise ValueError(f"unknown command {cmd!r}")
