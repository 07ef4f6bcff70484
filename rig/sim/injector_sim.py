"""Emulated DC residual-current injector (an SMU), serving the dialect in rig/instruments/injector.py.

Its whole state is the plant's `injection`: output on/off, and a level that is either held (a
step: rate 0) or ramping from a start level at a start time towards a stop level. The plant
computes the present current from that, so a ramp needs no timers: the level at any virtual
time follows from the clock, exactly. What the SMU measures is `plant.residual_dc_a()`.
"""

from __future__ import annotations

import dataclasses

from rig.core.aio import LoopThread
from rig.sim.plant import Injection, Plant
from rig.sim.scpi_server import ScpiError, ScpiServer, boolean, expect_args, number

RANGE_A = 1.0  # the SMU's current range; a level beyond it is clamped, as the read-back shows


class EmulatedInjector(ScpiServer):
    identity = "PlugStreamRig,EmuInjector,SIM0003,1.0"

    def __init__(self, plant: Plant, loop: LoopThread, config: dict):
        super().__init__(plant, loop, config)
        self.range_a = RANGE_A
        self._ramp = (0.0, 0.0)  # (rate, stop) as programmed, for SOUR:CURR:RAMP?

    def commands(self):
        return {
            "[SOURce:]CURRent[:LEVel]": self._set_level,
            "[SOURce:]CURRent[:LEVel]?": lambda s, a: _fmt(self._present()),
            "[SOURce:]CURRent:RAMP": self._set_ramp,
            "[SOURce:]CURRent:RAMP?": lambda s, a: f"{_fmt(self._ramp[0])},{_fmt(self._ramp[1])}",
            "OUTPut[:STATe]": self._set_output,
            "OUTPut[:STATe]?": lambda s, a: "1" if self.plant.injection.on else "0",
            "MEASure:CURRent[:DC]?": self._measure,
        }

    def reset(self) -> None:
        self._ramp = (0.0, 0.0)
        with self.plant.change("injection"):
            self.plant.injection = Injection(start_s=self.plant.clock.now())

    # -- handlers ------------------------------------------------------------------------------
    def _set_level(self, suffixes, args) -> None:
        (arg,) = expect_args(args, 1)
        amps = self._clamp(number(arg))
        self._ramp = (0.0, amps)
        self._replace(start_a=amps, rate_a_per_s=0.0, stop_a=amps)

    def _set_ramp(self, suffixes, args) -> None:
        rate_arg, stop_arg = expect_args(args, 2)
        rate, stop = number(rate_arg), self._clamp(number(stop_arg))
        if rate <= 0:
            raise ScpiError(-222, "Data out of range")
        self._ramp = (rate, stop)
        present = self._present()
        signed = rate if stop >= present else -rate
        self._replace(start_a=present, rate_a_per_s=signed, stop_a=stop)

    def _set_output(self, suffixes, args) -> None:
        (arg,) = expect_args(args, 1)
        if boolean(arg):  # a ramp in force carries on from where the level is now
            self._replace(on=True, start_a=self._present())
        else:  # off holds the level where it is
            here = self._present()
            self._replace(on=False, start_a=here, rate_a_per_s=0.0, stop_a=here)

    def _measure(self, suffixes, args) -> str:
        expect_args(args, 0)
        with self.plant.lock:
            return _fmt(self.plant.residual_dc_a())

    # -- state ---------------------------------------------------------------------------------
    def _present(self) -> float:
        """The source level now, on or off (a ramp's level follows from the clock)."""
        with self.plant.lock:
            held = dataclasses.replace(self.plant.injection, on=True)
            return held.current_at(self.plant.clock.now())

    def _replace(self, **changes) -> None:
        """New injection state starting now (a ramp re-based here keeps its trajectory)."""
        with self.plant.change("injection"):
            now = self.plant.clock.now()
            self.plant.injection = dataclasses.replace(self.plant.injection, start_s=now, **changes)

    def _clamp(self, amps: float) -> float:
        return float(_fmt(max(-self.range_a, min(self.range_a, amps))))


def _fmt(amps: float) -> str:
    return f"{amps:.6E}"
