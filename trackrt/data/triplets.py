"""Beamline-constrained hit triplets: per-hit evidence that a hit lies on a high-pT track from the beam.

For each hit, the partners are nearby hits in φ (on other layers) whose doublet with it is compatible
with a track of pT ≥ `pt_min` from the beam line: the circle through the origin and both hits is no
more curved than such a track, the straight line through both hits in (r, z) meets the beam within
`z0_max`, and the two are less than π/2 apart in φ (a track does not cross the beam line). Two
partners agree when their doublets give the same curvature and the same z0, i.e. the three hits sit
on one helix from the beam. None of this depends on where along the beam the vertex lies.

The helix columns (`triplet_helix_features`) go on from the best pair: every partner that agrees with
it (χ² ≤ 4 from their mean) supports the helix; their mean curvature and z0 use all those hits' lever arms,
and the hit's pseudorapidity seen from that z0 (not from the origin) is the same on every hit of a
track wherever its vertex lies along the beam.

The per-hit search is a numba kernel (compiled on first use and cached on disk), free of angles: the
curvature comes from the cross product of the two hit positions, the φ rule from their dot product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from trackrt.configuration import ConfigError

TRIPLET_FEATURES: tuple[str, ...] = ("triplet_chi2", "triplet_partners", "triplet_curvature", "triplet_z0")
HELIX_FEATURES: tuple[str, ...] = ("helix_support", "helix_curvature", "helix_z0", "helix_eta")
HELIX_ETA_SCALE = 4.0
SUPPORT_CHI2 = 4.0
CHI2_CAP = 50.0


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
    return _hit_features(x, y, z, config)[:, : len(TRIPLET_FEATURES)]


def triplet_helix_features(x: np.ndarray, y: np.ndarray, z: np.ndarray, config: TripletConfig) -> np.ndarray:
    """Float64 [N, 8]: `triplet_features`, then per hit log(1 + partners supporting the best triplet's
    helix), their mean curvature / κ(pt_min) and z0 / z0_max, and asinh((z − z0) / r) / 4 from that z0
    (the hit's own η when it has no triplet)."""
    return _hit_features(x, y, z, config)


def _hit_features(x: np.ndarray, y: np.ndarray, z: np.ndarray, config: TripletConfig) -> np.ndarray:
    """Both column groups of φ-sorted search, in input order."""
    n = len(x)
    out = np.zeros((n, len(TRIPLET_FEATURES) + len(HELIX_FEATURES)))
    if n < 2:
        out[:, 0] = math.log1p(CHI2_CAP)
        out[:, 7] = np.arcsinh(z / np.hypot(x, y)) / HELIX_ETA_SCALE
        return out
    phi = np.arctan2(y, x)
    order = np.argsort(phi, kind="stable")
    xs, ys, zs = (np.ascontiguousarray(v[order], dtype=np.float64) for v in (x, y, z))
    limits = np.array(
        [
            config.min_dr,
            config.z0_max,
            config.min_separation,
            config.max_curvature,
            config.curvature_tolerance,
            config.z0_tolerance,
            CHI2_CAP,
            SUPPORT_CHI2,
            HELIX_ETA_SCALE,
        ]
    )
    out[order] = _sorted_hit_features(
        xs, ys, zs, np.hypot(xs, ys), _phi_rank_offsets(n, config.neighbours), config.partners, limits
    )
    return out


def _phi_rank_offsets(n: int, neighbours: int) -> np.ndarray:
    """φ-rank offsets of the partners searched, nearest first: ±1 … ±neighbours, or every other hit."""
    if n - 1 <= 2 * neighbours:
        others = np.arange(1, n)
        return others[np.argsort(np.minimum(others, n - others), kind="stable")]
    steps = np.arange(1, neighbours + 1)
    return np.stack([steps, -steps], axis=1).reshape(-1)


@numba.njit(cache=True, nogil=True)
def _sorted_hit_features(
    xs: np.ndarray,
    ys: np.ndarray,
    zs: np.ndarray,
    rs: np.ndarray,
    offsets: np.ndarray,
    partners: int,
    limits: np.ndarray,
) -> np.ndarray:
    """`triplet_features` of φ-sorted hits, searching partners at φ-rank `offsets` (nearest first)."""
    (min_dr, z0_max, min_separation, max_curvature, k_tolerance, z_tolerance, chi2_cap, support_chi2,
     eta_scale) = limits
    min_separation2 = min_separation * min_separation
    n = len(xs)
    out = np.zeros((n, 8))
    k = np.empty(partners)
    z = np.empty(partners)
    r = np.empty(partners)
    by_k = np.empty(partners, dtype=np.int64)
    # Offsets into the hits padded by wrapping, so that a partner's index needs no wrap test.
    pad = int(np.abs(offsets).max())
    wrap = np.concatenate((np.arange(n - pad, n) % n, np.arange(n), np.arange(pad) % n))
    xw, yw, zw, rw = xs[wrap], ys[wrap], zs[wrap], rs[wrap]
    candidates = np.empty(len(offsets), dtype=np.int64)
    for hit in range(n):
        count = 0
        kept = 0
        # Pass 1, without branches: the partners that pass the cheap longitudinal cuts (most fail z0).
        base = hit + pad
        xh, yh, zh, rh = xs[hit], ys[hit], zs[hit], rs[hit]
        found = 0
        for t in range(len(offsets)):
            o = base + offsets[t]
            dr = rw[o] - rh
            dz = zw[o] - zh
            candidates[found] = o
            found += (abs(dr) > min_dr) & (abs(zh * dr - rh * dz) < z0_max * abs(dr))
        for c in range(found):
            o = candidates[c]
            dr = rw[o] - rh
            dz = zw[o] - zh
            z0 = zh - rh * dz / dr
            # cos Δφ > 0: a track from the beam does not turn back; hits across the beam line are no doublet.
            dot = xh * xw[o] + yh * yw[o]
            dx = xw[o] - xh
            dy = yw[o] - yh
            chord2 = dx * dx + dy * dy
            if dot <= 0.0 or chord2 + dz * dz <= min_separation2:
                continue
            # Curvature of the circle through the origin and both hits: 2 sin Δφ / chord, signed along r.
            cross = xh * yw[o] - yh * xw[o]
            bend = 2.0 * cross / (rh * rw[o] * math.sqrt(chord2)) * np.sign(dr) / max_curvature
            if abs(z0) >= z0_max or abs(bend) >= 1.0:
                continue
            count += 1
            if kept < partners:
                k[kept], z[kept], r[kept] = bend, z0, dr
                kept += 1
        # The best pair of the nearest compatible partners on different radii: one helix from the beam.
        # Partners in curvature order: a partner's scan stops once Δκ alone exceeds the best χ².
        for u in range(kept):
            by_k[u] = u
            while u > 0 and k[by_k[u - 1]] > k[by_k[u]]:
                by_k[u - 1], by_k[u] = by_k[u], by_k[u - 1]
                u -= 1
        best, a, b = np.inf, 0, 0
        for u in range(kept):
            i = by_k[u]
            for v in range(u + 1, kept):
                j = by_k[v]
                dk = (k[i] - k[j]) / k_tolerance
                if dk * dk > best:
                    break
                if abs(r[i] - r[j]) <= min_dr:
                    continue
                chi2 = dk * dk + ((z[i] - z[j]) / z_tolerance) ** 2
                first, second = min(i, j), max(i, j)
                if chi2 < best or (chi2 == best and (first < a or (first == a and second < b))):
                    best, a, b = chi2, first, second
        out[hit, 1] = math.log1p(count)
        if best < np.inf:
            k_pair, z_pair = 0.5 * (k[a] + k[b]), 0.5 * (z[a] + z[b])
            out[hit, 0] = math.log1p(min(best, chi2_cap))
            out[hit, 2] = k_pair
            out[hit, 3] = z_pair / z0_max
            support, k_sum, z_sum = 0, 0.0, 0.0
            for u in range(kept):
                chi2 = ((k[u] - k_pair) / k_tolerance) ** 2 + ((z[u] - z_pair) / z_tolerance) ** 2
                if chi2 <= support_chi2:
                    support += 1
                    k_sum += k[u]
                    z_sum += z[u]
            if support == 0:  # a pair of partners far apart can each miss the mean of the two
                support, k_sum, z_sum = 2, 2.0 * k_pair, 2.0 * z_pair
            out[hit, 4] = math.log1p(support)
            out[hit, 5] = k_sum / support
            out[hit, 6] = z_sum / support / z0_max
            out[hit, 7] = math.asinh((zh - z_sum / support) / rh) / eta_scale
        else:
            out[hit, 0] = math.log1p(chi2_cap)
            out[hit, 7] = math.asinh(zh / rh) / eta_scale
    return out
