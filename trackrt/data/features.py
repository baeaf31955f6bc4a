"""Per-hit input features for the hit filter and tracker (numpy only, shared by training and runtime)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trackrt.configuration import ConfigError
from trackrt.data.triplets import (
    HELIX_FEATURES,
    TRIPLET_FEATURES,
    TripletConfig,
    triplet_features,
    triplet_helix_features,
)

BASE_FEATURES: tuple[str, ...] = ("x", "y", "z", "r", "eta", "phi", "u", "v")
SINUSOIDAL_FEATURES: tuple[str, ...] = ("r", "eta", "phi")

HitsLike = pd.DataFrame | Mapping[str, np.ndarray] | np.ndarray


@dataclass
class FeatureConfig:
    """Which hit features to compute and the scale each is divided by (mm, 1/mm or dimensionless);
    `triplets` adds the beamline-triplet features of `trackrt.data.triplets` (None: off), and
    `triplet_helix` their helix columns after them (support, mean curvature and z0, η from that z0)."""

    features: list[str] = field(default_factory=lambda: list(BASE_FEATURES))
    xy_scale: float = 1000.0
    z_scale: float = 1000.0
    r_scale: float = 1000.0
    eta_scale: float = 4.0
    phi_scale: float = math.pi
    uv_scale: float = 0.03
    sinusoidal: list[str] = field(default_factory=list)
    sinusoidal_frequencies: int = 4
    triplets: TripletConfig | None = None
    triplet_helix: bool = False

    def __post_init__(self) -> None:
        if self.triplet_helix and self.triplets is None:
            raise ConfigError("triplet_helix: the helix columns come from the triplet search; set triplets")
        if not self.features:
            raise ConfigError("features: at least one hit feature is needed")
        unknown = [f for f in self.features if f not in BASE_FEATURES]
        if unknown:
            raise ConfigError(f"features: unknown feature {unknown[0]!r} (known: {', '.join(BASE_FEATURES)})")
        if len(set(self.features)) != len(self.features):
            raise ConfigError(f"features: duplicate entries in {self.features}")
        bad_sin = [f for f in self.sinusoidal if f not in SINUSOIDAL_FEATURES]
        if bad_sin:
            raise ConfigError(
                f"sinusoidal: {bad_sin[0]!r} cannot be encoded (allowed: {', '.join(SINUSOIDAL_FEATURES)})"
            )
        if len(set(self.sinusoidal)) != len(self.sinusoidal):
            raise ConfigError(f"sinusoidal: duplicate entries in {self.sinusoidal}")
        for name in ("xy_scale", "z_scale", "r_scale", "eta_scale", "phi_scale", "uv_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name}: must be a positive finite number, got {value}")
        if self.sinusoidal and self.sinusoidal_frequencies < 1:
            raise ConfigError(
                "sinusoidal_frequencies: must be >= 1 when sinusoidal is set, "
                f"got {self.sinusoidal_frequencies}"
            )

    @property
    def num_features(self) -> int:
        """Width F of the feature matrix."""
        return len(self.feature_names)

    @property
    def feature_names(self) -> list[str]:
        """Column names of the feature matrix, in order."""
        names = list(self.features)
        for var in self.sinusoidal:
            for k in range(self.sinusoidal_frequencies):
                names += [f"sin_{var}_{k}", f"cos_{var}_{k}"]
        if self.triplets is not None:
            names += TRIPLET_FEATURES
        if self.triplet_helix:
            names += HELIX_FEATURES
        return names

    def scale(self, name: str) -> float:
        """The divisor applied to base feature `name`."""
        return {
            "x": self.xy_scale,
            "y": self.xy_scale,
            "z": self.z_scale,
            "r": self.r_scale,
            "eta": self.eta_scale,
            "phi": self.phi_scale,
            "u": self.uv_scale,
            "v": self.uv_scale,
        }[name]


def hit_coordinates(hits: HitsLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 x, y, z arrays from a hits DataFrame, a mapping of arrays, or an [N, 3] array; validated."""
    if isinstance(hits, np.ndarray):
        if hits.ndim != 2 or hits.shape[1] != 3:
            raise ValueError(f"hits: expected an [N, 3] array of x, y, z, got shape {hits.shape}")
        columns = {"x": hits[:, 0], "y": hits[:, 1], "z": hits[:, 2]}
    else:
        missing = [c for c in ("x", "y", "z") if c not in hits]
        if missing:
            raise ValueError(f"hits: missing column {missing[0]!r} (need x, y, z)")
        columns = {c: hits[c] for c in ("x", "y", "z")}
    out = []
    for name, values in columns.items():
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"hits: column {name!r} must be one-dimensional, got shape {arr.shape}")
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad:
            raise ValueError(f"hits: column {name!r} has {bad} NaN or infinite value(s)")
        out.append(arr)
    x, y, z = out
    if not (len(x) == len(y) == len(z)):
        raise ValueError(f"hits: columns x, y, z differ in length ({len(x)}, {len(y)}, {len(z)})")
    return x, y, z


