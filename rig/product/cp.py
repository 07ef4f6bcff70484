"""Control-pilot (CP) and proximity-pilot (PP) arithmetic of IEC 61851-1, with no I/O.

Both sides of the PWM are here on purpose. The charger *encodes* an offered current
into a duty cycle (`duty_for_current`), and the vehicle *reads* a duty cycle
(`ev_reading`): a test checks the charger's duty the way a vehicle would read it,
and the emulated charger encodes with the same table. Sources and confidence marks
([S], [V]) are in /work/shared/STANDARDS.md; every limit below is a named constant so a
limits file can override it.

Duties are fractions (0.533), the unit the pilot box measures. Percent appears only
inside this module, where the standard's tables are written in percent.
"""

from __future__ import annotations

from dataclasses import dataclass

# -- vehicle-side resistors the pilot box switches in [S] ------------------------------------
VEHICLE_B_OHMS = 2740.0  # CP-PE in state B
VEHICLE_C_PARALLEL_OHMS = 1300.0  # added in parallel for state C (882 ohm total)
VEHICLE_D_PARALLEL_OHMS = 270.0  # added in parallel for state D (246 ohm total)

# -- charger-side encoding (IEC 61851-1 Table A.7) [S] ---------------------------------------
MIN_OFFERED_A = 6.0
LOW_BAND_MAX_A = 51.0  # 6-51 A: D% = I / 0.6
MAX_OFFERED_A = 80.0  # 51-80 A: D% = I / 2.5 + 64


def duty_for_current(amps: float) -> float:
    """The duty (fraction) a charger sets to offer `amps`.

    Note the standard's own seam: 51 A < I <= 52.5 A encodes to 84.4-85 %, which a
    vehicle reads back as D x 0.6 = 50.6-51 A, up to 1.5 A *less* than offered (the
    safe direction). Round trips are exact (to the duty's resolution) outside the seam.
    """
    if not MIN_OFFERED_A <= amps <= MAX_OFFERED_A:
        raise ValueError(f"{amps} A cannot be offered by PWM: the range is {MIN_OFFERED_A:g}-{MAX_OFFERED_A:g} A")
    percent = amps / 0.6 if amps <= LOW_BAND_MAX_A else amps / 2.5 + 64.0
    return percent / 100.0


# -- vehicle-side reading (IEC 61851-1 Table A.8) [S] ----------------------------------------
NO_CHARGING = "no-charging"  # < 3 % or > 97 %
DIGITAL = "digital"  # 3-7 %: high-level (digital) communication required
ERROR = "error"  # 7-8 %
CURRENT = "current"  # 8-97 %: a current is offered


@dataclass(frozen=True)
class EvReading:
    """What a vehicle makes of a duty cycle: a meaning and, for CURRENT, the amps."""

    meaning: str
    amps: float | None = None


def _percent(duty: float) -> float:
    # round away float noise so 0.07 (7.000000000000001 %) lands on the 7 % edge
    return round(duty * 100.0, 9)


def ev_reading(duty: float) -> EvReading:
    """How a vehicle reads `duty` (fraction). Band edges belong to the band named first:
    3 % and 7 % are digital, 8 % and 10 % read 6 A, 85 % reads 51 A, 96 % and 97 % read 80 A."""
    d = _percent(duty)
    if d < 3.0:
        return EvReading(NO_CHARGING)
    if d <= 7.0:
        return EvReading(DIGITAL)
    if d < 8.0:
        return EvReading(ERROR)
    if d < 10.0:
        return EvReading(CURRENT, 6.0)
    if d <= 85.0:
        return EvReading(CURRENT, d * 0.6)
    if d <= 96.0:
        return EvReading(CURRENT, (d - 64.0) * 2.5)
    if d <= 97.0:
        return EvReading(CURRENT, 80.0)
    return EvReading(NO_CHARGING)


def current_for_duty(duty: float) -> float | None:
    """The current a vehicle may draw at `duty`, or None when the duty offers no current."""
    return ev_reading(duty).amps


# -- CP high level -> state (detection bands nominal +-1 V) [V] ------------------------------
#: letter -> (min V, max V) of the CP high level; E and F are the 0 V and -12 V cases [S]
HIGH_LEVEL_BANDS: dict[str, tuple[float, float]] = {
    "A": (11.0, 13.0),
    "B": (8.0, 10.0),
    "C": (5.0, 7.0),
    "D": (2.0, 4.0),
    "E": (-1.0, 1.0),
    "F": (-13.0, -11.0),
}


def state_for_high_v(volts: float, bands: dict[str, tuple[float, float]] = HIGH_LEVEL_BANDS) -> str | None:
    """The state letter whose band holds the CP high level, or None between bands."""
    for letter, (low, high) in bands.items():
        if low <= volts <= high:
            return letter
    return None


# -- proximity pilot: cable coding of Type 2 socket variants [S] -----------------------------
PP_MIN_VALID_OHMS = 60.0  # below: no valid cable
PP_MAX_VALID_OHMS = 4500.0  # above (or open): no valid cable

#: (low ohm, high ohm, rating A) of the accepted bands, lowest resistance (highest rating) first;
#: the 100 ohm band is 63 A on three phases and 70 A on one phase
PP_BANDS: tuple[tuple[float, float, int], ...] = (
    (80.0, 140.0, 63),
    (164.0, 308.0, 32),
    (400.0, 936.0, 20),
    (1100.0, 2460.0, 13),
)


def cable_rating_for_pp(ohms: float | None, phases: int = 3) -> int | None:
    """The cable rating (A) coded by a PP resistance, or None for no valid cable.

    Inside a band: its rating. Between two bands: the lower rating of the two, which means
    a resistance belongs to the first band whose upper edge is at or above it. Between
    60 ohm and the first band, and between the last band and 4.5 kohm, the only
    neighbouring band's rating applies.
    """
    if ohms is None or not PP_MIN_VALID_OHMS <= ohms <= PP_MAX_VALID_OHMS:
        return None
    for _low, high, rating in PP_BANDS:
        if ohms <= high:
            return 70 if rating == 63 and phases == 1 else rating
    return PP_BANDS[-1][2]
