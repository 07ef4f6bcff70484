"""Reaction times of the reference PlugStream firmware, as the emulated charger models them.

They sit well inside the limits in rig/data/limits/plugstream.toml, so a good emulated unit
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

# 6 mA DC detector (RDC-DD): inverse-time bands of the reference unit, inside IEC 62955's limits
RCD_THRESHOLD_MA = 4.8  # trips from here; no trip at 3 mA or less
RCD_MID_BAND_MA = 50.0
RCD_HIGH_BAND_MA = 150.0
RCD_TRIP_LOW_S = 1.5  # threshold .. 50 mA (limit at 6 mA: 10 s)
RCD_TRIP_MID_S = 0.12  # 50 .. 150 mA (limit at 60 mA: 0.3 s)
RCD_TRIP_HIGH_S = 0.04  # 150 mA and above (limit at 200 mA: 0.1 s)

# PEN protection: the BS 7671 window, and the reference unit's delays
PEN_V_MIN = 207.0
PEN_V_MAX = 253.0
PEN_TRIP_DELAY_S = 4.5  # rides through < 4 s, open within 5 s
PEN_RESET_S = 30.0
PEN_MAX_RESUMES = 10
DIODE_FAULT_LOW_V = -10.5  # a low level above this with PWM running: diode missing or shorted

# Firmware update (FW-01): the reference unit's download and install times for a critical update
FW_DOWNLOAD_S = 20.0  # Downloading -> Downloaded (modelled: no bytes move until issue 6)
FW_VERIFY_S = 2.0  # Downloaded -> Installing (signature and integrity check, regs Sch.1)
FW_INSTALL_S = 60.0  # Installing (purple, charging paused) -> Installed
FW_RESTART_S = 5.0  # Installed -> BootNotification with the new version (firmware restarts)

# Reset.req: the time between answering Accepted and restarting, in which the transaction in
# progress is stopped (an assumption; OCPP 1.6 5.14 gives no time)
RESET_DELAY_S = 1.0
