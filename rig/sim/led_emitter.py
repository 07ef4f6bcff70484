"""What a colour sensor held against the charger's LED would read, at any moment.

The emulated charger only says *what* it shows (`plant.led`: colour name, pattern and
since when); this module turns that into light over time, using the product profile's
[led.colours] and [led.waveforms], and then into sensor counts through `Optics`
(brightness scale, ambient light, noise). The phase of every waveform starts at
`since_s`, the moment the firmware switched to it:

* solid   constant at the colour's level
* pulsing raised cosine between pulsing_min_level and full over pulsing_period_s,
          starting at the minimum
* circle  lit for circle_lit_fraction of each circle_period_s (starting lit), otherwise
          nearly dark; sharp edges, because a segment of a ring sweeps past the sensor
* rainbow hue turning through 360 degrees every rainbow_period_s at full saturation
* "off"   dark (the sensor then reads ambient light and noise)

The classifier's tests use these same functions, so what the harness's own tests prove
about the classifier holds for the emulated bench.
"""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import dataclass
from typing import Mapping, Sequence

from rig.sim.plant import LedShown

#: sensor counts of a full-brightness channel (a TCS34725 at a moderate gain and integration time)
FULL_SCALE_COUNTS = 20000.0
#: the sensor's 16-bit ceiling
MAX_COUNTS = 65535
#: how much light a ring segment leaks while the lit segment is elsewhere
CIRCLE_DARK_LEVEL = 0.02


def pattern_level(pattern: str, phase_s: float, waveforms: Mapping) -> float:
    """Relative brightness 0..1 of a single-colour pattern `phase_s` after it started."""
    if pattern == "solid":
        return 1.0
    if pattern == "pulsing":
        period = float(waveforms["pulsing_period_s"])
        low = float(waveforms["pulsing_min_level"])
        swing = (1 - math.cos(2 * math.pi * phase_s / period)) / 2
        return low + (1 - low) * swing
    if pattern == "circle":
        position = (phase_s / float(waveforms["circle_period_s"])) % 1.0
        return 1.0 if position < float(waveforms["circle_lit_fraction"]) else CIRCLE_DARK_LEVEL
    raise ValueError(f"unknown LED pattern {pattern!r}")


def rainbow_rgb(phase_s: float, waveforms: Mapping) -> tuple[float, float, float]:
    hue = (phase_s / float(waveforms["rainbow_period_s"])) % 1.0
    return colorsys.hsv_to_rgb(hue, 1.0, 1.0)


def relative_rgb(
    led: LedShown, t_s: float, colours: Mapping[str, Sequence[float]], waveforms: Mapping
) -> tuple[float, float, float]:
    """The LED's light at time `t_s`, each channel 0..1 of full scale (no optics, no noise)."""
    if led.colour == "off":
        return (0.0, 0.0, 0.0)
    phase_s = t_s - led.since_s
    if led.pattern == "rainbow" or led.colour == "rainbow":
        return rainbow_rgb(phase_s, waveforms)
    try:
        base = colours[led.colour]
    except KeyError:
        raise ValueError(f"LED colour {led.colour!r} is not in [led.colours]") from None
    level = pattern_level(led.pattern, phase_s, waveforms)
    return (base[0] * level, base[1] * level, base[2] * level)


@dataclass
class Optics:
    """How the sensor sees the LED: a global scale, ambient light and gaussian noise.

    Per channel: counts = full_scale * brightness * light + ambient + N(0, sigma), with
    sigma = noise_floor + noise_rel * (the channel's light in counts), clipped to 0..65535.
    """

    full_scale: float = FULL_SCALE_COUNTS
    brightness: float = 1.0
    ambient: tuple[float, float, float] = (120.0, 110.0, 90.0)
    noise_rel: float = 0.01
    noise_floor: float = 20.0

    @classmethod
    def from_config(cls, config: Mapping) -> "Optics":
        """Optional emulator keys in the rig section; a rig file normally leaves them out."""
        base = cls()
        return cls(
            full_scale=float(config.get("full_scale", base.full_scale)),
            brightness=float(config.get("brightness", base.brightness)),
            ambient=tuple(float(a) for a in config.get("ambient", base.ambient)),
            noise_rel=float(config.get("noise_rel", base.noise_rel)),
            noise_floor=float(config.get("noise_floor", base.noise_floor)),
        )

    def counts(self, light: Sequence[float], rng: random.Random) -> tuple[int, int, int]:
        out = []
        for level, ambient in zip(light, self.ambient):
            signal = self.full_scale * self.brightness * level
            sigma = self.noise_floor + self.noise_rel * signal
            value = signal + ambient + (rng.gauss(0.0, sigma) if sigma > 0 else 0.0)
            out.append(min(MAX_COUNTS, max(0, round(value))))
        return (out[0], out[1], out[2])


def sensor_counts(
    led: LedShown,
    t_s: float,
    colours: Mapping[str, Sequence[float]],
    waveforms: Mapping,
    optics: Optics,
    rng: random.Random,
) -> tuple[int, int, int]:
    """One sensor reading (r, g, b counts) of `led` at time `t_s`."""
    return optics.counts(relative_rgb(led, t_s, colours, waveforms), rng)
