"""The reference-meter driver against the emulated SDM630 / SDM120, over Modbus RTU and TCP.

Every test talks real Modbus: TCP on loopback, or RTU through a pseudo-terminal pair.
Nothing here replaces the driver or the server with a fake.
"""

from __future__ import annotations

import contextlib
import time

import pytest
import serial
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU
from pymodbus.pdu.register_message import ReadInputRegistersRequest

from rig.core.aio import LoopThread
from rig.core.clock import VirtualClock
from rig.core.errors import InstrumentError
from rig.instruments.meter import REGISTER_MAPS, Meter, MeterGarbage, decode_float32, decode_snapshot
from rig.sim.meter_server import EmulatedMeter
from rig.sim.plant import Plant
from rig.sim.ptypair import PtyPair

TRANSPORTS = ("rtu", "tcp")
WORKED_REQUEST = bytes.fromhex("01 04 00 00 00 02 71 CB")
WORKED_REPLY = bytes.fromhex("01 04 04 43 66 33 34 1B 38")
FAULT_REAL_TIME_LIMIT_S = 5.0


def meter_config(model: str, transport: str, **overrides) -> dict:
    """The rig-file [meter] section as emulated.toml has it, before "auto" is resolved."""
    config = {
        "model": model,
        "transport": transport,
        "port": "auto",
        "host": "127.0.0.1",
        "baudrate": 9600,
        "parity": "N",
        "stopbits": 1,
        "unit": 1,
        "timeout_s": 0.5,
    }
    config.update(overrides)
    return config


@contextlib.contextmanager
def emulated_bench(model="SDM630", transport="tcp", phases=3, seed=1, **overrides):
    """(clock, plant, emulated meter, open driver); everything is released afterwards."""
    clock = VirtualClock(seed)
    plant = Plant(clock, phases=phases)
    loop = LoopThread("meter-test").start()
    emulated = EmulatedMeter(plant, loop, meter_config(model, transport, **overrides))
    try:
        resolved = emulated.start()
        with Meter("meter", resolved, clock) as meter:
            yield clock, plant, emulated, meter
    finally:
        emulated.stop()
        loop.stop()


def start_charging(plant: Plant, amps: list[float], pf: float = 1.0) -> None:
    with plant.change("test"):
        plant.line_closed = True
        plant.neutral_closed = True
        plant.load_on = True
        plant.load_a = list(amps)
        plant.load_pf = pf


# -- the wire format ---------------------------------------------------------------------------
def test_standards_worked_frame_decodes_to_230_2_volts():
    framer = FramerRTU(DecodePDU(False))
    assert framer.buildFrame(ReadInputRegistersRequest(address=0, count=2, dev_id=1)) == WORKED_REQUEST
    used, pdu = framer.handleFrame(WORKED_REPLY, 1, 0)
    assert used == len(WORKED_REPLY)
    assert decode_float32(pdu.registers) == [pytest.approx(230.2, abs=1e-4)]


def test_emulated_rtu_meter_answers_the_worked_request_byte_for_byte():
    """The STANDARDS request sent as raw bytes down the emulated RS-485 cable."""
    clock = VirtualClock(3)
    loop = LoopThread("meter-raw").start()
    emulated = EmulatedMeter(Plant(clock, phases=3), loop, meter_config("SDM630", "rtu"))
    try:
        port = emulated.start()["port"]
        with serial.Serial(port, 9600, timeout=1.0) as line:
            line.write(WORKED_REQUEST)
            reply = line.read(len(WORKED_REPLY))
    finally:
        emulated.stop()
        loop.stop()
    used, pdu = FramerRTU(DecodePDU(False)).handleFrame(reply, 1, 0)  # checks the CRC
    assert used == 9 and reply[:3] == WORKED_REPLY[:3]
    assert decode_float32(pdu.registers)[0] == pytest.approx(230.0, abs=0.2)


