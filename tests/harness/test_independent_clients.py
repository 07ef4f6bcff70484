"""The emulated instruments and the rig's central system, checked with clients that share no code
with the rig's own drivers: minimalmodbus (not pymodbus) on the meter's RS-485 line, and a charge
point written with the `ocpp` package's own `ChargePoint` class against the central system. A
driver and its emulation written by the same hands can agree on a mistake; these cannot."""

from __future__ import annotations

import asyncio
import contextlib

import minimalmodbus
import pytest
from ocpp.routing import on
from ocpp.v16 import ChargePoint as OcppChargePoint
from ocpp.v16 import call
from websockets.asyncio.client import connect

from rig.core.aio import LoopThread
from rig.core.clock import RealClock, VirtualClock
from rig.instruments.central_system import IN, CentralSystem
from rig.instruments.meter import REGISTER_MAPS, Meter
from rig.sim.meter_server import EmulatedMeter
from rig.sim.plant import Plant
from tests.harness.test_meter import meter_config, start_charging

@contextlib.contextmanager
def raw_load_session(name: str):
    """A plain pyvisa session (none of the rig's SCPI driver) to an emulated AC load."""
    import pyvisa

    from rig.sim.ac_load_sim import EmulatedAcLoad

    loop = LoopThread(name).start()
    emulated = EmulatedAcLoad(Plant(VirtualClock(2), phases=3), loop, {"resource": "auto", "timeout_s": 2.0})
    rm = pyvisa.ResourceManager("@py")
    try:
        session = rm.open_resource(emulated.start()["resource"], read_termination="\n",
                                   write_termination="\n", timeout=2000)
        try:
            yield session
        finally:
            session.close()
    finally:
        emulated.stop()
        loop.stop()


#: how far two reads of the same quantity may differ: the emulated meter adds class-1 noise per request
TOLERANCE = {"voltage": 0.6, "current": 0.2, "power": 60.0, "power_factor": 0.02, "total_power": 150.0,
             "frequency": 0.05, "import_kwh": 0.01, "export_kwh": 0.01, "total_kwh": 0.01}


@contextlib.contextmanager
def charging_meter(model: str, phases: int, seed: int, pf: float, seconds: float):
    """An emulated meter on its RTU line, metering 16 A per phase for `seconds`; yields (clock, section)."""
    clock = VirtualClock(seed)
    plant = Plant(clock, phases=phases)
    loop = LoopThread(f"meter-{model}-{seed}").start()
    emulated = EmulatedMeter(plant, loop, meter_config(model, "rtu"))
    try:
        section = emulated.start()
        start_charging(plant, [16.0] * phases, pf=pf)
        clock.sleep(seconds)
        yield clock, section
    finally:
        emulated.stop()
        loop.stop()


@contextlib.contextmanager
def rtu_reader(section: dict):
    """minimalmodbus on the meter's line: an RS-485 client that shares no code with pymodbus."""
    reader = minimalmodbus.Instrument(section["port"], int(section["unit"]), mode=minimalmodbus.MODE_RTU)
    reader.serial.baudrate, reader.serial.timeout = int(section["baudrate"]), 1.0
    try:
        yield reader
    finally:
        reader.serial.close()


@pytest.mark.parametrize("model, phases", [("SDM630", 3), ("SDM120", 1)])
def test_minimalmodbus_reads_every_modelled_register_as_the_meter_driver_does(model, phases):
    with charging_meter(model, phases, seed=5, pf=0.98, seconds=60.0) as (clock, section):
        driver = Meter("meter", section, clock)
        driver.open()
        try:
            snap = driver.snapshot()
        finally:
            driver.close()
        with rtu_reader(section) as independent:
            for quantity, addresses in REGISTER_MAPS[model].items():
                for phase, address in enumerate(addresses):
                    value = independent.read_float(address, functioncode=4, number_of_registers=2,
                                                   byteorder=minimalmodbus.BYTEORDER_BIG)
                    expected = _driver_value(snap, quantity, phase)
                    if expected is not None:
                        assert value == pytest.approx(expected, abs=TOLERANCE[quantity]), (quantity, phase)
                    assert value == value, f"{quantity} {phase} is NaN"  # every modelled register is a number


