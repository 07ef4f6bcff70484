"""Reference energy meter: Eastron SDM630 (3-phase) and SDM120 (1-phase) over Modbus.

The rig trusts this meter to say what flowed through the charger's output, so a
meter that cannot answer must never look like a charger that did nothing: every
timeout, CRC error, exception response, short reply or non-finite value is retried
with a reconnect in between and then raised as `InstrumentError("meter", ...)`.

Wire format (STANDARDS.md, "Eastron Modbus meters"): measurements are input
registers (function 0x04), IEEE-754 float32 over two registers, high word first;
address = register number - 30001; at most 80 registers per request. Everything a
snapshot needs except total energy lies in 0x0000..0x004B (76 registers), so a
snapshot is a single request; total energy (0x0156) costs a second, optional one.

Transports: Modbus RTU on a serial port (RS-485 adapter) or Modbus TCP (a gateway,
or the emulated bench), both through pymodbus' synchronous clients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.exceptions import ModbusException, ModbusIOException

from rig.core import rigfile
from rig.core.clock import Clock
from rig.core.retry import TRANSIENT, with_retries

# -- register maps ------------------------------------------------------------------------------
# quantity -> register addresses (0-based, = register number - 30001). Per-phase quantities
# list one address per phase; system-wide quantities list one address.
SDM630_MAP: dict[str, tuple[int, ...]] = {
    "voltage": (0x0000, 0x0002, 0x0004),
    "current": (0x0006, 0x0008, 0x000A),
    "power": (0x000C, 0x000E, 0x0010),
    "power_factor": (0x001E, 0x0020, 0x0022),
    "total_power": (0x0034,),
    "frequency": (0x0046,),
    "import_kwh": (0x0048,),
    "export_kwh": (0x004A,),
    "total_kwh": (0x0156,),
}
SDM120_MAP: dict[str, tuple[int, ...]] = {
    "voltage": (0x0000,),
    "current": (0x0006,),
    "power": (0x000C,),
    "power_factor": (0x001E,),
    "frequency": (0x0046,),
    "import_kwh": (0x0048,),
    "export_kwh": (0x004A,),
    "total_kwh": (0x0156,),
}
REGISTER_MAPS: dict[str, dict[str, tuple[int, ...]]] = {"SDM630": SDM630_MAP, "SDM120": SDM120_MAP}

#: the one block a snapshot reads: voltages .. export energy (76 registers, limit is 80)
SNAPSHOT_START = 0x0000
SNAPSHOT_COUNT = 0x004C
TOTAL_KWH_ADDRESS = 0x0156

#: factory baud rates (STANDARDS.md), used when the rig file gives none
FACTORY_BAUDRATE = {"SDM630": 9600, "SDM120": 2400}
TRANSPORTS = ("rtu", "tcp")
PARITIES = ("N", "E", "O")

_FLOAT32 = ModbusClientMixin.DATATYPE.FLOAT32
#: pymodbus raises ModbusException subclasses (no reply, cannot connect); the rig retries those too
_METER_TRANSIENT = TRANSIENT + (ModbusException,)


class MeterGarbage(ValueError):
    """The meter answered, but not with something usable: an exception response, a short
    reply, a non-finite value. Retried like a timeout; the last one names the problem in
    the InstrumentError."""


# -- decoding (pure, used by the driver and by the tests on the STANDARDS worked frame) ----------
def decode_float32(registers: Sequence[int]) -> list[float]:
    """Registers -> floats, two registers per value, high word first (Eastron order)."""
    if len(registers) % 2:
        raise MeterGarbage(f"odd register count {len(registers)} for float32 values")
    if not registers:
        return []
    values = ModbusClientMixin.convert_from_registers(list(registers), data_type=_FLOAT32, word_order="big")
    return [float(v) for v in values] if isinstance(values, list) else [float(values)]


def value_at(block_start: int, floats: Sequence[float], address: int) -> float:
    """The float stored at register `address` in a block of floats read from `block_start`."""
    index, odd = divmod(address - block_start, 2)
    if odd or not 0 <= index < len(floats):
        raise ValueError(f"address 0x{address:04X} is not a float in the block read")
    return floats[index]


def _finite(quantity: str, value: float) -> float:
    if not math.isfinite(value):
        raise MeterGarbage(f"{quantity} is {value!r}, not a finite number")
    return value


@dataclass(frozen=True)
class MeterReading:
    """One snapshot of the meter. Per-phase tuples have one entry per phase the model measures."""

    voltage_v: tuple[float, ...]
    current_a: tuple[float, ...]
    power_w: tuple[float, ...]
    power_factor: tuple[float, ...]
    frequency_hz: float
    import_kwh: float
    export_kwh: float
    total_kwh: float | None  # None unless the snapshot asked for it (it costs a second request)
    timestamp_s: float  # rig clock time the request was made

    @property
    def total_power_w(self) -> float:
        return sum(self.power_w)


def decode_snapshot(model: str, registers: Sequence[int], timestamp_s: float, total_kwh: float | None = None) -> MeterReading:
    """The snapshot block (SNAPSHOT_START, SNAPSHOT_COUNT registers) -> a checked MeterReading."""
    if len(registers) != SNAPSHOT_COUNT:
        raise MeterGarbage(f"expected {SNAPSHOT_COUNT} registers, got {len(registers)}")
    regmap = REGISTER_MAPS[model]
    floats = decode_float32(registers)

    def phases(quantity: str) -> tuple[float, ...]:
        return tuple(_finite(quantity, value_at(SNAPSHOT_START, floats, a)) for a in regmap[quantity])

    def single(quantity: str) -> float:
        return _finite(quantity, value_at(SNAPSHOT_START, floats, regmap[quantity][0]))

    return MeterReading(
        voltage_v=phases("voltage"),
        current_a=phases("current"),
        power_w=phases("power"),
        power_factor=phases("power_factor"),
        frequency_hz=single("frequency"),
        import_kwh=single("import_kwh"),
        export_kwh=single("export_kwh"),
        total_kwh=total_kwh,
        timestamp_s=timestamp_s,
    )


# -- driver -------------------------------------------------------------------------------------
class EnergyMeter(Protocol):
    """What the rig needs from a reference meter."""

    phases: int

    def open(self) -> None: ...
    def close(self) -> None: ...
    def snapshot(self, include_total: bool = False) -> MeterReading: ...
    def currents(self) -> tuple[float, ...]: ...
    def voltages(self) -> tuple[float, ...]: ...
    def energy_kwh(self) -> float: ...


@dataclass(frozen=True)
class MeterSettings(rigfile.Meter):
    """The rig-file [meter] section, checked: the fields of `rig.core.rigfile.Meter`, read from a dict."""

    @classmethod
    def from_config(cls, name: str, config: dict) -> "MeterSettings":
        model = _choice(name, config, "model", tuple(REGISTER_MAPS), "SDM630")
        transport = _choice(name, config, "transport", TRANSPORTS, "rtu")
        port = config.get("port")
        if port in (None, "", "auto"):
            raise ValueError(f"{name}: config key 'port' must be a concrete address, got {port!r}")
        if transport == "tcp":
            port = _int(name, config, "port", None)
        return cls(
            model=model,
            transport=transport,
            port=port,
            host=str(config.get("host") or "127.0.0.1"),
            baudrate=_int(name, config, "baudrate", FACTORY_BAUDRATE[model]),
            parity=_choice(name, config, "parity", PARITIES, "N"),
            stopbits=_int(name, config, "stopbits", 1),
            unit=_int(name, config, "unit", 1),
            timeout_s=float(config.get("timeout_s", 0.5)),
            attempts=_int(name, config, "attempts", 3),
        )


def _choice(name: str, config: dict, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = config.get(key, default)
    if value not in allowed:
        raise ValueError(f"{name}: config key '{key}' must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _int(name: str, config: dict, key: str, default: int | None) -> int:
    value = config.get(key, default)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: config key '{key}' must be an integer, got {value!r}") from None


class Meter:
    """Eastron SDM630 / SDM120 driver. `Meter(name, config, clock)`, then `open()`."""

    def __init__(self, name: str, config: dict, clock: Clock):
        self.name = name
        self.clock = clock
        self.settings = MeterSettings.from_config(name, config)
        #: tries per reading (rig file meter.attempts), each with a reconnect before it; the worst
        #: case is attempts x timeout_s of real time before InstrumentError
        self.attempts = self.settings.attempts
        self.model = self.settings.model
        self.phases = len(REGISTER_MAPS[self.model]["voltage"])
        self._client: ModbusSerialClient | ModbusTcpClient | None = None
        self._received = b""  # bytes seen during the current request, to tell "no reply" from "bad CRC"

    # -- connection ---------------------------------------------------------------------------
    def _new_client(self) -> ModbusSerialClient | ModbusTcpClient:
        s = self.settings
        # retries=0: pymodbus must not retry on its own; with_retries owns the retry budget
        if s.transport == "tcp":
            return ModbusTcpClient(
                s.host, port=int(s.port), timeout=s.timeout_s, retries=0, name=self.name, trace_packet=self._trace_packet
            )
        return ModbusSerialClient(
            str(s.port),
            baudrate=s.baudrate,
            parity=s.parity,
            stopbits=s.stopbits,
            bytesize=8,
            timeout=s.timeout_s,
            retries=0,
            name=self.name,
            trace_packet=self._trace_packet,
        )

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus passes every frame through here; remember what came back."""
        if not sending and data:
            self._received = bytes(data)
        return data

    def _connect(self) -> None:
        if self._client is None:
            self._client = self._new_client()
        if not self._client.connect():
            raise ConnectionError(f"cannot open {self._where()}")

    def _reconnect(self) -> None:
        self._drop_client()
        self._connect()

    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing a broken link must not hide the error that broke it
                pass
            self._client = None

    def _where(self) -> str:
        s = self.settings
        return f"{s.host}:{s.port}" if s.transport == "tcp" else str(s.port)

    def open(self) -> None:
        if self._client is not None and self._client.connected:
            return
        with_retries(
            self.name,
            f"open {self.model} on {self._where()}",
            self._connect,
            attempts=self.attempts,
            transient=_METER_TRANSIENT,
            recover=self._drop_client,
        )

    def close(self) -> None:
        self._drop_client()

    def __enter__(self) -> "Meter":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------------
    def _read_registers_once(self, address: int, count: int) -> list[int]:
        if self._client is None:
            self._connect()
        self._received = b""
        try:
            reply = self._client.read_input_registers(address, count=count, device_id=self.settings.unit)
        except ModbusIOException as exc:
            if self._received:  # bytes came back but never formed a valid frame: say so
                raise MeterGarbage(
                    f"unreadable reply to read 0x{address:04X}+{count} (bad CRC or framing): {self._received[:16].hex(' ')}"
                ) from exc
            raise
        if reply.isError():
            raise MeterGarbage(f"exception response to read 0x{address:04X}+{count}: {reply}")
        registers = list(reply.registers)
        if len(registers) != count:
            raise MeterGarbage(f"asked for {count} registers at 0x{address:04X}, got {len(registers)}")
        return registers

    def _read(self, what: str, fn):
        return with_retries(
            self.name,
            what,
            fn,
            attempts=self.attempts,
            transient=_METER_TRANSIENT,
            recover=self._reconnect,
        )

    def snapshot(self, include_total: bool = False) -> MeterReading:
        """Everything the meter measures, in one request (two with `include_total`)."""
        timestamp = self.clock.now()

        def read_and_decode() -> MeterReading:
            registers = self._read_registers_once(SNAPSHOT_START, SNAPSHOT_COUNT)
            return decode_snapshot(self.model, registers, timestamp)

        reading = self._read(f"read {self.model} measurements", read_and_decode)
        if include_total:
            total = self._read(f"read {self.model} total energy", self._read_total_once)
            reading = _with_total(reading, total)
        return reading

    def _read_total_once(self) -> float:
        registers = self._read_registers_once(TOTAL_KWH_ADDRESS, 2)
        return _finite("total_kwh", decode_float32(registers)[0])

    # -- convenience ---------------------------------------------------------------------------
    def currents(self) -> tuple[float, ...]:
        return self.snapshot().current_a

    def voltages(self) -> tuple[float, ...]:
        return self.snapshot().voltage_v

    def energy_kwh(self) -> float:
        """Imported energy (what the vehicle drew through the charger), kWh."""
        return self.snapshot().import_kwh


def _with_total(reading: MeterReading, total_kwh: float) -> MeterReading:
    return replace(reading, total_kwh=total_kwh)
