"""Programmable AC source: the charger's supply, and the supply disturbance for PEN-fault tests.

Why the source times its own transients: a PEN test asks whether the charger ignores an
excursion shorter than 4 s and acts on a longer one. A PC switching the voltage up and down
would add its own latency to the very time being tested; the source's transient engine does
not. The driver only arms it.

Wire dialect (SCPI over a raw socket, one message per line; long or short forms, any case).
Phases are numbered 1..phases (L1 = 1); a phase parameter may also be ALL.

    SYSTem:PHASes?                        number of output phases (1 or 3)
    OUTPut[:STATe] ON|OFF|1|0             output on / off
    OUTPut[:STATe]?                       1 or 0
    [SOURce:]VOLTage <V>                  program every phase (V rms, 0.01 V resolution)
    [SOURce:]VOLTage:PHASe<n> <V>         program phase n
    [SOURce:]VOLTage?                     present level of every phase, comma separated
    [SOURce:]VOLTage:PHASe<n>?            present level of phase n
    [SOURce:]FREQuency <Hz> / FREQuency?
    MEASure:VOLTage?                      measured output voltage per phase (0 when off)
    TRANsient:EXCursion <ph|ALL>,<V>,<s>  go to V for s seconds, then back to the programmed level
    TRANsient:LIST <ph|ALL>,<V1>,<t1>,<V2>,<t2>,...
                                          hold each level for its time, then back to the
                                          programmed level
    TRANsient:ABORt                       stop every transient; outputs return to programmed levels
    TRANsient:STATe?                      RUNNING or IDLE

"Programmed level" is the last VOLTage setting; a transient never changes it. Programming a
phase (VOLTage, or a new transient on it) first cancels a transient running on that phase:
the last command wins. A level above the source's range is clamped (the read-back shows it).

Config keys: `resource`, `timeout_s`, optional `attempts`, optional `phases` (otherwise asked
with `SYST:PHAS?`), optional `nominal_v` (default 230.0) and `nominal_hz` (default 50.0).
"""

from __future__ import annotations

from typing import Protocol, Sequence

from rig.core.clock import Clock
from rig.core.errors import InstrumentError
from rig.instruments.scpi import PhasedScpiInstrument, close_enough, parse_bool, parse_word

RESOLUTION_V = 0.01


class AcSourceProtocol(Protocol):
    def open(self) -> None: ...
    def close(self) -> None: ...
    def power_on(self) -> None: ...
    def power_off(self) -> None: ...
    def is_on(self) -> bool: ...
    def set_voltage(self, volts: float, phase: int | None = None) -> None: ...
    def voltages(self) -> tuple[float, ...]: ...
    def excursion(self, volts: float, seconds: float, phase: int | None = None) -> None: ...
    def profile(self, steps: Sequence[tuple[float, float]], phase: int | None = None) -> None: ...
    def abort_transient(self) -> None: ...
    def nominal(self) -> None: ...
    def transient_running(self) -> bool: ...


