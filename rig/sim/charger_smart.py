"""The emulated charger's OCPP 1.6 Smart Charging profile (sections 3.13, 5.5, 5.7, 5.16): the
installed charging profiles, their stacking into one composite limit, and the answers to
SetChargingProfile, ClearChargingProfile and GetCompositeSchedule.

Written by hand: the `ocpp` package carries the messages, not a charge point's profile
arithmetic, and no library evaluates OCPP charging schedules. The rules implemented are the
specification's: per purpose the valid profile with the highest stackLevel wins; a TxProfile
(the running transaction's) replaces the TxDefaultProfile; the ChargePointMaxProfile caps the
result; a period runs from its startPeriod to the next one; Relative schedules start with the
transaction, Recurring ones repeat daily or weekly from startSchedule; validFrom/validTo bound a
profile. Limits are in amperes (ChargingScheduleAllowedChargingRateUnit = Current)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from rig.sim.charger_ocpp import iso
from rig.sim.charging_modes import parse_utc

if TYPE_CHECKING:  # annotations only: the charger owns this object
    from rig.sim.charger import EmulatedCharger

MAX_STACK_LEVEL = 8  # ChargeProfileMaxStackLevel
MAX_PERIODS = 24  # ChargingScheduleMaxPeriods
MAX_INSTALLED = 8  # MaxChargingProfilesInstalled
RECURRENCE = {"Daily": timedelta(days=1), "Weekly": timedelta(days=7)}
LATE_PERIOD_S = 30.0  # the defect smart-period-late: a new period takes effect this much late

#: read-only Smart Charging keys the unit reports (OCPP 1.6 9.4)
SMART_KEYS = {
    "ChargeProfileMaxStackLevel": str(MAX_STACK_LEVEL),
    "ChargingScheduleAllowedChargingRateUnit": "Current",
    "ChargingScheduleMaxPeriods": str(MAX_PERIODS),
    "MaxChargingProfilesInstalled": str(MAX_INSTALLED),
}


@dataclass
class Installed:
    connector: int
    profile: dict  # csChargingProfiles as received

    @property
    def id(self) -> int:
        return self.profile["chargingProfileId"]

    @property
    def purpose(self) -> str:
        return self.profile["chargingProfilePurpose"]

    @property
    def stack(self) -> int:
        return self.profile["stackLevel"]


class SmartCharging:
    def __init__(self, charger: "EmulatedCharger"):
        self.c = charger
        self.installed: list[Installed] = []
        self.tx_started: datetime | None = None  # a Relative schedule counts from here

    # ------------------------------------------------------------------ requests
    def set_profile(self, payload: dict) -> dict:
        connector, profile = payload["connectorId"], payload["csChargingProfiles"]
        if not self._acceptable(connector, profile):
            return {"status": "Rejected"}
        self._install(connector, profile)
        return {"status": "Accepted"}

    def remote_start_profile(self, profile: dict) -> bool:
        """RemoteStartTransaction.chargingProfile: only a TxProfile, installed for the coming transaction."""
        if profile.get("chargingProfilePurpose") != "TxProfile" or not self._schedule_ok(profile):
            # the known-bad unit starts anyway, ignoring the profile it could not take
            return self.c.defect == "remote-start-ignores-bad-profile"
        self._install(1, profile)
        return True

    def clear(self, payload: dict) -> dict:
        def matches(p: Installed) -> bool:
            if "id" in payload:
                return p.id == payload["id"]
            return (payload.get("connectorId") in (None, p.connector)
                    and payload.get("chargingProfilePurpose") in (None, p.purpose)
                    and payload.get("stackLevel") in (None, p.stack))

        kept = [p for p in self.installed if not matches(p)]
        if len(kept) == len(self.installed):
            return {"status": "Unknown"}
        self.installed = kept
        self._changed()
        return {"status": "Accepted"}

    def composite_schedule(self, payload: dict) -> dict:
        unknown = payload["connectorId"] not in (0, 1) and self.c.defect != "composite-any-connector"  # (the bug)
        if unknown or payload.get("chargingRateUnit", "A") != "A":
            return {"status": "Rejected"}
        start, duration = self.c.rtc_now().replace(microsecond=0), int(payload["duration"])
        instants = sorted({start, *[t for t in self._edges(start, start + timedelta(seconds=duration))]})
        periods: list[dict] = []
        for t in instants:
            limit = self.limit_at(t, connector=payload["connectorId"])
            limit = self.c.model["rated_current_a"] if limit is None else limit
            if not periods or (periods[-1]["limit"] != limit and self.c.defect != "composite-now-only"):
                periods.append({"startPeriod": int((t - start).total_seconds()), "limit": limit})
        return {"status": "Accepted", "connectorId": payload["connectorId"], "scheduleStart": iso(start),
                "chargingSchedule": {"duration": duration, "chargingRateUnit": "A",
                                     "chargingSchedulePeriod": periods}}

    # ------------------------------------------------------------------ transactions
    def transaction_started(self) -> None:
        self.tx_started = self.c.rtc_now()
        self._changed()

    def transaction_ended(self) -> None:
        """A TxProfile belongs to its transaction (OCPP 1.6 3.13.1): it ends with it."""
        self.tx_started = None
        if self.c.defect != "txprofile-outlives-transaction":
            self.installed = [p for p in self.installed if p.purpose != "TxProfile"]
        self._changed()

    # ------------------------------------------------------------------ the composite limit
    def limit_a(self) -> float | None:
        """The composite limit now on connector 1 (None: no profile limits the offer)."""
        return self.limit_at(self.c.rtc_now())

    def limit_at(self, when: datetime, connector: int = 1) -> float | None:
        cap = self._winner("ChargePointMaxProfile", when, connector)
        tx = self._winner("TxProfile", when, connector)  # only while its transaction is coming or running
        if tx is None:
            tx = self._winner("TxDefaultProfile", when, connector)
        if self.c.defect == "smart-max-profile-ignored" and tx is not None:
            cap = None  # the bug: the site's cap only counts where no transaction profile is set
        limits = [x for x in (cap, tx) if x is not None]
        return min(limits) if limits else None

    def arm_next_change(self) -> None:
        """Re-evaluate the offer at the next period boundary or validity edge."""
        now = self.c.rtc_now()
        upcoming = [t for t in self._edges(now, now + timedelta(days=8)) if t > now]
        if not upcoming:
            self.c._cancel("smart-period")
            return
        delay = (min(upcoming) - now).total_seconds()
        if self.c.defect == "smart-period-late":
            delay += LATE_PERIOD_S
        self.c._later("smart-period", delay, self.c._reconsider_offer)

    # ------------------------------------------------------------------ rules
    def _acceptable(self, connector: int, profile: dict) -> bool:
        purpose = profile["chargingProfilePurpose"]
        if connector not in (0, 1) or not self._schedule_ok(profile):
            return False
        if purpose == "ChargePointMaxProfile":
            return connector == 0  # OCPP 1.6 5.16: only on connector 0
        if purpose == "TxProfile":  # only for the transaction running on that connector
            s = self.c.session
            running = s is not None and s.transaction_id is not None and not s.stopped
            running = running or self.c.defect == "txprofile-without-transaction"
            return connector == 1 and running and profile.get("transactionId") in (None, s.transaction_id)
        return True

    @staticmethod
    def _schedule_ok(profile: dict) -> bool:
        schedule = profile["chargingSchedule"]
        starts = [p["startPeriod"] for p in schedule["chargingSchedulePeriod"]]
        return (schedule["chargingRateUnit"] == "A" and 0 <= profile["stackLevel"] <= MAX_STACK_LEVEL
                and 0 < len(starts) <= MAX_PERIODS and starts[0] == 0 and starts == sorted(set(starts))
                and (profile["chargingProfileKind"] != "Recurring" or profile.get("recurrencyKind") in RECURRENCE))

    def _install(self, connector: int, profile: dict) -> None:
        profile = dict(profile)
        if self.c.defect == "schedule-last-period-dropped":  # the bug: a buffer one period short of the figure
            schedule = profile["chargingSchedule"]
            periods = schedule["chargingSchedulePeriod"][:MAX_PERIODS - 1]
            profile["chargingSchedule"] = {**schedule, "chargingSchedulePeriod": periods}
        if profile["chargingProfileKind"] != "Relative" and "startSchedule" not in profile["chargingSchedule"]:
            # an Absolute or Recurring schedule without a start starts now
            profile["chargingSchedule"] = {**profile["chargingSchedule"], "startSchedule": iso(self.c.rtc_now())}
        # OCPP 1.6 5.16: the same id, or the same stackLevel and purpose on the connector, is replaced
        self.installed = [p for p in self.installed if not (
            p.id == profile["chargingProfileId"]
            or (p.connector == connector and p.purpose == profile["chargingProfilePurpose"]
                and p.stack == profile["stackLevel"] and self.c.defect != "smart-same-stack-added"))]
        self.installed.append(Installed(connector, profile))
        kept = MAX_INSTALLED - 1 if self.c.defect == "profiles-installed-one-short" else MAX_INSTALLED  # (the bug)
        self.installed = self.installed[-kept:]
        self._changed()

    def _changed(self) -> None:
        self.c._later("smart", 0.0, self.c._reconsider_offer)

    def _winner(self, purpose: str, when: datetime, connector: int) -> float | None:
        candidates = [(p.stack, p.connector, limit) for p in self.installed
                      if p.purpose == purpose and p.connector in (0, connector)
                      for limit in [self._profile_limit(p, when)] if limit is not None]
        if not candidates:
            return None
        if self.c.defect == "smart-lowest-stack-wins":
            return min(candidates)[2]
        return max(candidates)[2]  # highest stackLevel; on a tie, the connector's own over connector 0's

    def _profile_limit(self, p: Installed, when: datetime) -> float | None:
        prof, schedule = p.profile, p.profile["chargingSchedule"]
        if not self._valid(prof, when):
            return None
        start = self._schedule_start(prof, when)
        if start is None or when < start:
            return None
        offset = (when - start).total_seconds()
        if schedule.get("duration") is not None and offset >= schedule["duration"]:
            return None
        limit = None
        for period in schedule["chargingSchedulePeriod"]:
            if period["startPeriod"] <= offset:
                limit = float(period["limit"])
        return limit

    def _every(self, prof: dict) -> timedelta:
        kind = "Daily" if self.c.defect == "weekly-recurs-daily" else prof["recurrencyKind"]  # (the bug)
        return RECURRENCE[kind]

    def _valid(self, prof: dict, when: datetime) -> bool:
        early = "validFrom" in prof and when < parse_utc(prof["validFrom"])
        if early and self.c.defect != "smart-valid-from-ignored":  # (the bug: limits before its validFrom)
            return False
        expired = "validTo" in prof and when >= parse_utc(prof["validTo"])
        return not expired or self.c.defect == "smart-expired-applied"

    def _schedule_start(self, prof: dict, when: datetime) -> datetime | None:
        schedule, kind = prof["chargingSchedule"], prof["chargingProfileKind"]
        if kind == "Relative":  # from the transaction's start; one still to start starts now
            return when if self.c.defect == "relative-from-now" else self.tx_started or when
        first = parse_utc(schedule["startSchedule"]) if "startSchedule" in schedule else None
        if kind == "Recurring" and first is not None and when >= first:
            every = self._every(prof)
            return first + every * ((when - first) // every)
        return first

    def _edges(self, begin: datetime, end: datetime) -> list[datetime]:
        """Every instant in [begin, end) at which some installed profile may change its limit."""
        out: list[datetime] = []
        for p in self.installed:
            prof, schedule = p.profile, p.profile["chargingSchedule"]
            for key in ("validFrom", "validTo"):
                if key in prof:
                    out.append(parse_utc(prof[key]))
            starts = self._starts_between(prof, begin, end)
            for start in starts:
                out += [start + timedelta(seconds=q["startPeriod"]) for q in schedule["chargingSchedulePeriod"]]
                if schedule.get("duration") is not None:
                    out.append(start + timedelta(seconds=schedule["duration"]))
        return [t for t in out if begin <= t < end]

    def _starts_between(self, prof: dict, begin: datetime, end: datetime) -> list[datetime]:
        first = self._schedule_start(prof, begin)
        if first is None:
            first = self._schedule_start(prof, end)
        if first is None:
            return []
        if prof["chargingProfileKind"] != "Recurring":
            return [first]
        every = self._every(prof)
        starts, t = [], first
        while t < end:
            starts.append(t)
            t += every
        return starts
