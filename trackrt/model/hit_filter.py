"""Hit filter: encoder + per-hit logit "this hit belongs to a target particle" (DESIGN §4)."""

from __future__ import annotations

import torch
from torch import nn

from trackrt.model.config import HitFilterConfig
from trackrt.model.encoder import HitEncoder
from trackrt.model.layers import MLP


class HitFilter(nn.Module):
    """φ-sorted hit features [B, N, F] → hit logits [B, N]."""

    def __init__(self, config: HitFilterConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = HitEncoder(config.features.num_features, config.encoder)
        self.hit_head = MLP(config.encoder.dim, config.encoder.dim, 1)

    def forward(self, hit_features: torch.Tensor, hit_lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.hit_head(self.encoder(hit_features, hit_lengths)).squeeze(-1)