class AcSource(PhasedScpiInstrument):
    """Driver for the programmable AC source (see module docstring for the command set).

    Life cycle (open/close, context manager, phase discovery) from `PhasedScpiInstrument`.
    """

    def __init__(self, name: str, config: dict, clock: Clock):
        super().__init__(name, config, clock)
        self.nominal_v = float(config.get("nominal_v", 230.0))
        self.nominal_hz = float(config.get("nominal_hz", 50.0))

    # -- output --------------------------------------------------------------------------------
    def power_on(self) -> None:
        self.session.transaction("output ON", lambda: self._set_output(True))

    def power_off(self) -> None:
        self.session.transaction("output OFF", lambda: self._set_output(False))

    def _set_output(self, state: bool) -> None:
        self._switch("OUTP", "output", state)

    def is_on(self) -> bool:
        return self.session.query("OUTP?", parse_bool)

    # -- steady levels -------------------------------------------------------------------------
    def set_voltage(self, volts: float, phase: int | None = None) -> None:
        """Step to `volts` at once on `phase` (1..phases) or on every phase (None)."""
        self.session.transaction(f"set voltage {volts} V", lambda: self._set_voltage(volts, phase))

    def _set_voltage(self, volts: float, phase: int | None) -> None:
        header = "VOLT" if phase is None else f"VOLT:PHAS{self._check_phase(phase)}"
        self.session.send(f"{header} {volts:.2f}")
        self._expect_levels(volts, phase)

    def voltages(self) -> tuple[float, ...]:
        """The level each phase is set to now (inside a transient: the transient's level)."""
        return self._query_per_phase("VOLT?")

    def measure_voltages(self) -> tuple[float, ...]:
        """What the source measures at its output terminals (0 V when the output is off)."""
        return self._query_per_phase("MEAS:VOLT?")

    def nominal(self) -> None:
        """Safe state: no transient, every phase at the nominal voltage and frequency, output on."""

        def apply() -> None:
            self.session.send("TRAN:ABOR")
            self.session.send(f"FREQ {self.nominal_hz:.2f}")
            self.session.send(f"VOLT {self.nominal_v:.2f}")
            self._set_output(True)
            self._expect_levels(self.nominal_v, None)
            if self._transient_state() != "IDLE":
                raise InstrumentError(self.name, "transient still running after TRAN:ABOR")

        self.session.transaction("return to nominal", apply)

    # -- transients the source times itself ----------------------------------------------------
    def excursion(self, volts: float, seconds: float, phase: int | None = None) -> None:
        """Go to `volts` now, hold for `seconds` (timed by the source), then return."""
        if seconds <= 0:
            raise ValueError(f"{self.name}: excursion of {seconds} s")
        target = self._phase_word(phase)
        self._start_transient(f"TRAN:EXC {target},{volts:.2f},{seconds:.3f}", volts, phase)

    def profile(self, steps: Sequence[tuple[float, float]], phase: int | None = None) -> None:
        """Hold each (volts, seconds) step in turn (timed by the source), then return."""
        if not steps or any(seconds <= 0 for _, seconds in steps):
            raise ValueError(f"{self.name}: profile needs steps with positive durations: {steps!r}")
        target = self._phase_word(phase)
        points = ",".join(f"{volts:.2f},{seconds:.3f}" for volts, seconds in steps)
        self._start_transient(f"TRAN:LIST {target},{points}", steps[0][0], phase)

    def _start_transient(self, command: str, first_volts: float, phase: int | None) -> None:
        def apply() -> None:
            self.session.send(command)
            if self._transient_state() != "RUNNING":
                raise InstrumentError(self.name, f"{command!r} accepted but no transient is running")
            self._expect_levels(first_volts, phase)

        self.session.transaction(command, apply)

    def abort_transient(self) -> None:
        def apply() -> None:
            self.session.send("TRAN:ABOR")
            if self._transient_state() != "IDLE":
                raise InstrumentError(self.name, "transient still running after TRAN:ABOR")

        self.session.transaction("abort transient", apply)

    def transient_running(self) -> bool:
        return self.session.query("TRAN:STAT?", _transient_word) == "RUNNING"

    # -- helpers -------------------------------------------------------------------------------
    def _transient_state(self) -> str:
        return _transient_word(self.session.ask("TRAN:STAT?"))

    def _expect_levels(self, volts: float, phase: int | None) -> None:
        """Read the levels back; the phase(s) just programmed must show `volts`."""
        read = self._ask_per_phase("VOLT?")
        indices = range(self.phases) if phase is None else [phase - 1]
        wanted = round(volts, 2)
        if not all(close_enough(read[i], wanted, RESOLUTION_V / 2) for i in indices):
            where = "every phase" if phase is None else f"phase {phase}"
            raise InstrumentError(self.name, f"voltage reads back {read} V, set {wanted} V on {where}")

    def _check_phase(self, phase: int) -> int:
        if not 1 <= phase <= self.phases:
            raise ValueError(f"{self.name}: phase {phase} of a {self.phases}-phase source")
        return phase

    def _phase_word(self, phase: int | None) -> str:
        return "ALL" if phase is None else str(self._check_phase(phase))


def _transient_word(text: str) -> str:
    return parse_word(text, ("RUNNING", "IDLE"))
