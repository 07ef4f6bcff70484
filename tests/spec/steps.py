"""Steps shared by spec tests: timing events seen by the pilot box's contact sense."""

from __future__ import annotations


def wait_output_live(rig, live: bool, timeout_s: float) -> float | None:
    """Clock time at which L1 at the vehicle connector became `live` (contact sense), or None."""
    return rig.clock.wait_until(lambda: rig.pilot.sense().l1 == live, timeout_s, poll=0.01)


def first_sense_edge(rig, pin: str, value: bool, after_s: float) -> float | None:
    """Time of the first recorded edge of sense `pin` to `value` at or after `after_s`."""
    for t, name, v in rig.pilot.sense_events():
        if name == pin and v == value and t >= after_s:
            return t
    return None
