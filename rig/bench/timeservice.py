"""The calendar time the rig serves to the unit under test.

A charger decides peak hours and schedule windows by its own real-time clock, which it sets from
the central system's `currentTime` (BootNotification.conf, Heartbeat.conf; NTP with issue 6).
So the rig owns one time service: the clock's calendar time plus an offset a test may set, to put
the unit at "Monday 15:55 UK" without waiting for it. The offset moves the calendar only: the
clock (and every wait and measurement) runs on unchanged.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from rig.core.clock import Clock

UK = ZoneInfo("Europe/London")


class TimeService:
    """`now()` = clock.utc_now() + offset; `set(dt)` chooses the offset so that now() is `dt`."""

    def __init__(self, clock: Clock, zone: ZoneInfo = UK):
        self.clock = clock
        self.zone = zone
        self.offset = timedelta(0)

    def now(self) -> datetime:
        """The time served to the unit, tz-aware UTC."""
        return self.clock.utc_now() + self.offset

    def set(self, when: datetime) -> None:
        """From now on, time is served as if it were `when` (any tz-aware datetime) at this instant."""
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"time service needs a tz-aware datetime, got {when!r}")
        self.offset = when.astimezone(timezone.utc) - self.clock.utc_now()

    def reset(self) -> None:
        """Serve the clock's own calendar time again."""
        self.offset = timedelta(0)

    def local_now(self) -> datetime:
        """The served time in the unit's local zone (Europe/London: GMT in winter, BST in summer)."""
        return self.now().astimezone(self.zone)
