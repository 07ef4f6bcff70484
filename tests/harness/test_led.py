"""The LED state classifier, the emulated colour sensor and the sensor's driver.

The classifier is fed samples from `rig.sim.led_emitter` (the same code the emulated bench
uses) with noise, ambient light, brightness scale and phase varied; the driver is tested
end to end against the emulated sensor on a pseudo-terminal, under the virtual clock.
"""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rig.core.aio import LoopThread
from rig.core.clock import VirtualClock
from rig.core.errors import InstrumentError
from rig.instruments.led_sensor import LedSensor
from rig.product.led_classifier import Sample, classify, colour_match_radius, load_led_profile
from rig.sim.led_emitter import FULL_SCALE_COUNTS, Optics, relative_rgb, sensor_counts
from rig.sim.led_sensor_sim import EmulatedLedSensor
from rig.sim.plant import LedShown, Plant

LED = load_led_profile()
COLOURS, STATES, WAVEFORMS = LED["colours"], LED["states"], LED["waveforms"]
STATE_NAMES = sorted(STATES)
SNR_30DB = 10 ** (-30 / 20)  # noise sigma as a share of the lit signal at 30 dB


def pattern_period(pattern: str, waveforms=WAVEFORMS) -> float:
    return {
        "solid": 1.0,
        "pulsing": waveforms["pulsing_period_s"],
        "circle": waveforms["circle_period_s"],
        "rainbow": waveforms["rainbow_period_s"],
    }[pattern]


def emitted(
    colour: str,
    pattern: str,
    *,
    seed: int = 0,
    phase: float = 0.0,  # fraction of a period the waveform has already run at the window start
    brightness: float = 1.0,
    snr_share: float = SNR_30DB,  # gaussian sigma per channel, share of full-scale * brightness
    ambient: float = 150.0,
    rate_hz: float = 50.0,
    periods: float = 1.5,
    waveforms=WAVEFORMS,
    colours=COLOURS,
    dark_noise: float | None = None,
) -> list[Sample]:
    """A window of sensor samples of one LED state, as the emulated sensor would take them."""
    rng = random.Random(seed)
    period = pattern_period(pattern, waveforms)
    window = max(periods * period, 1.0)
    floor = dark_noise if dark_noise is not None else snr_share * FULL_SCALE_COUNTS * brightness
    optics = Optics(brightness=brightness, ambient=(ambient, ambient * 0.9, ambient * 0.8), noise_rel=0.0,
                    noise_floor=floor)
    shown = LedShown(colour, pattern, since_s=-phase * period)
    n = int(window * rate_hz) + 1
    return [Sample(i / rate_hz, *sensor_counts(shown, i / rate_hz, colours, waveforms, optics, rng)) for i in range(n)]


def classify_default(samples, waveforms=WAVEFORMS):
    return classify(samples, COLOURS, STATES, waveforms)


# -- the classifier on emitted samples -------------------------------------------------------------
@pytest.mark.parametrize("seed,brightness", [(0, 0.3), (1, 1.0), (2, 1.5)])
@pytest.mark.parametrize("phase", [0.0, 0.31, 0.68])
@pytest.mark.parametrize("state", STATE_NAMES)
def test_every_documented_state_is_recognised(state, phase, seed, brightness):
    spec = STATES[state]
    obs = classify_default(emitted(spec["colour"], spec["pattern"], seed=seed, phase=phase, brightness=brightness))
    assert obs.state == state, obs.explain()
    assert (obs.colour, obs.pattern) == (spec["colour"], spec["pattern"])
    assert obs.meaning == spec["meaning"]
    assert 0.0 < obs.confidence <= 1.0


_property = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@_property
@given(
    state=st.sampled_from(STATE_NAMES),
    seed=st.integers(0, 2**32 - 1),
    phase=st.floats(0.0, 1.0),
    brightness=st.floats(0.3, 1.5),
    snr_share=st.floats(0.0, SNR_30DB),
    ambient=st.floats(0.0, 300.0),
    rate_hz=st.sampled_from([20.0, 50.0, 100.0]),
    periods=st.floats(1.5, 3.0),
)
def test_state_survives_noise_ambient_scale_phase_and_window(
    state, seed, phase, brightness, snr_share, ambient, rate_hz, periods
):
    spec = STATES[state]
    samples = emitted(
        spec["colour"], spec["pattern"], seed=seed, phase=phase, brightness=brightness, snr_share=snr_share,
        ambient=ambient, rate_hz=rate_hz, periods=periods,
    )
    obs = classify_default(samples)
    assert obs.state == state, obs.explain()


