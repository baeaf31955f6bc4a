"""Digitisation: Gaussian pitch smearing, hit inefficiency, noise hits, TrackML hit/truth tables.

Measured positions are the true mid-plane crossings smeared in the module's local u and v by
pitch/√12 and kept inside the module; noise hits lie uniformly on randomly chosen modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trackrt.data.geometry import DetectorGeometry
from trackrt.data.sim_cells import noise_cells, track_cells
from trackrt.data.sim_transport import ModuleCrossings


@dataclass(frozen=True)
class DigitisationSpec:
    """Hit inefficiency (fraction of true crossings lost), noise hits per true hit, smearing, cells on/off."""

    inefficiency: float = 0.015
    noise_fraction: float = 0.05
    smear: bool = True
    cells: bool = False


def _clip_to_module(geometry: DetectorGeometry, local: np.ndarray, modules: np.ndarray) -> np.ndarray:
    v = np.clip(local[:, 1], -geometry.hv[modules], geometry.hv[modules])
    half_u = geometry.half_width_u(v, modules)
    u = np.clip(local[:, 0], -half_u, half_u)
    return np.column_stack([u, v, np.zeros(len(v))])


def smear_positions(
    rng: np.random.Generator, geometry: DetectorGeometry, points: np.ndarray, modules: np.ndarray
) -> np.ndarray:
    """Measured global positions: local u, v smeared by pitch/√12, clipped to the module, w = 0."""
    local = geometry.global_to_local(points, modules)
    sigma = np.column_stack([geometry.pitch_u[modules], geometry.pitch_v[modules]]) / np.sqrt(12.0)
    local[:, :2] += rng.normal(size=(len(modules), 2)) * sigma
    return geometry.local_to_global(_clip_to_module(geometry, local, modules), modules)


def noise_positions(
    rng: np.random.Generator, geometry: DetectorGeometry, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """(module index, global position) of `count` noise hits spread uniformly over random modules."""
    modules = rng.integers(0, len(geometry), count)
    v = rng.uniform(-1.0, 1.0, count) * geometry.hv[modules]
    u = rng.uniform(-1.0, 1.0, count) * geometry.half_width_u(v, modules)
    local = np.column_stack([u, v, np.zeros(count)])
    return modules, geometry.local_to_global(local, modules)


def digitise(
    rng: np.random.Generator,
    geometry: DetectorGeometry,
    crossings: ModuleCrossings,
    particle_ids: np.ndarray,
    spec: DigitisationSpec,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(hits, cells): one row per hit with measured x y z, ids, truth tx..tpz and particle_id; cells if asked.

    `hit_id` numbers the rows 1..N in (volume, layer, module) order, like the TrackML files.
    """
    kept = rng.random(crossings.particle.size) >= spec.inefficiency
    modules = crossings.module[kept]
    truth_position = crossings.position[kept]
    measured = smear_positions(rng, geometry, truth_position, modules) if spec.smear else truth_position
    n_noise = int(rng.poisson(spec.noise_fraction * modules.size))
    noise_modules, noise_points = noise_positions(rng, geometry, n_noise)
    all_modules = np.concatenate([modules, noise_modules])
    position = np.concatenate([measured, noise_points])
    frame = pd.DataFrame(
        {
            "x": position[:, 0],
            "y": position[:, 1],
            "z": position[:, 2],
            "volume_id": geometry.volume_id[all_modules],
            "layer_id": geometry.layer_id[all_modules],
            "module_id": geometry.module_id[all_modules],
            "particle_id": np.concatenate(
                [particle_ids[crossings.particle[kept]], np.zeros(n_noise, np.int64)]
            ),
            "tx": np.concatenate([truth_position[:, 0], noise_points[:, 0]]),
            "ty": np.concatenate([truth_position[:, 1], noise_points[:, 1]]),
            "tz": np.concatenate([truth_position[:, 2], noise_points[:, 2]]),
            "tpx": np.concatenate([crossings.momentum[kept, 0], np.zeros(n_noise)]),
            "tpy": np.concatenate([crossings.momentum[kept, 1], np.zeros(n_noise)]),
            "tpz": np.concatenate([crossings.momentum[kept, 2], np.zeros(n_noise)]),
        }
    )
    frame = frame.sort_values(["volume_id", "layer_id", "module_id", "x", "y", "z"], kind="stable")
    hit_id_of_row = np.empty(len(frame), dtype=np.int64)
    hit_id_of_row[frame.index.to_numpy()] = np.arange(1, len(frame) + 1)
    frame.insert(0, "hit_id", np.arange(1, len(frame) + 1, dtype=np.int64))
    cells = None
    if spec.cells:
        n_true = modules.size
        true_cells = track_cells(
            geometry, hit_id_of_row[:n_true], modules, truth_position, crossings.momentum[kept]
        )
        fake_cells = noise_cells(rng, geometry, hit_id_of_row[n_true:], noise_modules, noise_points)
        cells = pd.concat([true_cells, fake_cells]).sort_values(["hit_id", "ch0", "ch1"], kind="stable")
        cells = cells.reset_index(drop=True)
    return frame.reset_index(drop=True), cells
