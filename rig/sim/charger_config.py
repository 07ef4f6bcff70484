"""The emulated charger's OCPP configuration store and the values it leaves the factory with:
the OCPP 1.6 standard keys it implements (section 9.1, 9.4 for Smart Charging) and the vendor
keys of the product profile's [ocpp] table."""

from __future__ import annotations

from dataclasses import dataclass, field

from rig.sim.charger_metering import DEFAULT_SAMPLED
from rig.sim.charger_smart import SMART_KEYS

#: standard keys the central system may read but not change (OCPP 1.6 9.1 "R" keys as this unit has them)
READONLY = {"NumberOfConnectors", "ConnectorPhaseRotation", "StopTransactionOnEVSideDisconnect", *SMART_KEYS}


@dataclass
class Config:
    """The unit's OCPP configuration store (standard and vendor keys of the product profile)."""

    values: dict[str, str] = field(default_factory=dict)
    readonly: set[str] = field(default_factory=set)

    def number(self, key: str, default: float) -> float:
        try:
            return float(self.values.get(key, default))
        except ValueError:
            return default


def phase_rotation(model: dict, defect: str | None) -> str:
    """OCPP 1.6 9.1 ConnectorPhaseRotation: '<connectorId>.<rotation>' per connector (0: the unit's
    grid connection); a single-phase unit's is NotApplicable."""
    if defect == "phase-rotation-without-connector":
        return "RST" if model["phases"] == 3 else "R"  # the bug: no connector id, and "R" is no value
    rotation = "RST" if model["phases"] == 3 else "NotApplicable"
    return f"0.{rotation},1.{rotation}"


def factory_config(model: dict, profile: dict, defect: str | None) -> Config:
    k, charging = profile["ocpp"], profile["charging"]
    delay_max = 1800 if defect == "delay-default-1800" else charging["random_delay_max_s"]
    values = {
        "HeartbeatInterval": "0",
        "MeterValueSampleInterval": "60",
        "MeterValuesSampledData": DEFAULT_SAMPLED,
        "NumberOfConnectors": "1",
        "StopTransactionOnEVSideDisconnect": "true",  # the unit always stops at unplug
        "AuthorizeRemoteTxRequests": "false",  # a remote start needs no Authorize.req
        "StopTransactionOnInvalidId": "true",  # a rejected idTag ends the transaction
        "TransactionMessageAttempts": "3",  # tries of a transaction message the central system
        "TransactionMessageRetryInterval": "60",  # failed to process, and the wait between them
        "ConnectorPhaseRotation": phase_rotation(model, defect),
        k["config_charging_mode"]: charging["default_mode"],
        k["config_current_limit"]: f"{model['rated_current_a']:g}",
        k["config_site_limit"]: f"{model['rated_current_a']:g}",
        k["config_random_delay_max"]: str(delay_max),
        k["config_peak_hours"]: charging["peak_hours"],
        k["config_schedule_windows"]: charging["schedule_windows"],
        **SMART_KEYS,
    }
    return Config(values, readonly=set(READONLY))
