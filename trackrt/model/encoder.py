"""Sliding-window transformer encoder over the φ-sorted hit sequence (DESIGN §4)."""

from __future__ import annotations

import torch
from torch import nn

from trackrt.model.attention import SlidingWindowSelfAttention
from trackrt.model.config import EncoderConfig
from trackrt.model.layers import MLP, SwiGLU, make_norm


class EncoderLayer(nn.Module):
    """Pre-norm block: sliding-window self-attention (wrapping at φ = ±π), then SwiGLU feed-forward."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention_norm = make_norm(config.norm, config.dim)
        self.attention = SlidingWindowSelfAttention(
            config.dim, config.num_heads, config.window, wrap=config.wrap, backend=config.attention_backend
        )
        self.ffn_norm = make_norm(config.norm, config.dim)
        self.ffn = SwiGLU(config.dim, config.ffn_ratio, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, hit_lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.attention_norm(x), hit_lengths))
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class HitEncoder(nn.Module):
    """Input projection of hit features, L encoder layers and a final norm: [B, N, F] → [B, N, E]."""

    def __init__(self, num_features: int, config: EncoderConfig) -> None:
        super().__init__()
        self.num_features = num_features
        self.input_projection = MLP(num_features, config.dim, config.dim)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_layers))
        self.final_norm = make_norm(config.norm, config.dim)

    def forward(self, hit_features: torch.Tensor, hit_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`hit_lengths` [B] marks trailing padding hits (outputs there are meaningless)."""
        check_hit_features(hit_features, self.num_features)
        x = self.input_projection(hit_features)
        for layer in self.layers:
            x = layer(x, hit_lengths)
        return self.final_norm(x)


def check_hit_features(hit_features: torch.Tensor, num_features: int) -> None:
    """Refuse a hit-feature tensor that is not [B, N, F] floating point with the configured F."""
    if hit_features.dim() != 3 or hit_features.shape[-1] != num_features:
        raise ValueError(
            f"hit_features: expected shape [B, N, F={num_features}], got {tuple(hit_features.shape)}"
        )
    if not hit_features.is_floating_point():
        raise TypeError(f"hit_features: expected a floating-point tensor, got {hit_features.dtype}")
