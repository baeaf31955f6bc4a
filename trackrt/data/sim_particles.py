"""Particles of a pile-up event: vertices, multiplicities, species, kinematics, TrackML particle ids.

Primaries come from Poisson pile-up interactions (plus an optional tt̄-like hard scatter at vertex 1);
secondaries with and without pixel hits are added in the measured proportions (see `sim_spectra`).
Secondaries are generation-1 descendants of random primaries: those with pixel hits start at a
measured production radius on the line from their parent's vertex along their own direction; those
without pixel hits start in the strip region (200–1000 mm) and are not transported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trackrt.data.particle_ids import encode_particle_id
from trackrt.data.sim_spectra import (
    MAX_PT_GEV,
    NO_PIXEL_HIT_ETA_SHAPE,
    NO_PIXEL_HIT_FRACTION,
    NO_PIXEL_HIT_PT_QUANTILES,
    PIXEL_SECONDARY_ETA_SHAPE,
    PIXEL_SECONDARY_FRACTION,
    PIXEL_SECONDARY_PT_QUANTILES,
    PIXEL_SECONDARY_RADIUS_QUANTILES,
    PRIMARY_ETA_SHAPE,
    primary_pt_quantiles,
    sample_eta,
    sample_knots,
)

Species = tuple[tuple[int, float, float], ...]
# (PDG code of the positive particle, mass in GeV, weight).
PRIMARY_SPECIES: Species = (
    (211, 0.13957, 0.78),
    (321, 0.49368, 0.08),
    (2212, 0.93827, 0.11),
    (-11, 0.000511, 0.02),
    (-13, 0.10566, 0.01),
)
# Counts among the real sample event's secondaries with and without pixel hits.
PIXEL_SECONDARY_SPECIES: Species = ((211, 0.13957, 42.0), (2212, 0.93827, 19.0))
NO_PIXEL_HIT_SPECIES: Species = ((211, 0.13957, 87.0), (321, 0.49368, 2.0), (2212, 0.93827, 41.0))
OUTER_VERTEX_RADIUS_MM = (200.0, 1000.0)
OUTER_VERTEX_HALF_Z_MM = 2000.0


@dataclass(frozen=True)
class ParticleSpec:
    """What to generate: pile-up, multiplicities, populations, acceptance and beam-spot sizes."""

    pileup: float = 200.0
    charged_per_interaction: float = 35.0  # primaries; secondaries come on top
    # Negative-binomial k of the per-interaction multiplicity; None is Poisson. Poisson keeps the
    # event-to-event spread of pixel hits near the measured 52.1k ± 3.6k (6.9 %; Poisson(μ) alone: 7.1 %).
    multiplicity_shape: float | None = None
    eta_max: float = 4.0
    eta_shape: tuple[float, ...] = PRIMARY_ETA_SHAPE  # relative density in equal |η| bins up to eta_max
    pixel_secondary_fraction: float = PIXEL_SECONDARY_FRACTION  # of all particles
    no_pixel_hit_fraction: float = NO_PIXEL_HIT_FRACTION  # of all particles
    hard_scatter: bool = True
    hard_scatter_particles: float = 40.0
    hard_scatter_pt_min: float = 0.5
    hard_scatter_pt_alpha: float = 1.5
    hard_scatter_eta_max: float = 2.5
    vertex_sigma_z: float = 50.0
    vertex_sigma_xy: float = 0.02


def sample_pareto_pt(rng: np.random.Generator, size: int, pt_min: float, alpha: float) -> np.ndarray:
    """pT (GeV) from a power law S(pT) = (pT/pt_min)^-alpha, capped at MAX_PT_GEV."""
    return np.minimum(pt_min * (1.0 - rng.random(size)) ** (-1.0 / alpha), MAX_PT_GEV)


def sample_species(
    rng: np.random.Generator, size: int, species: Species = PRIMARY_SPECIES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(PDG code, charge, mass) per particle from a species mix, charges ±1 with equal probability."""
    codes, masses, weights = (np.asarray(c) for c in zip(*species, strict=True))
    kind = rng.choice(codes.size, size=size, p=weights / weights.sum())
    charge = rng.choice(np.array([-1, 1]), size=size)
    # Positive charge carries the listed code; e+ and mu+ have negative PDG codes by convention.
    pdg = np.where(charge > 0, codes[kind], -codes[kind]).astype(np.int32)
    return pdg, charge.astype(np.int32), masses[kind]


def _multiplicities(
    rng: np.random.Generator, interactions: int, mean: float, shape: float | None
) -> np.ndarray:
    if shape is None:
        return rng.poisson(mean, interactions)
    return rng.negative_binomial(shape, shape / (shape + mean), interactions)


def _table(
    particle_id: np.ndarray,
    pdg: np.ndarray,
    vertex: np.ndarray,
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    charge: np.ndarray,
    mass: np.ndarray,
    transport: bool,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "particle_id": particle_id,
            "particle_type": pdg,
            "vx": vertex[:, 0],
            "vy": vertex[:, 1],
            "vz": vertex[:, 2],
            "px": pt * np.cos(phi),
            "py": pt * np.sin(phi),
            "pz": pt * np.sinh(eta),
            "q": charge,
            "mass": mass,
            "transport": transport,
        }
    )


