"""Who is to blame.

Only the charger fails a test (a plain `AssertionError`, or `ChargerFailure`).
Everything the rig itself gets wrong is a `RigFault`: the test is reported as an
error (Allure: broken) naming the instrument, never as a charger failure. On an
end-of-line station that difference decides whether a good unit is scrapped.
"""

from __future__ import annotations


class RigFault(Exception):
    """The rig could not measure. Carries the name of the instrument to look at."""

    def __init__(self, instrument: str, message: str):
        super().__init__(f"{instrument}: {message}")
        self.instrument = instrument
        self.message = message


class InstrumentError(RigFault):
    """An instrument timed out, answered garbage or dropped the connection (after retries)."""


class SafeStateError(RigFault):
    """The rig could not be brought to, or confirmed in, its safe state."""


class RigFileError(Exception):
    """A rig file is wrong. The message is one line and names the key to fix."""

    def __init__(self, path: str, key: str, problem: str):
        super().__init__(f"{path}: {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


class ChargerFailure(AssertionError):
    """The charger did not meet a requirement (an ordinary test failure)."""
