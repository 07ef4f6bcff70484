"""Emulated Eastron SDM630 / SDM120: a pymodbus server whose registers come from the Plant.

The input registers are computed at the moment each request arrives, from what the
plant says then (supply voltage, the load current through the closed contactor,
energy integrated up to now), plus small deterministic measurement noise. So the
rig's meter driver reads the emulated bench exactly as it reads a real meter, over
the same wire protocol: Modbus TCP on loopback, or Modbus RTU over a pseudo-terminal
pair standing in for the RS-485 cable.

pymodbus 3.16 data model used: one `SimDevice` with a shared register block (float32
slots at the Eastron addresses, everything else invalid -> ILLEGAL_ADDRESS) and an
`action` coroutine that pymodbus calls before it answers; the action rewrites the
block in place from the plant. Holding registers and writes are refused with
ILLEGAL_FUNCTION: the rig never configures the meter.
"""

from __future__ import annotations

import random
import struct

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from rig.core.aio import LoopThread
from rig.instruments.meter import FACTORY_BAUDRATE, REGISTER_MAPS
from rig.sim.meter_framing import framers_for, illegal_function_reply
from rig.sim.meter_registers import FULL_MAPS, address_blocks, derived
from rig.sim.plant import Plant
from rig.sim.ptypair import PtyPair

FAULTS = (None, "silent", "garbage", "disconnect")
READ_INPUT_REGISTERS = 0x04
NAN_REGISTERS = (0x7FC0, 0x0000)  # float32 quiet NaN, high word first

# measurement noise, roughly an SDM630's class 1 spread
VOLTAGE_NOISE_V = 0.1
CURRENT_NOISE_FRACTION = 0.005
CURRENT_NOISE_FLOOR_A = 0.005
POWER_NOISE_FRACTION = 0.005
FREQUENCY_NOISE_HZ = 0.01
PLANT_LOCK_TIMEOUT_S = 2.0


def float_registers(value: float) -> tuple[int, int]:
    """A float as two registers, high word first (Eastron order)."""
    high, low = struct.unpack(">HH", struct.pack(">f", value))
    return high, low


