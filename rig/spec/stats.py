"""Statistics for judging a distribution, without scipy: a chi-square goodness-of-fit test for
whole-second uniform delays, its exact power against a named alternative, and the smallest
sample size that reaches a wanted power.

Why chi-square on a few equal-probability bins: the delays are whole seconds on 0..max, so the
null distribution is discrete; binning makes the test insensitive to the unit's fixed latency
within a second and lets both the size and the power be computed EXACTLY by enumerating every
way n sessions can fall into k bins (a few thousand outcomes for the sample sizes used here).
The p-value of one observed sample comes from the chi-square distribution, through the
regularized upper incomplete gamma function Q(df/2, x/2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

# Numerical Recipes' limits for the incomplete gamma: series / continued fraction accuracy
_EPS = 1e-15
_TINY = 1e-300
_MAX_ITER = 1000


# ----------------------------------------------------------------------------- incomplete gamma
def _gamma_p_series(a: float, x: float) -> float:
    """P(a, x) by its power series (converges fast for x < a + 1)."""
    term = total = 1.0 / a
    ap = a
    for _ in range(_MAX_ITER):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * _EPS:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_q_fraction(a: float, x: float) -> float:
    """Q(a, x) by Lentz's continued fraction (converges fast for x >= a + 1)."""
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = _TINY if abs(d) < _TINY else d
        c = b + an / c
        c = _TINY if abs(c) < _TINY else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def regularized_gamma_q(a: float, x: float) -> float:
    """Q(a, x) = Gamma(a, x) / Gamma(a), the upper regularized incomplete gamma function."""
    if a <= 0:
        raise ValueError(f"a must be positive, got {a}")
    if x <= 0:
        return 1.0
    if x < a + 1.0:
        return 1.0 - _gamma_p_series(a, x)
    return _gamma_q_fraction(a, x)


def chi_square_sf(x: float, df: int) -> float:
    """P(X >= x) for X ~ chi-square with `df` degrees of freedom."""
    return regularized_gamma_q(df / 2.0, x / 2.0)


def chi_square_critical(alpha: float, df: int) -> float:
    """The x with chi_square_sf(x, df) = alpha (bisection; sf is decreasing)."""
    lo, hi = 0.0, 1.0
    while chi_square_sf(hi, df) > alpha:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if chi_square_sf(mid, df) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


# ----------------------------------------------------------------------------- whole-second uniform
@dataclass(frozen=True)
class Bin:
    first: int  # smallest whole second in the bin
    last: int  # largest, inclusive

    @property
    def size(self) -> int:
        return self.last - self.first + 1


