"""Which documented LED state a window of colour-sensor samples shows.

The product profile says what the states look like ([led.colours], [led.states],
[led.waveforms]); this module only knows *how to look*, never *what to look for*: no
colour, period or state name is written here. That keeps one classifier for every
product variant and lets the harness's own tests feed it invented tables.

Method (every step is robust to an ambient-light offset, a global brightness scale,
sensor noise and the phase at which the window starts):

1. brightness = r + g + b per sample; the window's low and high levels are the 5th and
   95th percentiles, so a single noisy sample moves nothing.
2. "off": the high level is below `dark_counts` (ambient light alone).
3. Colour is judged only on samples bright enough to carry it (at least half the high
   level): chromaticity (r, g, b) / (r + g + b) removes the brightness scale. Near the
   bottom of a pulse the noise would dominate, which is why dim samples are left out.
4. Rainbow: most bright samples are saturated and their hue angles point every way
   (the mean resultant length of the unit hue vectors is small). A solid colour keeps
   one hue; white has no hue at all, so it never looks like a rainbow.
5. Otherwise the mean chromaticity goes to the nearest reference colour, within a
   distance derived from how far apart the reference colours are (else "unknown").
6. Pattern from the brightness series: modulation depth (high - low) / high small ->
   solid; else the fraction of samples in the middle of the swing decides: a circle
   sits at two levels with sharp edges (few mid-level samples), a raised-cosine pulse
   spends about 40 % of its time between 20 % and 80 % of its swing.
7. The (colour, pattern) pair is looked up in [led.states]; an undocumented pair is
   "unknown" (a wrong LED is then visible in the report as colour + pattern).
"""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

#: sum of the three channels below which the LED is taken to be dark (ambient light only);
#: a profile may override it with [led.waveforms].dark_counts
DEFAULT_DARK_COUNTS = 1500.0
#: the fewest samples a verdict is built on
MIN_SAMPLES = 8
#: a sample whose chromaticity is this far from grey (1/3, 1/3, 1/3) has a hue
SATURATION_MIN = 0.15
#: rainbow: at least this share of bright samples saturated, and hue vectors this incoherent
RAINBOW_MIN_SATURATED = 0.5
RAINBOW_MAX_RESULTANT = 0.5
#: a rainbow turns smoothly: the median hue change between consecutive bright samples stays
#: below this (noise in the dark jumps about 90 degrees)
RAINBOW_MAX_HUE_STEP_DEG = 45.0
#: a colour must be this close to a reference: at most COLOUR_MATCH_CAP, and never more than
#: this share of the distance between the two closest reference colours
COLOUR_MATCH_SHARE = 0.4
COLOUR_MATCH_CAP = 0.15
#: the "middle of the swing" band, as fractions of (high - low)
MID_BAND = (0.2, 0.8)
#: fewer mid-level samples than this: a two-level (circle) waveform
CIRCLE_MAX_MID = 0.2
#: ... or, in the grey zone up to CIRCLE_GREY_MID, edges this sharp (one step covers this
#: share of the swing)
CIRCLE_GREY_MID = 0.3
CIRCLE_MIN_EDGE = 0.6
PERCENTILES = (5.0, 95.0)
_GREY = (1 / 3, 1 / 3, 1 / 3)


class Sample(NamedTuple):
    """One colour-sensor reading: rig-clock time in seconds and raw channel counts."""

    t_s: float
    r: float
    g: float
    b: float


