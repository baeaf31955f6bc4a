"""Training samples from TrackML events: φ-sorted hits, features, filter and tracker targets, and a cache.

A sample keeps every pixel hit of the event in φ order. Target particles follow DESIGN §3/§7
(pT ≥ pt_min, |η| ≤ eta_max, ≥ min_hits pixel hits). The cache stores one `.npz` per event under a
directory named by the sample config's hash, listed in `manifest.json`, so epochs never re-parse CSV.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trackrt.configuration import ConfigError, from_dict, to_dict
from trackrt.data.features import FeatureConfig, hit_features, phi_sort_order
from trackrt.data.trackml import PIXEL_VOLUMES, Event, list_event_prefixes, particle_kinematics, read_event

SELECTION_PT_MIN: dict[str, float] = {"Pix1.0": 1.0, "Pix0.6": 0.6}
CACHE_FORMAT_VERSION = 2
MANIFEST_NAME = "manifest.json"

_HIT_ARRAYS = ("hit_id", "features", "hit_xyz", "hit_r", "hit_particle_id", "hit_weight", "hit_on_target")


@dataclass
class SampleConfig:
    """Target-particle selection and the hit features stored in each sample."""

    pt_min: float = 1.0
    eta_max: float = 4.0
    min_hits: int = 3
    features: FeatureConfig = field(default_factory=FeatureConfig)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pt_min) and self.pt_min >= 0):
            raise ConfigError(f"pt_min: must be a finite number >= 0 (GeV), got {self.pt_min}")
        if not self.eta_max > 0:
            raise ConfigError(f"eta_max: must be > 0, got {self.eta_max}")
        if self.min_hits < 1:
            raise ConfigError(f"min_hits: must be >= 1, got {self.min_hits}")


def sample_config(
    selection: str, features: FeatureConfig | None = None, pt_min: float | None = None
) -> SampleConfig:
    """The `Pix1.0` (pT ≥ 1 GeV) or `Pix0.6` (pT ≥ 0.6 GeV) selection with |η| ≤ 4 and ≥ 3 pixel hits;
    `pt_min` replaces the selection's pT cut (training on a margin below it)."""
    if selection not in SELECTION_PT_MIN:
        known = ", ".join(SELECTION_PT_MIN)
        raise ConfigError(f"selection: unknown selection {selection!r} (known: {known})")
    cut = SELECTION_PT_MIN[selection] if pt_min is None else pt_min
    return SampleConfig(pt_min=cut, features=features or FeatureConfig())


@dataclass
class Sample:
    """One event's pixel hits in φ order with per-hit truth, target particles and the particles table."""

    event_id: int
    hit_id: np.ndarray  # int64 [N]
    features: np.ndarray  # float32 [N, F]
    hit_xyz: np.ndarray  # float32 [N, 3], global x, y, z (mm)
    hit_r: np.ndarray  # float32 [N], transverse radius (mm)
    hit_particle_id: np.ndarray  # int64 [N], 0 = noise
    hit_weight: np.ndarray  # float32 [N], TrackML score weight
    hit_on_target: np.ndarray  # bool [N], hit-filter target
    target_particle_id: np.ndarray  # int64 [P], ascending
    particles: pd.DataFrame  # TrackML particle columns (+ pt, eta) for particles with pixel hits

    @property
    def num_hits(self) -> int:
        return len(self.hit_id)

    @property
    def num_targets(self) -> int:
        return len(self.target_particle_id)

    def features_for(self, config: FeatureConfig | None) -> np.ndarray:
        """The hits' features [N, F] under another feature config (e.g. a hit filter's), in φ order;
        None: the stored features."""
        return self.features if config is None else hit_features(self.hit_xyz, config)

    def truth_frame(self) -> pd.DataFrame:
        """Truth in TrackML layout (hit_id, particle_id, weight) for the metrics."""
        return pd.DataFrame(
            {"hit_id": self.hit_id, "particle_id": self.hit_particle_id, "weight": self.hit_weight}
        )


