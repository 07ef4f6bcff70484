"""The pilot-box driver against the emulated Pi: gpiozero's MockFactory on the virtual clock.

The driver is the real one: it switches relays on mock output pins, times CP edges from
pin callbacks and reads the MCP3208 over bit-banged SPI. The emulated circuit behind the
pins (rig/sim/gpio.py) turns that into the plant's vehicle and back.
"""

from __future__ import annotations

import contextlib
import copy
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from gpiozero import Device

from rig.product import cp
from rig.core.clock import VirtualClock
from rig.core.errors import InstrumentError, RigFault
from rig.instruments.pilot import ContactSense, PilotBox
from rig.sim.gpio import BenchPinFactory, EmulatedPilotCircuit
from rig.sim.plant import Plant

RIG_FILE = Path(__file__).resolve().parents[2] / "rig" / "data" / "rigs" / "emulated.toml"
FAULT_REAL_TIME_LIMIT_S = 2.0


def pilot_config() -> dict:
    with RIG_FILE.open("rb") as f:
        return tomllib.load(f)["pilot"]


@contextlib.contextmanager
def emulated_pilot(seed: int = 1, phases: int = 3, config: dict | None = None):
    """(clock, plant, factory, circuit, open driver), all released afterwards."""
    config = config or pilot_config()
    clock = VirtualClock(seed)
    plant = Plant(clock, phases=phases)
    factory = BenchPinFactory(clock)
    circuit = EmulatedPilotCircuit(plant, factory, config)
    resolved = circuit.start()
    box = PilotBox("pilot", resolved, clock, pin_factory=factory)
    try:
        box.open()
        yield SimpleNamespace(clock=clock, plant=plant, factory=factory, circuit=circuit, box=box)
    finally:
        box.close()
        circuit.stop()
        factory.close()


@pytest.fixture
def bench():
    with emulated_pilot() as b:
        yield b


def generator(plant: Plant, mode: str, duty: float = 1.0, freq_hz: float = 1000.0) -> None:
    """What the charger would do (the lead's emulated charger does it on its own)."""
    with plant.change("generator"):
        plant.generator.mode = mode
        plant.generator.duty = duty
        plant.generator.freq_hz = freq_hz


def contactor(plant: Plant, closed: bool) -> None:
    with plant.change("contactor"):
        plant.line_closed = closed
        plant.neutral_closed = closed


# -- vehicle states ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "letter, ohms, short",
    [("A", None, False), ("B", 2740.0, False), ("C", 882.0, False), ("D", 246.0, False), ("E", None, True)],
)
def test_set_state_lands_in_the_plant(bench, letter, ohms, short):
    bench.box.set_state("B")
    bench.box.set_state(letter)
    vehicle = bench.plant.vehicle
    assert bench.box.state == letter
    assert bench.plant.cp_state_letter() == letter
    assert vehicle.cp_pe_short is short
    if ohms is None:
        assert vehicle.cp_ohms is None
    else:
        assert vehicle.cp_ohms == pytest.approx(ohms, abs=1.0)


def test_unknown_state_is_refused(bench):
    with pytest.raises(ValueError, match="A, B, C, D, E"):
        bench.box.set_state("F")


@pytest.mark.parametrize(
    "path, never",
    [(["C", "D"], "A"), (["B", "E", "B"], "A"), (["C", "A"], "D"), (["D", "C"], "A")],
)
def test_state_changes_only_pass_through_states_a_vehicle_passes_through(bench, path, never):
    seen = []
    bench.plant.subscribe(lambda topic: topic == "vehicle" and seen.append(bench.plant.cp_state_letter()))
    for letter in path:
        bench.box.set_state(letter)
    assert seen[-1] == path[-1]
    assert never not in seen, seen


def test_closing_the_driver_drops_every_relay(bench):
    bench.box.set_state("C")
    bench.box.set_diode(False)
    bench.box.close()
    bench.box.close()  # idempotent
    assert bench.plant.vehicle.cp_ohms is None
    assert not bench.plant.vehicle.diode_bypassed
    bench.box.open()
    bench.box.set_state("B")
    assert bench.plant.cp_state_letter() == "B"


# -- CP levels and PWM ------------------------------------------------------------------------
@pytest.mark.parametrize("letter, high", [("A", 12.0), ("B", 9.0), ("C", 6.0), ("D", 3.0)])
def test_steady_12v_levels_without_pwm(bench, letter, high):
    generator(bench.plant, "steady")
    bench.box.set_state(letter)
    m = bench.box.measure_cp()
    assert m.high_v == pytest.approx(high, abs=0.35)
    assert m.high_v == pytest.approx(bench.plant.cp_levels()[0], abs=0.05)
    assert m.level_state == letter
    assert not m.pwm
    assert m.frequency_hz is None and m.duty is None and m.offered_current_a is None
    assert m.window_s == 0.02


