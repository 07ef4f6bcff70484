"""The rig's OCPP 1.6J central system: the server the charger under test connects to.

It is an instrument like the meter or the load: the same code serves a real charger on a
real bench and the emulated charger on the emulated bench. What it gives a test:

* a history of every frame in and out, each with its clock time and whether it is valid
  OCPP 1.6 (checked against the `ocpp` package's JSON schemas);
* default answers to everything a charge point sends, and scripted answers per action
  (accept, pending, reject, delay in clock time, drop, custom payload, CallError);
* `wait_for(action, ...)` for the test thread, and `call(action, payload)` toward the charger.

Blame: a message that does not arrive, an answer that never comes, a CallError or an
invalid payload from the charger is the CHARGER's failure (an AssertionError subclass). Only
the rig failing itself (cannot listen, cannot close its own socket) is an `InstrumentError`.

We do not use `ocpp.ChargePoint` for dispatch: tests need to drop and delay answers in
clock time, and the emulated bench needs every hop counted for settling (rig/instruments/ocppj.py).
"""

from __future__ import annotations

from rig.instruments.central_system.messages import BIND_ATTEMPTS, CALL_ERROR_NAME, CLOSE_HANDSHAKE_S, CLOSE_TIMEOUT_S, CallErrorReceived, CentralSystemTimeout, ConnectionEvent, IN, INVALID, InvalidOcppMessage, Message, OUT  # noqa: F401
from rig.instruments.central_system.replies import ANSWERED_ACTIONS, Accept, Custom, Delay, Drop, Pending, RETRY_INTERVAL_S, Reject, Reply, ScriptedCallError, accept, call_error, custom, delay, drop, pending, reject  # noqa: F401
from rig.instruments.central_system.history import History  # noqa: F401
from rig.instruments.central_system.server import AuthAttempt, CentralSystem, CentralSystemApi  # noqa: F401