@dataclass
class LedObservation:
    """What the LED showed during one window, with the evidence for it."""

    state: str  # a name from [led.states], "off" or "unknown"
    colour: str  # a name from [led.colours], "rainbow", "off" or "unknown"
    pattern: str  # solid | pulsing | circle | rainbow | unknown
    confidence: float  # 0..1: the smallest margin of the decisions taken
    meaning: str = ""
    reason: str = ""  # why, in words (always set for "unknown")
    n_samples: int = 0
    duration_s: float = 0.0
    chroma: tuple[float, float, float] | None = None  # mean (r, g, b) / sum of bright samples
    colour_distance: float | None = None  # to the matched (or nearest) reference colour
    brightness_low: float = 0.0  # 5th percentile of r + g + b, counts
    brightness_high: float = 0.0  # 95th percentile of r + g + b, counts
    depth: float = 0.0  # (high - low) / high
    mid_fraction: float = 0.0  # share of samples between 20 % and 80 % of the swing
    edge_sharpness: float = 0.0  # largest step between samples, as a share of the swing
    hue_spread_deg: float = 0.0  # circular standard deviation of the hue of bright samples
    hue_step_deg: float = 0.0  # median hue change between consecutive bright samples
    chroma_scatter: float = 0.0  # RMS spread of the bright samples' chromaticity
    saturated_fraction: float = 0.0
    samples: tuple[Sample, ...] = field(default=(), repr=False)

    def explain(self) -> str:
        """One line for reports: the verdict first, then the numbers it rests on."""
        head = self.state if self.state == "off" else f"{self.state} ({self.colour} {self.pattern})"
        head += f", confidence {self.confidence:.2f}"
        chroma = "-" if self.chroma is None else "(" + ", ".join(f"{c:.3f}" for c in self.chroma) + ")"
        dist = "" if self.colour_distance is None else f" d={self.colour_distance:.3f}"
        parts = [
            f"chroma {chroma}{dist}",
            f"brightness {self.brightness_low:.0f}..{self.brightness_high:.0f} counts",
            f"depth {self.depth:.2f}",
            f"mid-level {self.mid_fraction:.2f}",
            f"edge {self.edge_sharpness:.2f}",
            f"hue spread {self.hue_spread_deg:.0f} deg (step {self.hue_step_deg:.0f})",
            f"{self.n_samples} samples over {self.duration_s:.2f} s",
        ]
        tail = f" [{self.reason}]" if self.reason else ""
        return f"{head}: " + "; ".join(parts) + tail

    def evidence(self) -> dict[str, float | str | None]:
        """The numbers, for a measurement log or a report attachment."""
        return {
            "state": self.state,
            "colour": self.colour,
            "pattern": self.pattern,
            "confidence": self.confidence,
            "chroma": None if self.chroma is None else list(self.chroma),
            "colour_distance": self.colour_distance,
            "brightness_low": self.brightness_low,
            "brightness_high": self.brightness_high,
            "depth": self.depth,
            "mid_fraction": self.mid_fraction,
            "edge_sharpness": self.edge_sharpness,
            "hue_spread_deg": self.hue_spread_deg,
            "hue_step_deg": self.hue_step_deg,
            "chroma_scatter": self.chroma_scatter,
            "saturated_fraction": self.saturated_fraction,
            "n_samples": self.n_samples,
            "duration_s": self.duration_s,
        }


# -- the profile ---------------------------------------------------------------------------------
def default_profile_path() -> Path:
    """The shipped product profile."""
    from rig.data import PROFILES_DIR

    return PROFILES_DIR / "plugstream.toml"


def led_table(profile: Mapping) -> Mapping:
    """The [led] table, given either a whole profile or the [led] table itself."""
    table = profile.get("led", profile)
    missing = [k for k in ("colours", "states", "waveforms") if k not in table]
    if missing:
        raise KeyError(f"product profile has no [led.{missing[0]}] table")
    return table


def load_led_profile(path: str | Path | None = None) -> Mapping:
    """[led] of a product profile file (default: the repository's plugstream.toml)."""
    with open(path or default_profile_path(), "rb") as f:
        return led_table(tomllib.load(f))


# -- small statistics ----------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (0..100) of a non-empty sequence."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def chromaticity(rgb: Iterable[float]) -> tuple[float, float, float]:
    r, g, b = (max(0.0, c) for c in rgb)
    total = r + g + b
    if total <= 0:
        return _GREY
    return (r / total, g / total, b / total)


def hue_angle(chroma: Sequence[float]) -> float:
    """Hue in radians on the chromaticity triangle (red 0, green 2pi/3, blue 4pi/3)."""
    r, g, b = chroma
    return math.atan2(math.sqrt(3) * (g - b), 2 * r - g - b)


