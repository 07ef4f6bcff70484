"""An independent computation of the cheapest feasible PlugStream Sense plan (MODE-06).

The unit's rule (ISSUE4 contract) is greedy: take the n cheapest candidate slots. This module
does NOT reuse that idea. It searches every set of n candidate slots exhaustively, prices each
set by filling it with energy (full slots, then taking the surplus back out of the dearest slot
of the set: the unit's conservative estimate), and keeps the cheapest set, earliest on ties.
The charge-now cost is priced by simulating a session that starts at the first half-hour
boundary and runs through the candidates until the energy is in. If greedy and exhaustive
agree on many random cases (tests/harness/test_spec_stats.py cross-checks them), a unit that
plans differently is wrong, not the reference.

Exhaustive search is only practical for small cases: `MAX_SUBSETS` bounds it, and the spec
tests generate tariffs small enough to stay under it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

SLOT = timedelta(minutes=30)
MAX_SUBSETS = 200_000
#: energy / slot energy this close to a whole number counts as that whole number (float noise)
RATIO_EPS = 1e-9


@dataclass(frozen=True)
class Slot:
    start: datetime  # tz-aware UTC
    price: float  # pence per kWh


@dataclass(frozen=True)
class Plan:
    slots: tuple[datetime, ...]  # chosen slot starts, ascending
    power_kw: float
    estimated_cost_p: float
    charge_now_cost_p: float
    feasible: bool


def parse_utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def utc_iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def power_kw(offered_a: float, nominal_v: float, phases: int) -> float:
    return offered_a * nominal_v * phases / 1000.0


def first_boundary(at: datetime) -> datetime:
    """The half-hour boundary at or after `at` (a boundary itself counts)."""
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    elapsed = at - midnight
    whole = math.ceil(elapsed / SLOT)
    return midnight + whole * SLOT


def candidates(tariff: Sequence[Slot], planned_at: datetime, ready_by: datetime) -> list[Slot]:
    """Slots that can be used: starting at or after the boundary, over by ready_by; in time order."""
    boundary = first_boundary(planned_at)
    return sorted((s for s in tariff if s.start >= boundary and s.start + SLOT <= ready_by), key=lambda s: s.start)


def slots_needed(energy_kwh: float, slot_kwh: float) -> int:
    ratio = energy_kwh / slot_kwh
    nearest = round(ratio)
    return nearest if abs(ratio - nearest) < RATIO_EPS else math.ceil(ratio)


def cost_of_set(chosen: Sequence[Slot], energy_kwh: float, slot_kwh: float) -> float:
    """Fill every chosen slot, then take the surplus back from the dearest one: what the unit
    promises the owner at most."""
    full = sum(s.price * slot_kwh for s in chosen)
    surplus = len(chosen) * slot_kwh - energy_kwh
    return full - surplus * max(s.price for s in chosen)


def charge_now_cost(cands: Sequence[Slot], energy_kwh: float, slot_kwh: float) -> float:
    """Charge from the boundary, slot after slot, until the energy is delivered."""
    left, cost = energy_kwh, 0.0
    for s in cands:
        if left <= slot_kwh * RATIO_EPS:
            break
        take = min(slot_kwh, left)
        cost += take * s.price
        left -= take
    return cost


def cheapest_plan(tariff: Sequence[Slot], planned_at: datetime, ready_by: datetime, energy_kwh: float,
                  offered_a: float, nominal_v: float, phases: int) -> Plan:
    """The plan a correct unit must make (see module docstring)."""
    p = power_kw(offered_a, nominal_v, phases)
    slot_kwh = p * SLOT.total_seconds() / 3600.0
    cands = candidates(tariff, planned_at, ready_by)
    need = slots_needed(energy_kwh, slot_kwh)
    if len(cands) < need:
        whole = sum(s.price * slot_kwh for s in cands)
        return Plan(tuple(s.start for s in cands), p, whole, whole, False)
    if math.comb(len(cands), need) > MAX_SUBSETS:
        raise ValueError(f"{len(cands)} candidates choose {need}: too many for the exhaustive reference")
    best_key, best = None, None
    for chosen in itertools.combinations(cands, need):  # combinations keep time order
        key = (round(cost_of_set(chosen, energy_kwh, slot_kwh), 9), tuple(s.start for s in chosen))
        if best_key is None or key < best_key:
            best_key, best = key, chosen
    return Plan(tuple(s.start for s in best), p, cost_of_set(best, energy_kwh, slot_kwh),
                charge_now_cost(cands, energy_kwh, slot_kwh), True)
