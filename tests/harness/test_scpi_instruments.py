"""The SCPI drivers (AC load, AC source, residual-current injector) against their emulated instruments.

Every test talks real SCPI over loopback TCP through pyvisa-py: a driver that only passes
against a fake would prove nothing. One module-scoped bench (virtual clock, 3-phase plant,
the three emulated instruments, the three drivers) is shared because opening pyvisa is slow;
a per-test fixture puts it back in its safe state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from rig.core.aio import LoopThread
from rig.core.clock import VirtualClock
from rig.core.errors import InstrumentError
from rig.instruments.ac_load import AcLoad
from rig.instruments.ac_source import AcSource
from rig.instruments.injector import Injector
from rig.sim.ac_load_sim import EmulatedAcLoad
from rig.sim.ac_source_sim import EmulatedAcSource
from rig.sim.injector_sim import EmulatedInjector
from rig.sim.plant import Plant

EPS = 1e-6  # the virtual clock's resolution: "exactly" means to the microsecond
FAULT_TIMEOUT_S = 0.1  # short instrument timeout for the fault tests, to keep them fast


@dataclass
class Bench:
    clock: VirtualClock
    plant: Plant
    loop: LoopThread
    sims: dict
    configs: dict
    load: AcLoad
    source: AcSource
    injector: Injector


DRIVERS = {"load": AcLoad, "source": AcSource, "injector": Injector}


@pytest.fixture(scope="module")
def bench():
    clock = VirtualClock(seed=7)
    plant = Plant(clock, phases=3)
    loop = LoopThread("scpi-emulated").start()
    base = {"resource": "auto", "timeout_s": 2.0}
    sims = {
        "load": EmulatedAcLoad(plant, loop, base),
        "source": EmulatedAcSource(plant, loop, base),
        "injector": EmulatedInjector(plant, loop, base),
    }
    configs = {name: sim.start() for name, sim in sims.items()}
    drivers = {name: DRIVERS[name](name, configs[name], clock) for name in sims}
    for driver in drivers.values():
        driver.open()
    try:
        yield Bench(clock, plant, loop, sims, configs, **drivers)
    finally:
        for driver in drivers.values():
            driver.close()
        for sim in sims.values():
            sim.stop()
        loop.stop()


@pytest.fixture
def rig(bench):
    """The shared bench in its safe state, with the contactor closed so current can flow."""
    for sim in bench.sims.values():
        sim.fault = None
    with bench.plant.change("test"):
        bench.plant.line_closed = bench.plant.neutral_closed = True
    yield bench
    for sim in bench.sims.values():
        sim.fault = None
    bench.load.off()
    bench.load.set_current(0)
    bench.source.nominal()
    bench.injector.off()
    with bench.plant.change("test"):
        bench.plant.line_closed = bench.plant.neutral_closed = False


# -- identity ------------------------------------------------------------------------------------
def test_drivers_identify_their_instruments_and_phase_count(rig):
    assert rig.load.session.identity == "PlugStreamRig,EmuLoad,SIM0001,1.0"
    assert rig.source.session.identity == "PlugStreamRig,EmuSource,SIM0002,1.0"
    assert rig.injector.session.identity.startswith("PlugStreamRig,EmuInjector,")
    assert rig.load.phases == rig.source.phases == 3


def test_configured_phase_count_is_used_and_a_wrong_one_is_caught(rig):
    config = {**rig.configs["load"], "phases": 1}  # for a load that cannot say (no SYST:PHAS?)
    with AcLoad("load", config, rig.clock) as load:
        assert load.phases == 1
        with pytest.raises(InstrumentError, match="expected 1 values") as caught:
            load.setpoint()  # the 3-phase load answers three: the rig file is wrong, not the unit
        assert caught.value.instrument == "load"


# -- AC load -------------------------------------------------------------------------------------
def test_load_current_for_all_phases_lands_in_plant(rig):
    rig.load.set_current(16)
    rig.load.on()
    assert rig.plant.load_a == [16.0, 16.0, 16.0]
    assert rig.plant.load_on and rig.load.is_on()
    assert rig.load.setpoint() == (16.0, 16.0, 16.0)
    rig.load.off()
    assert not rig.plant.load_on and not rig.load.is_on()


def test_load_current_per_phase_on_a_three_phase_plant(rig):
    rig.load.set_current([6.0, 10.5, 32.0])
    assert rig.plant.load_a == [6.0, 10.5, 32.0]
    assert rig.load.setpoint() == (6.0, 10.5, 32.0)


def test_load_measures_only_what_flows_through_the_contactor(rig):
    rig.load.set_current([6.0, 10.0, 16.0])
    rig.load.on()
    assert rig.load.measure_current() == (6.0, 10.0, 16.0)
    with rig.plant.change("test"):
        rig.plant.line_closed = False
    assert rig.load.measure_current() == (0.0, 0.0, 0.0)


def test_load_power_factor_lands_in_plant(rig):
    rig.load.set_power_factor(0.95)
    assert rig.plant.load_pf == pytest.approx(0.95)
    rig.load.set_power_factor(1.0)


def test_load_rejects_a_current_list_of_the_wrong_length(rig):
    with pytest.raises(ValueError, match="2 currents given for a 3-phase load"):
        rig.load.set_current([6.0, 6.0])


def test_load_setpoint_clamped_by_the_instrument_is_caught_on_read_back(rig):
    with pytest.raises(InstrumentError, match="reads back") as caught:
        rig.load.set_current(45.0)  # above the emulated load's 40 A rating: it clamps
    assert caught.value.instrument == "load"
    assert rig.plant.load_a == [40.0, 40.0, 40.0]


def test_load_setting_refused_by_the_instrument_is_an_instrument_error(rig):
    with pytest.raises(InstrumentError, match=r'-222,"Data out of range"'):
        rig.load.set_current(-1.0)


# -- AC source -----------------------------------------------------------------------------------
def test_source_output_and_voltage_land_in_plant(rig):
    rig.source.power_off()
    assert not rig.plant.supply_on and not rig.source.is_on()
    assert rig.source.measure_voltages() == (0.0, 0.0, 0.0)
    rig.source.power_on()
    assert rig.plant.supply_on and rig.source.is_on()
    rig.source.set_voltage(240.0)
    assert rig.plant.supply_v == [240.0, 240.0, 240.0]
    rig.source.set_voltage(200.0, phase=2)
    assert rig.plant.supply_v == [240.0, 200.0, 240.0]
    assert rig.source.voltages() == (240.0, 200.0, 240.0)


def test_source_excursion_returns_after_exactly_the_given_virtual_time(rig):
    t0 = rig.clock.now()
    rig.source.excursion(260.0, 4.0)
    assert rig.plant.supply_v == [260.0] * 3
    assert rig.source.transient_running()
    assert rig.clock.next_timer_s() == pytest.approx(t0 + 4.0, abs=EPS / 10)
    rig.clock.sleep(4.0 - EPS)
    assert rig.plant.supply_v == [260.0] * 3
    rig.clock.sleep(2 * EPS)
    assert rig.plant.supply_v == [230.0] * 3
    assert not rig.source.transient_running()


def test_source_excursion_on_one_phase_leaves_the_others(rig):
    rig.source.set_voltage(235.0, phase=2)
    rig.source.excursion(190.0, 3.9, phase=2)
    assert rig.plant.supply_v == [230.0, 190.0, 230.0]
    rig.clock.sleep(3.9 - EPS)
    assert rig.plant.supply_v == [230.0, 190.0, 230.0]
    rig.clock.sleep(2 * EPS)
    assert rig.plant.supply_v == [230.0, 235.0, 230.0]  # back to its programmed level


def test_source_profile_holds_each_step_then_returns(rig):
    steps = [(200.0, 1.0), (260.0, 2.5), (0.0, 0.5)]
    rig.source.profile(steps, phase=1)
    for volts, seconds in steps:  # look in the middle of each step
        rig.clock.sleep(seconds / 2)
        assert rig.plant.supply_v == [volts, 230.0, 230.0]
        rig.clock.sleep(seconds / 2)
    assert rig.plant.supply_v == [230.0, 230.0, 230.0]
    assert not rig.source.transient_running()


def test_source_profile_boundaries_are_exact(rig):
    rig.source.profile([(207.0, 1.0), (253.0, 2.0)])
    expected = [(1.0 - EPS, 207.0), (1.0 + EPS, 253.0), (3.0 - EPS, 253.0), (3.0 + EPS, 230.0)]
    t0 = rig.clock.now()
    for at, volts in expected:
        rig.clock.sleep(t0 + at - rig.clock.now())
        assert rig.plant.supply_v == [volts] * 3, f"at +{at} s"


def test_source_abort_returns_at_once_and_cancels_the_return_timer(rig):
    rig.source.excursion(200.0, 10.0)
    rig.clock.sleep(1.0)
    rig.source.abort_transient()
    assert rig.plant.supply_v == [230.0] * 3
    assert not rig.source.transient_running()
    rig.source.set_voltage(240.0)
    rig.clock.sleep(10.0)
    assert rig.plant.supply_v == [240.0] * 3  # the aborted excursion's return never fires


def test_source_step_on_a_phase_cancels_its_transient(rig):
    rig.source.excursion(260.0, 4.0, phase=1)
    rig.source.set_voltage(220.0, phase=1)
    assert not rig.source.transient_running()
    rig.clock.sleep(5.0)
    assert rig.plant.supply_v == [220.0, 230.0, 230.0]


def test_source_nominal_is_the_safe_state(rig):
    rig.source.set_voltage(245.0, phase=3)
    rig.source.profile([(180.0, 30.0)], phase=1)
    rig.source.power_off()
    rig.source.nominal()
    assert rig.plant.supply_on
    assert rig.plant.supply_v == [230.0] * 3
    assert rig.plant.supply_hz == 50.0
    assert not rig.source.transient_running()


def test_source_level_clamped_by_the_instrument_is_caught_on_read_back(rig):
    with pytest.raises(InstrumentError, match="reads back") as caught:
        rig.source.set_voltage(320.0, phase=3)  # above the emulated source's 300 V range
    assert caught.value.instrument == "source"


def test_source_rejects_a_phase_it_does_not_have(rig):
    with pytest.raises(ValueError, match="phase 4 of a 3-phase source"):
        rig.source.excursion(260.0, 4.0, phase=4)


# -- injector ------------------------------------------------------------------------------------
def test_injector_step_lands_in_plant(rig):
    rig.injector.set_current(0.006)
    assert rig.plant.injection.on
    assert rig.plant.residual_dc_a() == pytest.approx(0.006)
    assert rig.injector.level() == pytest.approx(0.006)
    assert not rig.injector.is_off()


@pytest.mark.parametrize("seconds", [0.5, 10.0, 29.0, 30.0, 45.0])
def test_injector_ramp_follows_rate_until_stop(rig, seconds):
    rate, stop = 0.001, 0.030
    rig.injector.ramp(rate, stop)
    rig.clock.sleep(seconds)
    expected = min(rate * seconds, stop)
    assert rig.plant.residual_dc_a() == pytest.approx(expected, abs=1e-12)
    assert rig.injector.level() == pytest.approx(expected, rel=1e-6)


def test_injector_ramp_down_from_a_step(rig):
    rig.injector.set_current(0.060)
    rig.injector.ramp(0.010, 0.006)
    rig.clock.sleep(2.0)
    assert rig.plant.residual_dc_a() == pytest.approx(0.040)
    rig.clock.sleep(10.0)
    assert rig.plant.residual_dc_a() == pytest.approx(0.006)


def test_injector_off_is_zero_and_output_off(rig):
    rig.injector.set_current(0.2)
    rig.injector.off()
    assert rig.injector.is_off()
    assert not rig.plant.injection.on
    assert rig.plant.residual_dc_a() == 0.0
    assert rig.injector.level() == 0.0


def test_injector_level_clamped_by_the_instrument_is_caught_on_read_back(rig):
    with pytest.raises(InstrumentError, match="reads back") as caught:
        rig.injector.set_current(2.0)  # beyond the emulated SMU's 1 A range
    assert caught.value.instrument == "injector"


def test_injector_rejects_a_ramp_that_does_not_move(rig):
    with pytest.raises(ValueError, match="rate must be > 0"):
        rig.injector.ramp(0.0, 0.03)


# -- the SCPI layer ------------------------------------------------------------------------------
def test_unknown_command_shows_in_the_error_queue_and_becomes_an_instrument_error(rig):
    session = rig.load.session
    session.transaction("raw write", lambda: session.write("BOGus:HEADer 1"))
    assert session.query("SYST:ERR?") == '-113,"Undefined header"'
    assert session.query("SYST:ERR?") == '0,"No error"'
    with pytest.raises(InstrumentError, match=r"'BOGus:HEADer 1' rejected: -113") as caught:
        session.command("BOGus:HEADer 1")
    assert caught.value.instrument == "load"


def test_header_suffix_beyond_the_phases_is_refused(rig):
    with pytest.raises(InstrumentError, match=r"-114,\"Header suffix out of range\""):
        rig.load.session.command("CURR4 1")


def test_long_forms_and_compound_messages_are_understood(rig):
    session = rig.load.session
    session.command("SOURce:CURRent2 5.5;:INPut:STATe ON")
    assert session.query("CURR2?;inp?") == "5.500;1"
    assert rig.plant.load_a[1] == 5.5 and rig.plant.load_on


def test_reset_puts_the_load_in_its_power_on_state(rig):
    rig.load.set_current(10)
    rig.load.on()
    rig.load.session.command("*RST")
    assert not rig.plant.load_on and rig.plant.load_a == [0.0, 0.0, 0.0]


def test_driver_used_before_open_is_an_instrument_error(rig):
    load = AcLoad("load", rig.configs["load"], rig.clock)
    with pytest.raises(InstrumentError, match="before open"):
        load.is_on()
    load.close()
    load.close()  # idempotent


# -- faults: bounded, named, recoverable ---------------------------------------------------------
def _short_timeout_driver(rig, name):
    config = {**rig.configs[name], "timeout_s": FAULT_TIMEOUT_S}
    driver = DRIVERS[name](name, config, rig.clock)
    driver.open()
    return driver


READ_ONE = {
    "load": lambda d: d.is_on(),
    "source": lambda d: d.voltages(),
    "injector": lambda d: d.level(),
}
SET_ONE = {
    "load": lambda d: d.set_current(8.0),
    "source": lambda d: d.set_voltage(231.0),
    "injector": lambda d: d.set_current(0.006),
}


# Every instrument on the setting path (the longest exchange); the query path once, on the load:
# the retry and reconnect machinery is the shared session's.
CASES = [("set", name) for name in DRIVERS] + [("read", "load")]


@pytest.mark.parametrize("fault", ["silent", "garbage", "disconnect"])
@pytest.mark.parametrize("kind, name", CASES, ids=[f"{k}-{n}" for k, n in CASES])
def test_instrument_fault_is_an_instrument_error_naming_it(rig, kind, name, fault):
    operation = SET_ONE if kind == "set" else READ_ONE
    driver = _short_timeout_driver(rig, name)
    try:
        rig.sims[name].fault = fault
        started = time.monotonic()
        with pytest.raises(InstrumentError) as caught:
            operation[name](driver)
        elapsed = time.monotonic() - started
        assert caught.value.instrument == name
        attempts = driver.session.attempts
        assert elapsed < FAULT_TIMEOUT_S * attempts + 1.0, f"took {elapsed:.2f} s"
        rig.sims[name].fault = None
        operation[name](driver)  # the instrument is back: the same driver recovers
    finally:
        rig.sims[name].fault = None
        driver.close()


def test_opening_a_silent_instrument_is_an_instrument_error(rig):
    rig.sims["injector"].fault = "silent"
    config = {**rig.configs["injector"], "timeout_s": FAULT_TIMEOUT_S}
    injector = Injector("injector", config, rig.clock)
    with pytest.raises(InstrumentError, match=r"injector: identify \(\*IDN\?\) failed after 3 attempts"):
        injector.open()
    assert not injector.session.is_open


def test_nothing_listening_is_an_instrument_error(rig):
    source = EmulatedAcSource(rig.plant, rig.loop, {"resource": "auto", "timeout_s": FAULT_TIMEOUT_S})
    config = source.start()
    source.stop()  # the port is free again: connections are refused
    with pytest.raises(InstrumentError) as caught:
        AcSource("source", config, rig.clock).open()
    assert caught.value.instrument == "source"


def test_transient_with_missing_parameters_is_refused(rig):
    with pytest.raises(InstrumentError, match=r'-109,"Missing parameter"'):
        rig.source.session.command("TRAN:LIST ALL,230")
    with pytest.raises(InstrumentError, match=r'-224,"Illegal parameter value"'):
        rig.source.session.command("TRAN:EXC L9,230,1")
    assert not rig.source.transient_running()


def test_emulated_instrument_stop_is_idempotent_and_frees_its_port(rig):
    load = EmulatedAcLoad(rig.plant, rig.loop, {"resource": "auto", "timeout_s": FAULT_TIMEOUT_S})
    config = load.start()
    assert load.start() == config  # already serving: same address
    load.stop()
    load.stop()
    with pytest.raises(InstrumentError):
        AcLoad("load", config, rig.clock).open()
