"""The emulated charger's answers to what the central system asks (OCPP 1.6 section 5, the
operations the central system initiates): configuration, trigger, remote start and stop with
authorization, cache and local list, charging profiles (delegated to rig/sim/charger_smart.py),
unlock, availability, vendor data transfer, firmware update and reset. A mixin of
`EmulatedCharger` (rig/sim/charger.py) beside `ChargerOcpp` (rig/sim/charger_ocpp.py), which
sends what the unit itself initiates."""

from __future__ import annotations

from rig.sim import firmware_timing as T

#: OCPP 1.6 9.1 standard keys of type boolean this firmware lets the central system change
BOOLEAN_KEYS = ("AuthorizeRemoteTxRequests", "StopTransactionOnInvalidId")
#: ... and of type integer (whole non-negative numbers)
INTEGER_KEYS = ("MeterValueSampleInterval", "HeartbeatInterval", "TransactionMessageAttempts",
                "TransactionMessageRetryInterval")


def _valid_standard(key: str, value: str) -> bool:
    """OCPP 1.6 standard keys this firmware checks: intervals are whole non-negative seconds; the
    sampled measurands must be ones it can sample."""
    if key in INTEGER_KEYS:
        return value.isdigit()
    if key in BOOLEAN_KEYS:
        return value.lower() in ("true", "false")
    if key == "MeterValuesSampledData":
        from rig.sim.charger_metering import valid_sampled_data

        return valid_sampled_data(value)
    return True


