"""Measured particle spectra that drive the event generator, and sampling through quantile knots.

Real TrackML particle tables hold three populations (shares measured on the real sample event,
event000000001, 548 particles): primaries with pixel hits (357), secondaries with pixel hits (61,
produced in the beam pipe, the pixel layers or by decays) and soft particles without any pixel hit
(130, mostly produced outside the pixel volume). The all-particle pT quantiles of DESIGN §3 (100 real
files) mix the three, so the primary spectrum is that mixture with the other two taken out:
F_primary = (F_all − f_none·F_none − f_secondary·F_secondary) / f_primary.
"""

from __future__ import annotations

import numpy as np

Knots = tuple[tuple[float, float], ...]

# (cumulative fraction, pT in GeV): DESIGN §3 quantiles plus the measured shares >= 0.6 and >= 1 GeV.
ALL_PARTICLE_PT_QUANTILES: Knots = (
    (0.0, 0.100),
    (0.10, 0.145),
    (0.25, 0.216),
    (0.50, 0.360),
    (0.737, 0.600),
    (0.75, 0.624),
    (0.889, 1.000),
    (0.90, 1.070),
    (0.99, 2.730),
)
# Power-law exponent of the survival function above the last knot: S(pT) ∝ pT^-alpha.
PT_TAIL_ALPHA = float(np.log(10.0) / np.log(2.73 / 1.07))
MAX_PT_GEV = 500.0

# Measured on the real sample event.
NO_PIXEL_HIT_FRACTION = 130 / 548
PIXEL_SECONDARY_FRACTION = 61 / 548
NO_PIXEL_HIT_PT_QUANTILES: Knots = (
    (0.0, 0.101),
    (0.10, 0.112),
    (0.25, 0.132),
    (0.50, 0.179),
    (0.75, 0.252),
    (0.90, 0.352),
    (0.977, 0.600),
    (0.992, 1.000),
    (1.0, 4.788),
)
PIXEL_SECONDARY_PT_QUANTILES: Knots = (
    (0.0, 0.101),
    (0.10, 0.157),
    (0.25, 0.208),
    (0.50, 0.284),
    (0.75, 0.510),
    (0.90, 1.067),
    (1.0, 1.629),
)
# Production radius (mm) of secondaries with pixel hits (the measured maximum, 255 mm, is a looper
# produced beyond the pixels; capped at the outer barrel layer here).
PIXEL_SECONDARY_RADIUS_QUANTILES: Knots = (
    (0.0, 2.2),
    (0.10, 6.3),
    (0.25, 19.0),
    (0.50, 35.5),
    (0.75, 76.7),
    (0.90, 132.7),
    (1.0, 172.0),
)
# |η| histograms in bins of one unit over [0, 4].
PRIMARY_ETA_SHAPE: tuple[float, ...] = (103.0, 91.0, 90.0, 73.0)
PIXEL_SECONDARY_ETA_SHAPE: tuple[float, ...] = (33.0, 16.0, 9.0, 3.0)
NO_PIXEL_HIT_ETA_SHAPE: tuple[float, ...] = (78.0, 25.0, 9.0, 18.0)


def knots_cdf(knots: Knots, values: np.ndarray) -> np.ndarray:
    """Cumulative fraction at `values` for a log-linear quantile table."""
    knots_q, knots_x = (np.asarray(k) for k in zip(*knots, strict=True))
    return np.interp(np.log(values), np.log(knots_x), knots_q)


def primary_pt_quantiles(no_pixel_fraction: float, secondary_fraction: float) -> Knots:
    """Primary pT knots at the all-particle knot values, after taking the other populations out."""
    primary_fraction = 1.0 - no_pixel_fraction - secondary_fraction
    if no_pixel_fraction < 0 or secondary_fraction < 0 or primary_fraction <= 0:
        raise ValueError(
            f"population fractions must be >= 0 and leave room for primaries "
            f"(no-pixel {no_pixel_fraction}, secondaries {secondary_fraction})"
        )
    knots_q, knots_pt = (np.asarray(k) for k in zip(*ALL_PARTICLE_PT_QUANTILES, strict=True))
    others = no_pixel_fraction * knots_cdf(
        NO_PIXEL_HIT_PT_QUANTILES, knots_pt
    ) + secondary_fraction * knots_cdf(PIXEL_SECONDARY_PT_QUANTILES, knots_pt)
    primary_q = np.maximum.accumulate(np.clip((knots_q - others) / primary_fraction, 0.0, 1.0))
    return tuple((float(q), float(pt)) for q, pt in zip(primary_q, knots_pt, strict=True))


def sample_knots(rng: np.random.Generator, size: int, knots: Knots, cap: float = MAX_PT_GEV) -> np.ndarray:
    """Values through quantile knots (log-linear), power-law tail above a last knot below 1, capped."""
    quantile = rng.random(size)
    knots_q, knots_x = (np.asarray(k) for k in zip(*knots, strict=True))
    values = np.exp(np.interp(quantile, knots_q, np.log(knots_x)))
    tail = quantile > knots_q[-1]
    survival_ratio = (1.0 - quantile[tail]) / (1.0 - knots_q[-1])
    values[tail] = knots_x[-1] * survival_ratio ** (-1.0 / PT_TAIL_ALPHA)
    return np.minimum(values, cap)


def sample_eta(rng: np.random.Generator, size: int, eta_max: float, shape: tuple[float, ...]) -> np.ndarray:
    """η with a piecewise-constant |η| density `shape` over [0, eta_max] and a random sign."""
    weights = np.asarray(shape, dtype=np.float64)
    width = eta_max / weights.size
    bins = rng.choice(weights.size, size=size, p=weights / weights.sum())
    return (bins + rng.random(size)) * width * rng.choice(np.array([-1.0, 1.0]), size=size)