@_property
@given(
    state=st.sampled_from(STATE_NAMES),
    seed=st.integers(0, 2**32 - 1),
    phase=st.floats(0.0, 1.0),
    period_scale=st.floats(0.6, 1.6),
    min_level=st.floats(0.08, 0.3),
    lit_fraction=st.floats(0.15, 0.45),
    brightness=st.floats(0.3, 1.5),
)
def test_real_unit_waveforms_within_a_factor_of_two_still_classify(
    state, seed, phase, period_scale, min_level, lit_fraction, brightness
):
    """The profile's waveforms are scales, not exact values: a unit that differs still classifies."""
    unit = {
        **WAVEFORMS,
        "pulsing_period_s": WAVEFORMS["pulsing_period_s"] * period_scale,
        "pulsing_min_level": min_level,
        "circle_period_s": WAVEFORMS["circle_period_s"] * period_scale,
        "circle_lit_fraction": lit_fraction,
        "rainbow_period_s": WAVEFORMS["rainbow_period_s"] * period_scale,
    }
    spec = STATES[state]
    samples = emitted(spec["colour"], spec["pattern"], seed=seed, phase=phase, brightness=brightness, waveforms=unit)
    assert classify_default(samples).state == state  # classified with the nominal profile


@_property
@given(seed=st.integers(0, 2**32 - 1), ambient=st.floats(0.0, 300.0), dark_noise=st.floats(0.0, 80.0))
def test_dark_led_is_off(seed, ambient, dark_noise):
    obs = classify_default(emitted("off", "solid", seed=seed, ambient=ambient, dark_noise=dark_noise))
    assert (obs.state, obs.colour) == ("off", "off"), obs.explain()


EXTRA_COLOURS = {**COLOURS, "yellow": [1.0, 1.0, 0.05], "cyan": [0.1, 1.0, 1.0], "pink": [1.0, 0.4, 0.7]}


@pytest.mark.parametrize("pattern", ["solid", "pulsing", "circle"])
@pytest.mark.parametrize("colour", ["yellow", "cyan", "pink"])
def test_undocumented_colour_is_unknown(colour, pattern):
    obs = classify_default(emitted(colour, pattern, colours=EXTRA_COLOURS, seed=3))
    assert (obs.state, obs.colour) == ("unknown", "unknown"), obs.explain()
    assert obs.pattern == pattern
    assert obs.colour_distance > colour_match_radius(COLOURS)
    assert "nearest colour" in obs.reason


@pytest.mark.parametrize("colour,pattern", [("red", "pulsing"), ("purple", "circle"), ("orange", "circle")])
def test_documented_colour_in_an_undocumented_pattern_is_unknown(colour, pattern):
    obs = classify_default(emitted(colour, pattern, seed=4))
    assert obs.state == "unknown"
    assert (obs.colour, obs.pattern) == (colour, pattern)
    assert "not a documented state" in obs.reason


def test_noise_in_the_dark_is_not_mistaken_for_a_colour():
    """Absurd sensor noise with the LED off: the hue jumps about, so neither rainbow nor white."""
    obs = classify_default(emitted("off", "solid", seed=5, dark_noise=600.0))
    assert obs.state in ("off", "unknown"), obs.explain()


def test_too_few_samples_is_unknown():
    obs = classify_default(emitted("green", "solid")[:3])
    assert obs.state == "unknown" and "3 samples" in obs.reason


def test_classifier_reads_every_number_from_the_tables():
    """Invented colours, states and periods classify: nothing about PlugStream is built in."""
    colours = {"teal": [0.05, 0.8, 0.7], "amber": [1.0, 0.6, 0.0]}
    states = {
        "teal_blink": {"colour": "teal", "pattern": "circle", "meaning": "m1"},
        "amber_breathe": {"colour": "amber", "pattern": "pulsing", "meaning": "m2"},
        "amber_steady": {"colour": "amber", "pattern": "solid", "meaning": "m3"},
    }
    waveforms = {"pulsing_period_s": 0.7, "pulsing_min_level": 0.3, "circle_period_s": 0.4,
                 "circle_lit_fraction": 0.4, "rainbow_period_s": 1.0, "window_s": 1.2}
    for state, spec in states.items():
        samples = emitted(spec["colour"], spec["pattern"], seed=6, phase=0.4, colours=colours, waveforms=waveforms)
        obs = classify(samples, colours, states, waveforms)
        assert obs.state == state, obs.explain()
    assert classify(emitted("green", "solid"), colours, states, waveforms).state == "unknown"


