"""The pure rules behind the emulated charger's charging modes (no clock, no plant, no OCPP).

* daily windows in UK local time ("00:30-04:30,23:00-02:00"): Scheduled mode's windows and the
  UK Smart Charge Points Regulations' peak hours (weekdays only), each able to wrap midnight,
  evaluated in Europe/London so they follow the clock changes;
* the regulations' random delay maximum (whole seconds, 0..1800);
* PlugStream Sense: tariff and target parsing, and the planner of docs ISSUE4 contract ("the
  cheapest half-hour slots that still deliver the energy by the ready-by time").

The mode state machine (rig/sim/charger_modes.py) asks these questions at the instants it cares
about; keeping them pure lets tests/harness/test_charging_modes_logic.py pin them across the
2026 clock changes without a bench.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

UK = ZoneInfo("Europe/London")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # index = datetime.weekday()
SLOT = timedelta(minutes=30)
RANDOM_DELAY_LIMIT_S = 1800  # regs 11: the largest maximum a unit must be able to run

_WINDOW = re.compile(r"^\s*([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-3]):([0-5]\d)\s*$")


# ------------------------------------------------------------------ daily windows
@dataclass(frozen=True)
class Window:
    """From `start` to `end` minutes after local midnight; end < start wraps over midnight."""

    start_min: int
    end_min: int

    @property
    def wraps(self) -> bool:
        return self.end_min < self.start_min


def parse_windows(text: str) -> list[Window]:
    """'HH:MM-HH:MM,...' -> windows; '' -> none. ValueError for anything else (the unit rejects it)."""
    if not isinstance(text, str):
        raise ValueError(f"windows must be text, got {text!r}")
    if text.strip() == "":
        return []
    windows = []
    for part in text.split(","):
        m = _WINDOW.match(part)
        if m is None:
            raise ValueError(f"malformed window {part!r} (expected HH:MM-HH:MM)")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        window = Window(h1 * 60 + m1, h2 * 60 + m2)
        if window.start_min == window.end_min:
            raise ValueError(f"window {part.strip()!r} is empty")
        windows.append(window)
    return windows


def _minute_of_day(local: datetime) -> float:
    return local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60


@dataclass(frozen=True)
class DailyWindows:
    """Windows repeating every local day, or only on `days` (a window belongs to the day it starts)."""

    windows: tuple[Window, ...]
    days: frozenset[int] = frozenset(range(7))  # datetime.weekday() numbers
    zone: ZoneInfo = UK

    @classmethod
    def parse(cls, text: str, days: list[str] | None = None, zone: ZoneInfo = UK) -> "DailyWindows":
        day_numbers = frozenset(range(7)) if days is None else frozenset(WEEKDAYS.index(d) for d in days)
        return cls(tuple(parse_windows(text)), day_numbers, zone)

    def contains(self, when: datetime) -> bool:
        """Is the instant `when` (tz-aware) inside a window, in local time?"""
        local = when.astimezone(self.zone)
        t = _minute_of_day(local)
        today = local.weekday()
        yesterday = (today - 1) % 7
        for w in self.windows:
            if not w.wraps:
                if today in self.days and w.start_min <= t < w.end_min:
                    return True
            elif (today in self.days and t >= w.start_min) or (yesterday in self.days and t < w.end_min):
                return True
        return False

    def next_edge(self, when: datetime) -> datetime | None:
        """The first window start or end strictly after `when` (UTC), or None without windows.

        Edges are local wall times; one that falls in the spring-forward gap is taken at the
        instant the wall clock would have shown it on GMT (zoneinfo's fold=0), so a window is
        never lost. The caller re-evaluates `contains()` at each edge (and on every UTC hour,
        where the clock changes happen), so an edge that changes nothing is harmless.
        """
        if not self.windows:
            return None
        local_day = when.astimezone(self.zone).date()
        best: datetime | None = None
        for offset in range(-1, 3):
            day = local_day + timedelta(days=offset)
            for w in self.windows:
                for minute in (w.start_min, w.end_min):
                    edge = _local_instant(day, minute, self.zone)
                    if edge > when and (best is None or edge < best):
                        best = edge
        return best


def _local_instant(day: date, minute: int, zone: ZoneInfo) -> datetime:
    local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=zone)
    return local.astimezone(timezone.utc)


def next_utc_hour(when: datetime) -> datetime:
    """The next whole UTC hour after `when` (UK clock changes happen at 01:00 UTC)."""
    base = when.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
    return base + timedelta(hours=1)


# ------------------------------------------------------------------ random delay
def parse_random_delay_max(value: str) -> int:
    """PlugStream.RandomDelayMaxS: a whole number of seconds 0..1800, else ValueError."""
    text = str(value).strip()
    if not re.fullmatch(r"\d+", text):
        raise ValueError(f"random delay maximum {value!r} is not a whole number of seconds")
    seconds = int(text)
    if seconds > RANDOM_DELAY_LIMIT_S:
        raise ValueError(f"random delay maximum {seconds} s is above {RANDOM_DELAY_LIMIT_S} s")
    return seconds


def parse_current_a(value: str) -> float:
    """A current limit in amps (MaxCurrentA, SiteLimitA): a number >= 0, else ValueError."""
    amps = float(value)
    if not math.isfinite(amps) or amps < 0:
        raise ValueError(f"current limit {value!r} is not a number of amps >= 0")
    return amps


# ------------------------------------------------------------------ PlugStream Sense
@dataclass(frozen=True)
class TariffSlot:
    start: datetime  # UTC, on a half hour
    price: float  # p/kWh

    @property
    def end(self) -> datetime:
        return self.start + SLOT


@dataclass(frozen=True)
class SenseTarget:
    energy_kwh: float
    ready_by: datetime  # UTC


@dataclass(frozen=True)
class SensePlan:
    slots: tuple[datetime, ...]  # chosen slot starts, ascending
    power_kw: float
    estimated_cost_p: float
    charge_now_cost_p: float
    feasible: bool

    def as_data(self) -> dict:
        """The GetSensePlan answer's data (before JSON encoding)."""
        return {
            "slots": [utc_iso(s) for s in self.slots],
            "power_kw": self.power_kw,
            "estimated_cost_p": self.estimated_cost_p,
            "charge_now_cost_p": self.charge_now_cost_p,
            "feasible": self.feasible,
        }

    def charging_at(self, when: datetime) -> bool:
        return any(s <= when < s + SLOT for s in self.slots)

    def next_edge(self, when: datetime, ends: bool) -> datetime | None:
        """The next slot start or end after `when` (`ends` False, starts only: the known-bad sense-slot-end-missed)."""
        edges = [e for s in self.slots for e in (s, s + SLOT) if e > when and (ends or e in self.slots)]
        return min(edges) if edges else None


def utc_iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text) -> datetime:
    """An ISO 8601 instant with a zone ('Z' or an offset) -> tz-aware UTC; ValueError otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"time {text!r} is not text")
    when = datetime.fromisoformat(text.strip())
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"time {text!r} has no zone")
    return when.astimezone(timezone.utc)


def _json_object(data) -> dict:
    obj = json.loads(data) if isinstance(data, str) else data
    if not isinstance(obj, dict):
        raise ValueError("data is not a JSON object")
    return obj


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} {value!r} is not a number")
    return float(value)


def parse_tariff(data) -> list[TariffSlot]:
    """SetTariff data: {"slots": [{"start": UTC ISO on a half hour, "price": p/kWh}, ...]}; an empty
    list withdraws the tariff data (Sense then has none: MODE-07)."""
    slots_in = _json_object(data).get("slots")
    if not isinstance(slots_in, list):
        raise ValueError("tariff has no list of slots")
    slots = []
    for item in slots_in:
        if not isinstance(item, dict):
            raise ValueError(f"tariff slot {item!r} is not an object")
        start = parse_utc(item.get("start"))
        if start.minute % 30 or start.second or start.microsecond:
            raise ValueError(f"tariff slot start {item.get('start')!r} is not on a half hour")
        slots.append(TariffSlot(start, _number(item.get("price"), "price")))
    starts = [s.start for s in slots]
    if len(set(starts)) != len(starts):
        raise ValueError("tariff has two slots with the same start")
    return sorted(slots, key=lambda s: s.start)


def parse_target(data) -> SenseTarget:
    """SetSenseTarget data: {"energy_kwh": > 0, "ready_by": UTC ISO}."""
    obj = _json_object(data)
    energy = _number(obj.get("energy_kwh"), "energy_kwh")
    if energy <= 0:
        raise ValueError(f"energy_kwh {energy} must be above 0")
    return SenseTarget(energy, parse_utc(obj.get("ready_by")))


def next_half_hour(when: datetime) -> datetime:
    """The half-hour boundary at or after `when` (a boundary itself counts)."""
    utc = when.astimezone(timezone.utc)
    floor = utc.replace(minute=(utc.minute // 30) * 30, second=0, microsecond=0)
    return floor if floor == utc else floor + SLOT


def sense_power_kw(offered_a: float, nominal_v: float, phases: int) -> float:
    return offered_a * nominal_v * phases / 1000.0


def plan_sense(
    tariff: list[TariffSlot],
    energy_kwh: float,
    ready_by: datetime,
    now: datetime,
    power_kw: float,
    respect_ready_by: bool = True,
    fill_after_ready_by: bool = False,
    spare_slot_when_exact: bool = False,
    counts_begun_slot: bool = False,
) -> SensePlan:
    """The contract's planning rule.

    Candidates: slots starting at or after the next half-hour boundary and ending by ready_by.
    n = ceil(energy / slot energy); the n cheapest (ties: earlier first); the last slot may be
    partial, its remainder costed in the most expensive chosen slot. Charge-now: the first n
    candidates, the remainder in the chronologically last. Too few candidates: all of them.
    """
    boundary = next_half_hour(now)
    if counts_begun_slot and boundary > now:  # the known-bad planner: the slot under way counts as whole
        boundary -= SLOT
    candidates = [s for s in tariff if s.start >= boundary and (s.end <= ready_by or not respect_ready_by)]
    slot_kwh = power_kw * SLOT.total_seconds() / 3600.0
    if slot_kwh <= 0:
        return SensePlan((), power_kw, 0.0, 0.0, False)
    # an exact 3.0000000000000004 is three slots (the known-bad planner rounds up with a margin)
    n = max(1, math.ceil(energy_kwh / slot_kwh + (1e-6 if spare_slot_when_exact else -1e-9)))
    if len(candidates) < n and fill_after_ready_by:  # the known-bad planner: tops up with later slots
        later = sorted((s for s in tariff if s.start >= boundary and s not in candidates), key=lambda s: (s.price, s.start))
        candidates = sorted(candidates + later[:n - len(candidates)], key=lambda s: s.start)
    if len(candidates) < n:
        cost = sum(s.price * slot_kwh for s in candidates)
        return SensePlan(tuple(s.start for s in candidates), power_kw, cost, cost, False)
    remainder = energy_kwh - (n - 1) * slot_kwh
    chosen = sorted(candidates, key=lambda s: (s.price, s.start))[:n]
    dearest = max(chosen, key=lambda s: s.price)
    estimated = _cost(chosen, dearest, slot_kwh, remainder)
    now_slots = candidates[:n]
    charge_now = _cost(now_slots, now_slots[-1], slot_kwh, remainder)
    return SensePlan(tuple(sorted(s.start for s in chosen)), power_kw, estimated, charge_now, True)


def _cost(slots: list[TariffSlot], partial: TariffSlot, slot_kwh: float, remainder_kwh: float) -> float:
    return sum(s.price * (remainder_kwh if s is partial else slot_kwh) for s in slots)