@dataclass
class TrackerTargets:
    """Targets for the tracker on a hit selection (kept hits stay in φ order).

    Target particles with no kept hit are dropped; the rest are ordered by their first hit.
    """

    hit_index: np.ndarray  # int64 [M], indices of the kept hits into the sample's hits (ascending)
    features: np.ndarray  # float32 [M, F]
    particle_id: np.ndarray  # int64 [P], target particles with at least one kept hit
    first_hit: np.ndarray  # int64 [P], index into the kept hits of each particle's smallest-r hit
    hit_particle: np.ndarray  # int64 [M], index into particle_id per kept hit, -1 if on no target

    @property
    def seed_target(self) -> np.ndarray:
        """Bool [M]: the kept hit is the first (smallest-r) kept hit of a target particle."""
        seeds = np.zeros(len(self.hit_index), dtype=bool)
        seeds[self.first_hit] = True
        return seeds

    def assignment_matrix(self) -> np.ndarray:
        """Bool [P, M]: kept hit m belongs to target particle p."""
        return self.hit_particle[None, :] == np.arange(len(self.particle_id))[:, None]


def target_particles(event: Event, config: SampleConfig) -> np.ndarray:
    """Sorted particle ids passing pT ≥ pt_min, |η| ≤ eta_max and ≥ min_hits hits in `event.truth`."""
    particles, truth = _require_parts(event)
    kinematics = particle_kinematics(particles)
    counts = truth.loc[truth["particle_id"] != 0, "particle_id"].value_counts()
    num_hits = kinematics["particle_id"].map(counts).fillna(0).to_numpy()
    selected = (
        (kinematics["pt"].to_numpy() >= config.pt_min)
        & (np.abs(kinematics["eta"].to_numpy()) <= config.eta_max)
        & (num_hits >= config.min_hits)
        & (kinematics["particle_id"].to_numpy() != 0)
    )
    return np.sort(kinematics["particle_id"].to_numpy(np.int64)[selected])


def make_sample(event: Event, config: SampleConfig) -> Sample:
    """The training sample of a TrackML event (non-pixel hits, if any, are dropped first)."""
    event = _pixel_hits_only(event)
    particles, truth = _require_parts(event)
    truth_columns = truth[["hit_id", "particle_id", "weight"]]
    hits = event.hits.merge(truth_columns, on="hit_id", how="left", validate="1:1")
    missing = int(hits["particle_id"].isna().sum())
    if missing:
        raise ValueError(f"event {event.event_id}: truth column 'hit_id': {missing} hit(s) have no truth row")
    order = phi_sort_order(hits)
    hits = hits.iloc[order].reset_index(drop=True)
    targets = target_particles(event, config)
    hit_particle_id = hits["particle_id"].to_numpy(np.int64)
    on_pixel_hits = particles["particle_id"].isin(np.unique(hit_particle_id))
    kinematics = particle_kinematics(particles[on_pixel_hits].reset_index(drop=True))
    return Sample(
        event_id=int(event.event_id),
        hit_id=hits["hit_id"].to_numpy(np.int64),
        features=hit_features(hits, config.features),
        hit_xyz=hits[["x", "y", "z"]].to_numpy(np.float32),
        hit_r=np.hypot(hits["x"].to_numpy(np.float64), hits["y"].to_numpy(np.float64)).astype(np.float32),
        hit_particle_id=hit_particle_id,
        hit_weight=hits["weight"].to_numpy(np.float32),
        hit_on_target=np.isin(hit_particle_id, targets),
        target_particle_id=targets,
        particles=kinematics.drop(columns=["p", "phi"]),
    )


def reconstructable_particles(sample: Sample, min_hits: int = 3) -> np.ndarray:
    """Sorted ids of every particle (any pT, η) with ≥ `min_hits` of the sample's hits; noise excluded."""
    ids, counts = np.unique(sample.hit_particle_id, return_counts=True)
    return ids[(counts >= min_hits) & (ids != 0)].astype(np.int64)


