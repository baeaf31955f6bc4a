"""Primary particles of a pile-up event: vertices, multiplicities, species, pT/η spectra, TrackML ids.

The pile-up pT spectrum is the inverse CDF through the quantiles measured on real TrackML particles
(DESIGN §3, log-linear between knots) with a power-law tail above the 99 % quantile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trackrt.data.particle_ids import encode_particle_id

# (cumulative fraction, pT in GeV): measured TrackML quantiles plus the measured shares >= 0.6 and >= 1 GeV.
PILEUP_PT_QUANTILES: tuple[tuple[float, float], ...] = (
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
PILEUP_PT_TAIL_ALPHA = np.log(10.0) / np.log(2.73 / 1.07)
MAX_PT_GEV = 500.0

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
    multiplicity_shape: float = 1.0  # negative-binomial k of the per-interaction multiplicity
    eta_max: float = 4.0
    # Relative particle density in equal-width |η| bins over [0, eta_max]: the |η| histogram of the
    # real TrackML sample event's particles (214, 132, 108, 94 in bins of one unit).
    eta_shape: tuple[float, ...] = (1.0, 0.62, 0.50, 0.44)
    hard_scatter: bool = True
    hard_scatter_particles: float = 40.0
    hard_scatter_pt_min: float = 0.5
    hard_scatter_pt_alpha: float = 1.5
    hard_scatter_eta_max: float = 2.5
    vertex_sigma_z: float = 50.0
    vertex_sigma_xy: float = 0.02


def sample_pileup_pt(rng: np.random.Generator, size: int) -> np.ndarray:
    """pT (GeV) following the measured TrackML quantiles, power-law tail above the 99 % quantile."""
    quantile = rng.random(size)
    knots_q, knots_pt = (np.asarray(k) for k in zip(*PILEUP_PT_QUANTILES, strict=True))
    pt = np.exp(np.interp(quantile, knots_q, np.log(knots_pt)))
    tail = quantile > knots_q[-1]
    survival_ratio = (1.0 - quantile[tail]) / (1.0 - knots_q[-1])
    pt[tail] = knots_pt[-1] * survival_ratio ** (-1.0 / PILEUP_PT_TAIL_ALPHA)
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


def _multiplicities(rng: np.random.Generator, interactions: int, mean: float, shape: float) -> np.ndarray:
    if interactions == 0:
        return np.zeros(0, dtype=np.int64)
    return rng.negative_binomial(shape, shape / (shape + mean), interactions)


def generate_particles(rng: np.random.Generator, spec: ParticleSpec) -> pd.DataFrame:
    """Primary particles of one event as a TrackML particles table (without nhits) plus `mass`.

    Vertex 1 is the hard scatter when enabled; pile-up interactions follow. Each vertex's particles
    are numbered from 1 in the `primary` field of the particle id.
    """
    interactions = int(rng.poisson(spec.pileup))
    counts = _multiplicities(rng, interactions, spec.charged_per_interaction, spec.multiplicity_shape)
    n_pileup = int(counts.sum())
    pt = [sample_pileup_pt(rng, n_pileup)]
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
    return pd.DataFrame(
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
        }
    )
