"""Start-up and the status indicator (BOOT-01, LED-01, LED-02, LED-05, LED-06, LED-07)."""

from __future__ import annotations

import pytest

from rig.instruments.central_system import accept, delay


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
