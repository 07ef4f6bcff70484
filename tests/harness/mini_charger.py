"""`MiniCharger`: a few lines of charge-point behaviour on top of the emulated charger's real OCPP
client, enough to drive the rig's central system in its tests (test_central_system*.py)."""

from __future__ import annotations

from rig.core.aio import LoopThread
from rig.sim.ocpp_client import CallErrorReply, OcppClient

BOOT = {"chargePointVendor": "PlugStream", "chargePointModel": "PlugStream 7", "chargePointSerialNumber": "SIM-0001"}


def status(state: str, connector: int = 1) -> dict:
    return {"connectorId": connector, "status": state, "errorCode": "NoError"}


class MiniCharger:
    """Just enough charge point on top of OcppClient to drive the central system.

    Every event is logged with the clock time at which the charger saw it.
    `auto=True` behaves like a charger: boots on connect and, on a virtual clock, retries after
    a Pending/Rejected interval, then heartbeats at the interval it was given.
    """

    def __init__(self, clock, loop: LoopThread, url: str, cp_id: str = "CP1", auto: bool = True):
        self.clock = clock
        self.auto = auto
        self.log: list[tuple] = []
        self.calls: list[tuple[str, dict]] = []
        self.answers: dict[str, dict | CallErrorReply] = {"ChangeConfiguration": {"status": "Accepted"}}
        self.client = OcppClient(clock, loop, url, cp_id, self.on_call, self.on_connected, self.on_disconnected)

    def send(self, action: str, payload: dict, timeout_s: float = 30.0, validate: bool = True) -> None:
        self.client.call(
            action,
            payload,
            lambda p: self.on_result(action, p),
            lambda code, text: self.log.append(("error", action, self.clock.now(), code, text)),
            timeout_s,
            validate,
        )

    def on_result(self, action: str, payload: dict) -> None:
        self.log.append(("result", action, self.clock.now(), payload))
        if not self.auto:
            return
        accepted = action == "BootNotification" and payload["status"] == "Accepted"
        if accepted:
            self.send("StatusNotification", status("Available"))
        if not self.clock.virtual:
            return  # the follow-up timers below need the virtual clock's call_later
        if accepted:
            self.clock.call_later(payload["interval"], self.heartbeat)
        elif action == "BootNotification":
            self.clock.call_later(payload["interval"], lambda: self.send("BootNotification", BOOT))
        elif action == "Heartbeat":
            self.clock.call_later(60, self.heartbeat)

    def heartbeat(self) -> None:
        if self.client.connected:
            self.send("Heartbeat", {})

    def on_call(self, action: str, payload: dict):
        self.calls.append((action, payload))
        return self.answers.get(action, CallErrorReply("NotSupported", f"{action} not supported"))

    def on_connected(self) -> None:
        self.log.append(("connected", self.clock.now()))
        if self.auto:
            self.send("BootNotification", BOOT)

    def on_disconnected(self) -> None:
        self.log.append(("disconnected", self.clock.now(), self.client.disconnect_reason))

    def kinds(self, kind: str) -> list[tuple]:
        return [e for e in self.log if e[0] == kind]

    def results(self, action: str) -> list[tuple]:
        return [e for e in self.log if e[0] == "result" and e[1] == action]
