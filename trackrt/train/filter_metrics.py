"""Hit-filter quality: target-hit efficiency and purity, and the threshold for a target efficiency."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trackrt.data.features import FeatureConfig
from trackrt.data.samples import Sample
from trackrt.data.tracks import sigmoid
from trackrt.train.dataset import filter_logits
from trackrt.train.losses import hit_filter_loss


@dataclass
class FilterCounts:
    """Hit-filter bookkeeping summed over events: efficiency and purity on target-particle hits."""

    hits: int = 0
    kept_hits: int = 0
    target_hits: int = 0
    kept_target_hits: int = 0

    def add(self, on_target: np.ndarray, kept: np.ndarray) -> None:
        self.hits += len(kept)
        self.kept_hits += int(kept.sum())
        self.target_hits += int(on_target.sum())
        self.kept_target_hits += int((kept & on_target).sum())

    @property
    def efficiency(self) -> float:
        return self.kept_target_hits / self.target_hits if self.target_hits else math.nan

    @property
    def purity(self) -> float:
        return self.kept_target_hits / self.kept_hits if self.kept_hits else math.nan

    def summary(self) -> dict[str, Any]:
        return {
            "efficiency": self.efficiency,
            "purity": self.purity,
            "hits": self.hits,
            "kept_hits": self.kept_hits,
            "target_hits": self.target_hits,
            "kept_target_hits": self.kept_target_hits,
        }


@dataclass
class FilterScores:
    """Hit-filter logits and targets per event of a sample set, from one forward pass each."""

    logits: list[np.ndarray]
    on_target: list[np.ndarray]

    def threshold_for_efficiency(self, target_efficiency: float) -> float:
        """The highest threshold keeping ≥ `target_efficiency` of the target hits (0.5 without any)."""
        on_target = [sigmoid(lg[t]) for lg, t in zip(self.logits, self.on_target, strict=True)]
        probabilities = np.sort(np.concatenate(on_target) if on_target else np.zeros(0))[::-1]
        if len(probabilities) == 0:
            return 0.5
        needed = max(math.ceil(target_efficiency * len(probabilities) - 1e-9), 1)
        return float(probabilities[needed - 1])

    def counts(self, threshold: float) -> FilterCounts:
        """Efficiency and purity bookkeeping at probability `threshold`."""
        counts = FilterCounts()
        for logits, on_target in zip(self.logits, self.on_target, strict=True):
            counts.add(on_target, sigmoid(logits) >= threshold)
        return counts

    def mean_loss(self) -> float:
        """Mean per-event hit-filter loss (BCE, positive weight 1/mean(target)); NaN without hits."""
        losses = [
            float(hit_filter_loss(torch.from_numpy(lg), torch.from_numpy(t)))
            for lg, t in zip(self.logits, self.on_target, strict=True)
            if len(lg)
        ]
        return float(np.mean(losses)) if losses else math.nan


@torch.no_grad()
def score_samples(
    hit_filter: torch.nn.Module,
    samples: Iterable[Sample],
    device: torch.device,
    features: FeatureConfig | None = None,
) -> FilterScores:
    """Run the hit filter (in eval mode) once over each sample, on `features` if given (its own config)."""
    was_training = hit_filter.training
    hit_filter.eval()
    logits, on_target = [], []
    for sample in samples:
        logits.append(filter_logits(hit_filter, sample.features_for(features), device))
        on_target.append(np.asarray(sample.hit_on_target, dtype=bool))
    hit_filter.train(was_training)
    return FilterScores(logits, on_target)
