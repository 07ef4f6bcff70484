"""The typed view of a validated rig file (`RigFile.meter.baudrate`), one dataclass per section."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from rig.core.rigfile.schema import AUTO, SECTIONS

# --- typed view -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bench:
    name: str
    kind: str

    @property
    def emulated(self) -> bool:
        return self.kind == "emulated"


@dataclass(frozen=True)
class Product:
    profile: str
    model: str
    serial: str


@dataclass(frozen=True)
class Pins:
    cp_b: int
    cp_c: int
    cp_d: int
    cp_e: int
    diode_bypass: int
    pp_select_0: int
    pp_select_1: int
    pp_select_2: int
    cp_capture: int
    sense_l1: int
    sense_l2: int
    sense_l3: int
    sense_n: int
    sense_pe: int


@dataclass(frozen=True)
class PpLadder:
    codes: tuple[int, ...]

    def ohms(self, code: int) -> int:
        """PP resistance selected by `code` (0 = open)."""
        return self.codes[code]


@dataclass(frozen=True)
class Adc:
    chip: str
    spi_port: int
    spi_device: int
    cp_high_channel: int
    cp_low_channel: int
    volts_per_count: float
    offset_volts: float
    samples: int


@dataclass(frozen=True)
class Pilot:
    pin_factory: str
    host: str
    port: int
    pins: Pins
    pp_ladder: PpLadder
    adc: Adc
    chip: int
    sense_pull: str
    sense_active_high: bool
    timeout_s: float


@dataclass(frozen=True)
class Meter:
    model: str
    transport: str
    port: str | int
    host: str
    baudrate: int
    parity: str
    stopbits: int
    unit: int
    timeout_s: float
    attempts: int


@dataclass(frozen=True)
class VisaInstrument:
    resource: str
    timeout_s: float
    attempts: int
    visa_library: str


@dataclass(frozen=True)
class AcLoadSection(VisaInstrument):
    phases: int


@dataclass(frozen=True)
class AcSourceSection(AcLoadSection):
    nominal_v: float
    nominal_hz: float


@dataclass(frozen=True)
class LedSensor:
    port: str
    baudrate: int
    sample_rate_hz: float
    timeout_s: float
    attempts: int
    max_garbage_fraction: float


@dataclass(frozen=True)
class Console:
    port: str
    baudrate: int
    timeout_s: float
    attempts: int


@dataclass(frozen=True)
class Central:
    host: str
    port: int | str
    charge_point_id: str
    tls: bool


@dataclass(frozen=True)
class Network:
    ports: str
    interface: str
    address: str
    unit_address: str
    netmask: str
    dns_primary: str
    dns_secondary: str
    cloudflare_primary: str
    cloudflare_secondary: str
    ocpp_address: str
    setup_address: str
    ntp_address: str
    capture: str
    unit_password: str
    scan_control_address: str
    ca_dir: str
    dhcp_lease_s: int
    dns_ttl_s: int


@dataclass(frozen=True)
class Calibration:
    pilot: str = ""
    meter: str = ""
    load: str = ""
    source: str = ""
    injector: str = ""
    led_sensor: str = ""


#: the dataclass for each schema section (a test proves fields and schema keys agree)
SECTION_CLASSES: dict[str, type] = {
    "bench": Bench, "product": Product, "pilot": Pilot, "pilot.pins": Pins,
    "pilot.pp_ladder": PpLadder, "pilot.adc": Adc, "meter": Meter, "load": AcLoadSection,
    "source": AcSourceSection, "injector": VisaInstrument, "led_sensor": LedSensor,
    "console": Console, "central": Central, "network": Network, "calibration": Calibration,
}


@dataclass(frozen=True)
class RigFile:
    """A validated rig file. Drivers take `section(name)`; the harness reads the attributes."""

    path: Path
    bench: Bench
    product: Product
    pilot: Pilot
    meter: Meter
    load: AcLoadSection
    source: AcSourceSection
    injector: VisaInstrument
    led_sensor: LedSensor
    console: Console
    central: Central
    network: Network | None  # None: a real bench whose unit is not on the rig's network
    calibration: Calibration | None
    profile_path: Path
    data: dict = field(repr=False, compare=False, hash=False)  # defaults filled in

    def section(self, name: str) -> dict:
        """A copy of one section as a plain dict ("meter", "pilot", "pilot.pins", ...)."""
        table: Any = self.data
        for part in name.split("."):
            if not isinstance(table, dict) or part not in table:
                raise KeyError(f"{self.path}: no section [{name}]; sections: {', '.join(SECTIONS)}")
            table = table[part]
        return copy.deepcopy(table)

    @property
    def charge_point_id(self) -> str:
        """The id the unit connects with: central.charge_point_id, "auto" meaning the serial."""
        cp_id = self.central.charge_point_id
        return self.product.serial if cp_id == AUTO else cp_id
