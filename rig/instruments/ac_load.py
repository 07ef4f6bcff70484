"""Programmable AC load: the vehicle's on-board charger, drawing a set current per phase.

Wire dialect (SCPI over a raw socket, one message per line; long or short forms, any case):

    SYSTem:PHASes?            number of phases the load has (1 or 3)
    [SOURce:]CURRent <A>      set every phase's current setpoint (A rms)
    [SOURce:]CURRent<n> <A>   set phase n (1..phases)
    [SOURce:]CURRent?         setpoints of all phases, comma separated ("16.000,16.000,16.000")
    [SOURce:]CURRent<n>?      setpoint of phase n
    INPut[:STATe] ON|OFF|1|0  draw (ON) or stop drawing (OFF)
    INPut[:STATe]?            1 or 0
    MEASure:CURRent?          measured current of all phases, comma separated (A rms)
    MEASure:CURRent<n>?       measured current of phase n
    [SOURce:]PFACtor <pf>     power factor the load presents (0 < pf <= 1)
    [SOURce:]PFACtor?

Setpoints have 1 mA resolution. A load that cannot reach a setpoint clamps it to its rating
(the read-back shows the clamp), so every setter reads back and compares. Errors go to the
SCPI error queue (`SYST:ERR?`), e.g. -114 for a phase the load does not have.

Config keys: `resource`, `timeout_s`, optional `attempts`, optional `phases` (otherwise asked
with `SYST:PHAS?`).
"""

from __future__ import annotations

from typing import Protocol, Sequence

from rig.core.errors import InstrumentError
from rig.instruments.scpi import PhasedScpiInstrument, close_enough, parse_bool, parse_float

RESOLUTION_A = 0.001


class AcLoadProtocol(Protocol):
    def open(self) -> None: ...
    def close(self) -> None: ...
    def set_current(self, amps: float | Sequence[float]) -> None: ...
    def set_power_factor(self, pf: float) -> None: ...
    def on(self) -> None: ...
    def off(self) -> None: ...
    def is_on(self) -> bool: ...
    def setpoint(self) -> tuple[float, ...]: ...
    def measure_current(self) -> tuple[float, ...]: ...


class AcLoad(PhasedScpiInstrument):
    """Driver for the programmable AC load (see module docstring for the command set).

    Constructed as `AcLoad(name, config, clock)`; life cycle from `PhasedScpiInstrument`.
    """

    # -- settings ------------------------------------------------------------------------------
    def set_current(self, amps: float | Sequence[float]) -> None:
        """Set the current setpoint: one value for every phase, or one value per phase."""
        wanted = self._per_phase(amps)
        self.session.transaction(f"set current {wanted}", lambda: self._set_current(wanted))

    def _set_current(self, wanted: tuple[float, ...]) -> None:
        if len(set(wanted)) == 1:
            self.session.send(f"CURR {wanted[0]:.3f}")
        else:
            for n, amps in enumerate(wanted, start=1):
                self.session.send(f"CURR{n} {amps:.3f}")
        read = self._ask_per_phase("CURR?")
        if not all(close_enough(r, w, RESOLUTION_A / 2) for r, w in zip(read, wanted)):
            raise InstrumentError(self.name, f"current setpoint reads back {read} A, set {wanted} A")

    def _per_phase(self, amps: float | Sequence[float]) -> tuple[float, ...]:
        if isinstance(amps, (int, float)):
            return (round(float(amps), 3),) * self.phases
        values = tuple(round(float(a), 3) for a in amps)
        if len(values) != self.phases:
            raise ValueError(f"{self.name}: {len(values)} currents given for a {self.phases}-phase load")
        return values

    def set_power_factor(self, pf: float) -> None:
        def apply() -> None:
            self.session.send(f"PFAC {pf:.3f}")
            read = parse_float(self.session.ask("PFAC?"))
            if not close_enough(read, round(pf, 3), 0.0005):
                raise InstrumentError(self.name, f"power factor reads back {read}, set {pf}")

        self.session.transaction(f"set power factor {pf}", apply)

    def on(self) -> None:
        self._set_input(True)

    def off(self) -> None:
        self._set_input(False)

    def _set_input(self, state: bool) -> None:
        word = "ON" if state else "OFF"
        self.session.transaction(f"input {word}", lambda: self._switch("INP", "input", state))

    # -- readings ------------------------------------------------------------------------------
    def is_on(self) -> bool:
        return self.session.query("INP?", parse_bool)

    def setpoint(self) -> tuple[float, ...]:
        return self._query_per_phase("CURR?")

    def measure_current(self) -> tuple[float, ...]:
        return self._query_per_phase("MEAS:CURR?")