def colour_match_radius(colours: Mapping[str, Sequence[float]]) -> float:
    """How close a chromaticity must be to a reference colour to be called by its name."""
    refs = [chromaticity(c) for c in colours.values()]
    gaps = [math.dist(a, b) for a, b in itertools.combinations(refs, 2)]
    return min([COLOUR_MATCH_CAP] + [COLOUR_MATCH_SHARE * g for g in gaps])


def _clip01(x: float) -> float:
    return max(0.0, min(1.0, x))


# -- the classifier ------------------------------------------------------------------------------
@dataclass
class _Brightness:
    low: float
    high: float
    depth: float
    mid_fraction: float
    edge_sharpness: float


def _brightness(samples: Sequence[Sample]) -> _Brightness:
    ys = [s.r + s.g + s.b for s in samples]
    low, high = percentile(ys, PERCENTILES[0]), percentile(ys, PERCENTILES[1])
    swing = high - low
    depth = swing / high if high > 0 else 0.0
    if swing <= 0:
        return _Brightness(low, high, depth, 0.0, 0.0)
    us = [(y - low) / swing for y in ys]
    mid = sum(1 for u in us if MID_BAND[0] < u < MID_BAND[1]) / len(us)
    edge = max((abs(b - a) for a, b in zip(us, us[1:])), default=0.0)
    return _Brightness(low, high, depth, mid, edge)


@dataclass
class _Hue:
    chroma: tuple[float, float, float] | None
    scatter: float  # RMS distance of the bright samples' chromaticity from their mean
    saturated_fraction: float
    resultant: float  # mean resultant length of saturated hue vectors (1 = one hue)
    spread_deg: float  # circular standard deviation of the hue
    step_deg: float  # median hue change between consecutive saturated samples


def _hue(bright: Sequence[Sample]) -> _Hue:
    chromas = [chromaticity((s.r, s.g, s.b)) for s in bright]
    if not chromas:
        return _Hue(None, 0.0, 0.0, 1.0, 0.0, 0.0)
    mean = tuple(sum(c[i] for c in chromas) / len(chromas) for i in range(3))
    scatter = math.sqrt(sum(math.dist(c, mean) ** 2 for c in chromas) / len(chromas))
    angles = [hue_angle(c) for c in chromas if math.dist(c, _GREY) > SATURATION_MIN]
    if not angles:
        return _Hue(mean, scatter, 0.0, 1.0, 0.0, 0.0)
    x = sum(math.cos(a) for a in angles) / len(angles)
    y = sum(math.sin(a) for a in angles) / len(angles)
    resultant = min(1.0, math.hypot(x, y))  # rounding can nudge it past 1
    spread = 360.0 if resultant < 1e-9 else min(360.0, math.degrees(math.sqrt(-2 * math.log(resultant))))
    steps = [abs(math.remainder(b - a, 2 * math.pi)) for a, b in zip(angles, angles[1:])]
    step = math.degrees(percentile(steps, 50)) if steps else 0.0
    return _Hue(mean, scatter, len(angles) / len(chromas), resultant, spread, step)


def _is_rainbow(h: _Hue) -> bool:
    return (
        h.saturated_fraction >= RAINBOW_MIN_SATURATED
        and h.resultant < RAINBOW_MAX_RESULTANT
        and h.step_deg < RAINBOW_MAX_HUE_STEP_DEG
    )


def _nearest_colour(chroma, colours: Mapping[str, Sequence[float]]) -> tuple[str, float]:
    named = ((name, math.dist(chroma, chromaticity(rgb))) for name, rgb in colours.items())
    return min(named, key=lambda nd: nd[1])


