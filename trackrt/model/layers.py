"""Small building blocks: norms, SwiGLU feed-forward, MLP heads and dense (masked) multi-head attention."""

from __future__ import annotations

import torch
from torch import nn

from trackrt.model.attention import masked_attention, merge_heads, split_heads


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain (written out so that it exports to any ONNX opset)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


def make_norm(kind: str, dim: int) -> nn.Module:
    """`layer` → LayerNorm, `rms` → RMSNorm."""
    if kind == "layer":
        return nn.LayerNorm(dim)
    if kind == "rms":
        return RMSNorm(dim)
    raise ValueError(f"norm: unknown norm {kind!r} (known: layer, rms)")


class SwiGLU(nn.Module):
    """Gated feed-forward: out(silu(x·W_gate) ⊙ x·W_up), hidden width round(ratio·dim)."""

    def __init__(self, dim: int, ratio: float = 2.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = max(1, round(ratio * dim))
        self.gate_up = nn.Linear(dim, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(self.dropout(nn.functional.silu(gate) * up))


class MLP(nn.Module):
    """Two linear layers with a SiLU between them."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MaskedAttention(nn.Module):
    """Dense multi-head attention from queries [B,Q,E] to keys [B,N,E] with an optional bool mask [B,Q,N].

    A query whose mask row is all False attends to every key.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.kv_proj = nn.Linear(dim, 2 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        q = split_heads(self.q_proj(queries), self.num_heads)
        k, v = (split_heads(t, self.num_heads) for t in self.kv_proj(keys).chunk(2, dim=-1))
        return self.out_proj(merge_heads(masked_attention(q, k, v, mask)))
