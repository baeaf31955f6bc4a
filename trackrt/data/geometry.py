"""TrackML detector geometry: module arrays from detectors.csv(.gz), local/global transforms, module lookup.

Global coordinates are `global = R · (u, v, w) + c` with R's columns the module's local u, v, w axes.
Modules are rectangles or trapezoids: the half-width in u grows linearly from `min_hu` at v = −hv to
`max_hu` at v = +hv.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trackrt.data.trackml import PIXEL_VOLUMES

ROTATION_COLUMNS: tuple[str, ...] = (
    "rot_xu", "rot_xv", "rot_xw", "rot_yu", "rot_yv", "rot_yw", "rot_zu", "rot_zv", "rot_zw",
)
DETECTOR_COLUMNS: tuple[str, ...] = (
    "volume_id", "layer_id", "module_id", "cx", "cy", "cz", *ROTATION_COLUMNS,
    "module_t", "module_minhu", "module_maxhu", "module_hv", "pitch_u", "pitch_v",
)
_ORTHONORMAL_TOLERANCE = 1e-4


class DetectorFormatError(ValueError):
    """detectors.csv is missing, unreadable or malformed; the message names the file and column."""


def _read_detector_table(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DetectorFormatError(f"{path}: cannot read detector file: {exc}") from None
    missing = [c for c in DETECTOR_COLUMNS if c not in table.columns]
    if missing:
        raise DetectorFormatError(f"{path}: missing column(s) {', '.join(missing)}")
    for column in DETECTOR_COLUMNS:
        values = pd.to_numeric(table[column], errors="coerce")
        bad = int(values.isna().sum())
        if bad:
            raise DetectorFormatError(f"{path}: column '{column}': {bad} rows are empty or not numeric")
        table[column] = values
    return table


def _check_modules(table: pd.DataFrame, rotation: np.ndarray, path: Path) -> None:
    for column in ("module_t", "module_minhu", "module_maxhu", "module_hv", "pitch_u", "pitch_v"):
        bad = int((table[column] <= 0).sum())
        if bad:
            raise DetectorFormatError(f"{path}: column '{column}': {bad} rows are not positive")
    keys = table[["volume_id", "layer_id", "module_id"]]
    duplicated = int(keys.duplicated().sum())
    if duplicated:
        raise DetectorFormatError(f"{path}: columns volume_id/layer_id/module_id: {duplicated} duplicates")
    gram = np.einsum("mji,mjk->mik", rotation, rotation)
    bad = int((np.abs(gram - np.eye(3)).max(axis=(1, 2)) > _ORTHONORMAL_TOLERANCE).sum())
    if bad:
        raise DetectorFormatError(f"{path}: columns rot_*: {bad} rows are not orthonormal rotations")


def _orthonormalise(rotation: np.ndarray) -> np.ndarray:
    """Nearest exact rotations (polar decomposition): the file's 6-digit values are orthonormal to ~1e-6."""
    u, _, vt = np.linalg.svd(rotation)
    return u @ vt


