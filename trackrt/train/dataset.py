"""Training data: cached event samples, the seeded event order, and the hit selection the tracker sees."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from trackrt.data.features import FeatureConfig
from trackrt.data.samples import (
    CachedSamples,
    Sample,
    SampleConfig,
    TrackerTargets,
    build_cache,
    reconstructable_particles,
    sample_config,
    tracker_targets,
)
from trackrt.data.tracks import sigmoid


def open_samples(
    event_dir: str | Path,
    cache_dir: str | Path,
    selection: str,
    features: FeatureConfig,
    max_events: int | None = None,
    pt_min: float | None = None,
) -> CachedSamples:
    """The samples of `event_dir` for `selection` and `features`, cached as `.npz` (built on first use);
    `pt_min` replaces the selection's pT cut for the targets.

    Each event directory gets its own cache sub-directory, so equal event ids in two directories
    (e.g. train and validation) never share a cached file.
    """
    config: SampleConfig = sample_config(selection, features, pt_min)
    source = Path(event_dir).resolve()
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:10]
    samples = build_cache(source, Path(cache_dir) / f"{source.name}-{digest}", config)
    if max_events is not None:
        samples = CachedSamples(samples.directory, samples.key, samples.config, samples.events[:max_events])
    return samples


def epoch_order(num_events: int, seed: int, epoch: int) -> np.ndarray:
    """The event order of one epoch: a permutation drawn from (seed, epoch) alone, so resuming repeats it."""
    return np.random.default_rng([seed, epoch]).permutation(num_events)


def event_at(events_seen: int, num_events: int, seed: int) -> tuple[int, int]:
    """(epoch, sample index) of the event after `events_seen` events of training."""
    epoch, position = divmod(events_seen, num_events)
    return epoch, int(epoch_order(num_events, seed, epoch)[position])


@torch.no_grad()
def filter_logits(hit_filter: torch.nn.Module, features: np.ndarray, device: torch.device) -> np.ndarray:
    """Hit-filter logits float32 [N] of φ-sorted hits given the filter's features [N, F]."""
    if len(features) == 0:
        return np.zeros(0, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[None].to(device)
    return hit_filter(x)[0].float().cpu().numpy()


def filter_probabilities(
    hit_filter: torch.nn.Module, features: np.ndarray, device: torch.device
) -> np.ndarray:
    """Hit-filter probabilities float64 [N] of φ-sorted hits given the filter's features [N, F]."""
    return sigmoid(filter_logits(hit_filter, features, device))


@dataclass
class HitSelection:
    """Which hits the tracker gets: the ideal truth filter (`hit_filter` None) or a learned one.

    The learned filter sees its own `features` (its checkpoint's feature config), computed from the
    sample's hit coordinates, so filter and tracker may use different features.
    `with_truth` adds the truth filter's hits to the learned filter's: its false positives without its
    losses (training only). `particles` = "all" makes every particle with ≥ 3 hits a target (not only the
    selection's), so a tracker behind a learned filter learns to build the tracks of the low-pT particles
    it lets through.
    With `cache`, tracker targets are computed once per event id and kept in memory (the filter is
    frozen during tracker training); evaluation passes `cache=False`. `dropout` > 0 (training
    augmentation) removes that fraction of the selected hits afresh at every call, and `contamination`
    > 0 adds that many unselected hits per selected hit, both drawn from torch's CPU generator so
    that a resumed run draws the same hits; nothing is cached then.
    """

    hit_filter: torch.nn.Module | None = None
    threshold: float = 0.5
    features: FeatureConfig | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache: bool = True
    particles: Literal["selection", "all"] = "selection"
    dropout: float = 0.0
    contamination: float = 0.0
    with_truth: bool = False
    _cache: dict[int, TrackerTargets] = field(default_factory=dict, repr=False)

    def kept(self, sample: Sample) -> np.ndarray | None:
        """Bool [N] of kept hits, or None for the truth filter."""
        if self.hit_filter is None:
            return None
        features = sample.features_for(self.features)
        kept = filter_probabilities(self.hit_filter, features, self.device) >= self.threshold
        return kept | sample.hit_on_target if self.with_truth else kept

    def targets(self, sample: Sample) -> TrackerTargets:
        """Tracker targets of `sample` on its hit selection (drawn afresh with `dropout`, `contamination`)."""
        drawn = self.dropout > 0 or self.contamination > 0
        cache = self.cache and not drawn
        if cache and sample.event_id in self._cache:
            return self._cache[sample.event_id]
        particle_ids = reconstructable_particles(sample) if self.particles == "all" else None
        kept = self.kept(sample)
        if drawn:
            selected = sample.hit_on_target if kept is None else kept
            dropped = drop_selected_hits(selected, self.dropout)
            kept = dropped | draw_unselected_hits(selected, self.contamination)
        targets = tracker_targets(sample, kept, particle_ids)
        if cache:
            self._cache[sample.event_id] = targets
        return targets


def drop_selected_hits(kept: np.ndarray, fraction: float) -> np.ndarray:
    """Bool [N]: `kept` with each kept hit dropped with probability `fraction` (torch's CPU generator)."""
    if fraction <= 0:
        return kept
    return kept & (torch.rand(len(kept), dtype=torch.float64).numpy() >= fraction)


def draw_unselected_hits(selected: np.ndarray, per_selected_hit: float) -> np.ndarray:
    """Bool [N]: round(`per_selected_hit` × selected) unselected hits, drawn uniformly without replacement."""
    others = np.flatnonzero(~selected)
    count = min(len(others), round(per_selected_hit * int(selected.sum())))
    chosen = np.zeros(len(selected), dtype=bool)
    if count > 0:
        chosen[others[torch.randperm(len(others))[:count].numpy()]] = True
    return chosen
