"""Measurements with their limits: what a test compares, recorded with the limit's source.

A test calls `rig.check(...)`/`measure.check(...)` instead of a bare assert when it compares a
measured number with a limit: the value, the limit, where the limit comes from and the
measurement's resolution all land in the run record and the Allure report, and a value outside
the limit fails the test (the charger's fault) with a message that says all of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rig.core.errors import ChargerFailure


@dataclass(frozen=True)
class Measurement:
    name: str
    value: float | None
    unit: str
    low: float | None  # inclusive lower limit, None = unbounded
    high: float | None  # inclusive upper limit, None = unbounded
    limit_source: str
    resolution: float | None = None  # in `unit`
    passed: bool = True

    def describe(self) -> str:
        rng = f"{limit_range(self.low, self.high)} {self.unit}"
        res = f" (resolution {self.resolution:g} {self.unit})" if self.resolution else ""
        val = "nothing observed" if self.value is None else f"{self.value:.6g} {self.unit}"
        return f"{self.name} = {val}{res}, limit {rng} per {self.limit_source}"


def limit_range(low: float | None, high: float | None) -> str:
    """`[low .. high]`, an open end shown as -inf below and +inf above."""
    lo = "-inf" if low is None else f"{low:g}"
    hi = "+inf" if high is None else f"{high:g}"
    return f"[{lo} .. {hi}]"


class MeasurementLog:
    """Collects the measurements of one test; the plugin reads them into the run record."""

    def __init__(self, report=None):
        self.items: list[Measurement] = []
        self._report = report  # told every Measurement as it is taken (the Allure step), if given

    def check(
        self,
        name: str,
        value: float | None,
        unit: str,
        low: float | None = None,
        high: float | None = None,
        source: str = "",
        resolution: float | None = None,
    ) -> Measurement:
        if value is not None and resolution:
            value = round(round(value / resolution) * resolution, 12)  # a time difference of two clock readings
        ok = value is not None and (low is None or value >= low) and (high is None or value <= high)
        m = Measurement(name, value, unit, low, high, source, resolution, ok)
        self.items.append(m)
        if self._report is not None:
            self._report(m)
        if not ok:
            raise ChargerFailure(m.describe())
        return m

    def as_dicts(self) -> list[dict]:
        return [asdict(m) for m in self.items]