@dataclass(frozen=True, eq=False)
class DetectorGeometry:
    """Module arrays of a TrackML detector (mm); index i refers to the i-th module of every array."""

    volume_id: np.ndarray  # int32 [M]
    layer_id: np.ndarray  # int32 [M]
    module_id: np.ndarray  # int32 [M]
    center: np.ndarray  # float64 [M, 3]
    rotation: np.ndarray  # float64 [M, 3, 3], columns are the local u, v, w axes in global frame
    thickness: np.ndarray  # float64 [M]
    min_hu: np.ndarray  # float64 [M], half-width in u at v = -hv
    max_hu: np.ndarray  # float64 [M], half-width in u at v = +hv
    hv: np.ndarray  # float64 [M], half-length in v
    pitch_u: np.ndarray  # float64 [M]
    pitch_v: np.ndarray  # float64 [M]
    source: str = ""

    def __len__(self) -> int:
        return int(self.volume_id.size)

    @property
    def normal(self) -> np.ndarray:
        """Unit normal (local w axis) of every module in global coordinates, [M, 3]."""
        return self.rotation[:, :, 2]

    def keys(self) -> np.ndarray:
        """Packed (volume, layer, module) key per module, int64 [M] (see `pack_module_key`)."""
        return pack_module_key(self.volume_id, self.layer_id, self.module_id)

    def index_of(self, volume_id: np.ndarray, layer_id: np.ndarray, module_id: np.ndarray) -> np.ndarray:
        """Module index for each (volume, layer, module) triple; -1 where the detector has no such module."""
        keys = self.keys()
        order = np.argsort(keys, kind="stable")
        wanted = pack_module_key(np.asarray(volume_id), np.asarray(layer_id), np.asarray(module_id))
        position = np.clip(np.searchsorted(keys[order], wanted), 0, keys.size - 1)
        found = keys[order][position] == wanted
        return np.where(found, order[position], -1)

    def global_to_local(self, points: np.ndarray, modules: np.ndarray) -> np.ndarray:
        """Local (u, v, w) of global points [N, 3] on the given module indices [N]."""
        offset = np.asarray(points, dtype=np.float64) - self.center[modules]
        return np.einsum("nji,nj->ni", self.rotation[modules], offset)

    def local_to_global(self, local: np.ndarray, modules: np.ndarray) -> np.ndarray:
        """Global (x, y, z) of local points [N, 3] on the given module indices [N]."""
        local = np.asarray(local, dtype=np.float64)
        return np.einsum("nij,nj->ni", self.rotation[modules], local) + self.center[modules]

    def half_width_u(self, v: np.ndarray, modules: np.ndarray) -> np.ndarray:
        """Half-width in u at local v (trapezoids widen linearly from min_hu at -hv to max_hu at +hv)."""
        fraction = (np.asarray(v) + self.hv[modules]) / (2.0 * self.hv[modules])
        return self.min_hu[modules] + (self.max_hu[modules] - self.min_hu[modules]) * np.clip(fraction, 0, 1)

    def contains_local(
        self, local: np.ndarray, modules: np.ndarray, tolerance: float = 0.0, w_tolerance: float | None = None
    ) -> np.ndarray:
        """Whether local points lie inside their module (`tolerance` mm in u/v; half thickness in w)."""
        u, v, w = np.asarray(local, dtype=np.float64).T
        w_limit = self.thickness[modules] / 2 + (tolerance if w_tolerance is None else w_tolerance)
        return (
            (np.abs(v) <= self.hv[modules] + tolerance)
            & (np.abs(u) <= self.half_width_u(v, modules) + tolerance)
            & (np.abs(w) <= w_limit)
        )

    def corners(self, modules: np.ndarray | None = None) -> np.ndarray:
        """Global coordinates of the four corners of each module, [M, 4, 3]."""
        modules = np.arange(len(self)) if modules is None else np.asarray(modules)
        hv = self.hv[modules]
        u_sign = np.array([-1.0, 1.0, 1.0, -1.0])
        v_sign = np.array([-1.0, -1.0, 1.0, 1.0])
        half_u = np.where(v_sign[None, :] < 0, self.min_hu[modules, None], self.max_hu[modules, None])
        local = np.stack([u_sign * half_u, v_sign * hv[:, None], np.zeros((modules.size, 4))], axis=-1)
        return np.einsum("mij,mkj->mki", self.rotation[modules], local) + self.center[modules, None, :]

    def layers(self) -> pd.DataFrame:
        """One row per (volume, layer): module count, kind ('barrel' or 'disk'), r and z ranges of centres."""
        frame = pd.DataFrame(
            {
                "volume_id": self.volume_id,
                "layer_id": self.layer_id,
                "r": np.hypot(self.center[:, 0], self.center[:, 1]),
                "z": self.center[:, 2],
                "normal_z": np.abs(self.normal[:, 2]),
            }
        )
        summary = frame.groupby(["volume_id", "layer_id"], sort=True).agg(
            modules=("r", "size"), r_min=("r", "min"), r_max=("r", "max"),
            z_min=("z", "min"), z_max=("z", "max"), normal_z=("normal_z", "mean"),
        )
        summary["kind"] = np.where(summary["normal_z"] > 0.5, "disk", "barrel")
        return summary.drop(columns="normal_z").reset_index()

    def layer_modules(self, volume_id: int, layer_id: int) -> np.ndarray:
        """Indices of the modules of one layer."""
        return np.flatnonzero((self.volume_id == volume_id) & (self.layer_id == layer_id))

    def find_modules(self, points: np.ndarray, tolerance: float = 0.01) -> np.ndarray:
        """Index of a module each global point lies on (within `tolerance` mm), -1 for none."""
        from trackrt.data.geometry_index import LayerIndex

        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        found = np.full(len(points), -1, dtype=np.int64)
        for layer in LayerIndex.build_all(self):
            open_points = np.flatnonzero(found < 0)
            if open_points.size == 0:
                break
            candidates = layer.candidates(points[open_points])
            rows, slots = np.nonzero(candidates >= 0)
            modules = candidates[rows, slots]
            local = self.global_to_local(points[open_points[rows]], modules)
            inside = self.contains_local(local, modules, tolerance)
            hit_rows = rows[inside]
            first_rows, first = np.unique(hit_rows, return_index=True)
            found[open_points[first_rows]] = modules[inside][first]
        return found


