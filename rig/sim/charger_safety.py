"""The emulated charger's safety functions: the 6 mA DC detector (RDC-DD) and PEN protection.

Each watches one quantity of the plant and tells the charger to trip or to reset; the charger
does the switching, the LED and the OCPP reporting (rig/sim/charger.py, `trip()`/`clear_fault()`).
Defects of this area (rig/sim/defects.py) change one number or one rule here, the way a real
firmware bug would.
"""

from __future__ import annotations

from rig.sim import firmware_timing as T

# ------------------------------------------------------------------ RDC-DD (IEC 62955)
RCD_SAMPLE_S = 0.001  # the detector's sensor is sampled at 1 kHz while the current ramps


class ResidualCurrentDetector:
    """Inverse-time trip on smooth DC residual current.

    The trip time depends on the level (`trip_time_s`); for a changing current the detector
    integrates 1/trip_time over time and trips when the integral reaches 1, which for a step is
    exactly the trip time. Below the threshold it resets.
    """

    def __init__(self, charger):
        self.charger = charger
        self.plant, self.clock = charger.plant, charger.clock
        defect = charger.defect
        self.threshold_ma = 8.0 if defect == "rcd-threshold-8ma" else T.RCD_THRESHOLD_MA
        self.mid_band_s = 0.5 if defect == "rcd-slow-60ma" else T.RCD_TRIP_MID_S
        self.progress = 0.0  # integral of dt / trip_time
        self._last_s = 0.0
        self._last_ma = 0.0  # the level over the interval since _last_s
        self._timer = None

    def trip_time_s(self, ma: float) -> float | None:
        if ma < self.threshold_ma:
            return None
        if ma < T.RCD_MID_BAND_MA:
            return T.RCD_TRIP_LOW_S
        if ma < T.RCD_HIGH_BAND_MA:
            return self.mid_band_s
        return T.RCD_TRIP_HIGH_S

    def residual_ma(self) -> float:
        return self.plant.residual_dc_a() * 1000.0

    def powered_up(self) -> None:
        """The detector watches from power-up: a residual current that flowed through the power
        loss is a new, sudden one now (RCD-06: no reclosing while the fault persists)."""
        if self.charger.defect == "rcd-blind-after-power-up":
            return  # the bug: it looks only when the injected level changes
        self.progress, self._last_s, self._last_ma = 0.0, self.clock.now(), self.residual_ma()
        self._schedule()

    def powered_down(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_injection_change(self) -> None:
        """The residual current changed: integrate up to now, then decide when to look again."""
        self._integrate()
        c = self.charger
        acknowledged = c.fault_kind == "rcd" and c.cp_state == "A" and not self.fault_persists()
        if acknowledged and c.defect != "rcd-ack-only-at-unplug":  # (the bug: looks only at the unplug event)
            c.clear_fault("rcd")  # unplugged earlier, and now the residual current is gone too
        self._schedule()

    def _integrate(self) -> None:
        """Add the interval since the last look, at the level it had, then remember the new level."""
        now = self.clock.now()
        t_trip = self.trip_time_s(self._last_ma)
        self.progress = 0.0 if t_trip is None else self.progress + (now - self._last_s) / t_trip
        self._last_s, self._last_ma = now, self.residual_ma()
        if self.trip_time_s(self._last_ma) is None:
            self.progress = 0.0  # below the threshold the detector resets

    def _ramping(self) -> bool:
        inj = self.plant.injection
        return inj.on and inj.rate_a_per_s != 0.0 and inj.current_at(self.clock.now()) != inj.stop_a

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.charger.fault == "rcd" or not self.charger.powered:
            return
        if self._ramping():
            self._timer = self.clock.call_later(RCD_SAMPLE_S, self._tick)
            return
        t_trip = self.trip_time_s(self.residual_ma())
        if t_trip is not None:
            self._timer = self.clock.call_later(max(0.0, (1.0 - self.progress) * t_trip), self._tick)

    def _tick(self) -> None:
        with self.plant.lock:
            self._timer = None
            self._integrate()
            if self.progress >= 1.0 - 1e-9:
                self.progress = 0.0
                self.charger.trip("rcd")
            else:
                self._schedule()

    def fault_persists(self) -> bool:
        return self.residual_ma() >= self.threshold_ma


# ------------------------------------------------------------------ PEN (BS 7671 722.411.4.1)
class PenProtection:
    """Line-neutral window on every phase; trip after a delay, reset after normal supply, lockout.

    Good firmware: trips T.PEN_TRIP_DELAY_S after the voltage leaves the window (inside the 4-5 s
    band: rides through shorter excursions), resets after T.PEN_RESET_S of normal supply, resumes
    at most T.PEN_MAX_RESUMES times, then locks out until power-cycled.
    """

    def __init__(self, charger):
        self.charger = charger
        self.plant, self.clock = charger.plant, charger.clock
        d = charger.defect
        self.trip_delay_s = {"pen-slow-trip": 6.0, "pen-no-ride-through": 2.5}.get(d, T.PEN_TRIP_DELAY_S)
        self.max_resumes = T.PEN_MAX_RESUMES + (1 if d == "pen-eleventh-resume" else 0)
        self.opens_earth = (charger.profile["safety"]["pen_opens_earth"] or d == "pen-export-opens-earth") \
            and d != "pen-earth-stays-closed"
        self._trip_timer = None
        self._reset_timer = None
        self.powered_up()

    def window_violation(self) -> str | None:
        volts = [self.plant.phase_voltage(i) for i in range(self.plant.phases)]
        wide = 1.0 if self.charger.defect == "pen-window-wide" else 0.0  # the defect: 206-254 V
        if any(v > T.PEN_V_MAX + wide for v in volts):
            return "over"
        if any(v < T.PEN_V_MIN - wide for v in volts):
            return "under"
        return None

    def on_supply_change(self) -> None:
        violation = self.window_violation()
        if self.tripped_on is None:
            self._watch_untripped(violation)
        else:
            self._watch_tripped(violation)

    def _watch_untripped(self, violation: str | None) -> None:
        armed = violation or self.charger.defect == "pen-delay-from-any-change"  # (the bug: any supply change)
        if armed and self._trip_timer is None:
            self._trip_timer = self.clock.call_later(self.trip_delay_s, self._trip)
        elif not violation and self._trip_timer is not None:
            self._trip_timer.cancel()  # a short excursion: ride through
            self._trip_timer = None

    def _trip(self) -> None:
        with self.plant.lock:
            self._trip_timer = None
            violation = self.window_violation()
            if violation is None or not self.charger.powered:
                return
            self.tripped_on = violation
            self.locked_out = self.resumes >= self.max_resumes
            self.charger.trip("pen", open_earth=self.opens_earth)
            if self.charger.defect == "pen-reset-from-trip" or self.charger.defect == "pen-recloses-out-of-range":
                self._start_reset_timer()  # the bug: counted from the trip, not from normal supply
            else:
                self._watch_tripped(violation)

    def _watch_tripped(self, violation: str | None) -> None:
        if self.locked_out:
            return
        if self.charger.defect in ("pen-reset-from-trip", "pen-recloses-out-of-range"):
            return  # the reset timer runs from the trip whatever the supply does
        if violation is None and self._reset_timer is None:
            self._start_reset_timer()
        elif violation is not None and self._reset_timer is not None:
            self._reset_timer.cancel()
            self._reset_timer = None

    def _start_reset_timer(self) -> None:
        self._reset_timer = self.clock.call_later(T.PEN_RESET_S, self._reset)

    def _reset(self) -> None:
        with self.plant.lock:
            self._reset_timer = None
            if self.tripped_on is None or self.locked_out:
                return
            if self.window_violation() and self.charger.defect != "pen-recloses-out-of-range":
                self._start_reset_timer()  # still out of range (pen-reset-from-trip): wait another period
                return
            self.tripped_on = None
            self.resumes += 1
            self.charger.clear_fault("pen")

    def powered_up(self) -> None:
        """The firmware starts afresh at every boot: no trip, the full budget of automatic resumes
        (set here, not only at power-down, so the very first boot starts from the same state)."""
        self.resumes, self.locked_out = 0, False
        self.tripped_on: str | None = None  # "over" | "under" while tripped

    def powered_down(self) -> None:
        for timer in (self._trip_timer, self._reset_timer):
            if timer is not None:
                timer.cancel()
        self._trip_timer = self._reset_timer = None
