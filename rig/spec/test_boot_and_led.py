"""Start-up and the status indicator (BOOT-01, LED-01, LED-02, LED-05, LED-06, LED-07)."""

from __future__ import annotations

import pytest

from rig.instruments.central_system import accept, delay

#: the vehicle is plugged in this long after power-on: the unit is in its self-test (LED-01's rainbow,
#: seen at once after power-on by test_power_on_rainbow_then_white_until_accepted_then_blue), not yet past it (a test condition)
SELF_TEST_STARTED_S = 0.1


@pytest.mark.eol
@pytest.mark.req("BOOT-01", "LED-01", "LED-02", "LED-05")
def test_power_on_rainbow_then_white_until_accepted_then_blue(ready):
    rig = ready
    hold_s = 20.0  # the central system answers the BootNotification this late, so white can be seen
    rig.central.script("BootNotification", delay(hold_s, then=accept()))
    mark = rig.central.mark()
    rig.power_cycle()
    first = rig.led.observe()
    assert first.state == "rainbow", f"after power-on expected the rainbow self-test, saw {first.explain()}"
    boot = rig.central.wait_for("BootNotification", timeout=rig.limit("boot.self_test_max_s"), after=mark)
    rig.clock.sleep(2.0)
    seen = rig.led.observe()
    assert seen.state == "white_solid", f"BootNotification sent, not yet accepted: expected white solid, saw {seen.explain()}"
    accepted_at = boot.time + hold_s
    rig.clock.sleep(max(0.0, accepted_at - rig.clock.now()))
    blue = rig.wait_for_led("blue_solid", rig.limit("boot.accept_max_s"))
    assert blue.state == "blue_solid", f"accepted and no vehicle: expected blue solid, saw {blue.explain()}"


@pytest.mark.req("LED-01", "BOOT-01")
def test_a_vehicle_plugged_in_during_the_self_test_leaves_the_rainbow_on(ready):
    """The vehicle is plugged in as the unit starts its self-test: the rainbow goes on (LED-01: the
    self-test is not cut short by a vehicle), and once the unit is up the plug-in counts: green
    solid, plugged in and not charging (LED-06). Found as a surviving mutant (charger_ocpp.py, the
    power-up that did not mark the unit as booting): a unit that takes the pilot's events during
    its self-test, leaving the rainbow for white at the plug-in."""
    rig = ready
    rig.power_cycle()
    rig.clock.sleep(SELF_TEST_STARTED_S, "the self-test under way")
    rig.ev.plug_in()
    seen = rig.led.observe()
    assert seen.state == "rainbow", f"vehicle plugged in at power-on: expected the rainbow self-test, saw {seen.explain()}"
    rig.await_ready()
    green = rig.wait_for_led("green_solid", rig.limit("boot.accept_max_s"))
    assert green.state == "green_solid", f"up, with the vehicle plugged in during the self-test: saw {green.explain()}"

@pytest.mark.req("LED-05")
def test_ready_without_vehicle_is_blue_solid(ready):
    seen = ready.wait_for_led("blue_solid", 10.0)
    assert seen.state == "blue_solid", f"ready, no vehicle: expected blue solid, saw {seen.explain()}"


@pytest.mark.req("LED-06")
def test_vehicle_plugged_in_not_charging_is_green_solid(ready):
    rig = ready
    rig.ev.plug_in()
    rig.clock.sleep(1.0)
    seen = rig.wait_for_led("green_solid", 10.0)
    assert seen.state == "green_solid", f"plugged in, not charging: expected green solid, saw {seen.explain()}"


@pytest.mark.eol
@pytest.mark.req("LED-07")
def test_vehicle_charging_is_green_pulsing(charging):
    seen = charging.wait_for_led("green_pulsing", 10.0)
    assert seen.state == "green_pulsing", f"charging: expected green pulsing, saw {seen.explain()}"
