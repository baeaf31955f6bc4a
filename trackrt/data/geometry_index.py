"""Per-layer spatial index of detector modules: (φ, z) bins for barrel layers, (φ, r) bins for disks.

Each bin lists every module whose footprint (its projection, padded by a margin) overlaps the bin, so a
point on or near a layer finds its candidate modules with one table lookup, vectorised over points.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Literal

import numpy as np

from trackrt.data.geometry import DetectorGeometry

_SAMPLES_PER_EDGE = 5
_CACHE: weakref.WeakKeyDictionary[DetectorGeometry, tuple[LayerIndex, ...]] = weakref.WeakKeyDictionary()


def _wrap_angle(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def _module_samples(geometry: DetectorGeometry, modules: np.ndarray) -> np.ndarray:
    """Global points on a grid over each module's area and both faces, [M, S, 3]."""
    grid = np.linspace(-1.0, 1.0, _SAMPLES_PER_EDGE)
    gu, gv, gw = np.meshgrid(grid, grid, np.array([-0.5, 0.5]), indexing="ij")
    v = gv.ravel()[None, :] * geometry.hv[modules, None]
    u = gu.ravel()[None, :] * geometry.half_width_u(v, modules[:, None])
    w = gw.ravel()[None, :] * geometry.thickness[modules, None]
    local = np.stack([u, v, w], axis=-1)
    return np.einsum("mij,msj->msi", geometry.rotation[modules], local) + geometry.center[modules, None, :]


@dataclass(frozen=True, eq=False)
class LayerIndex:
    """Candidate modules per (φ, z|r) bin of one layer; `table[bin]` holds module indices, -1 padded."""

    volume_id: int
    layer_id: int
    kind: Literal["barrel", "disk"]
    envelope: tuple[float, float]  # r range (barrel) or z range (disk) holding the layer's material
    extent: tuple[float, float]  # z range (barrel) or r range (disk) covered by modules
    phi_bins: int
    second_edges: np.ndarray  # bin edges in z (barrel) or r (disk)
    table: np.ndarray  # int64 [phi_bins * (len(second_edges) - 1), K]

    @property
    def reference(self) -> float:
        """Radius (barrel) or z (disk) of the layer's reference surface: the middle of its envelope."""
        return 0.5 * (self.envelope[0] + self.envelope[1])

    def second_coordinate(self, points: np.ndarray) -> np.ndarray:
        """z for a barrel layer, r for a disk."""
        return points[..., 2] if self.kind == "barrel" else np.hypot(points[..., 0], points[..., 1])

    def bin_of(self, points: np.ndarray) -> np.ndarray:
        """Bin number of each global point [N, 3]; -1 outside the indexed range."""
        phi = np.arctan2(points[..., 1], points[..., 0])
        i_phi = np.clip(((phi + np.pi) / (2 * np.pi) * self.phi_bins).astype(np.int64), 0, self.phi_bins - 1)
        second = self.second_coordinate(points)
        n_second = self.second_edges.size - 1
        j = np.searchsorted(self.second_edges, second, side="right") - 1
        inside = (j >= 0) & (j < n_second)
        return np.where(inside, i_phi * n_second + np.clip(j, 0, n_second - 1), -1)

    def candidates(self, points: np.ndarray) -> np.ndarray:
        """Candidate module indices for each point, [N, K] int64 padded with -1."""
        bins = self.bin_of(points)
        rows = self.table[np.maximum(bins, 0)]
        return np.where((bins >= 0)[..., None], rows, -1)

    @classmethod
    def build(
        cls, geometry: DetectorGeometry, volume_id: int, layer_id: int, margin: float = 8.0
    ) -> LayerIndex:
        """Index one layer; footprints are padded by `margin` mm along z|r and 1 mm along φ."""
        modules = geometry.layer_modules(volume_id, layer_id)
        if modules.size == 0:
            raise ValueError(f"detector {geometry.source}: no modules in volume {volume_id} layer {layer_id}")
        samples = _module_samples(geometry, modules)
        r = np.hypot(samples[..., 0], samples[..., 1])
        kind: Literal["barrel", "disk"] = (
            "disk" if np.abs(geometry.normal[modules, 2]).mean() > 0.5 else "barrel"
        )
        across, along = (r, samples[..., 2]) if kind == "barrel" else (samples[..., 2], r)
        phi_center = np.arctan2(geometry.center[modules, 1], geometry.center[modules, 0])
        dphi = _wrap_angle(np.arctan2(samples[..., 1], samples[..., 0]) - phi_center[:, None])
        phi_pad = 1.0 / np.maximum(r.min(axis=1), 1.0)
        phi_lo = phi_center + dphi.min(axis=1) - phi_pad
        phi_hi = phi_center + dphi.max(axis=1) + phi_pad
        along_lo, along_hi = along.min(axis=1) - margin, along.max(axis=1) + margin

        mean_radius = float(r.mean())
        mean_half_u = float(np.mean(geometry.half_width_u(np.zeros(modules.size), modules)))
        phi_bins = max(8, int(np.ceil(2 * np.pi * mean_radius / mean_half_u)))
        lo, hi = float(along_lo.min()), float(along_hi.max())
        n_second = max(1, int(np.ceil((hi - lo) / float(np.mean(geometry.hv[modules])))))
        second_edges = np.linspace(lo, hi, n_second + 1)

        bin_width = 2 * np.pi / phi_bins
        i_lo = np.floor((phi_lo + np.pi) / bin_width).astype(np.int64)
        i_hi = np.floor((phi_hi + np.pi) / bin_width).astype(np.int64)
        j_lo = np.clip(np.searchsorted(second_edges, along_lo, side="right") - 1, 0, n_second - 1)
        j_hi = np.clip(np.searchsorted(second_edges, along_hi, side="right") - 1, 0, n_second - 1)
        pair_modules, pair_bins = [], []
        for m, a, b, c, d in zip(modules, i_lo, i_hi, j_lo, j_hi, strict=True):
            i_range = np.arange(a, b + 1) % phi_bins
            j_range = np.arange(c, d + 1)
            bins = (i_range[:, None] * n_second + j_range[None, :]).ravel()
            pair_bins.append(bins)
            pair_modules.append(np.full(bins.size, m, dtype=np.int64))
        all_bins = np.concatenate(pair_bins)
        all_modules = np.concatenate(pair_modules)
        order = np.argsort(all_bins, kind="stable")
        all_bins, all_modules = all_bins[order], all_modules[order]
        n_bins = phi_bins * n_second
        counts = np.bincount(all_bins, minlength=n_bins)
        slot = np.arange(all_bins.size) - np.repeat(np.cumsum(counts) - counts, counts)
        table = np.full((n_bins, int(counts.max())), -1, dtype=np.int64)
        table[all_bins, slot] = all_modules
        return cls(
            volume_id=int(volume_id),
            layer_id=int(layer_id),
            kind=kind,
            envelope=(float(across.min()), float(across.max())),
            extent=(float(along.min()), float(along.max())),
            phi_bins=phi_bins,
            second_edges=second_edges,
            table=table,
        )

    @classmethod
    def build_all(cls, geometry: DetectorGeometry) -> tuple[LayerIndex, ...]:
        """Indices of every layer of `geometry` (cached per geometry object)."""
        cached = _CACHE.get(geometry)
        if cached is None:
            layers = geometry.layers()
            cached = tuple(
                cls.build(geometry, int(v), int(la))
                for v, la in zip(layers["volume_id"], layers["layer_id"], strict=True)
            )
            _CACHE[geometry] = cached
        return cached