def hit_features(hits: HitsLike, config: FeatureConfig) -> np.ndarray:
    """Scaled features [N, F] (float32) in `config.feature_names` order; hits keep their input order."""
    x, y, z = hit_coordinates(hits)
    r2 = x * x + y * y
    r = np.sqrt(r2)
    on_axis = int(np.count_nonzero(r == 0))
    if on_axis:
        raise ValueError(f"hits: {on_axis} hit(s) at r = 0 (x = y = 0), where eta, u and v are undefined")
    raw = {
        "x": x,
        "y": y,
        "z": z,
        "r": r,
        "eta": np.arcsinh(z / r),
        "phi": np.arctan2(y, x),
        "u": x / r2,
        "v": y / r2,
    }
    out = np.empty((len(x), config.num_features), dtype=np.float32)
    for i, name in enumerate(config.features):
        out[:, i] = raw[name] / config.scale(name)
    start = len(config.features)
    width = 2 * config.sinusoidal_frequencies
    for var in config.sinusoidal:
        pairs = sinusoidal_pairs(raw[var] / config.scale(var), config.sinusoidal_frequencies)
        out[:, start : start + width] = pairs
        start += width
    if config.triplet_helix:
        out[:, start:] = triplet_helix_features(x, y, z, config.triplets)
    elif config.triplets is not None:
        out[:, start:] = triplet_features(x, y, z, config.triplets)
    return out


def sinusoidal_pairs(values: np.ndarray, frequencies: int) -> np.ndarray:
    """[N, 2K]: sin and cos of π·2^k·values for k < K, interleaved; the higher frequencies follow from
    the first by the double-angle identities, so only one sine and one cosine are evaluated."""
    sin, cos = np.sin(math.pi * values), np.cos(math.pi * values)
    pairs = np.empty((len(values), 2 * frequencies))
    for k in range(frequencies):
        pairs[:, 2 * k], pairs[:, 2 * k + 1] = sin, cos
        sin, cos = 2.0 * sin * cos, (cos - sin) * (cos + sin)
    return pairs


def shares_feature_columns(source: FeatureConfig, config: FeatureConfig) -> bool:
    """Whether `config` is `source` without the triplet columns or without their helix columns (which
    come last), so that its features are the first columns of `source`'s."""
    if config.triplet_helix or config == source:
        return False
    if config.triplets is None:
        return dataclasses.replace(source, triplets=None, triplet_helix=False) == config
    return dataclasses.replace(source, triplet_helix=False) == config


def shared_feature_columns(
    features: np.ndarray, source: FeatureConfig, config: FeatureConfig
) -> np.ndarray | None:
    """`config`'s features [N, F] taken from `features` computed for `source` when `shares_feature_columns`;
    None otherwise."""
    if not shares_feature_columns(source, config):
        return None
    return np.ascontiguousarray(features[:, : config.num_features])


def phi_sort_order(hits: HitsLike) -> np.ndarray:
    """Indices (int64) that sort hits by φ = atan2(y, x) ascending; equal φ keeps input order."""
    x, y, _ = hit_coordinates(hits)
    return np.argsort(np.arctan2(y, x), kind="stable").astype(np.int64)
