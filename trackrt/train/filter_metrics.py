"""Hit-filter quality: target-hit efficiency and purity, and the threshold for a target efficiency."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trackrt.data.samples import Sample
from trackrt.train.dataset import filter_probabilities


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


def filter_threshold_for_efficiency(
    hit_filter: torch.nn.Module, samples: Iterable[Sample], target_efficiency: float, device: torch.device
) -> float:
    """The highest threshold that keeps ≥ `target_efficiency` of the target-particle hits of `samples`."""
    was_training = hit_filter.training
    hit_filter.eval()
    on_target = [filter_probabilities(hit_filter, s, device)[s.hit_on_target] for s in samples]
    hit_filter.train(was_training)
    probabilities = np.sort(np.concatenate(on_target) if on_target else np.zeros(0))[::-1]
    if len(probabilities) == 0:
        return 0.5
    needed = max(math.ceil(target_efficiency * len(probabilities) - 1e-9), 1)
    return float(probabilities[needed - 1])


def filter_counts(
    hit_filter: torch.nn.Module, samples: Iterable[Sample], threshold: float, device: torch.device
) -> FilterCounts:
    """Hit-filter efficiency and purity over `samples` at `threshold`."""
    counts = FilterCounts()
    was_training = hit_filter.training
    hit_filter.eval()
    for sample in samples:
        counts.add(sample.hit_on_target, filter_probabilities(hit_filter, sample, device) >= threshold)
    hit_filter.train(was_training)
    return counts