def test_explain_states_the_verdict_and_its_evidence():
    obs = classify_default(emitted("green", "pulsing", seed=7))
    line = obs.explain()
    assert line.startswith("green_pulsing (green pulsing)")
    for word in ("chroma", "depth", "mid-level", "edge", "hue spread", "samples"):
        assert word in line
    assert obs.evidence()["state"] == "green_pulsing"
    assert " samples=" not in repr(obs)  # the raw samples stay out of reprs and logs


def test_emitter_phase_starts_at_since():
    shown = LedShown("green", "pulsing", since_s=10.0)
    start = relative_rgb(shown, 10.0, COLOURS, WAVEFORMS)
    crest = relative_rgb(shown, 10.0 + WAVEFORMS["pulsing_period_s"] / 2, COLOURS, WAVEFORMS)
    assert start[1] == pytest.approx(WAVEFORMS["pulsing_min_level"])
    assert crest[1] == pytest.approx(1.0)
    circle = LedShown("green", "circle", since_s=2.0)
    assert relative_rgb(circle, 2.0, COLOURS, WAVEFORMS)[1] == pytest.approx(1.0)
    assert relative_rgb(circle, 2.0 + 0.9 * WAVEFORMS["circle_period_s"], COLOURS, WAVEFORMS)[1] < 0.05
    assert relative_rgb(LedShown("off"), 1.0, COLOURS, WAVEFORMS) == (0.0, 0.0, 0.0)


# -- the driver against the emulated sensor --------------------------------------------------------
class Bench:
    """A virtual clock, a plant and an emulated sensor on a pty: what the driver talks to."""

    def __init__(self, seed: int = 1, rate_hz: float = 50, **emulator):
        self.clock = VirtualClock(seed)
        self.plant = Plant(self.clock)
        self.loop = LoopThread("led-test").start()
        config = {"port": "auto", "baudrate": 115200, "sample_rate_hz": rate_hz}
        self.sensor = EmulatedLedSensor(self.plant, self.loop, config, led=LED, **emulator)
        self.config = {**self.sensor.start(), "timeout_s": 0.15}

    def show(self, colour: str, pattern: str = "solid") -> None:
        with self.plant.change("led"):
            self.plant.led = LedShown(colour, pattern, self.clock.now())

    def driver(self, **overrides) -> LedSensor:
        return LedSensor("led_sensor", {**self.config, **overrides}, self.clock, {"led": LED})

    def stop(self) -> None:
        self.sensor.stop()
        self.loop.stop()


@pytest.fixture
def bench():
    b = Bench()
    yield b
    b.stop()


@pytest.fixture
def sensor(bench):
    with bench.driver() as drv:
        yield drv


def test_driver_identifies_the_sensor(sensor):
    assert sensor.identity.startswith("RigOptics,TCS34725")


@pytest.mark.parametrize("state", STATE_NAMES)
def test_observe_end_to_end(bench, sensor, state):
    bench.clock.sleep(0.37)  # the LED changes at an arbitrary moment
    bench.show(STATES[state]["colour"], STATES[state]["pattern"])
    obs = sensor.observe()
    assert obs.state == state, obs.explain()
    assert obs.n_samples == pytest.approx(WAVEFORMS["window_s"] * 50 + 1, abs=1)


def test_off_end_to_end(bench, sensor):
    bench.show("off")
    assert sensor.observe().state == "off"


def test_led_changes_are_followed(bench, sensor):
    bench.show("blue")
    assert sensor.observe().state == "blue_solid"
    bench.show("green", "pulsing")
    assert sensor.observe().state == "green_pulsing"


