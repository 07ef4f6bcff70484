"""PlugStream Sense (MODE-06, LED-09): the plan against an independent computation of the
cheapest feasible plan (rig/spec/sense_reference.py: exhaustive search, not the unit's greedy
rule), the estimate no dearer than charging now, and the charging itself: energy only in the
chosen slots and the required energy delivered by the ready-by time (reference meter).
"""

from __future__ import annotations

import json
from datetime import timedelta, timezone

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from rig.bench.rig import SAFE_DWELL_S
from rig.product import cp
from rig.spec import sense_reference as ref
from rig.spec.steps import (check_energy_intervals, clock_at, data_transfer, expect_led, l1_intervals, latest_status,
                              plug_and_ask, set_mode, sleep_until, uk_time, unplug)

MONDAY_EVENING = uk_time(2026, 1, 12, 17, 40)  # GMT: UK local = UTC
EVENING_START = uk_time(2026, 1, 12, 18, 0).astimezone(timezone.utc)  # the first slot of the evening tariffs
SENSE_CURRENT_A = 16.0  # MaxCurrentA during the Sense tests: the plan's power follows from it

# a failing example on the rig is reported as found: shrinking would replay hours of simulated charging
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


# ----------------------------------------------------------------------------- helpers
def tariff_from(start, prices: list[float]) -> list[ref.Slot]:
    return [ref.Slot(start.astimezone(timezone.utc) + i * ref.SLOT, p) for i, p in enumerate(prices)]


def send_tariff_and_target(rig, tariff: list[ref.Slot], energy_kwh: float, ready_by) -> None:
    slots = [{"start": ref.utc_iso(s.start), "price": s.price} for s in tariff]
    reply = data_transfer(rig, "datatransfer_set_tariff", {"slots": slots})
    assert reply.get("status") == "Accepted", f"SetTariff answered {reply}"
    reply = data_transfer(rig, "datatransfer_set_sense_target", {"energy_kwh": energy_kwh,
                                                                  "ready_by": ref.utc_iso(ready_by)})
    assert reply.get("status") == "Accepted", f"SetSenseTarget answered {reply}"