def tracker_targets(
    sample: Sample, hit_mask: np.ndarray | None = None, particle_ids: np.ndarray | None = None
) -> TrackerTargets:
    """Tracker targets on the hits kept by `hit_mask` (bool [N], φ order); None = ideal truth filter.

    The particles to reconstruct are `particle_ids` (default: the selection's target particles).
    """
    if hit_mask is None:
        hit_mask = sample.hit_on_target
    if particle_ids is None:
        particle_ids = sample.target_particle_id
    hit_mask = np.asarray(hit_mask)
    if hit_mask.dtype != np.bool_ or hit_mask.shape != (sample.num_hits,):
        raise ValueError(
            f"hit_mask: expected a bool array of shape ({sample.num_hits},), "
            f"got {hit_mask.dtype} {hit_mask.shape}"
        )
    hit_index = np.flatnonzero(hit_mask).astype(np.int64)
    kept_particle = sample.hit_particle_id[hit_index]
    target_hits = np.flatnonzero(np.isin(kept_particle, particle_ids) & (kept_particle != 0))
    particles, group = np.unique(kept_particle[target_hits], return_inverse=True)
    # Within each particle: smallest r first, ties to the lower hit index; the group's head is its first hit.
    order = np.lexsort((target_hits, sample.hit_r[hit_index[target_hits]], group))
    heads = order[np.r_[True, group[order][1:] != group[order][:-1]]] if len(order) else order
    by_first_hit = np.argsort(target_hits[heads], kind="stable")
    new_index = np.empty(len(particles), dtype=np.int64)
    new_index[by_first_hit] = np.arange(len(particles))
    hit_particle = np.full(len(hit_index), -1, dtype=np.int64)
    hit_particle[target_hits] = new_index[group]
    particle_id = particles[by_first_hit].astype(np.int64)
    first_hit = target_hits[heads][by_first_hit].astype(np.int64)
    return TrackerTargets(
        hit_index=hit_index,
        features=sample.features[hit_index],
        particle_id=particle_id,
        first_hit=first_hit,
        hit_particle=hit_particle,
    )


_REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "particles": ("particle_id", "px", "py", "pz"),
    "truth": ("hit_id", "particle_id", "weight"),
}


def _require_parts(event: Event) -> tuple[pd.DataFrame, pd.DataFrame]:
    for part, columns in _REQUIRED_COLUMNS.items():
        frame = getattr(event, part)
        if frame is None:
            raise ValueError(f"event {event.event_id}: the '{part}' part is needed to build a sample")
        missing = [c for c in columns if c not in frame]
        if missing:
            raise ValueError(f"event {event.event_id}: {part} has no column '{missing[0]}'")
    return event.particles, event.truth


def _pixel_hits_only(event: Event) -> Event:
    if "volume_id" not in event.hits:
        return event
    pixel = event.hits["volume_id"].isin(PIXEL_VOLUMES)
    if pixel.all():
        return event
    kept = event.hits.loc[pixel, "hit_id"]
    truth = event.truth[event.truth["hit_id"].isin(kept)] if event.truth is not None else None
    return Event(event.event_id, event.hits[pixel].reset_index(drop=True), event.particles, truth, None)


