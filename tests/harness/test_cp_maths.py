"""IEC 61851-1 CP and PP arithmetic (rig/product/cp.py): reference points, band edges, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rig.product import cp


@pytest.mark.parametrize("amps, percent", [(6, 10.0), (10, 16.7), (16, 26.7), (32, 53.3), (51, 85.0)])
def test_reference_points_of_the_standard(amps, percent):
    assert round(cp.duty_for_current(amps) * 100, 1) == percent


@pytest.mark.parametrize("amps, percent", [(52.5, 85.0), (60, 88.0), (63, 89.2), (70, 92.0), (80, 96.0)])
def test_upper_band_encodes_i_over_2_5_plus_64(amps, percent):
    assert cp.duty_for_current(amps) * 100 == pytest.approx(percent)


@pytest.mark.parametrize("amps", [0, 5.99, 80.01, 100])
def test_currents_pwm_cannot_offer_are_refused(amps):
    with pytest.raises(ValueError, match="6-80 A"):
        cp.duty_for_current(amps)


@pytest.mark.parametrize(
    "percent, meaning, amps",
    [
        (0.0, cp.NO_CHARGING, None),
        (2.99, cp.NO_CHARGING, None),
        (3.0, cp.DIGITAL, None),
        (5.0, cp.DIGITAL, None),
        (7.0, cp.DIGITAL, None),
        (7.01, cp.ERROR, None),
        (7.99, cp.ERROR, None),
        (8.0, cp.CURRENT, 6.0),
        (9.99, cp.CURRENT, 6.0),
        (10.0, cp.CURRENT, 6.0),
        (50.0, cp.CURRENT, 30.0),
        (85.0, cp.CURRENT, 51.0),
        (85.1, cp.CURRENT, 52.75),
        (90.0, cp.CURRENT, 65.0),
        (96.0, cp.CURRENT, 80.0),
        (96.5, cp.CURRENT, 80.0),
        (97.0, cp.CURRENT, 80.0),
        (97.01, cp.NO_CHARGING, None),
        (100.0, cp.NO_CHARGING, None),
    ],
)
def test_ev_reading_bands_and_their_edges(percent, meaning, amps):
    reading = cp.ev_reading(percent / 100)
    assert reading.meaning == meaning
    if amps is None:
        assert reading.amps is None
    else:
        assert reading.amps == pytest.approx(amps)
    assert cp.current_for_duty(percent / 100) == reading.amps


def test_fractions_that_are_not_exact_in_binary_stay_on_their_band_edge():
    assert 0.07 * 100 != 7.0  # the float noise this guards against
    assert cp.ev_reading(0.07).meaning == cp.DIGITAL
    assert cp.ev_reading(0.85).amps == pytest.approx(51.0)


# duty measured to 0.1 % (1 us at 1 kHz): the reading moves by at most 0.05 % x slope
LOW_BAND = st.floats(min_value=6.0, max_value=51.0, allow_nan=False)
# from 85.1 %: 52.5 A itself encodes to exactly 85 %, which belongs to the lower reading band
HIGH_BAND = st.floats(min_value=52.75, max_value=80.0, allow_nan=False)


@given(LOW_BAND)
def test_round_trip_6_to_51_a(amps):
    duty = round(cp.duty_for_current(amps), 3)
    assert cp.current_for_duty(duty) == pytest.approx(amps, abs=0.0005 * 100 * 0.6 + 1e-9)


@given(HIGH_BAND)
def test_round_trip_52_75_to_80_a(amps):
    duty = round(cp.duty_for_current(amps), 3)
    assert cp.current_for_duty(duty) == pytest.approx(amps, abs=0.0005 * 100 * 2.5 + 1e-9)


@given(st.floats(min_value=51.0, max_value=52.5, exclude_min=True))
def test_the_standards_seam_above_51_a_reads_back_low_never_high(amps):
    # 51 < I <= 52.5 encodes to 84.4-85 %, where a vehicle reads D x 0.6 = 50.6-51 A
    read = cp.current_for_duty(cp.duty_for_current(amps))
    assert 50.6 - 1e-9 <= read <= 51.0 + 1e-9
    assert read < amps


@given(st.floats(min_value=0.08, max_value=0.97), st.floats(min_value=0.0, max_value=0.05))
def test_a_longer_duty_never_reads_as_less_current(duty, more):
    longer = min(0.97, duty + more)
    assert cp.current_for_duty(longer) >= cp.current_for_duty(duty) - 1e-9


@pytest.mark.parametrize(
    "volts, letter",
    [(12.0, "A"), (11.0, "A"), (13.0, "A"), (9.0, "B"), (6.0, "C"), (3.0, "D"), (0.0, "E"), (-12.0, "F"),
     (10.5, None), (7.5, None), (4.5, None), (1.5, None), (-6.0, None)],
)
def test_state_from_cp_high_level(volts, letter):
    assert cp.state_for_high_v(volts) == letter


def test_state_bands_can_be_overridden():
    assert cp.state_for_high_v(10.5, {"B": (8.0, 10.6)}) == "B"


@pytest.mark.parametrize(
    "ohms, rating",
    [
        # nominal codes
        (1500, 13), (680, 20), (220, 32), (100, 63),
        # band edges are inside their band
        (80, 63), (140, 63), (164, 32), (308, 32), (400, 20), (936, 20), (1100, 13), (2460, 13),
        # between two bands: the lower rating
        (150, 32), (350, 20), (1000, 13),
        # between a band and the validity limits: the neighbouring band
        (60, 63), (70, 63), (3300, 13), (4500, 13),
    ],
)
def test_pp_cable_rating(ohms, rating):
    assert cp.cable_rating_for_pp(ohms) == rating


@pytest.mark.parametrize("ohms", [None, 0, 47, 59.9, 4500.1, 10000])
def test_pp_without_a_valid_cable(ohms):
    assert cp.cable_rating_for_pp(ohms) is None


def test_the_100_ohm_cable_is_70_a_on_one_phase():
    assert cp.cable_rating_for_pp(100, phases=1) == 70
    assert cp.cable_rating_for_pp(220, phases=1) == 32


@given(st.floats(min_value=60.0, max_value=4500.0), st.floats(min_value=0.0, max_value=500.0))
def test_more_pp_resistance_never_codes_a_bigger_cable(ohms, more):
    higher = min(4500.0, ohms + more)
    assert cp.cable_rating_for_pp(higher) <= cp.cable_rating_for_pp(ohms)


def test_vehicle_resistors_give_the_standards_totals():
    def parallel(*r):
        return 1 / sum(1 / x for x in r)

    assert parallel(cp.VEHICLE_B_OHMS, cp.VEHICLE_C_PARALLEL_OHMS) == pytest.approx(882, abs=1)
    assert parallel(cp.VEHICLE_B_OHMS, cp.VEHICLE_D_PARALLEL_OHMS) == pytest.approx(246, abs=1)
