"""Particles of a pile-up event: vertices, multiplicities, species, pT/η spectra, TrackML ids.

Real TrackML particle tables hold two populations: particles that reach the pixel layers, and soft
particles without pixel hits (24 % of the real sample event's particles, mostly produced outside the
pixel volume). The simulator transports the first kind and adds the second, untransported, so the
whole table follows the pT quantiles measured on real TrackML particles (DESIGN §3). The transported
spectrum is that measured all-particle spectrum with the no-pixel-hit spectrum taken out:
F_pix = (F_all − f·F_none) / (1 − f), log-linear between knots, power-law tail above the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trackrt.data.particle_ids import encode_particle_id

# (cumulative fraction, pT in GeV): measured TrackML quantiles plus the measured shares >= 0.6 and >= 1 GeV.
ALL_PARTICLE_PT_QUANTILES: tuple[tuple[float, float], ...] = (
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
PT_TAIL_ALPHA = np.log(10.0) / np.log(2.73 / 1.07)
MAX_PT_GEV = 500.0

# Measured on the real sample event (event000000001, 548 particles): 130 have no pixel hit; their pT
# quantiles and |η| histogram (bins of one unit up to 4), and the |η| histogram of the other 418.
NO_PIXEL_HIT_FRACTION = 130 / 548
NO_PIXEL_HIT_PT_QUANTILES: tuple[tuple[float, float], ...] = (
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
NO_PIXEL_HIT_ETA_SHAPE: tuple[float, ...] = (78.0, 25.0, 9.0, 18.0)
PIXEL_PARTICLE_ETA_SHAPE: tuple[float, ...] = (136.0, 107.0, 99.0, 76.0)
# Where the untransported particles are produced: the strip-detector region beyond the pixels.
OUTER_VERTEX_RADIUS_MM = (200.0, 1000.0)
OUTER_VERTEX_HALF_Z_MM = 2000.0

# (PDG code of the positive particle, mass in GeV, share): pions, kaons, protons, electrons, muons.
SPECIES: tuple[tuple[int, float, float], ...] = (
    (211, 0.13957, 0.78),
    (321, 0.49368, 0.08),
    (2212, 0.93827, 0.11),
    (-11, 0.000511, 0.02),
    (-13, 0.10566, 0.01),
)


@dataclass(frozen=True)
class ParticleSpec:
    """What to generate: pile-up and hard-scatter multiplicities, acceptance and beam-spot sizes."""

    pileup: float = 200.0
    charged_per_interaction: float = 54.0
    # Negative-binomial k of the per-interaction multiplicity; None is Poisson. Poisson keeps the
    # event-to-event spread of pixel hits near the measured 52.1k ± 3.6k (6.9 %; Poisson(μ) alone: 7.1 %).
    multiplicity_shape: float | None = None
    eta_max: float = 4.0
    # Relative particle density in equal-width |η| bins over [0, eta_max].
    eta_shape: tuple[float, ...] = PIXEL_PARTICLE_ETA_SHAPE
    # Untransported particles without pixel hits, as a fraction of all particles (0 disables them).
    no_pixel_hit_fraction: float = NO_PIXEL_HIT_FRACTION
    hard_scatter: bool = True
    hard_scatter_particles: float = 40.0
    hard_scatter_pt_min: float = 0.5
    hard_scatter_pt_alpha: float = 1.5
    hard_scatter_eta_max: float = 2.5
    vertex_sigma_z: float = 50.0
    vertex_sigma_xy: float = 0.02


def _cdf(knots: tuple[tuple[float, float], ...], pt: np.ndarray) -> np.ndarray:
    knots_q, knots_pt = (np.asarray(k) for k in zip(*knots, strict=True))
    return np.interp(np.log(pt), np.log(knots_pt), knots_q)


def pixel_particle_pt_quantiles(no_pixel_fraction: float) -> tuple[tuple[float, float], ...]:
    """Knots of the transported spectrum: (F_all − f·F_none) / (1 − f) at the all-particle knots."""
    if not 0.0 <= no_pixel_fraction < 1.0:
        raise ValueError(f"no_pixel_hit_fraction must lie in [0, 1), got {no_pixel_fraction}")
    knots_q, knots_pt = (np.asarray(k) for k in zip(*ALL_PARTICLE_PT_QUANTILES, strict=True))
    none_cdf = _cdf(NO_PIXEL_HIT_PT_QUANTILES, knots_pt)
    pixel_q = np.clip((knots_q - no_pixel_fraction * none_cdf) / (1.0 - no_pixel_fraction), 0.0, 1.0)
    pixel_q = np.maximum.accumulate(pixel_q)
    return tuple((float(q), float(pt)) for q, pt in zip(pixel_q, knots_pt, strict=True))


def sample_quantile_pt(
    rng: np.random.Generator, size: int, knots: tuple[tuple[float, float], ...]
) -> np.ndarray:
    """pT (GeV) through quantile knots (log-linear), with a power-law tail above the last knot."""
    quantile = rng.random(size)
    knots_q, knots_pt = (np.asarray(k) for k in zip(*knots, strict=True))
    pt = np.exp(np.interp(quantile, knots_q, np.log(knots_pt)))
    tail = quantile > knots_q[-1]
    survival_ratio = (1.0 - quantile[tail]) / (1.0 - knots_q[-1])
    pt[tail] = knots_pt[-1] * survival_ratio ** (-1.0 / PT_TAIL_ALPHA)
    return np.minimum(pt, MAX_PT_GEV)


def sample_pareto_pt(rng: np.random.Generator, size: int, pt_min: float, alpha: float) -> np.ndarray:
    """pT (GeV) from a power law S(pT) = (pT/pt_min)^-alpha, capped at MAX_PT_GEV."""
    return np.minimum(pt_min * (1.0 - rng.random(size)) ** (-1.0 / alpha), MAX_PT_GEV)


def sample_species(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(PDG code, charge, mass) per particle from the species mix, charges ±1 with equal probability."""
    codes, masses, shares = (np.asarray(c) for c in zip(*SPECIES, strict=True))
    kind = rng.choice(codes.size, size=size, p=shares / shares.sum())
    charge = rng.choice(np.array([-1, 1]), size=size)
    positive_code = codes[kind]
    # Positive charge carries the listed code; e+ and mu+ have negative PDG codes by convention.
    pdg = np.where(charge > 0, positive_code, -positive_code).astype(np.int32)
    return pdg, charge.astype(np.int32), masses[kind]


