"""The emulated charger's charging modes: when may energy flow, and why not.

The charger (rig/sim/charger.py) owns the pilot, the contactor, the LED and OCPP; it asks this
controller one question on every re-evaluation: `waiting_reason()` is None when the selected mode
lets energy flow now, else why not ("delay", "peak", "schedule", "sense", "done", "manual",
"ask"). `update()` runs first and does the mode's own bookkeeping: the UK regulations' random
delays, the timer for the next window edge (evaluated in UK local time on the unit's real-time
clock), the Sense plan. The rules themselves are pure functions in rig/sim/charging_modes.py.

Every timer goes through the charger's `_later()`, so a power cycle cancels them, and runs in
the test thread under the plant lock.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from rig.sim import charging_modes as M

# timer names (charger._later keys)
DELAY = "mode-delay"  # UK Smart: random delay before energy starts
REVOKE = "mode-revoke"  # UK Smart: random delay before a peak stops the charge
RATE = "mode-rate"  # UK Smart: random delay before a MaxCurrentA change applies
EDGE = "mode-edge"  # next window / peak / Sense slot edge
SENSE_ENERGY = "mode-sense-energy"  # Sense: look again whether the target energy is in

DELAY_DEFECTS_RANGE_CAP_S = 300  # delay-capped-300
SCHEDULE_EARLY = timedelta(seconds=60)  # schedule-early-start
SENSE_LOOK_MAX_S = 300.0  # Sense: longest gap between two looks at the delivered energy


class ModeController:
    def __init__(self, charger):
        self.c = charger
        self.profile = charger.profile
        self.keys = charger.ocpp_keys
        self.zone = ZoneInfo(self.profile["charging"]["timezone"])
        self.defect = charger.defect
        # UK Smart, per session
        self.granted = False  # the random delay for this start has run (energy may flow off-peak)
        self.held_back_by_peak = False  # the vehicle waited for a peak to end: its start is a window edge
        self.held_max_current: str | None = None  # MaxCurrentA still applied while a rate delay runs
        # Sense: tariff and target persist (the app sets them); the plan is per session
        self.tariff: list[M.TariffSlot] | None = None
        self.target: M.SenseTarget | None = None
        self.plan: M.SensePlan | None = None
        self.plan_energy_kwh = 0.0  # energy still wanted when the plan was made
        self.plan_start_wh = 0  # the unit's own meter then
        self.target_reached = False

    # ------------------------------------------------------------------ configuration
    @property
    def mode(self) -> str:
        return self.c.mode

    def _config(self, key: str) -> str:
        return self.c.config.values[self.keys[key]]

    def validate(self, key: str, value: str) -> bool:
        """May ChangeConfiguration set this vendor key to `value`? (False: Rejected)"""
        k = self.keys
        try:
            if key == k["config_charging_mode"]:
                return value in self.profile["charging"]["modes"]
            if key == k["config_random_delay_max"]:
                M.parse_random_delay_max(value)
            elif key in (k["config_peak_hours"], k["config_schedule_windows"]):
                M.parse_windows(value)
            elif key in (k["config_current_limit"], k["config_site_limit"]):
                float(value) if self.defect == "current-limit-any-number" else M.parse_current_a(value)  # (the bug)
        except ValueError:
            return False
        return True

    def before_config_change(self, key: str, old: str, new: str) -> None:
        """Called just before a vendor key changes: a MaxCurrentA change while charging waits."""
        if key == self.keys["config_charging_mode"] and old != new:
            self._leave_mode()
        elif ((key == self.keys["config_current_limit"] or self.defect == "any-key-is-a-rate-change")
              and self.mode == "UKSmart" and self.c.contactor_closed):
            if self.held_max_current is None:
                self.held_max_current = old  # the old rate stays until the fresh delay has run
            self.c._later(RATE, self._draw_delay("rate"), self._apply_rate)

    def effective_max_current_a(self) -> float:
        value = self.held_max_current if self.held_max_current is not None else self._config("config_current_limit")
        try:
            return M.parse_current_a(value)
        except ValueError:
            return float(self.c.model["rated_current_a"])

    def _apply_rate(self) -> None:
        self.held_max_current = None
        self.c._reconsider_offer()

    def _leave_mode(self) -> None:
        """A mode change takes effect at once: the new mode starts from scratch for this session."""
        for key in (DELAY, REVOKE, RATE, EDGE, SENSE_ENERGY):
            self.c._cancel(key)
        self.granted = False
        self.held_back_by_peak = False
        self.held_max_current = None
        self.plan = None
        self.target_reached = False

    # ------------------------------------------------------------------ sessions
    def session_started(self) -> None:
        self._leave_mode()

    def session_ended(self) -> None:
        self._leave_mode()

    # ------------------------------------------------------------------ the question
    def waiting_reason(self) -> str | None:
        """None if the selected mode lets energy flow now, else why it does not."""
        s = self.c.session
        if s is None:
            return "ask"
        mode = self.mode
        now = self.c.rtc_now()
        if mode == "Manual":
            return None if s.start_requested or self.defect == "manual-starts-on-plug-in" else "manual"
        if mode == "Scheduled":
            return None if self._in_schedule(now) else "schedule"
        if mode == "UKSmart":
            if self.granted:
                return None
            if self.delay_running:
                return "delay"
            return "peak" if self._in_peak(now) else "ask"
        if mode == "Sense":
            if self.plan is None:
                if self.defect == "sense-no-tariff-waits" and self.tariff is None and self.target is not None:
                    return "sense"  # the known-bad unit waits for tariff data that never comes
                return None  # no tariff or no target: charge now, the only way to protect ready-by
            if self.target_reached:
                return "done"
            return None if self.plan.charging_at(now) else "sense"
        return None  # PlugAndCharge

    @property
    def delay_running(self) -> bool:
        """A UK Smart start delay is running (LED green circle)."""
        return DELAY in self.c._timers

    # ------------------------------------------------------------------ bookkeeping
    def update(self) -> None:
        """Called at every re-evaluation, before the charger decides: delays, plan, next edge."""
        c = self.c
        if c.session is None or not c.powered:
            self._leave_mode()
            return
        now = c.rtc_now()
        if self.mode == "UKSmart":
            self._update_uk_smart(now)
        elif self.mode == "Sense":
            self._update_sense(now)
        self._arm_edge(now)

    def _update_uk_smart(self, now: datetime) -> None:
        c = self.c
        peak = self._in_peak(now)
        wants = not self.granted and not self.delay_running and c.cp_state == "C" and c._blocked_reason() is None
        if wants and peak:
            self.held_back_by_peak = True
        elif wants:
            # relevant time: energy would start to flow (the vehicle asks, or the peak it waited for ends)
            self._start_delay("peak-end" if self.held_back_by_peak else "start")
        if self.granted and peak and REVOKE not in c._timers:
            c._later(REVOKE, self._draw_delay("peak-start"), self._revoke)  # relevant time: a peak starts

    def _start_delay(self, why: str) -> None:
        delay = self._draw_delay(why)
        self.held_back_by_peak = False
        if delay <= 0:
            self.granted = True
            return
        self.c._later(DELAY, delay, self._delay_ended)

    def _delay_ended(self) -> None:
        # no charging STARTS inside a peak: a delay that ran into one waits for its end
        self.granted = not self._in_peak(self.c.rtc_now())
        self.c._reconsider_offer()

    def _revoke(self) -> None:
        if self._in_peak(self.c.rtc_now()):
            self.granted = False
        self.c._reconsider_offer()

    def _draw_delay(self, why: str) -> float:
        """A fresh random delay for the relevant time `why` ("start", "peak-end", "peak-start",
        "rate"): uniform over whole seconds 0..max, from the unit's own RNG."""
        rng = self.c.clock.rng
        max_s = M.parse_random_delay_max(self._config("config_random_delay_max"))
        if self.defect == "delay-plug-in-only" and why != "start":
            return 0
        if self.defect == "delay-capped-300":
            max_s = min(max_s, DELAY_DEFECTS_RANGE_CAP_S)
        if self.defect == "delay-fractional":
            return rng.uniform(0.0, max_s)
        if self.defect == "delay-coarse-10s":
            return 10 * rng.randint(0, max_s // 10)
        return rng.randint(0, max_s)

    def skip_delay(self) -> None:
        """Owner override (DataTransfer SkipRandomDelay): every running delay ends now."""
        if self.defect == "delay-override-ignored":
            return
        c = self.c
        for key, then in ((DELAY, self._delay_ended), (REVOKE, self._revoke), (RATE, self._apply_rate)):
            if key in c._timers:
                c._cancel(key)
                c._later(key + "-now", 0.0, then)

    # ------------------------------------------------------------------ windows
    def _peaks(self) -> M.DailyWindows:
        zone = timezone.utc if self.defect == "peak-hours-in-utc" else self.zone
        peaks = M.DailyWindows.parse(self._config("config_peak_hours"), self.profile["charging"]["peak_days"], zone)
        if self.defect == "charges-in-evening-peak":  # the bug: only the morning peak is honoured
            peaks = M.DailyWindows(tuple(w for w in peaks.windows if w.start_min < 12 * 60), peaks.days, zone)
        if self.defect == "peak-ends-at-midnight":  # the bug: a window across midnight stops at 23:59
            peaks = M.DailyWindows(tuple(M.Window(w.start_min, 24 * 60 - 1) if w.wraps else w for w in peaks.windows),
                                   peaks.days, zone)
        return peaks

    def _in_peak(self, now: datetime) -> bool:
        return self._peaks().contains(now)

    def _schedule(self) -> M.DailyWindows:
        return M.DailyWindows.parse(self._config("config_schedule_windows"), None, self.zone)

    def _in_schedule(self, now: datetime) -> bool:
        windows = self._schedule()
        if windows.contains(now):
            return True
        return self.defect == "schedule-early-start" and windows.contains(now + SCHEDULE_EARLY)

    def _arm_edge(self, now: datetime) -> None:
        """Re-evaluate at the next edge that can change the answer (and on each UTC hour, where
        the clock changes happen); recomputed on every update, so a new time or window applies."""
        edges = []
        if self.mode == "UKSmart":
            edges.append(self._peaks().next_edge(now))
        elif self.mode == "Scheduled":
            windows = self._schedule()
            edges.append(windows.next_edge(now))
            if self.defect == "schedule-early-start":
                early = windows.next_edge(now + SCHEDULE_EARLY)
                edges.append(None if early is None else early - SCHEDULE_EARLY)
        elif self.mode == "Sense" and self.plan is not None:
            edges.append(self.plan.next_edge(now, ends=self.defect != "sense-slot-end-missed"))  # (the bug)
        else:
            self.c._cancel(EDGE)
            return
        edges = [e for e in edges if e is not None]
        if self.mode != "Sense" and edges:
            edges.append(M.next_utc_hour(now))
        if not edges:
            self.c._cancel(EDGE)
            return
        delay = (min(edges) - now).total_seconds()
        self.c._later(EDGE, max(0.0, delay), self.c._reconsider_offer)

    # ------------------------------------------------------------------ Sense
    def set_tariff(self, data) -> bool:
        try:
            self.tariff = M.parse_tariff(data) or None  # no slots: no tariff data
        except (ValueError, TypeError, json.JSONDecodeError):
            return False
        self._replan_later()
        return True

    def set_target(self, data) -> bool:
        try:
            self.target = M.parse_target(data)
        except (ValueError, TypeError, json.JSONDecodeError):
            return False
        self._replan_later()
        return True

    def _replan_later(self) -> None:
        """Planning time = now, if a vehicle is plugged in (else at plug-in)."""
        if self.c.session is not None:
            self.plan = None
            self.target_reached = False
            self.c._later("reconsider", 0.0, self.c._reconsider_offer)

    def plan_answer(self) -> dict:
        """GetSensePlan: the session's plan, else a preview planned now; Rejected without data."""
        plan = self.plan
        if plan is None:
            if self.tariff is None or self.target is None:
                return {"status": "Rejected"}
            plan = self._make_plan(self.c.rtc_now(), self._wanted_kwh())  # as the plan about to be made
        return {"status": "Accepted", "data": json.dumps(plan.as_data())}

    def _make_plan(self, now: datetime, energy_kwh: float) -> M.SensePlan:
        nominal_v = float(self.profile["sense"]["nominal_v"])
        offered_a = self.c.offered_current_a(plan=True)
        if self.defect == "sense-plans-without-power":  # the bug: plans on at least the 6 A lowest offer
            offered_a = max(offered_a, 6.0)
        power = M.sense_power_kw(offered_a, nominal_v, self.c.model["phases"])
        if self.defect == "sense-whole-kwh-slots" and power * M.SLOT.total_seconds() / 3600.0 < 1.0:
            power = 0.0  # the bug: slot energy kept in whole kWh, so a slot under 1 kWh holds none
        return M.plan_sense(self.tariff, energy_kwh, self.target.ready_by, now, power,
                            respect_ready_by=self.defect != "sense-ignores-ready-by",
                            fill_after_ready_by=self.defect == "sense-short-fills-after-ready-by",
                            spare_slot_when_exact=self.defect == "sense-spare-slot-when-exact",
                            counts_begun_slot=self.defect == "sense-plans-begun-slot")

    def energy_started(self) -> None:
        """The contactor has closed: in Sense, start watching the delivered energy."""
        if self.mode == "Sense" and self.plan is not None and self.c.session is not None:
            self._watch_energy()

    def _wanted_kwh(self) -> float:
        """The target less what this session has delivered (the unit's own count)."""
        if self.c.session is None or self.defect == "sense-replan-forgets-delivered":  # the bug: all again
            return self.target.energy_kwh
        return max(0.0, self.target.energy_kwh - (self.c.meter_wh() - self.c.session.start_wh) / 1000.0)

    def _update_sense(self, now: datetime) -> None:
        if self.tariff is None or self.target is None:
            self.plan = None
            return
        if self.plan is None:
            wanted = self._wanted_kwh()
            self.plan = self._make_plan(now, wanted)
            self.plan_energy_kwh = wanted
            self.plan_start_wh = self.c.meter_wh()
            self.target_reached = wanted <= 0
        self._watch_energy()

    def _watch_energy(self) -> None:
        """While energy flows, look again when the target should be in (the unit counts its own
        delivered energy); stop when it is."""
        c = self.c
        delivered_kwh = (c.meter_wh() - self.plan_start_wh) / 1000.0
        remaining_kwh = self.plan_energy_kwh - delivered_kwh
        if remaining_kwh <= 0:
            if not self.target_reached:
                self.target_reached = True
                c._later("reconsider", 0.0, c._reconsider_offer)
            c._cancel(SENSE_ENERGY)
            return
        if not c.contactor_closed:
            c._cancel(SENSE_ENERGY)
            return
        power_kw = c.output_power_w() / 1000.0
        look_s = SENSE_LOOK_MAX_S if power_kw <= 0 else min(SENSE_LOOK_MAX_S, remaining_kwh / power_kw * 3600.0)
        c._later(SENSE_ENERGY, max(1.0, look_s), c._reconsider_offer)