class EmulatedMeter:
    """An SDM630 or SDM120 on the emulated bench. See the module docstring."""

    def __init__(self, plant: Plant, loop: LoopThread, config: dict):
        self.plant = plant
        self.loop = loop
        self.config = dict(config)
        self.model = self.config.get("model", "SDM630")
        if self.model not in REGISTER_MAPS:
            raise ValueError(f"meter: config key 'model' must be one of {', '.join(REGISTER_MAPS)}, got {self.model!r}")
        self.transport = self.config.get("transport", "rtu")
        if self.transport not in ("rtu", "tcp"):
            raise ValueError(f"meter: config key 'transport' must be rtu or tcp, got {self.transport!r}")
        self.unit = int(self.config.get("unit", 1))
        self.regmap = REGISTER_MAPS[self.model]
        #: Modbus requests received (any function), for tests that count round trips
        self.requests = 0
        # A private generator seeded once from the bench's rng: the noise sequence then
        # depends only on the seed and on this meter's own requests, never on how other
        # threads interleave their draws from clock.rng.
        self._rng = random.Random(plant.clock.rng.getrandbits(64))
        self._fault: str | None = None
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._pty: PtyPair | None = None
        self._tcp_port: int | None = None
        self.listen_host = "127.0.0.1"  # Modbus TCP: `rig device serve` sets the device's address
        self._started = False
        self._peaks: dict[str, float] = {}  # maximum demands, kept as the meter keeps them
        #: a request whose function code Modbus does not define, answered with exception 01
        self.undefined_function: int | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> dict:
        """Start serving; return a copy of config with the driver's "port" filled in."""
        resolved = dict(self.config)
        if self.transport == "rtu":
            self._pty = PtyPair(f"meter-pty-{self.model}").start()
            resolved["port"] = self._pty.device_b
        else:
            self._tcp_port = self._wanted_tcp_port()
            resolved["host"] = self.listen_host
        self.loop.run(self._serve())
        if self.transport == "tcp":
            resolved["port"] = self._tcp_port
        resolved.setdefault("baudrate", FACTORY_BAUDRATE[self.model])
        self._started = True
        if self._fault == "disconnect":  # asked for before the bench started
            self._drop_link()
        return resolved

    def stop(self) -> None:
        """Stop serving and release the port / pseudo-terminals; idempotent."""
        if self._server is not None:
            self.loop.run(self._shutdown())
        if self._pty is not None:
            self._pty.close()
            self._pty = None
        self._started = False

    def _wanted_tcp_port(self) -> int:
        """0 (let the OS choose, read back after listening) unless the config names a port."""
        port = self.config.get("port", "auto")
        return 0 if port in (None, "", "auto") else int(port)

    async def _serve(self) -> None:
        device = SimDevice(id=self.unit, simdata=self._register_layout(), action=self._on_access)
        common = dict(trace_packet=self._trace_packet, trace_pdu=self._trace_pdu)
        if self.transport == "tcp":
            server = ModbusTcpServer(device, address=(self.listen_host, self._tcp_port), **common)
        else:
            server = ModbusSerialServer(
                device,
                framer=FramerType.RTU,
                port=self._pty.device_a,
                baudrate=int(self.config.get("baudrate", FACTORY_BAUDRATE[self.model])),
                parity=self.config.get("parity", "N"),
                stopbits=int(self.config.get("stopbits", 1)),
                **common,
            )
        # frames heard as strictly as a real meter hears them (rig/sim/meter_framing.py)
        server.framer = framers_for(self)[0 if self.transport == "rtu" else 1]
        await server.serve_forever(background=True)
        self._server = server
        if self.transport == "tcp":
            # port 0 asked the OS for a free one; keep it so a restored link listens there again
            self._tcp_port = server.transport.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    def _register_layout(self) -> list[SimData]:
        """Float32 slots at every documented address (rig/sim/meter_registers.py); the gaps between
        them are invalid (-> ILLEGAL_ADDRESS), as on the meter."""
        return [SimData(address=first, count=slots, values=0.0, datatype=DataType.FLOAT32)
                for first, slots in address_blocks(self.model)]

    # -- faults -------------------------------------------------------------------------------
    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, value: str | None) -> None:
        if value not in FAULTS:
            raise ValueError(f"meter fault must be one of {FAULTS}, got {value!r}")
        was, self._fault = self._fault, value
        if not self._started or (was == "disconnect") == (value == "disconnect"):
            return
        if value == "disconnect":
            self._drop_link()
        else:
            self._restore_link()

    def _drop_link(self) -> None:
        """TCP: close the listener and every connection. RTU: pull the cable."""
        if self._pty is not None:
            self._pty.connected = False
        else:
            self.loop.run(self._shutdown())

    def _restore_link(self) -> None:
        if self._pty is not None:
            self._pty.connected = True
        else:
            self.loop.run(self._serve())  # same port: the driver reconnects where it was

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus hands every frame through here: "silent" and RTU "garbage" act on the bytes."""
        if not sending:
            return data
        if self.undefined_function is not None:
            code, self.undefined_function = self.undefined_function, None
            data = illegal_function_reply(data, code, self.transport == "rtu")
        if self._fault == "silent":
            return b""
        if self._fault == "garbage" and self.transport == "rtu":
            return data[:-2] + bytes(b ^ 0xA5 for b in data[-2:])  # same frame, wrong CRC
        return data

    def _trace_pdu(self, sending: bool, pdu):
        if not sending:
            self.requests += 1
        return pdu

    # -- the registers, computed per request ------------------------------------------------
    async def _on_access(self, function_code, start_address, address, count, registers, set_values):
        if function_code != READ_INPUT_REGISTERS or set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION
        if self._fault == "garbage":
            self._fill(registers, start_address, {a: None for a in self._all_addresses()})
            return None
        # Bounded wait: this runs in the bench's shared loop thread, and a caller that reads
        # the meter while holding plant.lock (a bug) must not freeze every emulated server.
        if not self.plant.lock.acquire(timeout=PLANT_LOCK_TIMEOUT_S):
            return ExcCodes.DEVICE_BUSY
        try:
            measured = self._measure()
        finally:
            self.plant.lock.release()
        self._fill(registers, start_address, self._shown(measured))
        return None

    def _all_addresses(self) -> list[int]:
        return [a for addresses in FULL_MAPS[self.model].values() for a in addresses]

    @staticmethod
    def _fill(registers: list[int], start_address: int, values: dict[int, float | None]) -> None:
        for address, value in values.items():
            offset = address - start_address
            registers[offset : offset + 2] = NAN_REGISTERS if value is None else float_registers(value)

    def _measure(self) -> dict:
        """The true values now, per phase the model measures (caller holds plant.lock)."""
        plant = self.plant
        plant.integrate()
        n = len(self.regmap["voltage"])
        return {
            "volts": [self._phase_or_zero(plant.phase_voltage, i) for i in range(n)],
            "amps": [self._phase_or_zero(plant.phase_current, i) for i in range(n)],
            "watts": [self._phase_or_zero(plant.phase_power_w, i) for i in range(n)],
            "pf": plant.load_pf,
            "hz": plant.supply_hz if plant.supply_on else 0.0,
            "import_kwh": sum(plant.import_kwh[:n]),
            "phase_kwh": list(plant.import_kwh[:n]),
        }

    def _shown(self, m: dict) -> dict[int, float]:
        """address -> value as the meter displays it: true value plus measurement noise."""
        watts = [self._noisy_power(w) for w in m["watts"]]
        shown = {
            "voltage": [self._noisy_voltage(v) for v in m["volts"]],
            "current": [self._noisy_current(a) for a in m["amps"]],
            "power": watts,
            "power_factor": [m["pf"] if a > 0 else 1.0 for a in m["amps"]],
            "total_power": [sum(watts)],
            "frequency": [self._noisy_frequency(m["hz"])],
            "import_kwh": [m["import_kwh"]],
            "export_kwh": [0.0],  # the rig's load never feeds energy back
            "total_kwh": [m["import_kwh"]],
        }
        full = derived(shown, m["phase_kwh"], self._peaks)
        return {a: v for q, addresses in FULL_MAPS[self.model].items() for a, v in zip(addresses, full[q])}

    def _phase_or_zero(self, fn, i: int) -> float:
        """A 3-phase meter on a 1-phase bench reads nothing on L2/L3."""
        return fn(i) if i < self.plant.phases else 0.0

    def _noisy_voltage(self, v: float) -> float:
        return max(0.0, v + self._rng.uniform(-VOLTAGE_NOISE_V, VOLTAGE_NOISE_V)) if v > 0 else 0.0

    def _noisy_current(self, a: float) -> float:
        spread = a * CURRENT_NOISE_FRACTION + CURRENT_NOISE_FLOOR_A
        return max(0.0, a + self._rng.uniform(-spread, spread))

    def _noisy_power(self, w: float) -> float:
        return w * (1.0 + self._rng.uniform(-POWER_NOISE_FRACTION, POWER_NOISE_FRACTION))

    def _noisy_frequency(self, hz: float) -> float:
        return hz + self._rng.uniform(-FREQUENCY_NOISE_HZ, FREQUENCY_NOISE_HZ) if hz > 0 else 0.0
