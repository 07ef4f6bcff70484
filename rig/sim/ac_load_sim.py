"""Emulated programmable AC load, serving the dialect documented in rig/instruments/ac_load.py.

It draws through the plant: its input state, per-phase setpoints and power factor are the
plant's `load_on`, `load_a` and `load_pf`. What it measures is what flows (`plant.phase_current`),
so with the contactor open it reads 0 A whatever the setpoint: that is how a test sees the
charger's contactor through the load.
"""

from __future__ import annotations

from rig.core.aio import LoopThread
from rig.sim.plant import Plant
from rig.sim.scpi_server import ScpiError, ScpiServer, boolean, expect_args, number, suffix_index

RATING_A = 40.0  # per phase; a setpoint above it is clamped, as the read-back shows


class EmulatedAcLoad(ScpiServer):
    identity = "PlugStreamRig,EmuLoad,SIM0001,1.0"

    def __init__(self, plant: Plant, loop: LoopThread, config: dict):
        super().__init__(plant, loop, config)
        self.rating_a = RATING_A

    def commands(self):
        return {
            "SYSTem:PHASes?": lambda s, a: str(self.plant.phases),
            "[SOURce:]CURRent#": self._set_current,
            "[SOURce:]CURRent#?": self._current,
            "INPut[:STATe]": self._set_input,
            "INPut[:STATe]?": lambda s, a: "1" if self.plant.load_on else "0",
            "MEASure:CURRent#?": self._measure,
            "[SOURce:]PFACtor": self._set_pf,
            "[SOURce:]PFACtor?": lambda s, a: f"{self.plant.load_pf:.3f}",
        }

    def reset(self) -> None:
        with self.plant.change("load"):
            self.plant.load_on = False
            self.plant.load_a = [0.0] * self.plant.phases
            self.plant.load_pf = 1.0

    # -- handlers ------------------------------------------------------------------------------
    def _phases(self, suffixes) -> list[int]:
        """Every phase for a bare header, else the one its suffix names."""
        suffix = suffixes[0] if suffixes else None
        if suffix is None:
            return list(range(self.plant.phases))
        return [suffix_index(suffix, self.plant.phases)]

    def _set_current(self, suffixes, args) -> None:
        (arg,) = expect_args(args, 1)
        amps = number(arg)
        if amps < 0:
            raise ScpiError(-222, "Data out of range")
        amps = round(min(amps, self.rating_a), 3)
        with self.plant.change("load"):
            for i in self._phases(suffixes):
                self.plant.load_a[i] = amps

    def _current(self, suffixes, args) -> str:
        expect_args(args, 0)
        with self.plant.lock:
            return ",".join(f"{self.plant.load_a[i]:.3f}" for i in self._phases(suffixes))

    def _set_input(self, suffixes, args) -> None:
        (arg,) = expect_args(args, 1)
        state = boolean(arg)
        with self.plant.change("load"):
            self.plant.load_on = state

    def _measure(self, suffixes, args) -> str:
        expect_args(args, 0)
        with self.plant.lock:
            return ",".join(f"{self.plant.phase_current(i):.3f}" for i in self._phases(suffixes))

    def _set_pf(self, suffixes, args) -> None:
        (arg,) = expect_args(args, 1)
        pf = number(arg)
        if not 0 < pf <= 1:
            raise ScpiError(-222, "Data out of range")
        with self.plant.change("load"):
            self.plant.load_pf = pf