def _driver_value(reading, quantity: str, phase: int):
    """The driver's MeterReading of the same quantity (None where a snapshot does not read it)."""
    per_phase = {"voltage": "voltage_v", "current": "current_a", "power": "power_w", "power_factor": "power_factor"}
    if quantity in per_phase:
        return getattr(reading, per_phase[quantity])[phase]
    if quantity == "total_power":
        return sum(reading.power_w)
    if quantity == "frequency":
        return reading.frequency_hz
    return getattr(reading, quantity)  # import_kwh, export_kwh, total_kwh (None unless asked for)


# ---------------------------------------------------------------------- an ocpp ChargePoint
class LibraryChargePoint(OcppChargePoint):
    """A charge point as the `ocpp` package writes one: it boots, reports status, runs a transaction."""

    @on("TriggerMessage")
    async def on_trigger(self, requested_message, **kwargs):
        return {"status": "Accepted"}


async def _charge_point_session(url: str) -> dict:
    async with connect(url, subprotocols=["ocpp1.6"]) as ws:
        cp = LibraryChargePoint("CP-LIB-1", ws)
        listener = asyncio.ensure_future(cp.start())
        boot = await cp.call(call.BootNotification(charge_point_model="LibraryModel",
                                                   charge_point_vendor="OcppPackage",
                                                   charge_point_serial_number="LIB-0001"))
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
        started = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0,
                                                      timestamp="2026-12-02T10:00:00Z"))
        stopped = await cp.call(call.StopTransaction(meter_stop=1500, timestamp="2026-12-02T10:30:00Z",
                                                     transaction_id=started.transaction_id))
        listener.cancel()
        return {"boot": boot, "started": started, "stopped": stopped}


def test_an_ocpp_package_charge_point_is_served_and_recorded_by_the_central_system():
    central = CentralSystem("central", {"host": "127.0.0.1", "port": 0, "heartbeat_s": 300}, RealClock()).open()
    try:
        answers = asyncio.run(asyncio.wait_for(_charge_point_session(central.url_for("CP-LIB-1")), 30))
        assert answers["boot"].status == "Accepted" and answers["boot"].interval == 300
        assert answers["started"].id_tag_info["status"] == "Accepted" and answers["started"].transaction_id > 0
        calls = [m.action for m in central.history(direction=IN) if m.message_type == "Call"]
        assert calls == ["BootNotification", "StatusNotification", "StartTransaction", "StopTransaction"], calls
        assert all(m.valid for m in central.history()), [m.error for m in central.history() if not m.valid]
        boot = central.history(action="BootNotification", direction=IN)[0]
        assert boot.payload["chargePointSerialNumber"] == "LIB-0001" and boot.cp_id == "CP-LIB-1"
    finally:
        central.close()


# ---------------------------------------------------------------------- a raw pyvisa session
@pytest.mark.parametrize("instrument", ["load", "source", "injector"])
def test_a_raw_pyvisa_session_gets_identity_and_the_error_queue(instrument):
    """Plain pyvisa by hand, none of the rig's SCPI driver: identity, an undefined header reported
    through the error queue as IEEE 488.2 / SCPI say, *CLS clearing it."""
    import pyvisa

    from rig.sim.ac_load_sim import EmulatedAcLoad
    from rig.sim.ac_source_sim import EmulatedAcSource
    from rig.sim.injector_sim import EmulatedInjector

    classes = {"load": EmulatedAcLoad, "source": EmulatedAcSource, "injector": EmulatedInjector}
    clock = VirtualClock(2)
    loop = LoopThread(f"{instrument}-pyvisa").start()
    emulated = classes[instrument](Plant(clock, phases=3), loop, {"resource": "auto", "timeout_s": 2.0})
    rm = pyvisa.ResourceManager("@py")
    try:
        resource = emulated.start()["resource"]
        session = rm.open_resource(resource, read_termination="\n", write_termination="\n", timeout=2000)
        try:
            vendor, model, _serial, _firmware = session.query("*IDN?").split(",")
            assert vendor and model
            assert session.query("SYST:ERR?") == '0,"No error"'
            session.write("NO:SUCH:HEADER 1")
            code, text = session.query("SYST:ERR?").split(",", 1)
            assert int(code) == -113 and "Undefined header" in text
            assert session.query("SYST:ERR?") == '0,"No error"'  # the queue held one error
            session.write("NO:SUCH:HEADER 2")
            session.write("*CLS")
            assert session.query("SYST:ERR?") == '0,"No error"'
            assert session.query("*OPC?") == "1"
        finally:
            session.close()
    finally:
        emulated.stop()
        loop.stop()