def pack_module_key(volume_id: np.ndarray, layer_id: np.ndarray, module_id: np.ndarray) -> np.ndarray:
    """One int64 per (volume, layer, module): volume·2^32 + layer·2^20 + module."""
    return (
        np.asarray(volume_id, dtype=np.int64) * (1 << 32)
        + np.asarray(layer_id, dtype=np.int64) * (1 << 20)
        + np.asarray(module_id, dtype=np.int64)
    )


def find_detector_file(path: str | Path) -> Path:
    """Resolve a detectors file: the path itself, or detectors.csv(.gz) inside a directory."""
    path = Path(path)
    if path.is_dir():
        for name in ("detectors.csv.gz", "detectors.csv"):
            if (path / name).exists():
                return path / name
        raise DetectorFormatError(f"{path}: no detectors.csv or detectors.csv.gz in this directory")
    if not path.exists():
        raise DetectorFormatError(f"{path}: detector file does not exist")
    return path


def load_detector(path: str | Path, volumes: Sequence[int] | None = PIXEL_VOLUMES) -> DetectorGeometry:
    """Read detectors.csv(.gz) (or a directory holding it), keeping `volumes` (None keeps all)."""
    path = find_detector_file(path)
    table = _read_detector_table(path)
    if volumes is not None:
        table = table[table["volume_id"].isin(list(volumes))]
        if table.empty:
            raise DetectorFormatError(f"{path}: column 'volume_id': no modules in volumes {list(volumes)}")
    table = table.sort_values(["volume_id", "layer_id", "module_id"], kind="stable").reset_index(drop=True)
    rotation = table[list(ROTATION_COLUMNS)].to_numpy(np.float64).reshape(-1, 3, 3)
    _check_modules(table, rotation, path)
    rotation = _orthonormalise(rotation)
    return DetectorGeometry(
        volume_id=table["volume_id"].to_numpy(np.int32),
        layer_id=table["layer_id"].to_numpy(np.int32),
        module_id=table["module_id"].to_numpy(np.int32),
        center=table[["cx", "cy", "cz"]].to_numpy(np.float64),
        rotation=rotation,
        thickness=table["module_t"].to_numpy(np.float64),
        min_hu=table["module_minhu"].to_numpy(np.float64),
        max_hu=table["module_maxhu"].to_numpy(np.float64),
        hv=table["module_hv"].to_numpy(np.float64),
        pitch_u=table["pitch_u"].to_numpy(np.float64),
        pitch_v=table["pitch_v"].to_numpy(np.float64),
        source=str(path),
    )