def test_pwm_53_3_percent_at_1khz_offers_32_a(bench):
    bench.box.set_state("B")
    generator(bench.plant, "pwm", cp.duty_for_current(32))
    m = bench.box.measure_cp()
    assert m.pwm
    assert m.resolution_s == bench.clock.resolution_s
    assert m.frequency_hz == pytest.approx(1000.0, abs=0.5)
    assert abs(m.duty - cp.duty_for_current(32)) <= m.resolution_s * m.frequency_hz
    assert m.offered_current_a == pytest.approx(32.0, abs=0.1)
    assert m.ev_reading == cp.CURRENT
    assert m.high_v == pytest.approx(9.0, abs=0.35)
    assert m.low_v == pytest.approx(-12.0, abs=0.1)


@pytest.mark.parametrize("freq_hz", [980.0, 1000.0, 1020.0])
@pytest.mark.parametrize("amps", [6, 10, 16, 63, 80])
def test_frequency_and_duty_across_the_range(bench, freq_hz, amps):
    bench.box.set_state("C")
    generator(bench.plant, "pwm", cp.duty_for_current(amps), freq_hz)
    m = bench.box.measure_cp(window_s=0.05)
    assert m.frequency_hz == pytest.approx(freq_hz, abs=0.5)
    assert abs(m.duty - cp.duty_for_current(amps)) <= 2 * m.resolution_s * m.frequency_hz
    slope = 0.6 if amps <= 51 else 2.5  # amps per duty percent
    assert m.offered_current_a == pytest.approx(amps, abs=slope * 100 * 2 * m.resolution_s * m.frequency_hz)


def test_five_percent_reads_as_digital_communication(bench):
    bench.box.set_state("B")
    generator(bench.plant, "pwm", 0.05)
    m = bench.box.measure_cp()
    assert m.pwm and m.ev_reading == cp.DIGITAL
    assert m.offered_current_a is None


def test_duty_change_is_seen_on_the_next_measurement(bench):
    bench.box.set_state("C")
    generator(bench.plant, "pwm", cp.duty_for_current(16))
    first = bench.box.measure_cp()
    bench.clock.sleep(0.0123)
    with bench.plant.change("generator"):
        bench.plant.generator.duty = cp.duty_for_current(10)
    second = bench.box.measure_cp()
    assert first.offered_current_a == pytest.approx(16, abs=0.1)
    assert second.offered_current_a == pytest.approx(10, abs=0.1)


def test_diode_bypass_lifts_the_low_level(bench):
    bench.box.set_state("B")
    generator(bench.plant, "pwm", cp.duty_for_current(16))
    assert bench.box.measure_cp().low_v == pytest.approx(-12.0, abs=0.1)
    bench.box.set_diode(False)
    assert bench.plant.vehicle.diode_bypassed
    assert not bench.box.diode_present
    assert bench.box.measure_cp().low_v == pytest.approx(-8.8, abs=0.15)
    bench.box.set_state("C")
    assert bench.box.measure_cp().low_v > -7.0
    bench.box.set_diode(True)
    assert bench.box.measure_cp().low_v == pytest.approx(-12.0, abs=0.1)


def test_state_e_and_state_f(bench):
    generator(bench.plant, "pwm", 0.5)
    bench.box.set_state("E")
    m = bench.box.measure_cp()
    assert m.high_v == pytest.approx(0.0, abs=0.05) and m.level_state == "E" and not m.pwm
    bench.box.set_state("B")
    generator(bench.plant, "minus12")
    m = bench.box.measure_cp()
    assert m.high_v == pytest.approx(-12.0, abs=0.05) and m.level_state == "F" and not m.pwm


def test_comparator_edges_run_only_while_the_driver_listens(bench):
    bench.box.set_state("B")
    generator(bench.plant, "pwm", 0.5)
    assert bench.clock.next_timer_s() is None
    bench.box.measure_cp()
    assert bench.clock.next_timer_s() is None


def test_measurement_is_fast_in_real_time(bench):
    bench.box.set_state("B")
    generator(bench.plant, "pwm", 0.5)
    start = time.perf_counter()
    for _ in range(10):
        bench.box.measure_cp()
    assert time.perf_counter() - start < 1.0