def _primaries(rng: np.random.Generator, spec: ParticleSpec) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Primary particles plus each one's vertex number and index within its vertex (both 1-based)."""
    counts = _multiplicities(
        rng, int(rng.poisson(spec.pileup)), spec.charged_per_interaction, spec.multiplicity_shape
    )
    n_pileup = int(counts.sum())
    knots = primary_pt_quantiles(spec.no_pixel_hit_fraction, spec.pixel_secondary_fraction)
    pt = [sample_knots(rng, n_pileup, knots)]
    eta = [sample_eta(rng, n_pileup, spec.eta_max, spec.eta_shape)]
    if spec.hard_scatter:
        n_hard = int(rng.poisson(spec.hard_scatter_particles))
        counts = np.concatenate([[n_hard], counts])
        pt.insert(0, sample_pareto_pt(rng, n_hard, spec.hard_scatter_pt_min, spec.hard_scatter_pt_alpha))
        eta.insert(0, rng.uniform(-spec.hard_scatter_eta_max, spec.hard_scatter_eta_max, n_hard))
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
    pt_all = np.concatenate(pt)
    pdg, charge, mass = sample_species(rng, pt_all.size)
    zeros = np.zeros(vertex_of.size, dtype=np.int64)
    table = _table(
        encode_particle_id(vertex_of + 1, primary, zeros, zeros, zeros),
        pdg,
        vertex_xyz[vertex_of],
        pt_all,
        np.concatenate(eta),
        rng.uniform(-np.pi, np.pi, pt_all.size),
        charge,
        mass,
        transport=True,
    )
    return table, vertex_of + 1, primary


def _secondaries(
    rng: np.random.Generator,
    primaries: pd.DataFrame,
    vertex: np.ndarray,
    primary: np.ndarray,
    n_inner: int,
    n_outer: int,
) -> pd.DataFrame:
    """Secondaries with pixel hits (transported) then without (not transported), ids unique per parent."""
    size = n_inner + n_outer
    parent = rng.integers(0, len(primaries), size)
    order = np.argsort(parent, kind="stable")
    secondary = np.empty(size, dtype=np.int64)
    secondary[order] = np.arange(size) - np.searchsorted(parent[order], parent[order], side="left") + 1
    zeros = np.zeros(size, dtype=np.int64)
    particle_id = encode_particle_id(vertex[parent], primary[parent], zeros + 1, secondary, zeros)
    inner, outer = slice(0, n_inner), slice(n_inner, size)

    eta = sample_eta(rng, n_inner, 4.0, PIXEL_SECONDARY_ETA_SHAPE)
    phi = rng.uniform(-np.pi, np.pi, n_inner)
    radius = sample_knots(rng, n_inner, PIXEL_SECONDARY_RADIUS_QUANTILES)
    parent_vertex = primaries[["vx", "vy", "vz"]].to_numpy()[parent[inner]]
    start = parent_vertex + np.column_stack(
        [radius * np.cos(phi), radius * np.sin(phi), radius * np.sinh(eta)]
    )
    pdg, charge, mass = sample_species(rng, n_inner, PIXEL_SECONDARY_SPECIES)
    pt = sample_knots(rng, n_inner, PIXEL_SECONDARY_PT_QUANTILES)
    with_hits = _table(particle_id[inner], pdg, start, pt, eta, phi, charge, mass, transport=True)

    radius = rng.uniform(*OUTER_VERTEX_RADIUS_MM, n_outer)
    vertex_phi = rng.uniform(-np.pi, np.pi, n_outer)
    start = np.column_stack(
        [
            radius * np.cos(vertex_phi),
            radius * np.sin(vertex_phi),
            rng.uniform(-OUTER_VERTEX_HALF_Z_MM, OUTER_VERTEX_HALF_Z_MM, n_outer),
        ]
    )
    pdg, charge, mass = sample_species(rng, n_outer, NO_PIXEL_HIT_SPECIES)
    pt = sample_knots(rng, n_outer, NO_PIXEL_HIT_PT_QUANTILES)
    eta = sample_eta(rng, n_outer, 4.0, NO_PIXEL_HIT_ETA_SHAPE)
    phi = rng.uniform(-np.pi, np.pi, n_outer)
    without_hits = _table(particle_id[outer], pdg, start, pt, eta, phi, charge, mass, transport=False)
    return pd.concat([with_hits, without_hits], ignore_index=True)


def generate_particles(rng: np.random.Generator, spec: ParticleSpec) -> pd.DataFrame:
    """Particles of one event: a TrackML particles table (without nhits) plus `mass` and `transport`."""
    primaries, vertex, primary = _primaries(rng, spec)
    primary_fraction = 1.0 - spec.no_pixel_hit_fraction - spec.pixel_secondary_fraction
    n_inner = int(rng.poisson(spec.pixel_secondary_fraction / primary_fraction * len(primaries)))
    n_outer = int(rng.poisson(spec.no_pixel_hit_fraction / primary_fraction * len(primaries)))
    if len(primaries) == 0 or n_inner + n_outer == 0:
        return primaries
    secondaries = _secondaries(rng, primaries, vertex, primary, n_inner, n_outer)
    return pd.concat([primaries, secondaries], ignore_index=True)