def test_samples_are_stamped_on_the_rig_clock(bench, sensor):
    bench.clock.sleep(12.345)
    t0 = bench.clock.now()
    samples = sensor.sample(1.0)
    assert bench.clock.now() == pytest.approx(t0 + 1.0)  # the window costs exactly its length
    assert len(samples) == 51
    assert samples[0].t_s == pytest.approx(t0, abs=0.0015)
    assert samples[-1].t_s == pytest.approx(t0 + 1.0, abs=0.0015)
    steps = [b.t_s - a.t_s for a, b in zip(samples, samples[1:])]
    assert all(step == pytest.approx(0.02, abs=0.0015) for step in steps)


def test_window_end_off_the_sample_grid_waits_for_the_closing_sample():
    b = Bench(rate_hz=30)
    try:
        with b.driver() as drv:
            t0 = b.clock.now()
            samples = drv.sample(1.01)
            assert t0 + 1.01 - 1 / 30 <= samples[-1].t_s <= t0 + 1.01  # the last one inside the window
            assert t0 + 1.01 < b.clock.now() <= t0 + 1.01 + 1 / 30 + 1e-6  # waited for the one after
    finally:
        b.stop()


def test_long_window_does_not_overflow_the_port(bench):
    with bench.driver(sample_rate_hz=100) as drv:
        samples = drv.sample(60.0)
    assert len(samples) == 6001
    assert bench.sensor._link.overruns == 0


def test_same_seed_gives_the_same_samples():
    def run(seed):
        b = Bench(seed=seed)
        try:
            b.show("green", "pulsing")
            with b.driver() as drv:
                return drv.sample(1.0)
        finally:
            b.stop()

    assert run(7) == run(7)
    assert run(7) != run(8)


@pytest.mark.parametrize("fault", ["silent", "garbage", "disconnect"])
def test_sensor_fault_is_an_instrument_error(bench, sensor, fault):
    bench.show("blue")
    bench.sensor.fault = fault
    start = time.monotonic()
    with pytest.raises(InstrumentError) as err:
        sensor.observe()
    assert err.value.instrument == "led_sensor"
    assert time.monotonic() - start < 5.0  # bounded: timeout x attempts, never a hang


@pytest.mark.parametrize("fault", ["silent", "garbage", "disconnect"])
def test_sensor_fault_in_mid_window(bench, sensor, fault):
    bench.show("green", "pulsing")
    bench.clock.call_later(1.0, lambda: setattr(bench.sensor, "fault", fault))
    with pytest.raises(InstrumentError) as err:
        sensor.observe()
    assert err.value.instrument == "led_sensor"


@pytest.mark.parametrize("fault", ["silent", "garbage"])
def test_driver_recovers_when_the_fault_clears(bench, sensor, fault):
    bench.show("orange")
    bench.sensor.fault = fault
    with pytest.raises(InstrumentError):
        sensor.observe()
    bench.sensor.fault = None
    assert sensor.observe().state == "orange_solid"


def test_odd_garbled_line_is_tolerated(bench, sensor):
    bench.show("purple")
    bench.sensor.garble_one_in = 60
    obs = sensor.observe()
    assert obs.state == "purple_solid"
    assert sensor.last_garbled >= 1


def test_frequent_garbled_lines_are_an_instrument_error(bench, sensor):
    bench.show("purple")
    bench.sensor.garble_one_in = 5
    with pytest.raises(InstrumentError, match="garbled"):
        sensor.observe()


def test_refused_command_is_an_instrument_error(bench):
    with pytest.raises(InstrumentError, match="refused"):
        bench.driver(sample_rate_hz=5000).open()


def test_missing_port_is_an_instrument_error():
    drv = LedSensor("led_sensor", {"port": "/dev/does-not-exist", "timeout_s": 0.1}, VirtualClock(0))
    with pytest.raises(InstrumentError) as err:
        drv.open()
    assert err.value.instrument == "led_sensor"
    drv.close()  # idempotent after a failed open


def test_sensor_counts_are_deterministic_for_a_seed():
    optics = Optics()
    shown = LedShown("white", "pulsing", 0.0)
    a = [sensor_counts(shown, t / 10, COLOURS, WAVEFORMS, optics, random.Random(3)) for t in range(5)]
    b = [sensor_counts(shown, t / 10, COLOURS, WAVEFORMS, optics, random.Random(3)) for t in range(5)]
    assert a == b