def sample_eta(rng: np.random.Generator, size: int, eta_max: float, shape: tuple[float, ...]) -> np.ndarray:
    """η with a piecewise-constant |η| density `shape` over [0, eta_max] and a random sign."""
    weights = np.asarray(shape, dtype=np.float64)
    width = eta_max / weights.size
    bins = rng.choice(weights.size, size=size, p=weights / weights.sum())
    return (bins + rng.random(size)) * width * rng.choice(np.array([-1.0, 1.0]), size=size)


def _multiplicities(
    rng: np.random.Generator, interactions: int, mean: float, shape: float | None
) -> np.ndarray:
    if shape is None:
        return rng.poisson(mean, interactions)
    return rng.negative_binomial(shape, shape / (shape + mean), interactions)


def generate_particles(rng: np.random.Generator, spec: ParticleSpec) -> pd.DataFrame:
    """Particles of one event as a TrackML particles table (without nhits) plus `mass` and `transport`.

    Vertex 1 is the hard scatter when enabled; pile-up interactions follow. Each vertex's particles
    are numbered from 1 in the `primary` field of the particle id. Untransported particles without
    pixel hits follow (`transport` False), as generation-1 descendants of random primaries.
    """
    interactions = int(rng.poisson(spec.pileup))
    counts = _multiplicities(rng, interactions, spec.charged_per_interaction, spec.multiplicity_shape)
    n_pileup = int(counts.sum())
    pt = [sample_quantile_pt(rng, n_pileup, pixel_particle_pt_quantiles(spec.no_pixel_hit_fraction))]
    eta = [sample_eta(rng, n_pileup, spec.eta_max, spec.eta_shape)]
    if spec.hard_scatter:
        n_hard = int(rng.poisson(spec.hard_scatter_particles))
        counts = np.concatenate([[n_hard], counts])
        pt.insert(0, sample_pareto_pt(rng, n_hard, spec.hard_scatter_pt_min, spec.hard_scatter_pt_alpha))
        eta.insert(0, rng.uniform(-spec.hard_scatter_eta_max, spec.hard_scatter_eta_max, n_hard))
    pt_all = np.concatenate(pt)
    eta_all = np.concatenate(eta)
    n_vertices = counts.size
    vertex_xyz = np.column_stack(
        [
            rng.normal(0.0, spec.vertex_sigma_xy, n_vertices),
            rng.normal(0.0, spec.vertex_sigma_xy, n_vertices),
            rng.normal(0.0, spec.vertex_sigma_z, n_vertices),
        ]
    )
    vertex_of = np.repeat(np.arange(n_vertices), counts)
    primary = np.arange(vertex_of.size) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    phi = rng.uniform(-np.pi, np.pi, pt_all.size)
    momentum = np.column_stack([pt_all * np.cos(phi), pt_all * np.sin(phi), pt_all * np.sinh(eta_all)])
    pdg, charge, mass = sample_species(rng, pt_all.size)
    zeros = np.zeros(vertex_of.size, dtype=np.int64)
    particle_id = encode_particle_id(vertex_of + 1, primary, zeros, zeros, zeros)
    vertex = vertex_xyz[vertex_of]
    primaries = pd.DataFrame(
        {
            "particle_id": particle_id,
            "particle_type": pdg,
            "vx": vertex[:, 0],
            "vy": vertex[:, 1],
            "vz": vertex[:, 2],
            "px": momentum[:, 0],
            "py": momentum[:, 1],
            "pz": momentum[:, 2],
            "q": charge,
            "mass": mass,
            "transport": True,
        }
    )
    n_outer = int(
        rng.poisson(spec.no_pixel_hit_fraction / (1.0 - spec.no_pixel_hit_fraction) * len(primaries))
    )
    if n_outer == 0 or len(primaries) == 0:
        return primaries
    return pd.concat([primaries, _outer_particles(rng, n_outer, vertex_of + 1, primary)], ignore_index=True)


