"""Tracker: hit encoder + seed head + track decoder (DESIGN §4); the contract's encode/decode/forward."""

from __future__ import annotations

import torch
from torch import nn

from trackrt.model.config import TrackerConfig
from trackrt.model.decoder import TrackDecoder
from trackrt.model.encoder import HitEncoder
from trackrt.model.layers import MLP


class Tracker(nn.Module):
    """φ-sorted (filtered) hit features → hit embeddings, seed logits and per-layer track predictions."""

    def __init__(self, config: TrackerConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = HitEncoder(config.features.num_features, config.encoder)
        self.seed_head = MLP(config.encoder.dim, config.encoder.dim, 1)
        self.decoder = TrackDecoder(config)

    def encode(
        self, hit_features: torch.Tensor, hit_lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """hit_features [B, N, F] → (hit_embeddings [B, N, E], seed_logits [B, N])."""
        hit_embeddings = self.encoder(hit_features, hit_lengths)
        return hit_embeddings, self.seed_head(hit_embeddings).squeeze(-1)

    def decode(
        self,
        hit_embeddings: torch.Tensor,
        query_indices: torch.Tensor | None = None,
        hit_lengths: torch.Tensor | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Per decoder layer (last = final): `track_logits` [B, Q], `assignment_logits` [B, Q, N]."""
        return self.decoder(hit_embeddings, query_indices, hit_lengths)

    def forward(
        self,
        hit_features: torch.Tensor,
        query_indices: torch.Tensor | None = None,
        hit_lengths: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | list[dict[str, torch.Tensor]]]:
        """Encoder outputs, `layers` (per-layer predictions) and the final layer's two outputs."""
        hit_embeddings, seed_logits = self.encode(hit_features, hit_lengths)
        layers = self.decode(hit_embeddings, query_indices, hit_lengths)
        return {
            "hit_embeddings": hit_embeddings,
            "seed_logits": seed_logits,
            "layers": layers,
            "track_logits": layers[-1]["track_logits"],
            "assignment_logits": layers[-1]["assignment_logits"],
        }
