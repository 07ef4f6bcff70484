"""Steps shared by spec tests: timing events seen by the pilot box's contact sense."""

from __future__ import annotations

from rig import cp as cpmath
from rig.errors import ChargerFailure


def wait_output_live(rig, live: bool, timeout_s: float) -> float | None:
    """Clock time at which L1 at the vehicle connector became `live` (contact sense), or None."""
    return rig.clock.wait_until(lambda: rig.pilot.sense().l1 == live, timeout_s, poll=0.01)


def first_sense_edge(rig, pin: str, value: bool, after_s: float) -> float | None:
    """Time of the first recorded edge of sense `pin` to `value` at or after `after_s`."""
    for t, name, v in rig.pilot.sense_events():
        if name == pin and v == value and t >= after_s:
            return t
    return None


# --- safety functions: sessions, trips and reports ---------------------------------------------


def start_charging(rig) -> None:
    """The `charging` fixture as a step, for tests that need a fresh session more than once
    (hypothesis examples, resumes after a trip): plug in, ask for power, draw what is offered."""
    rig.ev.plug_in()
    rig.clock.sleep(1.0, "vehicle plugged in")
    rig.ev.request_power()
    if wait_output_live(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0) is None:
        raise ChargerFailure("contactor did not close after the vehicle asked for power (state C)")
    rig.ev.follow_pwm()
    rig.clock.sleep(1.0, "charging settles")


def reboot(rig) -> None:
    """Power-cycle the unit and wait until it has booted, registered and reported its connector.

    `rig.await_ready()` alone is not enough after a power cycle: the BootNotification of the
    previous boot is still in the central system's history. So wait for a new one first.
    """
    mark = rig.central.mark()
    rig.power_cycle()
    boot = rig.central.wait_for(
        "BootNotification", timeout=rig.limit("boot.self_test_max_s") + rig.limit("boot.accept_max_s"), after=mark)
    rig.await_ready()
    rig.central.wait_for("StatusNotification", timeout=rig.limit("boot.accept_max_s"), after=boot)


def phase_pins(rig) -> list[str]:
    """Contact-sense pins of the line conductors the unit switches: L1, or L1-L3 on three-phase units."""
    return [f"sense_l{i + 1}" for i in range(rig.profile["phases"])]


def pen_pins(rig) -> list[str]:
    """What a PEN trip must disconnect (PEN-01): every line, neutral, and protective earth unless
    the profile says this variant keeps PE (PEN-07, the export variant)."""
    pins = phase_pins(rig) + ["sense_n"]
    if rig.profile["safety"]["pen_opens_earth"]:
        pins.append("sense_pe")
    return pins


def require_closed(rig, pins: list[str]) -> None:
    """Precondition of a trip test: every pin in `pins` reads live / continuous now."""
    sense = rig.pilot.sense()
    open_now = [pin for pin in pins if getattr(sense, pin.removeprefix("sense_")) is not True]
    if open_now:
        raise ChargerFailure(f"charging, yet {', '.join(open_now)} not closed at the vehicle connector: {sense}")


def last_opening(rig, pins: list[str], after_s: float) -> float | None:
    """Time at which the last of `pins` opened (each one's first falling edge at or after
    `after_s`), or None if one of them has not opened: a disconnection is only as good as its
    last conductor."""
    edges = [first_sense_edge(rig, pin, False, after_s) for pin in pins]
    return None if None in edges else max(edges)


def first_opening(rig, pins: list[str], after_s: float) -> float | None:
    """Time at which the first of `pins` opened at or after `after_s`, or None: did anything trip?"""
    edges = [t for t in (first_sense_edge(rig, pin, False, after_s) for pin in pins) if t is not None]
    return min(edges) if edges else None


def wait_opening(rig, pins: list[str], after_s: float, until_s: float) -> float | None:
    """Wait (at most until clock time `until_s`) for every pin in `pins` to open after `after_s`;
    the time of the last opening, or None. The edge times come from the pins, not the polling."""
    rig.clock.wait_until(lambda: last_opening(rig, pins, after_s) is not None,
                         max(0.0, until_s - rig.clock.now()), poll=0.01, reason="waiting for the trip")
    return last_opening(rig, pins, after_s)


def reclosed_at(rig, after_s: float) -> float | None:
    """Time L1 became live again at or after `after_s`, or None: reclosing shows on L1 first."""
    return first_sense_edge(rig, "sense_l1", True, after_s)


def check_idle_current(rig, what: str) -> None:
    """No current on any phase (MTR-02 level): the meter agrees the contactor is open."""
    for i, amps in enumerate(rig.meter.currents()):
        rig.check_limit(f"L{i + 1} current {what}", amps, high="mtr.idle_current_max_a")


def check_current_flows(rig, what: str) -> None:
    """Current on every phase the unit uses: the session is delivering energy again."""
    idle = rig.limit("mtr.idle_current_max_a")
    for i, amps in enumerate(rig.meter.currents()[: rig.profile["phases"]]):
        rig.check(f"L{i + 1} current {what}", amps, "A", idle, None,
                  f"above {rig.source_of('mtr.idle_current_max_a')}: energy flows")


def led_watch_s(rig) -> float:
    """How long to watch the LED for a state: two of the classifier's observation windows."""
    return 2 * rig.profile["led"]["waveforms"]["window_s"]


def expect_led(rig, state: str, why: str) -> None:
    seen = rig.wait_for_led(state, led_watch_s(rig))
    assert seen.state == state, f"{why}: expected {state}, saw {seen.explain()}"


def wait_fault_reported(rig, error_code: str, after_s: float, timeout_s: float):
    """The StatusNotification Faulted with `error_code` sent at or after clock time `after_s`."""
    return rig.central.wait_for(
        "StatusNotification",
        predicate=lambda p: p["status"] == "Faulted" and p["errorCode"] == error_code,
        timeout=timeout_s,
        after=float(after_s),
    )


def wait_error_reported(rig, error_code: str, after_s: float, timeout_s: float):
    """A StatusNotification carrying `error_code` (whatever the status) at or after `after_s`."""
    return rig.central.wait_for(
        "StatusNotification", predicate=lambda p: p["errorCode"] == error_code, timeout=timeout_s, after=float(after_s)
    )


def no_close_watch_s(rig) -> float:
    """How long to watch for a contactor that must never close. A unit that would close does so
    within cp.contactor_close_max_s of state C (CP-03); three times that and a second more
    leaves no doubt (10 s with the default limits)."""
    return 3 * rig.limit("cp.contactor_close_max_s") + 1.0


def check_offered_duty(rig, m, amps: float, what: str) -> None:
    """The PWM duty offers `amps` (IEC 61851-1: D = I / 0.6) within cp.duty_tolerance_pct."""
    tol = rig.limit("cp.duty_tolerance_pct")
    want = cpmath.duty_for_current(amps) * 100
    rig.check(f"duty offering {amps:g} A {what}", None if m.duty is None else m.duty * 100, "%", want - tol,
              want + tol, f"IEC 61851-1 D = I/0.6; {rig.source_of('cp.duty_tolerance_pct')}",
              resolution=m.resolution_s * 1e5)
