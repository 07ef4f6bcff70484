"""Invariants over random sequences (hypothesis stateful testing): plug, unplug, lock and unlock,
mode change, schedule change, central system lost and back, time passing, on virtual time.

After every step the unit has had time to react (mode.window_stop_max_s), then:
* no energy unless a vehicle is plugged in and asking, the unit is not locked, and the mode
  allows it now: Plug & Charge always (online or offline: regs 7), UK Smart once a delay could
  have run, Scheduled only inside a window, Manual never (no start command is ever sent here,
  unless the session was already running when Manual was chosen);
* energy where it must flow: Plug & Charge with an asking vehicle, UK Smart once the longest
  delay has passed;
* the LED shows the state (precedence of the profile's [led.precedence]) and, online, the last
  connector status agrees with it.
The calendar is a weekend (no peak hours), so UK Smart waits only on its delay.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from rig.spec.steps import (change_configuration, led_watch_s, latest_status, lock, plug_and_ask, uk_time,
                              window_instants)

MODES = ["PlugAndCharge", "Manual", "Scheduled", "UKSmart"]
WEEKEND = uk_time(2026, 1, 10, 0, 0)
WINDOWS = st.sampled_from(["", "00:30-01:30", "01:00-02:00,03:00-03:30", "23:00-02:00", "00:00-00:15,02:15-04:00"])

# a failing example on the rig is reported as found: shrinking would replay hours of simulated charging
NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


class ModeMachine(RuleBasedStateMachine):
    rig = None  # bound by the test

    def __init__(self):
        super().__init__()
        rig = self.rig
        rig.safe_state()
        if not rig.central.connected(rig.cp_id):
            rig.central.start_listening()
            rig.await_ready(rig.limit("offline.reconnect_max_s"))
        lock(rig, False)
        self._configure("config_charging_mode", "PlugAndCharge")
        self._configure("config_schedule_windows", "")
        rig.set_time(WEEKEND)
        self.plugged = self.locked = self.manual_carry = False
        self.online = True
        self.mode, self.windows = "PlugAndCharge", ""
        self.delay_from = rig.clock.now()  # last time a UK Smart delay could have (re)started
        self._settle()

    # -- plumbing -----------------------------------------------------------------------------
    def _configure(self, profile_key: str, value: str) -> None:
        status = change_configuration(self.rig, self.rig.profile["ocpp"][profile_key], value)
        assert status == "Accepted", f"ChangeConfiguration {profile_key} = {value!r} answered {status}"

    def _settle(self) -> None:
        self.rig.clock.sleep(self.rig.limit("mode.window_stop_max_s"), "the unit reacts")

    def _restart_delay(self) -> None:
        self.delay_from = self.rig.clock.now()

    # -- rules --------------------------------------------------------------------------------
    @precondition(lambda self: not self.plugged)
    @rule()
    def plug_in(self):
        plug_and_ask(self.rig)
        self.plugged = True
        self._restart_delay()
        self._settle()

    @precondition(lambda self: self.plugged)
    @rule()
    def unplug(self):
        self.rig.ev.unplug()
        self.plugged = self.manual_carry = False
        self._settle()

    @precondition(lambda self: self.online)
    @rule(locked=st.booleans())
    def set_lock(self, locked):
        lock(self.rig, locked)
        if self.locked and not locked:
            self._restart_delay()
        self.locked = locked
        self.manual_carry = self.manual_carry and not locked
        self._settle()

    @precondition(lambda self: self.online)
    @rule(mode=st.sampled_from(MODES))
    def set_mode(self, mode):
        live = self.rig.pilot.sense().l1
        self._configure("config_charging_mode", mode)
        if mode != self.mode:
            self.manual_carry = mode == "Manual" and live
            self._restart_delay()
        self.mode = mode
        self._settle()

    @precondition(lambda self: self.online)
    @rule(windows=WINDOWS)
    def set_windows(self, windows):
        self._configure("config_schedule_windows", windows)
        self.windows = windows
        self._settle()

    @precondition(lambda self: self.online)
    @rule()
    def lose_central_system(self):
        self.rig.central.stop_listening()
        self.online = False
        self._settle()

    @precondition(lambda self: not self.online)
    @rule()
    def central_system_returns(self):
        self.rig.central.start_listening()
        self.rig.await_ready(self.rig.limit("offline.reconnect_max_s"))
        self.online = True
        self._settle()

    @rule(minutes=st.integers(min_value=1, max_value=40))
    def time_passes(self, minutes):
        self.rig.clock.sleep(60.0 * minutes, "time passes")

    # -- what must hold -----------------------------------------------------------------------
    def _window_state(self) -> str:
        """'in', 'out', or 'edge' when an opening or closing is too close to judge."""
        rig = self.rig
        now = rig.time.now()
        margin = timedelta(seconds=rig.limit("mode.window_stop_max_s") + led_watch_s(rig) + 1.0)
        spans = window_instants(self.windows, now - timedelta(days=1), now + timedelta(days=1))
        if any(abs(now - edge) <= margin for s, e in spans for edge in (s, e)):
            return "edge"
        return "in" if any(s <= now < e for s, e in spans) else "out"

    def _may_charge(self, window: str) -> bool:
        if not self.plugged or self.locked:
            return False
        if self.mode == "Manual":
            return self.manual_carry
        if self.mode == "Scheduled":
            return window != "out"
        return True

    def _must_charge(self, window: str) -> bool:
        if not self.plugged or self.locked:
            return False
        if self.mode == "PlugAndCharge":
            return True
        waited = self.rig.clock.now() - self.delay_from
        longest = self.rig.limit("mode.random_delay_max_s") + self.rig.limit("mode.window_start_max_s")
        return self.mode == "UKSmart" and waited > longest

    @invariant()
    def energy_only_when_allowed(self):
        rig = self.rig
        window = self._window_state()
        live = rig.pilot.sense().l1
        state = (f"mode {self.mode}, plugged {self.plugged}, locked {self.locked}, online {self.online}, "
                 f"windows {self.windows!r} ({window}), local {rig.time.local_now():%a %H:%M:%S}")
        if live:
            assert self._may_charge(window), f"energy where none is allowed: {state}"
        if self._must_charge(window):
            assert live, f"no energy where it must flow: {state}"
        self._check_led(live, window, state)
        if self.online:
            self._check_status(live, state)

    def _expected_leds(self, live: bool, window: str) -> set[str] | None:
        if self.locked:
            return {"orange_pulsing" if self.plugged else "orange_solid"}
        if not self.online:
            return {"white_pulsing"}
        if not self.plugged:
            return {"blue_solid"}
        if live:
            return {"green_pulsing"}
        if self.mode == "Scheduled":
            return None if window == "edge" else {"blue_pulsing"}
        if self.mode == "UKSmart":
            return {"green_circle"}
        if self.mode == "Manual":
            return {"green_solid"}
        return None  # Plug & Charge not live: already failed above

    def _check_led(self, live: bool, window: str, state: str) -> None:
        want = self._expected_leds(live, window)
        if want is None:
            return
        seen = self.rig.led.observe()
        if seen.state not in want:
            seen = self.rig.wait_for_led(next(iter(want)), led_watch_s(self.rig))
        assert seen.state in want, f"LED: expected {sorted(want)}, saw {seen.explain()}; {state}"

    def _check_status(self, live: bool, state: str) -> None:
        status = latest_status(self.rig)
        if self.locked:
            want = {self.rig.profile["lock"]["locked_status"]}
        elif not self.plugged:
            want = {"Available"}
        elif live:
            want = {"Charging"}
        else:
            want = {"SuspendedEVSE", "Preparing"}
        assert status in want, f"connector status {status}, expected one of {sorted(want)}; {state}"

    def teardown(self):
        rig = self.rig
        rig.safe_state()
        if not rig.central.connected(rig.cp_id):
            rig.central.start_listening()
            rig.await_ready(rig.limit("offline.reconnect_max_s"))
        if self.locked:
            lock(rig, False)


@pytest.mark.req("MODE-01", "MODE-05", "MODE-08", "LOCK-01", "LOCK-02", "OFF-01", "LED-03", "LED-08", "LED-09",
                 "LED-10", "LED-11")
def test_mode_lock_and_offline_invariants(ready):
    rig = ready
    for key in ("config_charging_mode", "config_schedule_windows"):  # restored after the test
        rig.configure(rig.profile["ocpp"][key], rig.central.call(
            "GetConfiguration", {"key": [rig.profile["ocpp"][key]]}, cp_id=rig.cp_id)["configurationKey"][0]["value"])

    class Bound(ModeMachine):
        pass

    Bound.rig = rig
    run_state_machine_as_test(Bound, settings=settings(
        max_examples=4, stateful_step_count=8, deadline=None, derandomize=True, database=None,
        phases=NO_SHRINK,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))
