"""Known-bad units: firmware defects the emulated charger can be started with.

A factory validates its test station with limit samples; this is ours. Each defect breaks
exactly one behaviour, the way a real firmware bug would, and the spec suite must fail on
every one of them (tests/harness/test_defects_caught.py proves it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Defect:
    name: str
    description: str  # one line: what the firmware gets wrong
    requirements: tuple[str, ...]  # requirement IDs whose tests must catch it
    model: str = "PS7"  # a model on which the defect can show (PP defects need a socket variant)


CATALOGUE: dict[str, Defect] = {
    d.name: d
    for d in [
        Defect("duty-offset", "PWM duty 3 % points above the offered current's duty", ("CP-06", "CP-02")),
        Defect("slow-open-c-to-b", "contactor opens 250 ms after the vehicle goes from C to B", ("CP-04",)),
        Defect("wrong-led-charging", "shows green solid instead of green pulsing while charging", ("LED-07",)),
        Defect("stuck-white", "never leaves white solid after the BootNotification is accepted", ("BOOT-01", "LED-05")),
        Defect("ignores-current-limit", "offers its 32 A rating and ignores the configured current limit", ("CP-06", "MTR-03")),
        Defect("early-close", "closes the contactor in state B, before the vehicle asks for power", ("CP-03", "MTR-02")),
        Defect("pwm-on-unplug", "keeps PWM running for 2 s after the vehicle is unplugged", ("CP-05",)),
        Defect("no-preparing-status", "reports Available instead of Preparing when a vehicle is plugged in", ("OCPP-01",)),
        # safety functions (issue 3)
        Defect("rcd-slow-60ma", "the DC detector takes 0.5 s to trip at 60 mA", ("RCD-02",)),
        Defect("rcd-threshold-8ma", "the DC detector does not trip below 8 mA", ("RCD-01", "RCD-05")),
        Defect("pen-slow-trip", "PEN protection opens 6 s after the voltage leaves the window", ("PEN-01",)),
        Defect("pen-no-ride-through", "PEN protection trips on a 3 s excursion (2.5 s delay)", ("PEN-02",)),
        Defect("pen-earth-stays-closed", "a PEN trip opens line and neutral but leaves protective earth closed", ("PEN-01",)),
        Defect("pen-eleventh-resume", "resumes an eleventh time before locking out", ("PEN-05",)),
        Defect("pen-recloses-out-of-range", "recloses 30 s after a PEN trip although the voltage is still out of range", ("PEN-03",)),
        Defect("pen-reset-from-trip", "counts the 30 s PEN reset from the trip, not from the return of normal supply", ("PEN-04",)),
        Defect("diode-ignored", "closes the contactor with the vehicle diode shorted", ("CP-08",)),
        Defect("pp-rating-ignored", "offers its own limit regardless of the cable rating coded on PP", ("PP-01",), model="PS7-S"),
    ]
}


def lookup(name: str | None) -> Defect | None:
    """The named defect, or None for a good unit; an unknown name lists the catalogue."""
    if name in (None, "", "none"):
        return None
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise ValueError(f"unknown --sim-defect {name!r}; known defects: {known}") from None