def uniform_bins(low: int, high: int, k: int) -> list[Bin]:
    """Split the whole seconds low..high (inclusive) into k contiguous bins as equal as possible."""
    values = high - low + 1
    if not 2 <= k <= values:
        raise ValueError(f"cannot split {values} values into {k} bins")
    edges = [low + (values * i) // k for i in range(k + 1)]
    return [Bin(edges[i], edges[i + 1] - 1) for i in range(k)]


def bin_probabilities(bins: Sequence[Bin], pmf: Callable[[int], float]) -> list[float]:
    """Probability of each bin under the whole-second distribution `pmf`."""
    return [sum(pmf(v) for v in range(b.first, b.last + 1)) for b in bins]


def uniform_pmf(low: int, high: int) -> Callable[[int], float]:
    """Uniform over the whole seconds low..high inclusive."""
    p = 1.0 / (high - low + 1)
    return lambda v: p if low <= v <= high else 0.0


def capped_pmf(low: int, high: int, cap: int) -> Callable[[int], float]:
    """min(U(low..high), cap): a firmware that clamps the draw (mass piles up on the cap)."""
    base = uniform_pmf(low, high)
    tail = sum(base(v) for v in range(cap, high + 1))
    return lambda v: base(v) if v < cap else (tail if v == cap else 0.0)


def point_pmf(value: int) -> Callable[[int], float]:
    """Always `value` (e.g. a unit that never delays: always 0)."""
    return lambda v: 1.0 if v == value else 0.0


def counts_in(bins: Sequence[Bin], values: Sequence[int]) -> list[int]:
    """How many of `values` fall in each bin; a value outside every bin is an error of the caller
    (range is judged before the fit)."""
    counts = [0] * len(bins)
    for v in values:
        for i, b in enumerate(bins):
            if b.first <= v <= b.last:
                counts[i] += 1
                break
        else:
            raise ValueError(f"{v} lies outside {bins[0].first}..{bins[-1].last}")
    return counts


def chi_square_statistic(counts: Sequence[int], probs: Sequence[float]) -> float:
    n = sum(counts)
    return sum((o - n * p) ** 2 / (n * p) for o, p in zip(counts, probs))


@dataclass(frozen=True)
class FitResult:
    statistic: float
    df: int
    p_value: float
    counts: tuple[int, ...]
    expected: tuple[float, ...]

    def explain(self) -> str:
        exp = ", ".join(f"{e:.1f}" for e in self.expected)
        return (f"chi-square {self.statistic:.2f} on {self.df} df, p = {self.p_value:.3g}; "
                f"counts {list(self.counts)}, expected [{exp}]")


def chi_square_uniformity(values: Sequence[int], low: int, high: int, k: int) -> FitResult:
    """Goodness of fit of whole-second `values` to the uniform distribution on low..high."""
    bins = uniform_bins(low, high, k)
    probs = bin_probabilities(bins, uniform_pmf(low, high))
    counts = counts_in(bins, values)
    stat = chi_square_statistic(counts, probs)
    n = len(values)
    return FitResult(stat, k - 1, chi_square_sf(stat, k - 1), tuple(counts), tuple(n * p for p in probs))


# ----------------------------------------------------------------------------- exact power
def compositions(n: int, k: int) -> Iterator[tuple[int, ...]]:
    """Every way to put n indistinguishable sessions into k bins (stars and bars)."""
    if k == 1:
        yield (n,)
        return
    for first in range(n + 1):
        for rest in compositions(n - first, k - 1):
            yield (first, *rest)


def _log_multinomial(counts: Sequence[int], probs: Sequence[float]) -> float:
    """log P(counts) under the multinomial with `probs`; -inf when a zero-probability bin is hit."""
    n = sum(counts)
    total = math.lgamma(n + 1)
    for c, p in zip(counts, probs):
        if c == 0:
            continue
        if p <= 0.0:
            return -math.inf
        total += c * math.log(p) - math.lgamma(c + 1)
    return total


def rejection_probability(n: int, null_probs: Sequence[float], true_probs: Sequence[float], alpha: float) -> float:
    """Exact probability that the chi-square test at level `alpha` rejects uniformity when the
    n delays really follow `true_probs` (bin probabilities). With true = null this is the test's
    exact size; with an alternative it is the power against it."""
    df = len(null_probs) - 1
    total = 0.0
    for counts in compositions(n, len(null_probs)):
        if chi_square_sf(chi_square_statistic(counts, null_probs), df) < alpha:
            lp = _log_multinomial(counts, true_probs)
            if lp > -math.inf:
                total += math.exp(lp)
    return min(1.0, total)


def delay_test_power(n: int, low: int, high: int, k: int, alpha: float, alternative: Callable[[int], float]) -> float:
    """Power of the whole-second uniformity test (n sessions, k bins, level alpha) against the
    whole-second distribution `alternative`."""
    bins = uniform_bins(low, high, k)
    return rejection_probability(n, bin_probabilities(bins, uniform_pmf(low, high)),
                                 bin_probabilities(bins, alternative), alpha)


def delay_test_size(n: int, low: int, high: int, k: int, alpha: float) -> float:
    """Exact false-rejection probability of the test for a good (uniform) unit."""
    return delay_test_power(n, low, high, k, alpha, uniform_pmf(low, high))


def smallest_sample_size(low: int, high: int, k: int, alpha: float, power_min: float,
                         alternatives: Sequence[Callable[[int], float]], n_max: int = 200) -> int:
    """The fewest sessions whose test reaches `power_min` against every alternative."""
    for n in range(k, n_max + 1):
        if all(delay_test_power(n, low, high, k, alpha, alt) >= power_min for alt in alternatives):
            return n
    raise ValueError(f"no sample size up to {n_max} reaches power {power_min}")


# ----------------------------------------------------------------------------- whole seconds
def circular_spread(fractions: Sequence[float]) -> float:
    """Width of the shortest arc of the unit circle (circumference 1) holding every fraction:
    0.999 and 0.001 are 0.002 apart, as the fractional parts of k + L and k' + L should be for
    a latency L near a whole second."""
    if len(fractions) < 2:
        return 0.0
    points = sorted(f % 1.0 for f in fractions)
    gaps = [b - a for a, b in zip(points, points[1:])] + [points[0] + 1.0 - points[-1]]
    return 1.0 - max(gaps)


# ----------------------------------------------------------------------------- resolution (lattice)
def lattice_step(values: Sequence[int]) -> int:
    """The coarsest grid every value lies on: the gcd of their differences (1 = whole seconds,
    10 = every delay a multiple of 10 s away from the others; 0 if all are equal)."""
    from math import gcd

    base = values[0] if values else 0
    step = 0
    for v in values[1:]:
        step = gcd(step, abs(v - base))
    return step


def lattice_false_failure(n: int, low: int, high: int) -> float:
    """Upper bound on the probability that n draws uniform over the whole numbers low..high lie
    on a grid coarser than 1 (a union over primes p of "all n share one residue mod p"): how often
    a good unit fails the resolution check."""
    size = high - low + 1
    total = 0.0
    for p in (q for q in range(2, size + 1) if all(q % d for d in range(2, int(q ** 0.5) + 1))):
        counts = [len(range(low + r, high + 1, p)) for r in range(p)]
        total += sum((c / size) ** n for c in counts)
    return total