def _outer_particles(
    rng: np.random.Generator, size: int, parent_vertex: np.ndarray, parent_primary: np.ndarray
) -> pd.DataFrame:
    """Soft particles produced beyond the pixel volume (no pixel hits; not transported)."""
    parent = rng.integers(0, parent_vertex.size, size)
    order = np.argsort(parent, kind="stable")
    parent = parent[order]
    first = np.searchsorted(parent, parent, side="left")
    secondary = np.arange(size) - first + 1
    zeros = np.zeros(size, dtype=np.int64)
    particle_id = encode_particle_id(
        parent_vertex[parent], parent_primary[parent], zeros + 1, secondary, zeros
    )
    pt = sample_quantile_pt(rng, size, NO_PIXEL_HIT_PT_QUANTILES)
    eta = sample_eta(rng, size, 4.0, NO_PIXEL_HIT_ETA_SHAPE)
    phi = rng.uniform(-np.pi, np.pi, size)
    radius = rng.uniform(*OUTER_VERTEX_RADIUS_MM, size)
    vertex_phi = rng.uniform(-np.pi, np.pi, size)
    pdg, charge, mass = sample_species(rng, size)
    return pd.DataFrame(
        {
            "particle_id": particle_id,
            "particle_type": pdg,
            "vx": radius * np.cos(vertex_phi),
            "vy": radius * np.sin(vertex_phi),
            "vz": rng.uniform(-OUTER_VERTEX_HALF_Z_MM, OUTER_VERTEX_HALF_Z_MM, size),
            "px": pt * np.cos(phi),
            "py": pt * np.sin(phi),
            "pz": pt * np.sinh(eta),
            "q": charge,
            "mass": mass,
            "transport": False,
        }
    )
