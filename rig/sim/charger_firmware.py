"""The emulated charger's firmware update (OCPP 1.6 UpdateFirmware), always treated as critical.

UpdateFirmware {location, retrieveDate}: at retrieveDate (the unit's real-time clock) the unit
downloads (FirmwareStatusNotification Downloading, Downloaded), then installs: Installing, LED
purple solid, charging paused (the charger sees `installing` and withholds permission), then
Installed, and after its restart a BootNotification with the new firmwareVersion, taken from the
file name (".../PS-FW-4.3.0.bin" -> "PS-FW 4.3.0", pattern in the profile's [firmware]). The
vehicle's session survives (the restart is the application's, not a power cycle), so charging
resumes without re-plugging. Times: rig/sim/firmware_timing.py.
"""

from __future__ import annotations

import re

from rig.sim import charging_modes as M
from rig.sim import firmware_timing as T


class FirmwareUpdater:
    def __init__(self, charger, version: str):
        self.c = charger
        self.version = version  # installed version: survives power cycles
        fw = charger.profile["firmware"]
        self.pattern = re.compile(fw["file_name_pattern"])
        self.prefix = fw["version_prefix"]
        self.installing = False  # purple, no energy
        self.stuck = False  # purple-stuck: the bug keeps purple and the pause after the update

    def power_cycled(self) -> None:
        """A power cut abandons an update in progress (its timers die with the power epoch)."""
        self.installing = self.stuck

    def version_from(self, location: str) -> str | None:
        m = self.pattern.search(location.rsplit("/", 1)[-1])
        return f"{self.prefix} {m.group('version')}" if m else None

    def request(self, payload: dict) -> dict:
        """UpdateFirmware: answered at once (empty conf); the work starts at retrieveDate."""
        c = self.c
        try:
            retrieve = M.parse_utc(payload["retrieveDate"])
        except ValueError:
            retrieve = c.rtc_now()
        wait_s = max(0.0, (retrieve - c.rtc_now()).total_seconds())
        location = payload["location"]
        c._later("fw", wait_s, lambda: self._download(location))
        return {}

    def _notify(self, status: str) -> None:
        self.c._send("FirmwareStatusNotification", {"status": status})

    def _download(self, location: str) -> None:
        self._notify("Downloading")
        self.c._later("fw", T.FW_DOWNLOAD_S, lambda: self._downloaded(location))

    def _downloaded(self, location: str) -> None:
        new_version = self.version_from(location)
        if new_version is None:
            self._notify("DownloadFailed")  # not a PlugStream image: nothing to install
            return
        if self.c.defect != "fw-status-skips-downloaded":
            self._notify("Downloaded")
        self.c._later("fw", T.FW_VERIFY_S, lambda: self._install(new_version))

    def _install(self, new_version: str) -> None:
        self._notify("Installing")
        self.installing = True
        self.c._reconsider_offer()  # pause: PWM off, contactor open, SuspendedEVSE, purple
        self.c._later("fw", T.FW_INSTALL_S, lambda: self._installed(new_version))

    def _installed(self, new_version: str) -> None:
        self.version = new_version
        self._notify("Installed")
        self.c._later("fw", T.FW_RESTART_S, self._restarted)

    def _restarted(self) -> None:
        self.installing = self.stuck = self.c.defect == "purple-stuck"
        self.c._send_boot_notification()
        self.c._reconsider_offer()