def cache_key(config: SampleConfig) -> str:
    """Short hash of the sample config and cache format; names the cache directory."""
    config_dict = to_dict(config)
    for group in ("triplets", "triplet_helix"):  # a feature group that is off keeps the keys it had before
        if not config_dict["features"][group]:
            del config_dict["features"][group]
    payload = json.dumps({"format": CACHE_FORMAT_VERSION, "config": config_dict}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def save_sample(path: str | Path, sample: Sample, config: SampleConfig) -> None:
    """Write `sample` as an uncompressed `.npz` (no pickles) tagged with the config's cache key."""
    arrays = {name: getattr(sample, name) for name in _HIT_ARRAYS}
    arrays["target_particle_id"] = sample.target_particle_id
    arrays["event_id"] = np.int64(sample.event_id)
    arrays["cache_key"] = np.str_(cache_key(config))
    for column in sample.particles.columns:
        arrays[f"particles.{column}"] = sample.particles[column].to_numpy()
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")  # concurrent builders never share one
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_cached_sample(path: str | Path, config: SampleConfig | None = None) -> Sample:
    """Read a cached sample; with `config`, refuse a file written for another sample config."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        if config is not None and str(data["cache_key"]) != cache_key(config):
            raise ValueError(
                f"{path}: cached for sample config {data['cache_key']!s}, not {cache_key(config)}"
            )
        particle_columns = [k for k in data.files if k.startswith("particles.")]
        particles = pd.DataFrame({k.removeprefix("particles."): data[k] for k in particle_columns})
        return Sample(
            event_id=int(data["event_id"]),
            target_particle_id=data["target_particle_id"],
            particles=particles,
            **{name: data[name] for name in _HIT_ARRAYS},
        )


@dataclass
class CachedSamples:
    """The cached samples of one sample config: a sequence of `Sample`s loaded on access."""

    directory: Path
    key: str
    config: SampleConfig
    events: list[dict]

    @property
    def paths(self) -> list[Path]:
        return [self.directory / entry["file"] for entry in self.events]

    def __len__(self) -> int:
        return len(self.events)

    def __getitem__(self, index: int) -> Sample:
        return load_cached_sample(self.paths[index], self.config)

    def __iter__(self) -> Iterator[Sample]:
        for path in self.paths:
            yield load_cached_sample(path, self.config)


def build_cache(
    event_dir: str | Path, cache_dir: str | Path, config: SampleConfig, overwrite: bool = False
) -> CachedSamples:
    """Cache every event of `event_dir` as samples under `cache_dir/<key>/`; reuses files already there.

    The manifest (`cache_dir/manifest.json`) maps each key to its config and event list.
    """
    prefixes = list_event_prefixes(event_dir)
    if not prefixes:
        raise FileNotFoundError(f"{event_dir}: no TrackML events (eventNNNNNNNNN-hits.csv[.gz]) found")
    cache_dir = Path(cache_dir)
    key = cache_key(config)
    directory = cache_dir / key
    directory.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(cache_dir)
    known = {entry["file"]: entry for entry in manifest["caches"].get(key, {}).get("events", [])}
    events = []
    for prefix in prefixes:
        name = f"{prefix.name}.npz"
        if not overwrite and name in known and (directory / name).exists():
            events.append(known[name])
            continue
        sample = make_sample(read_event(prefix, ("hits", "particles", "truth"), pixel_only=True), config)
        save_sample(directory / name, sample, config)
        events.append(
            {
                "event_id": sample.event_id,
                "file": name,
                "num_hits": sample.num_hits,
                "num_targets": sample.num_targets,
                "num_target_hits": int(sample.hit_on_target.sum()),
            }
        )
    manifest["caches"][key] = {"config": to_dict(config), "source": str(Path(event_dir)), "events": events}
    _write_manifest(cache_dir, manifest)
    return CachedSamples(directory, key, config, events)


def open_cache(cache_dir: str | Path, config: SampleConfig) -> CachedSamples:
    """The cached samples for `config`; refuses a cache that was never built for it."""
    cache_dir = Path(cache_dir)
    key = cache_key(config)
    entry = _read_manifest(cache_dir)["caches"].get(key)
    if entry is None:
        manifest = cache_dir / MANIFEST_NAME
        raise FileNotFoundError(f"{manifest}: no cache for sample config {key}; run build_cache first")
    return CachedSamples(cache_dir / key, key, from_dict(SampleConfig, entry["config"]), entry["events"])


def _read_manifest(cache_dir: Path) -> dict:
    path = cache_dir / MANIFEST_NAME
    if not path.exists():
        return {"format_version": CACHE_FORMAT_VERSION, "caches": {}}
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != CACHE_FORMAT_VERSION:
        raise ValueError(
            f"{path}: cache format {manifest.get('format_version')} is not {CACHE_FORMAT_VERSION}; rebuild it"
        )
    return manifest


def _write_manifest(cache_dir: Path, manifest: dict) -> None:
    path = cache_dir / MANIFEST_NAME
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, path)
