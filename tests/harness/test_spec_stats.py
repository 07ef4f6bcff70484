"""The spec suite's own statistics and its Sense reference are right (no charger involved).

* the incomplete-gamma chi-square tail against known table values;
* the random-delay test's sample size (limits data) has power >= mode.delay_power_min against a
  delay capped at 300 s and an always-0 delay, and is the smallest that does; its exact size
  stays at the stated significance;
* the exhaustive Sense reference agrees with the contract's greedy rule on random cases.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest

from rig.product.requirements import load_limits
from rig.spec import sense_reference as ref
from rig.spec import stats

LIMITS = load_limits()


def limit(key: str) -> float:
    return LIMITS[key].value


# ----------------------------------------------------------------------------- chi-square tail
@pytest.mark.parametrize("x, df, p", [
    (3.841458820694124, 1, 0.05),
    (6.634896601021214, 1, 0.01),
    (11.344866730144373, 3, 0.01),
    (16.266236196238130, 3, 0.001),
    (18.466826952903173, 4, 0.001),
    (20.515005652432873, 5, 0.001),
    (124.342113404, 100, 0.05),
])
def test_chi_square_tail_matches_tables(x, df, p):
    assert stats.chi_square_sf(x, df) == pytest.approx(p, rel=1e-6)


def test_chi_square_tail_of_two_df_is_an_exponential():
    for x in (0.1, 1.0, 5.0, 30.0):
        assert stats.chi_square_sf(x, 2) == pytest.approx(math.exp(-x / 2), rel=1e-12)


def test_critical_value_inverts_the_tail():
    for df in (1, 4, 9):
        x = stats.chi_square_critical(0.001, df)
        assert stats.chi_square_sf(x, df) == pytest.approx(0.001, rel=1e-6)


def test_bins_cover_every_whole_second_once():
    bins = stats.uniform_bins(0, 600, 5)
    assert bins[0].first == 0 and bins[-1].last == 600
    assert all(a.last + 1 == b.first for a, b in zip(bins, bins[1:]))
    assert sum(b.size for b in bins) == 601
    assert sum(stats.bin_probabilities(bins, stats.uniform_pmf(0, 600))) == pytest.approx(1.0)
    assert sum(stats.bin_probabilities(bins, stats.capped_pmf(0, 600, 300))) == pytest.approx(1.0)


def test_uniformity_test_accepts_uniform_and_rejects_capped_samples():
    rng = random.Random(4)
    k, alpha = int(limit("mode.delay_gof_bins")), limit("mode.delay_gof_alpha")
    good = [rng.randint(0, 600) for _ in range(2000)]
    assert stats.chi_square_uniformity(good, 0, 600, k).p_value > alpha
    capped = [rng.randint(0, 300) for _ in range(int(limit("mode.delay_sample_size")))]
    assert stats.chi_square_uniformity(capped, 0, 600, k).p_value < alpha
    assert stats.chi_square_uniformity([0] * 10, 0, 600, k).p_value < alpha


def test_circular_spread_wraps_around_the_second():
    assert stats.circular_spread([0.999, 0.001, 0.0]) == pytest.approx(0.002)
    assert stats.circular_spread([0.46, 0.46, 0.46]) == 0.0
    assert stats.circular_spread([0.1, 0.6]) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- the delay test's design
def delay_design() -> dict:
    low, high = 0, int(limit("mode.random_delay_max_s"))
    return dict(low=low, high=high, k=int(limit("mode.delay_gof_bins")), alpha=limit("mode.delay_gof_alpha"))


BAD_DELAYS = {
    "uniform 0..300 s (capped draw)": lambda d: stats.uniform_pmf(d["low"], 300),
    "min(U 0..600, 300) (clamped draw)": lambda d: stats.capped_pmf(d["low"], d["high"], 300),
    "always 0 s": lambda d: stats.point_pmf(0),
}


def test_delay_sample_size_has_the_stated_power(capsys):
    d = delay_design()
    n, wanted = int(limit("mode.delay_sample_size")), limit("mode.delay_power_min")
    lines = [f"random-delay test: n = {n} sessions, {d['k']} bins, significance {d['alpha']}"]
    for name, alt in BAD_DELAYS.items():
        power = stats.delay_test_power(n, d["low"], d["high"], d["k"], d["alpha"], alt(d))
        lines.append(f"  power against {name}: {power:.5f}")
        assert power >= wanted, f"power {power:.4f} < {wanted} against {name} with n = {n}"
    size = stats.delay_test_size(n, d["low"], d["high"], d["k"], d["alpha"])
    lines.append(f"  exact false-failure probability of a good unit: {size:.5f}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert size <= d["alpha"] * 1.1, f"the test rejects a good unit with probability {size:.5f}"


def test_delay_sample_size_is_the_smallest_that_reaches_the_power():
    d = delay_design()
    n = int(limit("mode.delay_sample_size"))
    alts = [alt(d) for alt in BAD_DELAYS.values()]
    below = [stats.delay_test_power(n - 1, d["low"], d["high"], d["k"], d["alpha"], a) for a in alts]
    assert min(below) < limit("mode.delay_power_min"), f"n - 1 = {n - 1} already has power {below}: n is not minimal"


# ----------------------------------------------------------------------------- Sense reference
def greedy_plan(tariff, planned_at, ready_by, energy_kwh, offered_a, nominal_v, phases) -> ref.Plan:
    """The contract's rule, written as the contract words it, to cross-check the exhaustive one."""
    p = offered_a * nominal_v * phases / 1000
    slot_e = p * 0.5
    start = ref.first_boundary(planned_at)
    cands = sorted([s for s in tariff if s.start >= start and s.start + ref.SLOT <= ready_by], key=lambda s: s.start)
    n = ref.slots_needed(energy_kwh, slot_e)
    if len(cands) < n:
        whole = sum(s.price for s in cands) * slot_e
        return ref.Plan(tuple(s.start for s in cands), p, whole, whole, False)
    rem = energy_kwh - (n - 1) * slot_e
    chosen = sorted(cands, key=lambda s: (s.price, s.start))[:n]
    prices = sorted(s.price for s in chosen)
    est = sum(prices[:-1]) * slot_e + prices[-1] * rem
    now = cands[:n]
    charge_now = sum(s.price for s in now[:-1]) * slot_e + now[-1].price * rem
    return ref.Plan(tuple(sorted(s.start for s in chosen)), p, est, charge_now, True)


