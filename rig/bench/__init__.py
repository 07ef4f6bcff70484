"""The assembled rig: every instrument of one bench opened from a rig file (`open_rig`), the
vehicle it emulates, the calendar time it serves, and the journal of every call a test makes."""
