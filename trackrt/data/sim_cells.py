"""Pixel cells of simulated hits: the pixels a particle's straight path through the sensor crosses.

The path runs from the entry to the exit face (w = ±thickness/2) along the local direction at the
mid-plane crossing. Each crossed pixel gets `value` = its share of the path length in units of the
sensor thickness (1.0 in total for a perpendicular track); charge sharing and thresholds are not modelled.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackrt.data.geometry import DetectorGeometry

_SAMPLES_PER_PIXEL = 4
_MAX_SAMPLES = 400
_MIN_COS = 0.01


def _channels(
    geometry: DetectorGeometry, modules: np.ndarray, u: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(ch0, ch1) pixel indices of local (u, v), counted from the module's −u/−v edge and clipped to it."""
    n_u = np.ceil(2 * geometry.max_hu[modules] / geometry.pitch_u[modules]).astype(np.int64)
    n_v = np.ceil(2 * geometry.hv[modules] / geometry.pitch_v[modules]).astype(np.int64)
    ch0 = np.floor((u + geometry.max_hu[modules]) / geometry.pitch_u[modules]).astype(np.int64)
    ch1 = np.floor((v + geometry.hv[modules]) / geometry.pitch_v[modules]).astype(np.int64)
    return np.clip(ch0, 0, n_u - 1), np.clip(ch1, 0, n_v - 1)


def track_cells(
    geometry: DetectorGeometry,
    hit_ids: np.ndarray,
    modules: np.ndarray,
    position: np.ndarray,
    momentum: np.ndarray,
) -> pd.DataFrame:
    """Cells (hit_id, ch0, ch1, value) of hits made by particles crossing `modules` at `position`."""
    local = geometry.global_to_local(position, modules)
    direction = np.einsum("nji,nj->ni", geometry.rotation[modules], momentum)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    cos_w = np.maximum(np.abs(direction[:, 2]), _MIN_COS)
    half_path = 0.5 * geometry.thickness[modules] / cos_w
    start = local - direction * half_path[:, None]
    end = local + direction * half_path[:, None]
    du = np.abs(end[:, 0] - start[:, 0]) / geometry.pitch_u[modules]
    dv = np.abs(end[:, 1] - start[:, 1]) / geometry.pitch_v[modules]
    samples = np.minimum(np.ceil((du + dv + 1) * _SAMPLES_PER_PIXEL).astype(np.int64), _MAX_SAMPLES)
    owner = np.repeat(np.arange(len(modules)), samples)
    fraction = (np.arange(owner.size) - np.repeat(np.cumsum(samples) - samples, samples) + 0.5) / samples[
        owner
    ]
    points = start[owner] + (end[owner] - start[owner]) * fraction[:, None]
    ch0, ch1 = _channels(geometry, modules[owner], points[:, 0], points[:, 1])
    frame = pd.DataFrame({"owner": owner, "ch0": ch0, "ch1": ch1})
    counted = frame.groupby(["owner", "ch0", "ch1"], sort=True).size().rename("n").reset_index()
    owners = counted["owner"].to_numpy()
    value = (
        counted["n"].to_numpy()
        / samples[owners]
        * (2 * half_path[owners] / geometry.thickness[modules[owners]])
    )
    return pd.DataFrame(
        {
            "hit_id": hit_ids[owners],
            "ch0": counted["ch0"],
            "ch1": counted["ch1"],
            "value": value.astype(np.float32),
        }
    )


def noise_cells(
    rng: np.random.Generator,
    geometry: DetectorGeometry,
    hit_ids: np.ndarray,
    modules: np.ndarray,
    position: np.ndarray,
) -> pd.DataFrame:
    """One cell per noise hit at its position, with a uniform random value in (0, 1)."""
    local = geometry.global_to_local(position, modules)
    ch0, ch1 = _channels(geometry, modules, local[:, 0], local[:, 1])
    return pd.DataFrame(
        {"hit_id": hit_ids, "ch0": ch0, "ch1": ch1, "value": rng.random(len(hit_ids)).astype(np.float32)}
    )