def test_same_seed_same_measurements():
    def run(seed):
        with emulated_pilot(seed=seed) as b:
            b.box.set_state("B")
            generator(b.plant, "pwm", 0.4)
            return [b.box.measure_cp() for _ in range(3)]

    assert run(7) == run(7)
    assert run(7) != run(8)  # the ADC noise comes from the seeded rng


def test_two_benches_in_one_process_stay_apart():
    with emulated_pilot(seed=1) as one, emulated_pilot(seed=2) as two:
        one.box.set_state("B")
        two.box.set_state("C")
        generator(one.plant, "steady")
        generator(two.plant, "steady")
        assert one.box.measure_cp().level_state == "B"
        assert two.box.measure_cp().level_state == "C"
    assert Device.pin_factory is None  # no bench touched gpiozero's global factory


# -- contact sense -----------------------------------------------------------------------------
def test_sense_follows_the_contactor_with_exact_times(bench):
    box, clock = bench.box, bench.clock
    assert box.sense() == ContactSense(l1=False, l2=False, l3=False, n=False, pe=True)
    box.clear_sense_events()
    clock.sleep(1.234567)
    contactor(bench.plant, True)
    clock.sleep(0.5)
    contactor(bench.plant, False)
    assert box.sense() == ContactSense(l1=False, l2=False, l3=False, n=False, pe=True)
    events = box.sense_events()
    closing = [e for e in events if e[2]]
    opening = [e for e in events if not e[2]]
    assert {name for _, name, _ in closing} == {"sense_l1", "sense_l2", "sense_l3", "sense_n"}
    assert all(t == 1.234567 for t, _, _ in closing), closing
    assert all(t == 1.734567 for t, _, _ in opening), opening
    box.clear_sense_events()
    assert box.sense_events() == []


def test_earth_and_supply_are_sensed(bench):
    with bench.plant.change("earth"):
        bench.plant.earth_closed = False
    assert bench.box.sense().pe is False
    contactor(bench.plant, True)
    assert bench.box.sense().l1
    with bench.plant.change("supply"):
        bench.plant.supply_on = False
    assert bench.box.sense().l1 is False


def test_wait_sense_returns_the_edge_time_not_the_poll_time(bench):
    clock = bench.clock
    clock.call_later(3.0005, lambda: contactor(bench.plant, True))
    t = bench.box.wait_sense("sense_l1", True, timeout_s=5.0, poll_s=0.1)
    assert t == 3.0005
    assert clock.now() > t
    assert bench.box.wait_sense("sense_l1", True, timeout_s=1.0) == 3.0005  # already there
    assert bench.box.wait_sense("sense_l1", False, timeout_s=0.5) is None


def test_watchers_hear_every_edge_until_unsubscribed(bench):
    heard = []
    stop = bench.box.watch_sense(lambda t, name, value: heard.append((t, name, value)))
    bench.clock.sleep(0.25)
    contactor(bench.plant, True)
    stop()
    contactor(bench.plant, False)
    assert heard and all(t == 0.25 and value for t, _, value in heard)
    assert bench.box.on_output_change == bench.box.watch_sense


def test_single_phase_unit_leaves_l2_l3_dead():
    with emulated_pilot(phases=1) as b:
        contactor(b.plant, True)
        assert b.box.sense() == ContactSense(l1=True, l2=False, l3=False, n=True, pe=True)


def test_a_bench_without_l2_l3_sensors_reports_none():
    config = pilot_config()
    del config["pins"]["sense_l2"], config["pins"]["sense_l3"]
    with emulated_pilot(phases=1, config=config) as b:
        contactor(b.plant, True)
        assert b.box.sense() == ContactSense(l1=True, l2=None, l3=None, n=True, pe=True)


# -- proximity pilot -------------------------------------------------------------------------------
@pytest.mark.parametrize("ohms", [1500, 680, 220, 100, 47, 3300, 10000, None])
def test_pp_selection_lands_in_the_plant(bench, ohms):
    bench.box.set_pp(ohms)
    bench.clock.sleep(0)  # the selector's three relays are applied together, in this instant
    assert bench.plant.vehicle.pp_ohms == ohms
    assert bench.box.pp_ohms == ohms


def test_pp_change_never_shows_the_charger_an_intermediate_code(bench):
    bench.box.set_pp(1500)  # code 1
    bench.clock.sleep(0)
    seen = []
    bench.plant.subscribe(lambda topic: seen.append(bench.plant.vehicle.pp_ohms))
    bench.box.set_pp(680)  # code 2: bit 0 off, bit 1 on
    bench.clock.sleep(0)
    bench.box.set_pp(100)  # code 4
    bench.clock.sleep(0)
    assert seen == [680.0, 100.0]


