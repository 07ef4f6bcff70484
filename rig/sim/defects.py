"""Known-bad units: firmware defects the emulated charger can be started with.

A factory validates its test station with limit samples; this is ours. Each defect breaks
exactly one behaviour, the way a real firmware bug would, and the spec suite must fail on
every one of them (tests/harness/test_defects_caught.py proves it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Defect:
    name: str
    description: str  # one line: what the firmware gets wrong
    requirements: tuple[str, ...]  # requirement IDs whose tests must catch it
    model: str = "PS7"  # a model on which the defect can show (PP defects need a socket variant)


CATALOGUE: dict[str, Defect] = {
    d.name: d
    for d in [
        Defect("duty-offset", "PWM duty 3 % points above the offered current's duty", ("CP-06", "CP-02")),
        Defect("slow-open-c-to-b", "contactor opens 250 ms after the vehicle goes from C to B", ("CP-04",)),
        Defect("pause-restarts-on-update", "the wait before opening under load after the PWM stops starts again at "
               "every re-evaluation: a limit repeated every 2 s keeps the contactor closed", ("MODE-09",)),
        Defect("wrong-led-charging", "shows green solid instead of green pulsing while charging", ("LED-07",)),
        Defect("vehicle-seen-during-self-test", "takes the pilot's events during its start-up self-test: a vehicle "
               "plugged in at power-on cuts the rainbow short", ("LED-01", "BOOT-01")),
        Defect("stuck-white", "never leaves white solid after the BootNotification is accepted", ("BOOT-01", "LED-05")),
        Defect("ignores-current-limit", "offers its 32 A rating and ignores the configured current limit", ("CP-06", "MTR-03")),
        Defect("early-close", "closes the contactor in state B, before the vehicle asks for power", ("CP-03", "MTR-02")),
        Defect("close-after-bounce", "a close armed by state C is not checked against the state when it fires: "
               "after a pilot contact bounce (C, A, B) it closes in B", ("CP-03",)),
        Defect("pwm-on-unplug", "keeps PWM running for 2 s after the vehicle is unplugged", ("CP-05",)),
        Defect("no-preparing-status", "reports Available instead of Preparing when a vehicle is plugged in", ("OCPP-01",)),
        Defect("available-before-finishing", "at unplug reports Available, then Finishing, then Available", ("OCPP-01",)),
        # safety functions (issue 3)
        Defect("rcd-slow-60ma", "the DC detector takes 0.5 s to trip at 60 mA", ("RCD-02",)),
        Defect("rcd-threshold-8ma", "the DC detector does not trip below 8 mA", ("RCD-01", "RCD-05")),
        Defect("rcd-blind-after-power-up", "the DC detector looks only when the residual current changes: one "
               "that flowed through a power loss is not seen after power-up, and the unit charges", ("RCD-06",)),
        Defect("rcd-unplug-clears-persisting", "unplugging acknowledges a residual-current trip even while the residual "
               "current persists: the next vehicle charges with it flowing", ("RCD-06",)),
        Defect("rcd-ack-only-at-unplug", "looks for the residual current only at the unplug event: unplugged while "
               "it flowed, the trip holds after it stops until the unit is power-cycled", ("RCD-06",)),
        Defect("pen-delay-from-any-change", "starts its PEN trip delay at any supply change, also one inside the "
               "window: an excursion shortly after a step trips before the ride-through time", ("PEN-02",)),
        Defect("pen-slow-trip", "PEN protection opens 6 s after the voltage leaves the window", ("PEN-01",)),
        Defect("pen-window-wide", "PEN window 206-254 V instead of 207-253 V (a threshold 1 V off)", ("PEN-01",)),
        Defect("pen-no-ride-through", "PEN protection trips on a 3 s excursion (2.5 s delay)", ("PEN-02",)),
        Defect("pen-export-opens-earth", "the -E export variant opens protective earth on a PEN trip like the "
               "other models", ("PEN-07",), model="PS22-E"),
        Defect("pen-earth-stays-closed", "a PEN trip opens line and neutral but leaves protective earth closed", ("PEN-01",)),
        Defect("pen-eleventh-resume", "resumes an eleventh time before locking out", ("PEN-05",)),
        Defect("pen-recloses-out-of-range", "recloses 30 s after a PEN trip although the voltage is still out of range", ("PEN-03",)),
        Defect("pen-reset-from-trip", "counts the 30 s PEN reset from the trip, not from the return of normal supply", ("PEN-04",)),
        Defect("diode-ignored", "closes the contactor with the vehicle diode shorted", ("CP-08",)),
        Defect("pp-rating-ignored", "offers its own limit regardless of the cable rating coded on PP", ("PP-01",), model="PS7-S"),
        # charging modes, lock, offline, boot, firmware (issue 4)
        Defect("delay-capped-300", "UK Smart random delay drawn over 0-300 s instead of 0-600 s", ("MODE-01",)),
        Defect("delay-default-1800", "UK Smart random delay maximum defaults to 1800 s instead of 600 s", ("MODE-01", "MODE-02")),
        Defect("delay-fractional", "UK Smart random delay not in whole seconds (uniform over the real interval)", ("MODE-01",)),
        Defect("delay-coarse-10s", "UK Smart random delay drawn on a 10 s grid (0, 10, ... 600 s)", ("MODE-01",)),
        Defect("delay-plug-in-only", "UK Smart random delay only at plug-in: none at a peak end, a peak start or a rate change", ("MODE-01",)),
        Defect("any-key-is-a-rate-change", "while charging in UK Smart, a change of any key is taken for a MaxCurrentA "
               "change: that key's old value is held as the rate until a fresh random delay has run", ("MODE-01", "CP-06")),
        Defect("delay-override-ignored", "SkipRandomDelay answered Accepted but the delay runs on", ("MODE-02",)),
        Defect("charges-in-evening-peak", "UK Smart honours the morning peak but starts charging in the 16:00-22:00 peak", ("MODE-03",)),
        Defect("peak-ends-at-midnight", "an owner's peak hours across midnight (23:00-01:00) end at midnight: charging starts at 00:00", ("MODE-03",)),
        Defect("peak-hours-in-utc", "UK Smart evaluates peak hours in UTC: an hour off while the UK is on BST", ("MODE-03",)),
        Defect("schedule-early-start", "Scheduled mode delivers energy 60 s before a window opens", ("MODE-05",)),
        Defect("schedule-no-blue-pulse", "shows green solid instead of blue pulsing while waiting for a schedule window", ("LED-09",)),
        Defect("no-green-circle", "shows green solid instead of the green circle while waiting on the random delay", ("LED-08",)),
        Defect("sense-ignores-ready-by", "Sense picks the cheapest slots even after the ready-by time", ("MODE-06",)),
        Defect("sense-plans-without-power", "Sense plans on at least 6 A when the limits leave less (a site "
               "limit of 0 A): a feasible plan with costs for energy it cannot deliver", ("MODE-06",)),
        Defect("sense-whole-kwh-slots", "Sense keeps a slot's energy in whole kWh: at the lowest offer on a "
               "single-phase unit (0.69 kWh a slot) it plans nothing and never charges", ("MODE-06",)),
        Defect("sense-replan-forgets-delivered", "Sense, planning anew mid-session (new tariff data), plans the whole "
               "target again: the energy already delivered is charged twice", ("MODE-06",)),
        Defect("sense-no-tariff-waits", "Sense without tariff data waits for it instead of charging: the ready-by "
               "time is missed", ("MODE-07",)),
        Defect("sense-short-fills-after-ready-by", "Sense, when the slots before ready-by are too few, tops the plan "
               "up with the cheapest slots after it", ("MODE-06",)),
        Defect("sense-spare-slot-when-exact", "Sense plans one slot more than needed when the energy is an exact "
               "number of slots (the slot count rounded up with a margin)", ("MODE-06",)),
        Defect("sense-plans-begun-slot", "Sense counts the half-hour slot already under way as a whole slot it can "
               "still charge in", ("MODE-06",)),
        Defect("manual-starts-on-plug-in", "Manual mode charges on plug-in without a remote start", ("MODE-08",)),
        Defect("locked-delivers-energy", "a locked unit (orange) still charges a plugged-in vehicle", ("LOCK-01",)),
        Defect("locked-no-pulse", "a locked unit shows orange solid instead of orange pulsing with a vehicle plugged in", ("LED-11",)),
        Defect("offline-no-charge", "Plug & Charge refuses to charge while the central system is unreachable", ("OFF-01",)),
        Defect("offline-white-solid", "shows white solid instead of white pulsing while the central system is unreachable", ("LED-03",)),
        # OCPP 1.6J conformance (issue 16)
        Defect("config-unknown-key-rejected", "answers ChangeConfiguration of a key it does not know with Rejected, "
               "not NotSupported", ("OCPP-03",)),
        Defect("getconfig-drops-unknown", "leaves the keys it does not know out of GetConfiguration.conf (no "
               "unknownKey)", ("OCPP-04",)),
        Defect("heartbeat-floor-10s", "accepts HeartbeatInterval 1 but beats every 10 s (a floor of its own under "
               "any configured interval)", ("OCPP-05",)),
        Defect("any-key-restarts-heartbeat", "restarts its heartbeat timer on every ChangeConfiguration: a change of "
               "another key delays the next heartbeat past HeartbeatInterval", ("OCPP-05",)),
        Defect("heartbeat-interval-ignored", "keeps the heartbeat interval of its BootNotification.conf after "
               "HeartbeatInterval is changed", ("OCPP-05",)),
        Defect("trigger-accepts-unsupported", "answers TriggerMessage for MeterValues (which it cannot trigger) "
               "Accepted and sends nothing", ("OCPP-06",)),
        Defect("reset-without-stop", "restarts on Reset.req without stopping the transaction in progress (no "
               "StopTransaction SoftReset/HardReset)", ("OCPP-07",)),
        Defect("unplug-stop-reason-local", "stops the transaction at unplug with reason Local, not EVDisconnected",
               ("OCPP-08",)),
        Defect("remote-stop-any-id", "accepts RemoteStopTransaction for a transaction id it does not have and "
               "stops its own", ("OCPP-09",)),
        Defect("remote-stop-ended-accepted", "answers RemoteStopTransaction Accepted for a transaction it has already "
               "stopped (the vehicle still plugged in)", ("OCPP-09",)),
        Defect("metervalues-zero-means-60s", "sends sampled MeterValues every 60 s when MeterValueSampleInterval "
               "is 0 (which means: none)", ("OCPP-10",)),
        Defect("remote-start-any-connector", "accepts RemoteStartTransaction for connector 2 (it has one) and "
               "starts on connector 1", ("OCPP-11",)),
        Defect("tx-stuck-after-lost-connection", "a transaction message on its way when the connection drops stays "
               "marked in flight: it and every later one are never sent", ("OCPP-20",)),
        Defect("tx-sent-before-accepted", "sends the transaction messages it kept through a power loss as soon as "
               "it is connected, before its BootNotification is answered: while Pending too", ("BOOT-02",)),
        Defect("remote-start-while-faulted", "answers RemoteStartTransaction Accepted while faulted (a vehicle with "
               "a shorted diode plugged in): a start it cannot make", ("OCPP-11",)),
        Defect("remote-start-skips-authorize", "with AuthorizeRemoteTxRequests true starts a remote transaction "
               "without Authorize.req, so an invalid idTag charges", ("OCPP-11",)),
        Defect("remote-start-always-authorizes", "sends Authorize.req before every remote start, also with "
               "AuthorizeRemoteTxRequests false", ("OCPP-11",)),
        Defect("invalid-id-charges-on", "keeps charging when StartTransaction.conf says the idTag is Invalid "
               "(StopTransactionOnInvalidId true)", ("OCPP-12",)),
        Defect("invalid-id-false-charges-on", "an idTag refused at start with StopTransactionOnInvalidId false: "
               "the transaction stays open (right) and energy keeps flowing (OCPP 1.6 4.8: only energy stops)",
               ("OCPP-12",)),
        Defect("unlock-idle-call-error", "answers UnlockConnector with no vehicle plugged in with a CallError "
               "(InternalError) instead of an UnlockConnector.conf", ("OCPP-13",), model="PS22-S"),
        Defect("sense-slot-end-missed", "times its Sense re-evaluation at slot starts only: past a chosen slot "
               "whose successor is not adjacent, energy runs on until its next look at the energy", ("MODE-06",)),
        Defect("composite-any-connector", "answers GetCompositeSchedule for connector 2 (it has one) with "
               "connector 1's schedule instead of Rejected", ("OCPP-15",)),
        Defect("smart-valid-from-ignored", "applies a charging profile before its validFrom", ("OCPP-16",)),
        Defect("weekly-recurs-daily", "repeats a Weekly recurring profile every day", ("OCPP-16",)),
        Defect("schedule-last-period-dropped", "reports ChargingScheduleMaxPeriods 24 and Accepts a schedule of 24 "
               "periods, but keeps only the first 23: the last period never applies", ("OCPP-14",)),
        Defect("profiles-installed-one-short", "reports MaxChargingProfilesInstalled 8 and Accepts an eighth profile, "
               "but keeps only 7: the oldest is dropped without a word", ("OCPP-15",)),
        Defect("power-loss-transaction-left-open", "a transaction interrupted by a loss of supply is never stopped: "
               "no StopTransaction (reason PowerLoss) after power-up, the transaction stays open at the central "
               "system", ("OCPP-02",)),
        Defect("invalid-open-transaction-unsampled", "with StopTransactionOnInvalidId false, the transaction of a "
               "refused idTag stays open but is never sent sampled MeterValues", ("OCPP-10",)),
        Defect("current-limit-any-number", "accepts any number as MaxCurrentA or SiteLimitA, -1 and NaN too, and "
               "then offers its rating: a limit it cannot read is no limit", ("CP-06",)),
        Defect("close-without-offer", "closes the contactor on the vehicle's request even when the offer was "
               "withdrawn while the close was pending (site limit 0 A just after state C), and never opens it",
               ("CP-07",)),
        Defect("resume-new-transaction", "sends a new StartTransaction each time a paused session resumes (site "
               "limit back from 0 A): one session billed as several, the first never stopped", ("OCPP-02",)),
        Defect("offline-transaction-unsampled", "a transaction started while the central system was away is never "
               "sent sampled MeterValues, also after the unit is back online and the transaction has its id",
               ("OCPP-10",)),
        Defect("ended-transaction-sampled", "a transaction that ended before its StartTransaction was answered "
               "(socket unlocked, vehicle still plugged in) is sent sampled MeterValues every interval once the "
               "answer comes", ("OCPP-10",), model="PS7-S"),
        Defect("unlock-while-charging", "answers UnlockConnector Unlocked while the transaction runs on: the "
               "socket is released under load", ("OCPP-13",), model="PS7-S"),
        Defect("smart-period-late", "applies each charging-schedule period 30 s after it begins", ("OCPP-14",)),
        Defect("relative-from-now", "a Relative charging profile counts from each moment the unit looks, not from "
               "the session's start: it never leaves its first period", ("OCPP-14",)),
        Defect("composite-now-only", "GetCompositeSchedule reports the limit in force now as one period for the "
               "whole duration, not the coming changes", ("OCPP-15",)),
        Defect("smart-same-stack-added", "a charging profile with the stackLevel and purpose of an installed one is "
               "added beside it instead of replacing it (the higher limit of the two applies)", ("OCPP-15",)),
        Defect("txprofile-without-transaction", "accepts a TxProfile when no transaction is running (after one "
               "ended, or with no vehicle)", ("OCPP-17",)),
        Defect("smart-max-profile-ignored", "ignores the ChargePointMaxProfile whenever a TxDefaultProfile or "
               "TxProfile is set", ("OCPP-15",)),
        Defect("smart-lowest-stack-wins", "of two profiles of one purpose applies the lower stackLevel", ("OCPP-15",)),
        Defect("smart-expired-applied", "keeps applying a charging profile after its validTo", ("OCPP-16",)),
        Defect("remote-start-ignores-bad-profile", "accepts a RemoteStartTransaction whose chargingProfile is not a TxProfile and charges without the limit", ("OCPP-17",)),
        Defect("txprofile-outlives-transaction", "keeps a TxProfile after its transaction ends: the next session is "
               "still limited by it", ("OCPP-17",)),
        Defect("tx-message-dropped-on-error", "discards a StopTransaction the central system answered with a "
               "CallError instead of retrying it (the transaction's energy never reaches billing)", ("OCPP-18",)),
        Defect("tx-message-retried-for-ever", "retries a transaction message the central system keeps failing "
               "beyond TransactionMessageAttempts, for ever", ("OCPP-18",)),
        Defect("late-invalid-stops-next", "a StartTransaction.conf Invalid that arrives after its session ended "
               "stops the session charging now", ("OCPP-12",)),
        Defect("tx-queue-resends-head", "does not wait for the answer to the transaction message in flight: a message "
               "queued behind it sends the unanswered one again", ("OCPP-20",)),
        Defect("fw-status-skips-downloaded", "goes from Downloading straight to Installing: no "
               "FirmwareStatusNotification Downloaded", ("OCPP-19",)),
        Defect("offline-queue-keeps-last", "keeps only the latest session's transaction messages while offline: "
               "an earlier offline session never reaches the central system", ("OCPP-20",)),
        Defect("sampled-data-ignored", "accepts MeterValuesSampledData but always samples the energy register only",
               ("OCPP-21",)),
        Defect("availability-any-connector", "accepts ChangeAvailability for connector 2 (it has one) and changes "
               "the whole unit", ("OCPP-22",)),
        Defect("availability-operative-interrupts", "ChangeAvailability Operative to a charging unit that is already "
               "operative stops the energy (every request handled as a connector reset)", ("OCPP-22",)),
        Defect("local-list-accepted-unsupported", "answers SendLocalList Accepted although it has no local "
               "authorization list (the profile it does not claim)", ("OCPP-23",)),
        Defect("phase-rotation-without-connector", "reports ConnectorPhaseRotation as 'RST' (or 'R') without the "
               "connector id OCPP's format requires", ("OCPP-04",)),
        Defect("clearcache-not-implemented", "answers ClearCache, a Core message, with CallError NotImplemented",
               ("OCPP-24",)),
        Defect("pending-sends-status", "sends StatusNotification while its BootNotification is Pending", ("BOOT-02",)),
        Defect("purple-stuck", "purple never clears after a firmware update and charging never resumes", ("FW-01", "LED-04")),
        Defect("meterstop-missing-energy", "StopTransaction.meterStop repeats meterStart (the energy is lost)", ("OCPP-02",)),
        Defect("power-measured-every-10s", "measures its power every 10 s: MeterValues every second repeat a "
               "stale power for up to 10 s after a change", ("MTR-05",)),
        Defect("energy-reads-5pct-low", "its own energy meter reads 5 % low: within the regulation's 10 %, outside the 1 % target", ("MTR-04",)),
        # network (issue 6)
        Defect("resolver-skips-dhcp", "asks 1.1.1.1 first, never the DNS servers DHCP gave it", ("NET-02",)),
        Defect("dhcp-lease-time-ignored", "takes every DHCP lease for a day whatever the server gave: a short lease "
               "expires long before the unit renews it (RFC 2131 4.4.5)", ("NET-01",)),
        Defect("dhcp-nak-taken", "takes a DHCPNAK for an ACK (RFC 2131 3.1: start again with DISCOVER) and goes on "
               "without an address", ("NET-01",)),
        Defect("dhcp-xid-unchecked", "takes DHCP replies to any transaction (RFC 2131 4.4.1: only its own xid): a reply "
               "meant for another client on the segment gives it that client's address", ("NET-01",)),
        Defect("dns-third-dhcp-server", "asks a third DNS server DHCP names before 1.1.1.1: the document has two "
               "DHCP places, then Cloudflare", ("NET-02",)),
        Defect("dns-id-unchecked", "takes any DNS response, also one whose ID is not its query's (RFC 5452 9.1: "
               "discard): a late or forged answer sends it to an address nothing serves", ("NET-02",)),
        Defect("dns-no-address-final", "a DNS server that knows the name but has no address for it ends the "
               "lookup: the unit never asks the next server and never connects", ("NET-02",)),
        Defect("ntp-wrong-server", "takes its time from a hard-coded NTP server, not pool.ntp.org", ("NET-01", "NET-03")),
        Defect("ntp-origin-unchecked", "takes any NTP server reply, also one whose originate timestamp is not its "
               "request's (RFC 5905: discard): a stray or forged reply sets its clock", ("NET-03",)),
        Defect("ntp-required", "asks pool.ntp.org until it answers before connecting: with UDP 123 blocked the "
               "unit never registers although its clock is right", ("NET-03",)),
        Defect("debug-port-listening", "leaves a debug console listening on TCP 2323", ("NET-01",)),
        Defect("tls-no-verify", "does not verify the central system's TLS certificate", ("SEC-01",)),
        Defect("unsigned-firmware-installed", "installs a firmware image whose signature does not verify", ("FW-02",)),
        Defect("chatty-heartbeat", "sends a 6 kB diagnostic heartbeat (DataTransfer) every minute, whatever the interval", ("NET-04",)),
        Defect("default-password", "connects with the shared default password 'plugstream' instead of its own", ("SEC-02",)),
    ]
}


def lookup(name: str | None) -> Defect | None:
    """The named defect, or None for a good unit; an unknown name lists the catalogue."""
    if name in (None, "", "none"):
        return None
    try:
        return CATALOGUE[name]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise ValueError(f"unknown --sim-defect {name!r}; known defects: {known}") from None
