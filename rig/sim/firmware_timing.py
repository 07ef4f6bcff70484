"""Reaction times of the reference PlugStream firmware, as the emulated charger models them.

They sit well inside the limits in fixtures/limits/plugstream.toml, so a good emulated unit
passes with margin and a known-bad one (rig/sim/defects.py) breaks exactly one of them.
"""

CP_DETECT_S = 0.010  # CP is sampled every ms and debounced over 10 samples
PWM_START_S = 0.050  # from "charging permitted" to PWM on the pilot
CONTACTOR_CLOSE_S = 0.400  # state C seen -> pre-close checks -> relay closed
CONTACTOR_OPEN_S = 0.030  # command -> contacts apart (relay drop-out)
PAUSE_OPEN_S = 3.0  # PWM stopped while EV stays in C: wait for the EV, then open under load
SELF_TEST_S = 4.0  # rainbow self-test after power-on
NETWORK_UP_S = 1.0  # after self-test, link and DHCP before the first connection attempt
RECONNECT_S = 10.0  # central system unreachable: retry interval
OCPP_CALL_TIMEOUT_S = 30.0
DEFAULT_BOOT_RETRY_S = 60  # Pending/Rejected without an interval