def random_case(rng: random.Random):
    base = datetime(2026, 1, 5, 18, 0, tzinfo=timezone.utc)
    tariff = [ref.Slot(base + i * ref.SLOT, rng.choice([5.0, 7.5, 10.0, 12.5, 15.0, 24.5, 30.0]))
              for i in range(rng.randint(4, 14))]
    planned = base + timedelta(minutes=rng.randint(-40, 90))
    ready_by = base + timedelta(minutes=30 * rng.randint(2, 16) + rng.choice([0, 10]))
    return tariff, planned, ready_by, rng.uniform(1.0, 40.0), rng.choice([6, 10, 16, 32]), 230.0, rng.choice([1, 3])


def test_exhaustive_reference_agrees_with_the_greedy_rule():
    rng = random.Random(6)
    checked = 0
    for _ in range(400):
        case = random_case(rng)
        want, got = greedy_plan(*case), ref.cheapest_plan(*case)
        assert got.slots == want.slots and got.feasible == want.feasible, case
        assert got.estimated_cost_p == pytest.approx(want.estimated_cost_p, abs=1e-9)
        assert got.charge_now_cost_p == pytest.approx(want.charge_now_cost_p, abs=1e-9)
        assert got.estimated_cost_p <= got.charge_now_cost_p + 1e-9
        checked += got.feasible
    assert checked > 100, "too few feasible cases to mean anything"


def test_boundary_counts_itself_and_rounds_up_otherwise():
    t = datetime(2026, 1, 5, 18, 0, tzinfo=timezone.utc)
    assert ref.first_boundary(t) == t
    assert ref.first_boundary(t + timedelta(seconds=1)) == t + ref.SLOT
    assert ref.first_boundary(t + timedelta(minutes=31)) == t + 2 * ref.SLOT


# ---------------------------------------------------------------------- the delay's resolution
def test_lattice_step_is_the_coarsest_common_grid():
    assert stats.lattice_step([0, 10, 600, 30]) == 10
    assert stats.lattice_step([3, 10, 600]) == 1
    assert stats.lattice_step([7, 7, 7]) == 0  # all equal: no step at all, which the range check judges


def test_a_good_unit_fails_the_resolution_check_with_the_stated_probability():
    """The limit's source states 7.5e-9 for 28 sessions over 0..600 s; the bound dominated by p = 2."""
    n = 28
    bound = stats.lattice_false_failure(n, 0, 600)
    assert 7.4e-9 < bound < 7.6e-9
    assert bound == pytest.approx(2.0 ** -(n - 1), rel=0.01)
    assert f"{bound:.1e}".replace("e-09", "e-9") in load_limits()["mode.delay_lattice_max_s"].source


def test_good_draws_over_twenty_seeds_are_on_the_one_second_grid_and_a_10s_grid_is_not():
    import random

    for seed in range(20):
        rng = random.Random(seed)
        assert stats.lattice_step([rng.randint(0, 600) for _ in range(28)]) == 1, seed
        assert stats.lattice_step([10 * rng.randint(0, 60) for _ in range(28)]) % 10 == 0, seed