def test_non_finite_value_is_garbage():
    registers = [0x4366, 0x3334] * (0x4C // 2)
    registers[0:2] = [0x7FC0, 0x0000]  # NaN where L1 voltage belongs
    with pytest.raises(MeterGarbage, match="voltage"):
        decode_snapshot("SDM630", registers, 0.0)


def test_register_maps_follow_standards():
    assert REGISTER_MAPS["SDM630"]["current"] == (0x0006, 0x0008, 0x000A)
    assert REGISTER_MAPS["SDM120"]["voltage"] == (0x0000,)
    assert REGISTER_MAPS["SDM630"]["total_kwh"] == REGISTER_MAPS["SDM120"]["total_kwh"] == (0x0156,)


# -- measurements ------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("model,phases", [("SDM630", 3), ("SDM120", 1)])
def test_idle_bench_reads_supply_voltage_and_no_current(model, phases, transport):
    with emulated_bench(model, transport, phases) as (_clock, _plant, _emulated, meter):
        reading = meter.snapshot()
    assert meter.phases == phases
    assert len(reading.voltage_v) == len(reading.current_a) == len(reading.power_w) == phases
    assert all(v == pytest.approx(230.0, abs=0.2) for v in reading.voltage_v)
    assert all(0.0 <= a < 0.02 for a in reading.current_a)
    assert reading.frequency_hz == pytest.approx(50.0, abs=0.05)
    assert reading.import_kwh == 0.0 and reading.export_kwh == 0.0


def test_current_flows_only_through_closed_contactor_and_load():
    with emulated_bench("SDM630", "tcp", 3) as (_clock, plant, _emulated, meter):
        with plant.change("test"):
            plant.load_on = True
            plant.load_a = [16.0, 10.0, 6.0]
        assert max(meter.currents()) < 0.02  # contactor open: nothing flows
        with plant.change("test"):
            plant.line_closed = True
        assert max(meter.currents()) < 0.02  # neutral still open
        with plant.change("test"):
            plant.neutral_closed = True
        currents = meter.currents()
    assert currents == pytest.approx((16.0, 10.0, 6.0), rel=0.01, abs=0.01)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_power_and_power_factor_per_phase(transport):
    with emulated_bench("SDM630", transport, 3) as (_clock, plant, _emulated, meter):
        start_charging(plant, [16.0, 16.0, 0.0], pf=0.95)
        reading = meter.snapshot()
    assert reading.power_w[:2] == pytest.approx((230 * 16 * 0.95,) * 2, rel=0.01)
    assert reading.power_w[2] == 0.0
    assert reading.power_factor[:2] == pytest.approx((0.95, 0.95), abs=1e-6)
    assert reading.total_power_w == pytest.approx(2 * 230 * 16 * 0.95, rel=0.01)


@pytest.mark.parametrize(
    "model,phases,amps",
    [("SDM630", 3, [16.0, 16.0, 16.0]), ("SDM120", 1, [32.0])],
)
def test_energy_over_one_hour_within_one_percent(model, phases, amps):
    expected_kwh = sum(230.0 * a for a in amps) / 1000.0
    with emulated_bench(model, "tcp", phases) as (clock, plant, _emulated, meter):
        start_kwh = meter.energy_kwh()
        start_charging(plant, amps)
        clock.sleep(3600)
        reading = meter.snapshot(include_total=True)
    assert reading.import_kwh - start_kwh == pytest.approx(expected_kwh, rel=0.01)
    assert reading.total_kwh == pytest.approx(reading.import_kwh)
    assert reading.timestamp_s == pytest.approx(3600.0)


def test_three_phase_meter_on_single_phase_bench_reads_nothing_on_l2_l3():
    with emulated_bench("SDM630", "tcp", phases=1) as (_clock, plant, _emulated, meter):
        start_charging(plant, [20.0])
        reading = meter.snapshot()
    assert reading.current_a[0] == pytest.approx(20.0, rel=0.01)
    assert reading.voltage_v[1:] == (0.0, 0.0) and max(reading.current_a[1:]) < 0.02


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_snapshot_is_one_request_and_total_energy_one_more(transport):
    with emulated_bench("SDM630", transport, 3) as (_clock, _plant, emulated, meter):
        before = emulated.requests
        meter.snapshot()
        after_snapshot = emulated.requests
        meter.snapshot(include_total=True)
        after_total = emulated.requests
    assert after_snapshot - before == 1
    assert after_total - after_snapshot == 2


def test_same_seed_same_readings():
    readings = []
    for _ in range(2):
        with emulated_bench("SDM630", "tcp", 3, seed=42) as (_clock, plant, _emulated, meter):
            start_charging(plant, [10.0, 11.0, 12.0])
            readings.append((meter.snapshot(), meter.snapshot()))
    assert readings[0] == readings[1]


# -- faults: always the meter's fault, never the charger's -----------------------------------
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("fault", ["silent", "garbage", "disconnect"])
def test_fault_raises_instrument_error_naming_meter_then_recovers(fault, transport):
    with emulated_bench("SDM630", transport, 3, timeout_s=0.1) as (_clock, _plant, emulated, meter):
        assert meter.snapshot().voltage_v[0] == pytest.approx(230.0, abs=0.2)
        emulated.fault = fault
        started = time.monotonic()
        with pytest.raises(InstrumentError) as caught:
            meter.snapshot()
        elapsed = time.monotonic() - started
        emulated.fault = None
        recovered = meter.snapshot()
    assert caught.value.instrument == "meter"
    assert str(caught.value).startswith("meter:")
    assert elapsed < FAULT_REAL_TIME_LIMIT_S
    assert recovered.voltage_v[0] == pytest.approx(230.0, abs=0.2)


def test_garbage_over_rtu_is_reported_as_an_unreadable_reply():
    with emulated_bench("SDM120", "rtu", 1, timeout_s=0.5) as (_clock, _plant, emulated, meter):
        emulated.fault = "garbage"
        with pytest.raises(InstrumentError, match="bad CRC"):
            meter.snapshot()


def test_a_wrong_unit_address_is_silence_then_a_rig_fault():
    """The rig file names another unit id than the meter's: an RS-485 meter (and the emulation, since
    it is as strict) does not answer at all; retried, then blamed on the meter, never the unit."""
    clock = VirtualClock(5)
    loop = LoopThread("meter-unit").start()
    emulated = EmulatedMeter(Plant(clock, phases=3), loop, meter_config("SDM630", "tcp", unit=1))
    try:
        resolved = dict(emulated.start(), unit=7)
        with Meter("meter", resolved, clock) as meter:
            with pytest.raises(InstrumentError, match="No response"):
                meter.snapshot()
    finally:
        emulated.stop()
        loop.stop()


def test_missing_serial_device_raises_instrument_error_on_open():
    meter = Meter("meter", meter_config("SDM630", "rtu", port="/dev/nonexistent-rs485", timeout_s=0.1), VirtualClock())
    with pytest.raises(InstrumentError) as caught:
        meter.open()
    assert caught.value.instrument == "meter"


# -- configuration -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key,value",
    [("model", "SDM999"), ("transport", "usb"), ("parity", "X"), ("port", "auto"), ("unit", "one")],
)
def test_bad_config_names_the_key(key, value):
    with pytest.raises(ValueError, match=f"'{key}'"):
        config = dict(meter_config("SDM630", "rtu", port="/dev/ttyUSB0"), **{key: value})
        Meter("meter", config, VirtualClock())


def test_pty_pair_relays_raw_bytes_both_ways_and_can_be_unplugged():
    with PtyPair() as pair:
        with serial.Serial(pair.device_a, timeout=1.0) as a, serial.Serial(pair.device_b, timeout=1.0) as b:
            frame = bytes(range(256))  # every byte value, CR and LF included, must pass unchanged
            a.write(frame)
            assert b.read(len(frame)) == frame
            b.write(b"\r\n\x00")
            assert a.read(3) == b"\r\n\x00"
            pair.connected = False
            a.write(b"lost")
            b.timeout = 0.1
            assert b.read(4) == b""