def _pattern(b: _Brightness, waveforms: Mapping) -> tuple[str, float]:
    """(pattern, margin) from the brightness series.

    Solid if the swing is less than half of what the shallowest documented modulation
    (a pulse down to pulsing_min_level) would give.
    """
    solid_max_depth = (1.0 - float(waveforms.get("pulsing_min_level", 0.15))) / 2
    if b.depth < solid_max_depth:
        return "solid", _clip01(1 - b.depth / solid_max_depth)
    depth_margin = _clip01((b.depth - solid_max_depth) / solid_max_depth)
    two_level = b.mid_fraction < CIRCLE_MAX_MID or (
        b.mid_fraction < CIRCLE_GREY_MID and b.edge_sharpness >= CIRCLE_MIN_EDGE
    )
    if two_level:
        return "circle", min(depth_margin, _clip01(1 - b.mid_fraction / CIRCLE_GREY_MID))
    return "pulsing", min(depth_margin, _clip01((b.mid_fraction - CIRCLE_MAX_MID) / CIRCLE_MAX_MID))


def _state_named(colour: str, pattern: str, states: Mapping[str, Mapping]) -> tuple[str, str]:
    for name, spec in states.items():
        if spec.get("colour") == colour and spec.get("pattern") == pattern:
            return name, str(spec.get("meaning", ""))
    return "unknown", ""


def classify(
    samples: Sequence[Sample],
    colours: Mapping[str, Sequence[float]],
    states: Mapping[str, Mapping],
    waveforms: Mapping,
    *,
    dark_counts: float | None = None,
) -> LedObservation:
    """Classify one window of samples against the profile's [led] tables."""
    samples = tuple(sorted(samples, key=lambda s: s.t_s))
    duration = samples[-1].t_s - samples[0].t_s if samples else 0.0
    if len(samples) < MIN_SAMPLES:
        return LedObservation(
            "unknown", "unknown", "unknown", 0.0, reason=f"only {len(samples)} samples",
            n_samples=len(samples), duration_s=duration, samples=samples,
        )
    dark = float(dark_counts if dark_counts is not None else waveforms.get("dark_counts", DEFAULT_DARK_COUNTS))
    b = _brightness(samples)
    bright = [s for s in samples if s.r + s.g + s.b >= max(dark, 0.5 * b.high)]
    h = _hue(bright)
    obs = LedObservation(
        "unknown", "unknown", "unknown", 0.0, n_samples=len(samples), duration_s=duration,
        chroma=h.chroma, brightness_low=b.low, brightness_high=b.high, depth=b.depth,
        mid_fraction=b.mid_fraction, edge_sharpness=b.edge_sharpness, hue_spread_deg=h.spread_deg,
        hue_step_deg=h.step_deg, chroma_scatter=h.scatter, saturated_fraction=h.saturated_fraction,
        samples=samples,
    )
    if b.high < dark:
        obs.state, obs.colour, obs.pattern = "off", "off", "solid"
        obs.confidence = _clip01(1 - b.high / dark)
        obs.reason = f"brightest samples below {dark:.0f} counts"
        return obs
    if len(bright) < MIN_SAMPLES // 2:
        obs.reason = f"only {len(bright)} samples bright enough to judge colour"
        return obs
    if _is_rainbow(h):
        obs.colour = obs.pattern = "rainbow"
        obs.confidence = min(
            _clip01(1 - h.resultant / RAINBOW_MAX_RESULTANT), _clip01(1 - h.step_deg / RAINBOW_MAX_HUE_STEP_DEG)
        )
    else:
        name, distance = _nearest_colour(h.chroma, colours)
        radius = colour_match_radius(colours)
        obs.colour_distance = distance
        obs.pattern, pattern_margin = _pattern(b, waveforms)
        if distance > radius:
            obs.reason = f"chromaticity {distance:.3f} from the nearest colour ({name}), limit {radius:.3f}"
            return obs
        if h.scatter > radius:
            obs.reason = f"colour not steady: chromaticity scatters {h.scatter:.3f} (limit {radius:.3f})"
            return obs
        obs.colour = name
        obs.confidence = min(_clip01(1 - distance / radius), pattern_margin)
    obs.state, obs.meaning = _state_named(obs.colour, obs.pattern, states)
    if obs.state == "unknown":
        obs.reason = f"{obs.colour} {obs.pattern} is not a documented state"
    return obs