# ---------------------------------------------------------------------- the emulated meter on faults
@pytest.fixture
def rtu_meter():
    clock = VirtualClock(4)
    loop = LoopThread("meter-strict").start()
    emulated = EmulatedMeter(Plant(clock, phases=3), loop, meter_config("SDM630", "rtu"))
    section = emulated.start()
    line = minimalmodbus.Instrument(section["port"], 1, mode=minimalmodbus.MODE_RTU)
    line.serial.baudrate, line.serial.timeout = int(section["baudrate"]), 0.5
    yield line, section
    line.serial.close()
    emulated.stop()
    loop.stop()


def test_another_unit_id_gets_no_answer_and_no_traceback(rtu_meter, caplog):
    line, section = rtu_meter
    other = minimalmodbus.Instrument(section["port"], 2)
    other.serial.close()
    other.serial = line.serial
    with pytest.raises(minimalmodbus.NoResponseError):
        other.read_float(0, functioncode=4)
    assert not [r for r in caplog.records if r.levelno >= 40], [r.getMessage()[:200] for r in caplog.records]
    assert line.read_float(0, functioncode=4) == pytest.approx(230.0, abs=0.5)  # the bus goes on


def test_an_undefined_function_code_gets_exception_01(rtu_meter):
    line, _section = rtu_meter
    with pytest.raises(minimalmodbus.IllegalRequestError):
        line._perform_command(0x41, b"\x00\x00")
    assert line.read_float(0, functioncode=4) == pytest.approx(230.0, abs=0.5)


def test_only_the_damaged_request_is_lost(rtu_meter):
    line, _section = rtu_meter
    line.serial.write(b"\x01\x04\x00\x00\x00\x02\x00\x00")  # the worked request with a broken CRC
    assert line.serial.read(16) == b""  # no answer to it
    assert line.read_float(0, functioncode=4) == pytest.approx(230.0, abs=0.5)  # the next one is answered


def test_on_modbus_tcp_too_another_unit_is_silent_and_an_undefined_code_is_refused():
    import socket

    clock = VirtualClock(4)
    loop = LoopThread("meter-strict-tcp").start()
    emulated = EmulatedMeter(Plant(clock, phases=3), loop, meter_config("SDM630", "tcp"))
    try:
        section = emulated.start()
        with socket.create_connection(("127.0.0.1", section["port"]), timeout=1.0) as sock:
            sock.sendall(bytes([0, 1, 0, 0, 0, 6, 2, 4, 0, 0, 0, 2]))  # unit 2
            with pytest.raises(TimeoutError):
                sock.recv(64)
            sock.sendall(bytes([0, 2, 0, 0, 0, 4, 1, 0x41, 0, 0]))  # undefined function 0x41
            assert sock.recv(64) == bytes([0, 2, 0, 0, 0, 3, 1, 0xC1, 0x01])
            sock.sendall(bytes([0, 3, 0, 0, 0, 6, 1, 4, 0, 0, 0, 2]))
            reply = sock.recv(64)
            assert reply[:9] == bytes([0, 3, 0, 0, 0, 7, 1, 4, 4])
    finally:
        emulated.stop()
        loop.stop()