class ChargerOperations:
    """Mixin: one `_ocpp_<Action>` handler per central-system operation the unit implements."""

    # ------------------------------------------------------------------ OCPP in
    def _on_ocpp_call(self, action: str, payload: dict) -> dict:
        from rig.sim.ocpp_client import CallErrorReply

        with self.plant.lock:
            if self.registration == "rejected":
                # OCPP 1.6 4.2: a rejected charge point does not act on central system messages;
                # the transport must answer something, so it is the least it can say
                return CallErrorReply("SecurityError", "not accepted by the central system")
            handler = getattr(self, f"_ocpp_{action}", None)
            if handler is None:
                return CallErrorReply("NotImplemented", f"{action} not supported")
            return handler(payload)

    def _ocpp_ChangeConfiguration(self, payload: dict) -> dict:
        key, value = payload["key"], payload["value"]
        if key in self.config.readonly:
            return {"status": "Rejected"}
        if key not in self.config.values:  # OCPP 1.6 5.3: a key it does not know is NotSupported
            return {"status": "Rejected" if self.defect == "config-unknown-key-rejected" else "NotSupported"}
        if not self.modes.validate(key, value) or not _valid_standard(key, value):
            return {"status": "Rejected"}
        self.modes.before_config_change(key, self.config.values[key], value)
        self.config.values[key] = value
        self._later(f"config:{key}", 0.0, self._reconsider_offer)
        heartbeat_key = key == "HeartbeatInterval" or self.defect == "any-key-restarts-heartbeat"  # (the bug)
        if heartbeat_key and self.registration == "accepted":
            self._restart_heartbeat()
        return {"status": "Accepted"}

    def _restart_heartbeat(self) -> None:
        """A new HeartbeatInterval counts from now (the defect keeps the one the boot gave)."""
        if self.defect == "heartbeat-interval-ignored":
            return
        interval = self._configured_heartbeat_s()
        if interval > 0:
            self._later("heartbeat", interval, self._heartbeat)
        else:
            self._cancel("heartbeat")

    def _ocpp_GetConfiguration(self, payload: dict) -> dict:
        wanted = payload.get("key") or list(self.config.values)
        known = [
            {"key": k, "readonly": k in self.config.readonly, "value": self.config.values[k]}
            for k in wanted
            if k in self.config.values
        ]
        unknown = [k for k in wanted if k not in self.config.values]
        reply: dict = {"configurationKey": known}
        if unknown and self.defect != "getconfig-drops-unknown":
            reply["unknownKey"] = unknown
        return reply

    def _ocpp_TriggerMessage(self, payload: dict) -> dict:
        what = payload["requestedMessage"]
        if what == "StatusNotification":
            self._later("trigger", 0.0, lambda: self._report_status(force=True))
        elif what == "Heartbeat":
            self._later("trigger", 0.0, self._send_heartbeat)
        elif what == "BootNotification":
            self._later("trigger", 0.0, self._send_boot_notification)
        elif self.defect == "trigger-accepts-unsupported":
            return {"status": "Accepted"}  # the bug: says yes to a message it cannot send, then sends nothing
        else:
            return {"status": "NotImplemented"}
        return {"status": "Accepted"}

    def _ocpp_RemoteStartTransaction(self, payload: dict) -> dict:
        # OCPP 1.6 5.11: the unit has one connector (1); without a connectorId it picks that one.
        # A connector it does not have, no vehicle, a fault, or a transaction already running: Rejected
        connector = payload.get("connectorId", 1)
        s = self.session
        if connector != 1 and self.defect != "remote-start-any-connector":
            return {"status": "Rejected"}
        faulted = self.fault is not None and self.defect != "remote-start-while-faulted"  # (the bug: Accepted)
        if s is None or faulted or (s.start_requested_sent and not s.stopped):
            return {"status": "Rejected"}
        profile = payload.get("chargingProfile")
        if profile is not None and not self.smart.remote_start_profile(profile):
            return {"status": "Rejected"}
        id_tag = payload["idTag"]
        authorize_first = self.config.values["AuthorizeRemoteTxRequests"].lower() == "true"
        authorize_first = authorize_first or self.defect == "remote-start-always-authorizes"
        if authorize_first and self.defect != "remote-start-skips-authorize":
            self._later("authorize", 0.0, lambda: self._authorize_then_start(s, id_tag))
        else:
            self._remote_start(s, id_tag)
        return {"status": "Accepted"}

    def _remote_start(self, session, id_tag: str) -> None:
        session.id_tag = id_tag
        session.start_requested = True
        self._later("reconsider", 0.0, self._reconsider_offer)

    def _authorize_then_start(self, session, id_tag: str) -> None:
        """AuthorizeRemoteTxRequests true (OCPP 1.6 9.1): a remote start is authorized like a local
        one: Authorize.req first, and only an Accepted idTag starts the transaction."""
        def answered(reply: dict) -> None:
            with self.plant.lock:
                status = (reply.get("idTagInfo") or {}).get("status")
                if status == "Accepted" and session is self.session and not session.stopped:
                    self._remote_start(session, id_tag)
                elif session is self.session:
                    self.smart.transaction_ended()  # a TxProfile sent with the start goes with it

        self._send("Authorize", {"idTag": id_tag}, answered)

    def _start_answered(self, session, answer: dict) -> bool:
        """StartTransaction.conf with an idTag status other than Accepted (OCPP 1.6 4.8, 9.1): with
        StopTransactionOnInvalidId true the transaction is stopped at once, reason DeAuthorized (True);
        false, it stays open and only the energy stops."""
        status = (answer.get("idTagInfo") or {}).get("status", "Accepted")
        ended = session is not self.session and self.defect != "late-invalid-stops-next"  # (the bug: any session)
        if status == "Accepted" or ended or self.defect == "invalid-id-charges-on":
            return False
        if self.config.values["StopTransactionOnInvalidId"].lower() != "true":
            session.deauthorized = self.defect != "invalid-id-false-charges-on"
            self._later("deauthorized", 0.0, self._reconsider_offer)
            return self.defect == "invalid-open-transaction-unsampled"  # (the bug: True ends the start's handling)
        self._stop_transaction("DeAuthorized")
        return True

    def _ocpp_ClearCache(self, payload: dict) -> dict:
        """Core (OCPP 1.6 5.4). The unit keeps no authorization cache (no local id reader: starts are
        Plug & Charge or remote, and a remote start is authorized online), so there is nothing it
        could clear: Rejected, and it reports no AuthorizationCacheEnabled key."""
        if self.defect == "clearcache-not-implemented":
            from rig.sim.ocpp_client import CallErrorReply

            return CallErrorReply("NotImplemented", "ClearCache not supported")  # the bug: a Core message missing
        return {"status": "Rejected"}

    def _ocpp_SendLocalList(self, payload: dict) -> dict:
        """Not claimed: only the known-bad unit has this handler answer (otherwise NotImplemented)."""
        from rig.sim.ocpp_client import CallErrorReply

        if self.defect == "local-list-accepted-unsupported":
            return {"status": "Accepted"}  # the bug: says yes, keeps nothing
        return CallErrorReply("NotImplemented", "SendLocalList not supported")

    def _ocpp_SetChargingProfile(self, payload: dict) -> dict:
        return self.smart.set_profile(payload)

    def _ocpp_ClearChargingProfile(self, payload: dict) -> dict:
        return self.smart.clear(payload)

    def _ocpp_GetCompositeSchedule(self, payload: dict) -> dict:
        return self.smart.composite_schedule(payload)

    def _ocpp_UnlockConnector(self, payload: dict) -> dict:
        # OCPP 1.6 5.18: a tethered cable has no lock the unit could release: NotSupported. On a
        # socket, a transaction in progress is stopped first (reason UnlockCommand): energy ends
        # before the socket lets the plug go
        if payload["connectorId"] != 1 or self.model["connector"] == "tethered":
            return {"status": "NotSupported"}
        s = self.session
        if s is None and self.defect == "unlock-idle-call-error":
            from rig.sim.ocpp_client import CallErrorReply

            return CallErrorReply("InternalError", "no session")  # the bug: nothing to stop taken for an error
        if s is not None and s.start_requested_sent and not s.stopped and self.defect != "unlock-while-charging":
            self._stop_transaction("UnlockCommand")
        return {"status": "Unlocked"}

    def _ocpp_RemoteStopTransaction(self, payload: dict) -> dict:
        s = self.session
        known = s is not None and (s.transaction_id == payload["transactionId"] or self.defect == "remote-stop-any-id")
        if known and s.stopped and self.defect != "remote-stop-ended-accepted":
            known = False  # ended: no longer a transaction the unit has (the vehicle may still be plugged in)
        if not known:  # OCPP 1.6 5.12: a transaction it does not have is Rejected
            return {"status": "Rejected"}
        self._later("remote-stop", 0.0, lambda: self._stop_transaction("Remote"))
        return {"status": "Accepted"}

    def _ocpp_ChangeAvailability(self, payload: dict) -> dict:
        if payload["connectorId"] not in (0, 1) and self.defect != "availability-any-connector":
            return {"status": "Rejected"}
        locked = payload["type"] == "Inoperative"
        s = self.session
        running = s is not None and s.start_requested_sent and not s.stopped
        if locked and running and self.profile["lock"]["during_transaction"] == "scheduled":
            self.lock_scheduled = True  # OCPP 1.6 5.2: after the transaction
            return {"status": "Scheduled"}
        self.lock_scheduled = False
        self._later("lock", 0.0, lambda: self._set_locked(locked))
        return {"status": "Accepted"}

    def _transaction_ended(self) -> None:
        """A transaction ended (or a session that never started one): what waited for it happens now."""
        self.smart.transaction_ended()
        if self.lock_scheduled:
            self.lock_scheduled = False
            self._later("lock", 0.0, lambda: self._set_locked(True))

    def _ocpp_DataTransfer(self, payload: dict) -> dict:
        k = self.ocpp_keys
        if payload["vendorId"] != k["vendor_id"]:
            return {"status": "UnknownVendorId"}
        message, data = payload.get("messageId"), payload.get("data")
        if message == k["datatransfer_skip_delay"]:
            self._later("skip-delay", 0.0, self.modes.skip_delay)
            return {"status": "Accepted"}
        if message == k["datatransfer_set_tariff"]:
            return {"status": "Accepted" if self.modes.set_tariff(data) else "Rejected"}
        if message == k["datatransfer_set_sense_target"]:
            return {"status": "Accepted" if self.modes.set_target(data) else "Rejected"}
        if message == k["datatransfer_get_sense_plan"]:
            return self.modes.plan_answer()
        return {"status": "UnknownMessageId"}

    def _ocpp_UpdateFirmware(self, payload: dict) -> dict:
        return self.firmware.request(payload)

    def _ocpp_Reset(self, payload: dict) -> dict:
        # OCPP 1.6 5.14: the transaction in progress is stopped first (reason SoftReset / HardReset),
        # then the unit restarts; the StopTransaction goes out before the power cycle (or, if it
        # cannot, in order after it, from the transaction queue)
        if self.defect != "reset-without-stop":
            self._stop_transaction("HardReset" if payload.get("type") == "Hard" else "SoftReset")
        self._later("reset", T.RESET_DELAY_S,
                    lambda: (self._power_off(), self._later("supply", 0.5, self._check_supply)))
        return {"status": "Accepted"}
