"""The modules that become ONNX graphs: thin wrappers giving each graph the contract's inputs and outputs."""

from __future__ import annotations

import torch
from torch import nn

from trackrt.export.config import ExportOptions, GraphSpec, decoder_spec


class HitFilterGraph(nn.Module):
    """`hit_features` [1, N, F] → `hit_logits` [1, N]."""

    def __init__(self, hit_filter: nn.Module) -> None:
        super().__init__()
        self.hit_filter = hit_filter

    def forward(self, hit_features: torch.Tensor) -> torch.Tensor:
        return self.hit_filter(hit_features)


class TrackerEncoderGraph(nn.Module):
    """`hit_features` [1, N, F] → (`hit_embeddings` [1, N, E], `seed_logits` [1, N])."""

    def __init__(self, tracker: nn.Module) -> None:
        super().__init__()
        self.tracker = tracker

    def forward(self, hit_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tracker.encode(hit_features)


class DynamicQueryDecoderGraph(nn.Module):
    """(`hit_embeddings` [1, N, E], `query_indices` [1, Q]) → final-layer track and assignment logits."""

    def __init__(self, tracker: nn.Module) -> None:
        super().__init__()
        self.tracker = tracker

    def forward(
        self, hit_embeddings: torch.Tensor, query_indices: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        final = self.tracker.decode(hit_embeddings, query_indices)[-1]
        return final["track_logits"], final["assignment_logits"]


class FixedQueryDecoderGraph(nn.Module):
    """`hit_embeddings` [1, N, E] → the final layer's track and assignment logits for learned queries."""

    def __init__(self, tracker: nn.Module) -> None:
        super().__init__()
        self.tracker = tracker

    def forward(self, hit_embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        final = self.tracker.decode(hit_embeddings, None)[-1]
        return final["track_logits"], final["assignment_logits"]


def example_query_indices(num_hits: int, num_queries: int) -> torch.Tensor:
    """Ascending, evenly spread hit indices [1, Q] to trace the decoder with."""
    return torch.linspace(0, num_hits - 1, num_queries).round().to(torch.int64)[None]


def hit_filter_graph(
    hit_filter: nn.Module, options: ExportOptions
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The hit-filter module and its example inputs."""
    features = hit_filter.config.features.num_features
    return HitFilterGraph(hit_filter), (torch.randn(1, options.example_num_hits, features),)


def tracker_encoder_graph(
    tracker: nn.Module, options: ExportOptions
) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """The tracker-encoder module and its example inputs."""
    features = tracker.config.features.num_features
    return TrackerEncoderGraph(tracker), (torch.randn(1, options.example_num_hits, features),)


def tracker_decoder_graph(
    tracker: nn.Module, options: ExportOptions
) -> tuple[nn.Module, tuple[torch.Tensor, ...], GraphSpec]:
    """The decoder module for the tracker's variant, its example inputs, and its graph spec."""
    spec = decoder_spec(tracker.config.variant)
    embeddings = torch.randn(1, options.example_num_hits, tracker.config.encoder.dim)
    if tracker.config.dynamic_queries:
        indices = example_query_indices(options.example_num_hits, options.example_num_queries)
        return DynamicQueryDecoderGraph(tracker), (embeddings, indices), spec
    return FixedQueryDecoderGraph(tracker), (embeddings,), spec
