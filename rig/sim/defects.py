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
