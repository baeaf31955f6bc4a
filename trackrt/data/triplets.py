"""Beamline-constrained hit triplets: per-hit evidence that a hit lies on a high-pT track from the beam.

For each hit, the partners are nearby hits in φ (on other layers) whose doublet with it is compatible
with a track of pT ≥ `pt_min` from the beam line: the circle through the origin and both hits is no
more curved than such a track, the straight line through both hits in (r, z) meets the beam within
`z0_max`, and the two are less than π/2 apart in φ (a track does not cross the beam line). Two
partners agree when their doublets give the same curvature and the same z0, i.e. the three hits sit
on one helix from the beam. None of this depends on where along the beam the vertex lies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trackrt.configuration import ConfigError

TRIPLET_FEATURES: tuple[str, ...] = ("triplet_chi2", "triplet_partners", "triplet_curvature", "triplet_z0")
CHI2_CAP = 50.0
_CHUNK = 2048
_PAIR_GROUP = 128


@dataclass
class TripletConfig:
    """Partner search and agreement tolerances of `triplet_features` (mm, GeV, tesla)."""

    neighbours: int = 48
    partners: int = 32
    pt_min: float = 0.9
    field: float = 2.0
    z0_max: float = 250.0
    min_separation: float = 15.0
    min_dr: float = 2.0
    curvature_tolerance: float = 0.15
    z0_tolerance: float = 10.0

    def __post_init__(self) -> None:
        for name in ("neighbours", "partners"):
            if getattr(self, name) < 1:
                raise ConfigError(f"triplets.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("pt_min", "field", "z0_max", "curvature_tolerance", "z0_tolerance"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"triplets.{name}: must be a positive finite number, got {value}")
        for name in ("min_separation", "min_dr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"triplets.{name}: must be a finite number >= 0, got {value}")

    @property
    def max_curvature(self) -> float:
        """Curvature (1/mm) of a track at `pt_min` in `field`: κ = 0.3 B / pT per metre."""
        return 0.3 * self.field / self.pt_min / 1000.0


def triplet_features(x: np.ndarray, y: np.ndarray, z: np.ndarray, config: TripletConfig) -> np.ndarray:
    """Float64 [N, 4] per hit, in input order: log(1 + best χ²) of two agreeing partners (capped at 50),
    log(1 + compatible partners), and that triplet's signed curvature / κ(pt_min) and z0 / z0_max (0 if none).
    """
    n = len(x)
    out = np.zeros((n, len(TRIPLET_FEATURES)))
    if n < 2:
        out[:, 0] = math.log1p(CHI2_CAP)
        return out
    phi = np.arctan2(y, x)
    order = np.argsort(phi, kind="stable")
    xs, ys, zs, ps = x[order], y[order], z[order], phi[order]
    rs = np.hypot(xs, ys)
    offsets = _phi_rank_offsets(n, config.neighbours)
    for start in range(0, n, _CHUNK):
        rows = np.arange(start, min(n, start + _CHUNK))
        out[order[rows]] = _chunk_features(rows, offsets, xs, ys, zs, rs, ps, config)
    return out


def _phi_rank_offsets(n: int, neighbours: int) -> np.ndarray:
    """φ-rank offsets of the partners searched, nearest first: ±1 … ±neighbours, or every other hit."""
    if n - 1 <= 2 * neighbours:
        others = np.arange(1, n)
        return others[np.argsort(np.minimum(others, n - others), kind="stable")]
    steps = np.arange(1, neighbours + 1)
    return np.stack([steps, -steps], axis=1).reshape(-1)


def _chunk_features(
    rows: np.ndarray,
    offsets: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    rs: np.ndarray,
    ps: np.ndarray,
    config: TripletConfig,
) -> np.ndarray:
    """`triplet_features` of the φ-sorted hits `rows`, searching partners at φ-rank `offsets`."""
    n = len(xs)
    partner = (rows[:, None] + offsets[None, :]) % n
    dr = rs[partner] - rs[rows, None]
    dz = zs[partner] - zs[rows, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        z0 = zs[rows, None] - rs[rows, None] * dz / dr
    # The transverse quantities only where the cheap longitudinal cuts pass (most pairs fail z0).
    i, j = np.nonzero((np.abs(dr) > config.min_dr) & (np.abs(z0) < config.z0_max))
    hit, other = rows[i], partner[i, j]
    dphi = np.remainder(ps[other] - ps[hit] + np.pi, 2 * np.pi) - np.pi
    dxy = np.hypot(xs[other] - xs[hit], ys[other] - ys[hit])
    with np.errstate(divide="ignore", invalid="ignore"):
        bend = 2.0 * np.sin(dphi) / dxy * np.sign(dr[i, j]) / config.max_curvature
    # |Δφ| < π/2: a track from the beam does not turn back; hits across the beam line are no doublet.
    passed = (
        (np.hypot(dxy, dz[i, j]) > config.min_separation) & (np.abs(dphi) < np.pi / 2) & (np.abs(bend) < 1.0)
    )
    curvature = np.full(partner.shape, np.nan)
    curvature[i, j] = bend
    compatible = np.zeros(partner.shape, dtype=bool)
    compatible[i[passed], j[passed]] = True
    count = compatible.sum(axis=1)
    # The nearest compatible partners in φ; pairs of them on different radii are candidate triplets.
    pick = np.argsort(~compatible, axis=1, kind="stable")[:, : config.partners]
    valid = np.take_along_axis(compatible, pick, axis=1)
    k = np.take_along_axis(curvature, pick, axis=1)
    z = np.take_along_axis(z0, pick, axis=1)
    r = np.take_along_axis(dr, pick, axis=1)
    best_chi2 = np.full(len(rows), np.inf)
    a = np.zeros(len(rows), dtype=np.int64)
    b = np.zeros(len(rows), dtype=np.int64)
    # Rows with few compatible partners need few columns: pair them in groups of similar counts.
    usable_partners = np.minimum(count, pick.shape[1])
    by_count = np.argsort(usable_partners, kind="stable")
    for group in np.array_split(by_count, max(1, len(rows) // _PAIR_GROUP)):
        m = int(usable_partners[group].max())
        if m < 2:
            continue
        best_chi2[group], a[group], b[group] = _best_pair(
            k[group, :m], z[group, :m], r[group, :m], valid[group, :m], config
        )
    found = np.isfinite(best_chi2)
    at = np.arange(len(rows))
    features = np.zeros((len(rows), len(TRIPLET_FEATURES)))
    features[:, 0] = np.log1p(np.minimum(np.where(found, best_chi2, CHI2_CAP), CHI2_CAP))
    features[:, 1] = np.log1p(count)
    features[:, 2] = np.where(found, 0.5 * (k[at, a] + k[at, b]), 0.0)
    features[:, 3] = np.where(found, 0.5 * (z[at, a] + z[at, b]) / config.z0_max, 0.0)
    return features


def _best_pair(
    k: np.ndarray, z: np.ndarray, r: np.ndarray, valid: np.ndarray, config: TripletConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the lowest χ² of two valid partners on different radii and their columns (inf if none)."""
    with np.errstate(invalid="ignore"):
        chi2 = ((k[:, :, None] - k[:, None, :]) / config.curvature_tolerance) ** 2 + (
            (z[:, :, None] - z[:, None, :]) / config.z0_tolerance
        ) ** 2
    usable = valid[:, :, None] & valid[:, None, :] & (np.abs(r[:, :, None] - r[:, None, :]) > config.min_dr)
    chi2 = np.where(usable, chi2, np.inf).reshape(len(k), -1)
    best = chi2.argmin(axis=1)
    a, b = np.divmod(best, k.shape[1])
    return chi2[np.arange(len(k)), best], a, b