def test_pp_is_applied_before_a_following_plug_in(bench):
    bench.box.set_pp(220)
    order = []
    bench.plant.subscribe(lambda topic: order.append((bench.plant.vehicle.pp_ohms, bench.plant.cp_state_letter())))
    bench.box.set_state("B")
    assert order == [(220.0, "B")]


@pytest.mark.parametrize("ohms", [330, 0.5, 1499])
def test_pp_not_on_the_ladder_lists_the_ladder(bench, ohms):
    with pytest.raises(ValueError, match="available: open, 1500, 680, 220, 100, 47, 3300, 10000"):
        bench.box.set_pp(ohms)


def test_safe_state_restores_a_plain_disconnected_vehicle(bench):
    bench.box.set_state("C")
    bench.box.set_diode(False)
    bench.box.set_pp(220)
    bench.box.safe()
    bench.clock.sleep(0)
    vehicle = bench.plant.vehicle
    assert (vehicle.cp_ohms, vehicle.diode_bypassed, vehicle.cp_pe_short, vehicle.pp_ohms) == (None, False, False, None)
    assert (bench.box.state, bench.box.diode_present, bench.box.pp_ohms) == ("A", True, None)


# -- rig faults, never charger verdicts --------------------------------------------------------------
@pytest.mark.parametrize("fault", ["silent", "disconnect", "garbage"])
def test_broken_adc_link_is_an_instrument_error(bench, fault):
    generator(bench.plant, "steady")
    bench.circuit.fault = fault
    start = time.perf_counter()
    with pytest.raises(InstrumentError) as err:
        bench.box.measure_cp()
    assert err.value.instrument == "pilot"
    assert time.perf_counter() - start < FAULT_REAL_TIME_LIMIT_S
    bench.circuit.fault = None
    assert bench.box.measure_cp().level_state == "A"


def test_mock_factory_exists_only_inside_the_emulated_bench():
    box = PilotBox("pilot", pilot_config(), VirtualClock(0))
    with pytest.raises(InstrumentError, match="emulated bench") as err:
        box.open()
    assert err.value.instrument == "pilot"


def test_remote_pigpio_failure_names_factory_and_host():
    config = copy.deepcopy(pilot_config())
    config.update(pin_factory="pigpio", host="127.0.0.1", port=1)
    with pytest.raises(InstrumentError, match=r"pigpio.*127\.0\.0\.1"):
        PilotBox("pilot", config, VirtualClock(0)).open()


@pytest.mark.parametrize("kind", ["lgpio", "rpigpio", "wiringpi"])
def test_other_factories_fail_as_rig_faults(kind):
    config = copy.deepcopy(pilot_config())
    config["pin_factory"] = kind
    with pytest.raises(RigFault, match=kind):
        PilotBox("pilot", config, VirtualClock(0)).open()


def test_driver_not_open_is_a_rig_fault():
    box = PilotBox("pilot", pilot_config(), VirtualClock(0))
    with pytest.raises(InstrumentError, match="not open"):
        box.set_state("B")


def test_circuit_must_be_wired_before_the_driver_opens():
    clock = VirtualClock(0)
    factory = BenchPinFactory(clock)
    try:
        with PilotBox("pilot", pilot_config(), clock, pin_factory=factory):
            circuit = EmulatedPilotCircuit(Plant(clock), factory, pilot_config())
            with pytest.raises(RuntimeError, match="before the pilot box opens"):
                circuit.start()
    finally:
        factory.close()


@pytest.mark.parametrize("arm_at_s", [0.0011, 0.0018, 0.00275, 0.0047])  # low, high, high, low
def test_arming_mid_period_times_no_edge_that_did_not_happen(bench, arm_at_s):
    generator(bench.plant, "pwm", 0.2)  # PWM phase starts now: high 0-0.2 ms of every ms
    bench.clock.sleep(0.0003)
    contactor(bench.plant, False)  # an unrelated plant change while the line is low
    bench.clock.sleep(arm_at_s)  # from 0.3 ms: the line is high 1.0-1.2 ms, 2.0-2.2 ms ...
    m = bench.box.measure_cp()
    assert m.frequency_hz == pytest.approx(1000.0, abs=0.5)
    assert m.duty == pytest.approx(0.2, abs=m.resolution_s * 1000)