def test_the_ieee_488_2_status_model_by_a_raw_pyvisa_session():
    """Error classes set their event status bits, the status byte summarises them, *CLS clears."""
    with raw_load_session("load-status") as session:
        assert session.query("*TST?") == "0" and session.query("*STB?") == "0"
        session.write("NO:SUCH:HEADER")  # -113: a command error
        assert session.query("SYST:ERR:COUN?") == "1"
        assert int(session.query("*STB?")) & 0x04  # EAV: the error queue holds something
        session.write("*ESE 32")
        session.write("*SRE 32")
        stb = int(session.query("*STB?"))
        assert stb & 0x20 and stb & 0x40, stb  # ESB (CME is enabled) and MSS (ESB is enabled)
        assert int(session.query("*ESR?")) == 0x20  # CME, and reading clears it
        assert int(session.query("*ESR?")) == 0
        session.write("*OPC")
        assert int(session.query("*ESR?")) & 0x01  # operation complete
        session.write("*ESE 300")  # out of range: an execution error
        assert session.query("SYST:ERR?").startswith("-113,")  # the oldest first
        assert session.query("SYST:ERR?").startswith("-222,")
        session.write("NO:SUCH:HEADER")
        session.write("*CLS")
        assert session.query("SYST:ERR:COUN?") == "0" and int(session.query("*ESR?")) == 0
        assert session.query("*ESE?") == "32" and session.query("*SRE?") == "32"  # *CLS keeps the enables


def test_ieee_488_2_white_space_and_string_data_by_a_raw_pyvisa_session():
    """IEEE 488.2 7.4: any white space (a tab too) separates header and data; ';' and ',' inside
    string data ('...' or "...", a doubled quote as data) do not split units or parameters."""
    from rig.sim.scpi_server import split_outside_quotes

    assert split_outside_quotes('A "x;y";B', ";") == ['A "x;y"', "B"]
    assert split_outside_quotes("'it''s;one',2", ",") == ["'it''s;one'", "2"]
    assert split_outside_quotes('"a,b", "c"', ",") == ['"a,b"', ' "c"']
    with raw_load_session("load-lexical") as session:
        session.write("*ESE\t32")  # a tab between header and data
        assert session.query("*ESE?") == "32" and session.query("SYST:ERR:COUN?") == "0"
        session.write('NO:SUCH:HEADER "one;unit, one parameter"')  # one unit: one error, not two
        assert session.query("SYST:ERR:COUN?") == "1"
        assert session.query("*ESE?;*OPC?") == "32;1"  # two query units, two answers in one line


@pytest.mark.parametrize("model, phases", [("SDM630", 3), ("SDM120", 1)])
def test_a_third_party_sdm_reader_gets_the_whole_register_map(model, phases):
    """minimalmodbus reads every documented input register of the Eastron map: each is a number and
    they agree with one another as on the meter (VA = V x I, PF = W / VA, phase totals, L-L = V x
    sqrt 3 and no neutral current on a balanced three-phase load); above the map: exception 02."""
    import math

    from rig.sim.meter_registers import FULL_MAPS

    with (charging_meter(model, phases, seed=6, pf=0.95, seconds=600.0) as (_clock, section),
          rtu_reader(section) as reader):
        read = {q: [reader.read_float(a, functioncode=4, number_of_registers=2) for a in addresses]
                for q, addresses in FULL_MAPS[model].items()}
        assert all(v == v for values in read.values() for v in values), "a documented register is NaN"
        for k in range(phases):
            assert read["va"][k] == pytest.approx(read["voltage"][k] * read["current"][k], rel=0.02)
            assert read["power_factor"][k] == pytest.approx(0.95, abs=0.02)
            assert read["phase_angle"][k] == pytest.approx(math.degrees(math.acos(0.95)), abs=2.0)
        assert read["import_kwh"][0] > 0 and read["total_kwh"][0] == pytest.approx(read["import_kwh"][0], rel=0.01)
        if phases == 3:
            assert sum(read["phase_import_kwh"]) == pytest.approx(read["import_kwh"][0], rel=0.01)
            assert all(v == pytest.approx(read["voltage"][0] * math.sqrt(3), rel=0.01) for v in read["line_voltage"])
            assert read["neutral_current"][0] < 0.5  # balanced: the phase currents cancel
            assert read["sum_current"][0] == pytest.approx(sum(read["current"]), rel=0.01)
        beyond = max(a for group in FULL_MAPS[model].values() for a in group) + 2
        with pytest.raises(minimalmodbus.IllegalRequestError):
            reader.read_float(beyond, functioncode=4, number_of_registers=2)
