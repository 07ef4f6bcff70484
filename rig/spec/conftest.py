"""Shared steps of the spec suite: a ready unit, a vehicle charging, and event timing."""

from __future__ import annotations

import pytest

from rig.core.errors import ChargerFailure
from rig.spec.steps import wait_output_live


@pytest.fixture
def ready(rig):
    """A unit that has booted, registered with the central system and shows no vehicle."""
    rig.await_ready()
    return rig


@pytest.fixture
def charging(ready):
    """A vehicle plugged in, asking for power and drawing what the pilot offers."""
    rig = ready
    rig.ev.plug_in()
    rig.clock.sleep(1.0, "vehicle plugged in")
    rig.ev.request_power()
    closed_at = wait_output_live(rig, True, rig.limit("cp.contactor_close_max_s") + 1.0)
    if closed_at is None:
        raise ChargerFailure("contactor did not close after the vehicle asked for power (state C)")
    rig.ev.follow_pwm()
    rig.clock.sleep(1.0, "charging settles")
    return rig