def unit_plan(rig) -> dict:
    reply = data_transfer(rig, "datatransfer_get_sense_plan")
    assert reply.get("status") == "Accepted", f"GetSensePlan answered {reply}"
    try:
        return json.loads(reply["data"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AssertionError(f"GetSensePlan data is not the documented JSON plan: {reply!r}") from exc


def prepare(rig, current_a: float = SENSE_CURRENT_A) -> None:
    set_mode(rig, "Sense")
    rig.configure(rig.profile["ocpp"]["config_current_limit"], current_a)


def slot_energy_kwh(rig, current_a: float = SENSE_CURRENT_A) -> float:
    """What one half-hour slot delivers at `current_a` on this model."""
    power = ref.power_kw(current_a, rig.profile["sense"]["nominal_v"], rig.profile["phases"])
    return power * ref.SLOT.total_seconds() / 3600.0


def reference_plan(rig, tariff, planned_at, ready_by, energy_kwh, current_a: float = SENSE_CURRENT_A) -> ref.Plan:
    return ref.cheapest_plan(tariff, planned_at, ready_by, energy_kwh, current_a,
                             rig.profile["sense"]["nominal_v"], rig.profile["phases"])


def planned_session(rig, prices: list[float], ready_by, slots_of_energy: float):
    """Sense at MONDAY_EVENING with half-hour `prices` from 18:00 UTC and a target of
    `slots_of_energy` slots' energy by `ready_by`, the vehicle plugged in and asking. Returns the
    reference plan, when the vehicle asked, the meter reading before and the target energy."""
    prepare(rig)
    rig.set_time(MONDAY_EVENING)
    tariff = tariff_from(EVENING_START, prices)
    energy = round(slots_of_energy * slot_energy_kwh(rig), 3)
    send_tariff_and_target(rig, tariff, energy, ready_by)
    start_kwh = rig.meter.energy_kwh()
    planned_at = rig.time.now()
    asked_s = plug_and_ask(rig, SENSE_CURRENT_A)
    return reference_plan(rig, tariff, planned_at, ready_by, energy), asked_s, start_kwh, energy


def check_plan(rig, got: dict, want: ref.Plan, costs: bool = True) -> None:
    """The unit's plan is the reference plan: slots, feasibility, power and (with `costs`) both costs."""
    slots = [ref.parse_utc(s) for s in got["slots"]]
    assert slots == list(want.slots), (f"MODE-06 chosen slots {[ref.utc_iso(s) for s in slots]} differ from the "
                                       f"cheapest feasible plan {[ref.utc_iso(s) for s in want.slots]}")
    assert got["feasible"] is want.feasible, f"feasible = {got['feasible']}, the reference says {want.feasible}"
    tol_kw, tol_p = rig.limit("mode.sense_power_tolerance_kw"), rig.limit("mode.sense_cost_tolerance_p")
    rig.check("Sense power", got["power_kw"], "kW", want.power_kw - tol_kw, want.power_kw + tol_kw,
              rig.source_of("mode.sense_power_tolerance_kw"))
    if not costs:
        return
    for key, value in (("estimated_cost_p", want.estimated_cost_p), ("charge_now_cost_p", want.charge_now_cost_p)):
        rig.check(f"Sense {key}", got[key], "p", value - tol_p, value + tol_p,
                  f"MODE-06 reference plan; {rig.source_of('mode.sense_cost_tolerance_p')}")
    rig.check("estimated cost minus charge-now cost", got["estimated_cost_p"] - got["charge_now_cost_p"], "p",
              None, 0.0, "MODE-06 the estimate is no higher than charging now")


def check_sense_session(rig, plan: ref.Plan, asked_s: float, start_kwh: float, energy_kwh: float, ready_by) -> None:
    """Energy only in the chosen slots (the last may end early: target reached), and by ready_by
    the target delivered (feasible) or no more than the target (infeasible)."""
    until_s = rig.clock.now()
    allowed = [(clock_at(rig, s), clock_at(rig, s + ref.SLOT)) for s in plan.slots]
    check_energy_intervals(rig, allowed, asked_s, until_s, "MODE-06 Sense", last_may_end_early=True)
    delivered = rig.meter.energy_kwh() - start_kwh
    tol = rig.limit("mode.sense_energy_tolerance_pct") / 100
    source = f"MODE-06 energy by ready-by {ref.utc_iso(ready_by)}; {rig.source_of('mode.sense_energy_tolerance_pct')}"
    if plan.feasible:
        rig.check("energy delivered by the ready-by time", delivered, "kWh", energy_kwh * (1 - tol),
                  energy_kwh * (1 + tol), source)
    else:
        rig.check("energy delivered (target out of reach)", delivered, "kWh", None, energy_kwh * (1 + tol), source)


# ----------------------------------------------------------------------------- fixed case
PRICES = [30.0, 28.0, 24.5, 12.0, 15.0, 9.5, 9.5, 14.0, 22.0, 7.5]  # 18:00 .. 23:00 UTC


@pytest.mark.req("MODE-06", "LED-09")
@pytest.mark.parametrize("slots_of_energy", [2.6, 3.0, 0.1], ids=["last-slot-partial", "exactly-three-slots",
                                                                     "a-tenth-of-a-slot"])
def test_sense_plan_is_the_cheapest_feasible_and_charging_follows_it(ready, slots_of_energy):
    """Ten half-hour slots from 18:00, ready by 22:30 (the 7.5 p slot after it must not be used),
    an energy needing several slots on either model: three with the last partial, exactly three
    full ones (a planner that rounds the computed 3.0000000000000004 up plans a fourth), and a
    top-up well under a kilowatt-hour (charged in one slot, stopping at the target)."""
    rig = ready
    ready_by = uk_time(2026, 1, 12, 22, 30).astimezone(timezone.utc)
    want, asked_s, start_kwh, energy = planned_session(rig, PRICES, ready_by, slots_of_energy)
    assert want.feasible and want.slots[0] > EVENING_START, "test data: a wait before the first slot"
    check_plan(rig, unit_plan(rig), want)
    rig.clock.sleep(rig.limit("ocpp.status_report_max_s"), "waiting for the first chosen slot")
    assert not rig.pilot.sense().l1, "Sense: energy before the first chosen slot"
    expect_led(rig, "blue_pulsing", "Sense, waiting for the first chosen slot")
    status = latest_status(rig)
    assert status == "SuspendedEVSE", f"Sense, waiting for a slot: expected SuspendedEVSE, last status {status}"
    sleep_until(rig, ready_by + timedelta(minutes=5), "through the plan")
    check_sense_session(rig, want, asked_s, start_kwh, energy, ready_by)


# two cheap slots two dear ones apart (19:30 .. 21:00 UTC): the first must end on time, with no
# slot start at its end to look again at
PRICES_APART = [30.0, 29.0, 28.0, 9.0, 27.0, 26.0, 9.5, 30.0]  # 18:00 .. 21:30 UTC


@pytest.mark.req("MODE-06")
def test_sense_stops_at_the_end_of_a_chosen_slot_with_no_chosen_slot_after_it(ready):
    """Two chosen slots apart (the second partial): energy ends at the first one's end, within
    mode.window_stop_max_s, not at the unit's next look at the energy delivered. The vehicle pauses
    for 10 s 100 s into the first slot (state B, then C again), as vehicles do: the unit's looks
    then no longer fall on slot boundaries by chance."""
    rig = ready
    ready_by = uk_time(2026, 1, 12, 22, 0).astimezone(timezone.utc)
    want, asked_s, start_kwh, energy = planned_session(rig, PRICES_APART, ready_by, 1.9)
    apart = [b - a for a, b in zip(want.slots, want.slots[1:])]
    assert want.feasible and apart and min(apart) > 2 * ref.SLOT, f"test data: chosen slots {want.slots} not apart"
    check_plan(rig, unit_plan(rig), want)
    sleep_until(rig, want.slots[0] + timedelta(seconds=100), "into the first chosen slot")
    rig.ev.stop_requesting()
    rig.clock.sleep(10.0, "the vehicle pauses (state B)")
    rig.ev.request_power()
    sleep_until(rig, ready_by + timedelta(minutes=5), "through the plan")
    check_sense_session(rig, want, asked_s, start_kwh, energy, ready_by)


@pytest.mark.req("MODE-06")
def test_sense_at_the_lowest_offer_plans_and_charges_like_any_other(ready):
    """MaxCurrentA at the lowest current a unit may offer (IEC 61851-1: 6 A): a half-hour slot
    then holds 0.69 kWh on a single-phase unit, under a kilowatt-hour. The plan is still the
    reference plan and charging follows it to the target."""
    rig = ready
    prepare(rig, cp.MIN_OFFERED_A)
    rig.set_time(MONDAY_EVENING)
    start = uk_time(2026, 1, 12, 18, 0)
    ready_by = uk_time(2026, 1, 12, 22, 30).astimezone(timezone.utc)
    tariff = tariff_from(start, PRICES)
    slot_kwh = slot_energy_kwh(rig, cp.MIN_OFFERED_A)
    energy = round(2.6 * slot_kwh, 3)
    send_tariff_and_target(rig, tariff, energy, ready_by)
    start_kwh = rig.meter.energy_kwh()
    planned_at = rig.time.now()
    asked_s = plug_and_ask(rig, cp.MIN_OFFERED_A)
    want = reference_plan(rig, tariff, planned_at, ready_by, energy, cp.MIN_OFFERED_A)
    check_plan(rig, unit_plan(rig), want)
    sleep_until(rig, ready_by + timedelta(minutes=5), "through the plan")
    check_sense_session(rig, want, asked_s, start_kwh, energy, ready_by)


@pytest.mark.req("MODE-06")
@pytest.mark.parametrize("slots_after_ready_by", [0, 6], ids=["tariff-ends-at-ready-by", "cheap-slots-after-ready-by"])
def test_target_out_of_reach_charges_every_candidate(ready, slots_after_ready_by):
    """Four slots before ready-by, energy for five and a half: every one of them and nothing else.
    With slots after ready-by cheaper than those before it (9.5, 9.5, 7.5 p), a planner that tops a
    short plan up with them is caught by the plan and, charging on, by the meter until the tariff ends."""
    rig = ready
    prepare(rig)
    rig.set_time(MONDAY_EVENING)
    tariff = tariff_from(uk_time(2026, 1, 12, 18, 0), PRICES[:4 + slots_after_ready_by])
    ready_by = tariff[3].start + ref.SLOT
    assert min(s.price for s in tariff[4:]) < max(s.price for s in tariff[:4]) if slots_after_ready_by else True
    slot_kwh = slot_energy_kwh(rig)
    energy = round(5.5 * slot_kwh, 3)
    send_tariff_and_target(rig, tariff, energy, ready_by)
    start_kwh = rig.meter.energy_kwh()
    planned_at = rig.time.now()
    asked_s = plug_and_ask(rig, SENSE_CURRENT_A)
    want = reference_plan(rig, tariff, planned_at, ready_by, energy)
    assert not want.feasible
    check_plan(rig, unit_plan(rig), want)
    sleep_until(rig, max(ready_by, tariff[-1].start + ref.SLOT) + timedelta(minutes=5), "through the tariff")
    check_sense_session(rig, want, asked_s, start_kwh, energy, ready_by)


#: the second day's prices, sent at 20:05 (18:00 .. 22:30 UTC): the 20:30 and 21:00 slots the
#: first plan chose are dear now, 21:30 and 22:00 the cheapest before ready-by
NEW_PRICES = [30.0, 28.0, 24.5, 12.0, 15.0, 30.0, 30.0, 5.0, 6.0, 7.5]


@pytest.mark.req("MODE-06")
def test_a_new_tariff_mid_session_replans_only_the_energy_still_missing(ready):
    """Tariff data arrives again during a Sense session (a supplier publishing its prices): the unit
    plans anew from then for the required energy less what it has delivered, so 2.6 slots' target
    with one slot in needs two more slots (the cheapest before ready-by), and the session ends with
    the target in, not the target on top of what was in. The replan's costs are not compared: the
    unit counts what is still missing on its own meter, the reference on the rig's (both class 1)."""
    rig = ready
    prepare(rig)
    rig.set_time(MONDAY_EVENING)
    start = uk_time(2026, 1, 12, 18, 0)
    ready_by = uk_time(2026, 1, 12, 22, 30).astimezone(timezone.utc)
    slot_kwh = slot_energy_kwh(rig)
    energy = round(2.6 * slot_kwh, 3)
    send_tariff_and_target(rig, tariff_from(start, PRICES), energy, ready_by)
    start_kwh = rig.meter.energy_kwh()
    planned_at = rig.time.now()
    asked_s = plug_and_ask(rig, SENSE_CURRENT_A)
    first = reference_plan(rig, tariff_from(start, PRICES), planned_at, ready_by, energy)
    check_plan(rig, unit_plan(rig), first)
    done = first.slots[0] + ref.SLOT
    sleep_until(rig, done + timedelta(minutes=5), "through the first chosen slot")
    delivered = rig.meter.energy_kwh() - start_kwh
    second_tariff = tariff_from(start, NEW_PRICES)
    send_tariff_and_target(rig, second_tariff, energy, ready_by)
    second = reference_plan(rig, second_tariff, rig.time.now(), ready_by, energy - delivered)
    assert len(second.slots) == 2 and second.feasible, f"test data: two slots to go, not {second}"
    check_plan(rig, unit_plan(rig), second, costs=False)
    sleep_until(rig, ready_by + timedelta(minutes=5), "through the new plan")
    allowed = [(clock_at(rig, s), clock_at(rig, s + ref.SLOT)) for s in (first.slots[0], *second.slots)]
    check_energy_intervals(rig, allowed, asked_s, rig.clock.now(), "MODE-06 Sense, planned anew mid-session",
                           last_may_end_early=True)
    tol = rig.limit("mode.sense_energy_tolerance_pct") / 100
    rig.check("energy delivered by the ready-by time, planned anew mid-session", rig.meter.energy_kwh() - start_kwh,
              "kWh", energy * (1 - tol), energy * (1 + tol),
              f"MODE-06 the required energy by ready-by; {rig.source_of('mode.sense_energy_tolerance_pct')}")


def check_plan_of_no_power(rig, got: dict, when: str) -> None:
    tol_kw, tol_p = rig.limit("mode.sense_power_tolerance_kw"), rig.limit("mode.sense_cost_tolerance_p")
    assert got["feasible"] is False, f"{when}: a plan with no current to offer cannot deliver energy: {got}"
    rig.check(f"Sense power, {when}", got["power_kw"], "kW", -tol_kw, tol_kw,
              f"MODE-06 the plan's power is what the unit can offer; {rig.source_of('mode.sense_power_tolerance_kw')}")
    for key in ("estimated_cost_p", "charge_now_cost_p"):
        rig.check(f"Sense {key}, {when}", got[key], "p", -tol_p, tol_p,
                  f"MODE-06 no energy costs nothing; {rig.source_of('mode.sense_cost_tolerance_p')}")


@pytest.mark.req("MODE-06")
def test_with_no_current_to_offer_sense_plans_no_power_and_no_cost(ready):
    """A site limit of 0 A (load management has nothing for this charger): the plan, made before
    and after the vehicle is plugged in, has no power, is not feasible and costs nothing, charging
    now or as planned; nothing is delivered. Which slots such a plan lists the contract's rule
    does not say, so they are not judged. A planner that assumes some power anyway promises energy
    the unit cannot deliver."""
    rig = ready
    prepare(rig)
    rig.configure(rig.profile["ocpp"]["config_site_limit"], 0)
    rig.set_time(MONDAY_EVENING)
    ready_by = uk_time(2026, 1, 12, 22, 30).astimezone(timezone.utc)
    send_tariff_and_target(rig, tariff_from(uk_time(2026, 1, 12, 18, 0), PRICES), 10.0, ready_by)
    check_plan_of_no_power(rig, unit_plan(rig), "site limit 0 A, no vehicle yet")
    asked_s = plug_and_ask(rig, SENSE_CURRENT_A)
    check_plan_of_no_power(rig, unit_plan(rig), "site limit 0 A, vehicle plugged in")
    sleep_until(rig, ready_by + timedelta(minutes=5), "through the tariff")
    assert l1_intervals(rig, asked_s, rig.clock.now()) == [], "Sense: energy with a site limit of 0 A"


@pytest.mark.req("MODE-06")
@pytest.mark.parametrize("planned_at", [MONDAY_EVENING, uk_time(2026, 1, 12, 17, 30, 5)],
                         ids=["17:40", "seconds-into-17:30"])
def test_slots_already_begun_are_not_planned(ready, planned_at):
    """Planned at 17:40, or seconds after 17:30 (a boundary found by whole minutes would still see
    17:30 there), with tariff data from 17:00, the 17:00 and 17:30 slots the cheapest of all: the
    one that is over and the one already begun cannot deliver a slot's energy, so the plan starts
    at 18:00 (the reference's rule: slots from the next half-hour boundary)."""
    rig = ready
    prepare(rig)
    rig.set_time(planned_at)
    tariff = tariff_from(uk_time(2026, 1, 12, 17, 0), [1.0, 1.5] + PRICES[:6])
    ready_by = tariff[-1].start + ref.SLOT
    slot_kwh = slot_energy_kwh(rig)
    energy = round(2.6 * slot_kwh, 3)
    send_tariff_and_target(rig, tariff, energy, ready_by)
    now = rig.time.now()
    assert now - planned_at < timedelta(seconds=50), f"test condition: planned at {now}, not just after {planned_at}"
    want = reference_plan(rig, tariff, now, ready_by, energy)
    assert want.feasible and min(want.slots) >= uk_time(2026, 1, 12, 18, 0), "test data"
    check_plan(rig, unit_plan(rig), want)


@pytest.mark.req("MODE-06")
@pytest.mark.parametrize("data", ['{"slots": [{"start": "yesterday", "price": 5}]}', "not json",
                                  '{"slots": [{"start": "2026-01-12T18:00:00Z"}]}',
                                  # a price that is not a number, and slots off the half-hour grid
                                  # (profile [sense] slot_s): found by mutation, each once accepted
                                  '{"slots": [{"start": "2026-01-12T18:00:00Z", "price": true}]}',
                                  '{"slots": [{"start": "2026-01-12T18:00:00Z", "price": NaN}]}',
                                  '{"slots": [{"start": "2026-01-12T18:00:30Z", "price": 5}]}',
                                  '{"slots": [{"start": "2026-01-12T18:15:00Z", "price": 5}]}'],
                         ids=["start-not-a-time", "not-json", "no-price", "price-true", "price-nan",
                              "start-18:00:30", "start-18:15"])
def test_malformed_tariff_rejected(ready, data):
    rig = ready
    prepare(rig)
    reply = data_transfer(rig, "datatransfer_set_tariff", data)
    assert reply.get("status") == "Rejected", f"SetTariff with {data!r} answered {reply}"


@pytest.mark.req("MODE-06")
@pytest.mark.parametrize("energy", [0, -1.5, "7"], ids=["nothing", "negative", "a-string"])
def test_a_target_of_no_energy_is_rejected(ready, energy):
    """'Required energy' must be a positive number of kWh: a target of none is no target (the
    smallest accepted target is covered by the a-tenth-of-a-slot case)."""
    rig = ready
    prepare(rig)
    reply = data_transfer(rig, "datatransfer_set_sense_target", {"energy_kwh": energy, "ready_by": "2026-01-12T22:30:00Z"})
    assert reply.get("status") == "Rejected", f"SetSenseTarget of {energy!r} kWh answered {reply}"


# ----------------------------------------------------------------------------- explored
PRICE_LEVELS = [5.0, 7.5, 9.5, 12.0, 15.0, 24.5]  # few levels: ties happen


@st.composite
def sense_cases(draw):
    prices = draw(st.lists(st.sampled_from(PRICE_LEVELS), min_size=3, max_size=8))
    ready_slots = draw(st.integers(min_value=1, max_value=len(prices)))
    ready_extra_min = draw(st.sampled_from([0, 10]))
    slots_of_energy = round(draw(st.floats(min_value=0.3, max_value=len(prices) + 1.0)), 2)
    lead_min = draw(st.integers(min_value=1, max_value=50))
    return prices, ready_slots, ready_extra_min, slots_of_energy, lead_min


@pytest.mark.req("MODE-06")
@settings(max_examples=4, deadline=None, derandomize=True, database=None, phases=NO_SHRINK,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(case=([9.5, 9.5, 5.0, 9.5, 24.5], 5, 0, 2.5, 20))  # ties at the dearest chosen price
@given(case=sense_cases())
def test_sense_plans_explored(ready, case):
    """Random tariffs (3-8 slots, few price levels so ties occur), energies from a third of a
    slot to beyond reach, ready-by on or between slot edges, plug-in 1-50 min before the first
    slot: the unit's plan equals the reference, and the session follows it up to ready-by."""
    prices, ready_slots, ready_extra_min, slots_of_energy, lead_min = case
    rig = ready
    rig.safe_state()
    rig.clock.sleep(SAFE_DWELL_S, "unit settles: the previous example unplugged")
    prepare(rig)
    first = uk_time(2026, 1, 13, 1, 0)
    rig.set_time(first - timedelta(minutes=lead_min))
    tariff = tariff_from(first, prices)
    ready_by = tariff[0].start + ready_slots * ref.SLOT + timedelta(minutes=ready_extra_min)
    slot_kwh = slot_energy_kwh(rig)
    energy = round(slots_of_energy * slot_kwh, 3)
    send_tariff_and_target(rig, tariff, energy, ready_by)
    start_kwh = rig.meter.energy_kwh()
    planned_at = rig.time.now()
    asked_s = plug_and_ask(rig, SENSE_CURRENT_A)
    want = reference_plan(rig, tariff, planned_at, ready_by, energy)
    check_plan(rig, unit_plan(rig), want)
    sleep_until(rig, ready_by + timedelta(minutes=1), "through the plan")
    check_sense_session(rig, want, asked_s, start_kwh, energy, ready_by)
    unplug(rig)


# ----------------------------------------------------------------------------- no tariff data
@pytest.mark.req("MODE-07")
def test_without_tariff_data_sense_charges_so_the_energy_is_in_by_ready_by(ready):
    """No tariff data (withdrawn: SetTariff with no slots), a target and a ready-by three hours
    away: with no price to plan on, the only plan that protects ready-by is to charge; the energy
    must be in by ready-by (reference meter), and charging must not wait for a slot."""
    rig = ready
    prepare(rig)
    rig.set_time(MONDAY_EVENING)
    reply = data_transfer(rig, "datatransfer_set_tariff", {"slots": []})
    assert reply.get("status") == "Accepted", f"SetTariff with no slots (no tariff data) answered {reply}"
    ready_by = (MONDAY_EVENING + timedelta(hours=3)).astimezone(timezone.utc)
    slot_kwh = slot_energy_kwh(rig)
    energy = round(2.5 * slot_kwh, 3)  # 75 minutes of charging: well inside the three hours
    reply = data_transfer(rig, "datatransfer_set_sense_target", {"energy_kwh": energy, "ready_by": ref.utc_iso(ready_by)})
    assert reply.get("status") == "Accepted", f"SetSenseTarget answered {reply}"
    start_kwh = rig.meter.energy_kwh()
    asked_s = plug_and_ask(rig, SENSE_CURRENT_A)
    closed = rig.clock.wait_until(lambda: rig.pilot.sense().l1, rig.limit("cp.contactor_close_max_s") + 1.0,
                                  poll=0.1, reason="Sense without tariff data: charging should start")
    rig.check_limit("contactor close after asking, Sense without tariff data",
                    None if closed is None else closed - asked_s, high="cp.contactor_close_max_s",
                    resolution=rig.clock.resolution_s)
    sleep_until(rig, ready_by, "up to the ready-by time")
    delivered = rig.meter.energy_kwh() - start_kwh
    tol = rig.limit("mode.sense_energy_tolerance_pct") / 100
    # at least the target: MODE-07 protects the ready-by time; with no price to save on, the
    # documents do not say the unit must stop at the target, so more is not judged
    rig.check("energy delivered by the ready-by time without tariff data", delivered, "kWh", energy * (1 - tol),
              None, f"MODE-07; {rig.source_of('mode.sense_energy_tolerance_pct')}")
    unplug(rig)
