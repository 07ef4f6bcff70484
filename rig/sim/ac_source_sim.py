"""Emulated programmable AC source, serving the dialect documented in rig/instruments/ac_source.py.

It is the charger's supply: output state, per-phase level and frequency are the plant's
`supply_on`, `supply_v` and `supply_hz`. Transients (excursion, list) are timed on the plant's
virtual clock, the way a real source times them in its own firmware: the driver arms them and
returns, and the levels change when the test thread lets virtual time pass. Each step is a
clock timer that runs in the advancing (test) thread and changes the plant under its lock;
the timers are kept per phase so TRAN:ABOR, or a new level, can cancel them.
"""

from __future__ import annotations

from rig.core.aio import LoopThread
from rig.core.clock import US
from rig.sim.plant import NOMINAL_HZ, NOMINAL_V, Plant
from rig.sim.scpi_server import ScpiError, ScpiServer, boolean, expect_args, number, suffix_index

RANGE_V = 300.0  # a level above it is clamped, as the read-back shows
FREQ_RANGE_HZ = (45.0, 65.0)


class EmulatedAcSource(ScpiServer):
    identity = "PlugStreamRig,EmuSource,SIM0002,1.0"

    def __init__(self, plant: Plant, loop: LoopThread, config: dict):
        super().__init__(plant, loop, config)
        self.range_v = RANGE_V
        with plant.lock:
            self._programmed = list(plant.supply_v)  # the steady level a transient returns to
        self._timers: dict[int, list] = {}  # phase index -> pending clock timers of its transient

    def commands(self):
        return {
            "SYSTem:PHASes?": lambda s, a: str(self.plant.phases),
            "OUTPut[:STATe]": self._set_output,
            "OUTPut[:STATe]?": lambda s, a: "1" if self.plant.supply_on else "0",
            "[SOURce:]VOLTage": self._set_voltage,
            "[SOURce:]VOLTage:PHASe#": self._set_voltage,
            "[SOURce:]VOLTage?": self._levels,
            "[SOURce:]VOLTage:PHASe#?": self._levels,
            "[SOURce:]FREQuency": self._set_frequency,
            "[SOURce:]FREQuency?": lambda s, a: f"{self.plant.supply_hz:.2f}",
            "MEASure:VOLTage?": self._measure,
            "TRANsient:EXCursion": self._excursion,
            "TRANsient:LIST": self._list,
            "TRANsient:ABORt": self._abort,
            "TRANsient:STATe?": self._transient_state,
        }

    def stop(self) -> None:
        """Stop serving; a transient of a source that is gone must not move the plant later."""
        super().stop()
        with self.plant.change("supply"):
            self._cancel_all()

    def reset(self) -> None:
        """*RST: like a source at power-on: no transient, 230 V 50 Hz programmed, output off."""
        with self.plant.change("supply"):
            self._cancel_all()
            self._programmed = [NOMINAL_V] * self.plant.phases
            self.plant.supply_v = list(self._programmed)
            self.plant.supply_hz = NOMINAL_HZ
            self.plant.supply_on = False

    # -- steady settings -----------------------------------------------------------------------
    def _set_output(self, suffixes, args) -> None:
        (arg,) = expect_args(args, 1)
        state = boolean(arg)
        with self.plant.change("supply"):
            self.plant.supply_on = state

    def _set_voltage(self, suffixes, args) -> None:
        (arg,) = expect_args(args, 1)
        volts = self._level(arg)
        with self.plant.change("supply"):
            for i in self._phases_of_suffix(suffixes):
                self._cancel(i)
                self._programmed[i] = volts
                self.plant.supply_v[i] = volts

    def _levels(self, suffixes, args) -> str:
        expect_args(args, 0)
        with self.plant.lock:
            return ",".join(f"{self.plant.supply_v[i]:.2f}" for i in self._phases_of_suffix(suffixes))

    def _measure(self, suffixes, args) -> str:
        expect_args(args, 0)
        with self.plant.lock:
            return ",".join(f"{self.plant.phase_voltage(i):.2f}" for i in range(self.plant.phases))

    def _set_frequency(self, suffixes, args) -> None:
        (arg,) = expect_args(args, 1)
        hz = number(arg)
        if not FREQ_RANGE_HZ[0] <= hz <= FREQ_RANGE_HZ[1]:
            raise ScpiError(-222, "Data out of range")
        with self.plant.change("supply"):
            self.plant.supply_hz = hz

    # -- transients ----------------------------------------------------------------------------
    def _excursion(self, suffixes, args) -> None:
        phase, volts, seconds = expect_args(args, 3)
        self._start(self._phases_of_word(phase), [(self._level(volts), self._duration(seconds))])

    def _list(self, suffixes, args) -> None:
        if len(args) < 3 or len(args) % 2 == 0:
            raise ScpiError(-109, "Missing parameter")
        phases = self._phases_of_word(args[0])
        pairs = zip(args[1::2], args[2::2])
        self._start(phases, [(self._level(v), self._duration(t)) for v, t in pairs])

    def _start(self, phases: list[int], steps: list[tuple[float, int]]) -> None:
        """Apply the first level now; schedule each next level, then the return, on the clock."""
        clock = self.plant.clock
        with self.plant.change("supply"):
            at_us = clock.now_us()
            for i in phases:
                self._cancel(i)
                self.plant.supply_v[i] = steps[0][0]
            for k, (_, hold_us) in enumerate(steps):
                at_us += hold_us
                next_level = steps[k + 1][0] if k + 1 < len(steps) else None
                for i in phases:
                    timer = clock.call_at(at_us / US, lambda i=i, v=next_level: self._step(i, v))
                    self._timers.setdefault(i, []).append(timer)

    def _step(self, i: int, volts: float | None) -> None:
        """A transient timer: go to `volts`, or (None) back to the programmed level and finish."""
        with self.plant.change("supply"):
            pending = self._timers.get(i, [])
            if pending:
                pending.pop(0)
            if not pending:
                self._timers.pop(i, None)
            self.plant.supply_v[i] = self._programmed[i] if volts is None else volts

    def _transient_state(self, suffixes, args) -> str:
        expect_args(args, 0)
        with self.plant.lock:
            return "RUNNING" if self._timers else "IDLE"

    def _abort(self, suffixes, args) -> None:
        expect_args(args, 0)
        with self.plant.change("supply"):
            self._cancel_all()

    def _cancel(self, i: int) -> None:
        """Stop phase i's transient (if any) and put it back on its programmed level."""
        timers = self._timers.pop(i, [])
        for timer in timers:
            timer.cancel()
        if timers:
            self.plant.supply_v[i] = self._programmed[i]

    def _cancel_all(self) -> None:
        for i in list(self._timers):
            self._cancel(i)

    # -- parameters ----------------------------------------------------------------------------
    def _phases_of_suffix(self, suffixes) -> list[int]:
        suffix = suffixes[0] if suffixes else None
        if suffix is None:
            return list(range(self.plant.phases))
        return [suffix_index(suffix, self.plant.phases)]

    def _phases_of_word(self, word: str) -> list[int]:
        if word.strip().upper() == "ALL":
            return list(range(self.plant.phases))
        try:
            n = int(word)
        except ValueError:
            raise ScpiError(-224, "Illegal parameter value") from None
        if not 1 <= n <= self.plant.phases:
            raise ScpiError(-224, "Illegal parameter value")
        return [n - 1]

    def _level(self, arg: str) -> float:
        volts = number(arg)
        if volts < 0:
            raise ScpiError(-222, "Data out of range")
        return round(min(volts, self.range_v), 2)

    def _duration(self, arg: str) -> int:
        """A hold time in whole microseconds (the virtual clock's unit); must be > 0."""
        hold_us = round(number(arg) * US)
        if hold_us <= 0:
            raise ScpiError(-222, "Data out of range")
        return hold_us
