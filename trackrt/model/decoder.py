"""Track decoder: queries attend to hit embeddings (masked attention or LSCA), then track/assignment heads."""

from __future__ import annotations

import torch
from torch import nn

from trackrt.model.attention import LocalStridedCrossAttention, strided_centers
from trackrt.model.config import TrackerConfig
from trackrt.model.layers import MLP, MaskedAttention, SwiGLU, make_norm


def _tracing() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


class TrackHeads(nn.Module):
    """Track-valid logit per query [B, Q] and assignment logits MLP(query) · hit embedding [B, Q, N]."""

    def __init__(self, dim: int, norm: str) -> None:
        super().__init__()
        self.query_norm = make_norm(norm, dim)
        self.valid_head = MLP(dim, dim, 1)
        self.assignment_head = MLP(dim, dim, dim)

    def forward(self, queries: torch.Tensor, hits: torch.Tensor) -> dict[str, torch.Tensor]:
        q = self.query_norm(queries)
        return {
            "track_logits": self.valid_head(q).squeeze(-1),
            "assignment_logits": torch.einsum("bqe,bne->bqn", self.assignment_head(q), hits),
        }


class DecoderLayer(nn.Module):
    """Pre-norm query→hit cross-attention, SwiGLU feed-forward, then query self-attention (residual each)."""

    def __init__(self, config: TrackerConfig) -> None:
        super().__init__()
        dim, norm = config.encoder.dim, config.encoder.norm
        self.uses_lsca = config.variant == "dq-lsca"
        self.cross_norm = make_norm(norm, dim)
        if self.uses_lsca:
            self.cross_attention: nn.Module = LocalStridedCrossAttention(
                dim, config.decoder_heads, config.lsca_window, wrap=config.lsca_wrap,
                backend=config.attention_backend,
            )  # fmt: skip
        else:
            self.cross_attention = MaskedAttention(dim, config.decoder_heads)
        self.ffn_norm = make_norm(norm, dim)
        self.ffn = SwiGLU(dim, config.decoder_ffn_ratio, config.encoder.dropout)
        self.self_norm = make_norm(norm, dim)
        self.self_attention = MaskedAttention(dim, config.decoder_heads)
        self.dropout = nn.Dropout(config.encoder.dropout)

    def forward(
        self,
        queries: torch.Tensor,
        hits: torch.Tensor,
        mask: torch.Tensor | None = None,
        centers: torch.Tensor | None = None,
        hit_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`mask` [B, Q, N] for masked attention; `centers` [B, Q] for LSCA."""
        x = self.cross_norm(queries)
        if self.uses_lsca:
            attended = self.cross_attention(x, hits, centers, hit_lengths)
        else:
            attended = self.cross_attention(x, hits, mask)
        queries = queries + self.dropout(attended)
        queries = queries + self.dropout(self.ffn(self.ffn_norm(queries)))
        x = self.self_norm(queries)
        return queries + self.dropout(self.self_attention(x, x))


class TrackDecoder(nn.Module):
    """Decoder layers plus shared heads, predicting after every layer.

    Masked variants also predict from the input queries, to mask the first layer. Hit embeddings are
    not updated by the decoder: every layer attends to the encoder's output.
    """

    def __init__(self, config: TrackerConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.encoder.dim
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        self.heads = TrackHeads(dim, config.encoder.norm)
        if config.dynamic_queries:
            self.query_embeddings = None
        else:
            self.query_embeddings = nn.Parameter(torch.randn(config.num_queries, dim))

    def initial_queries(self, hits: torch.Tensor, query_indices: torch.Tensor | None) -> torch.Tensor:
        """Learned queries (`fq-ma`) or the hit embeddings at `query_indices` (`dq-*`), [B, Q, E]."""
        if self.query_embeddings is not None:
            if query_indices is not None:
                raise ValueError("query_indices: must be None for variant 'fq-ma' (it uses learned queries)")
            return self.query_embeddings[None].expand(hits.shape[0], -1, -1)
        if query_indices is None:
            raise ValueError(f"query_indices: required for variant {self.config.variant!r}, got None")
        check_query_indices(query_indices, hits)
        source = hits.detach() if self.config.detach_queries else hits
        index = query_indices.to(torch.int64)[..., None].expand(-1, -1, hits.shape[-1])
        return torch.gather(source, 1, index)

    def cross_attention_centers(
        self,
        queries: torch.Tensor,
        hits: torch.Tensor,
        query_indices: torch.Tensor | None,
        hit_lengths: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """LSCA centres [B, Q]: strided round(i·N/Q) or the queries' seed hits; None for masked attention.

        With `hit_lengths` (padded batches, eager only) each event's strided centres use its own N.
        """
        if self.config.variant != "dq-lsca":
            return None
        if self.config.lsca_centering == "seed":
            return query_indices.to(torch.int64)
        batch, num_queries = queries.shape[:2]
        if hit_lengths is None:
            return strided_centers(num_queries, hits.shape[1], device=hits.device)[None].expand(batch, -1)
        return torch.stack([strided_centers(num_queries, int(n), device=hits.device) for n in hit_lengths])

    def forward(
        self,
        hits: torch.Tensor,
        query_indices: torch.Tensor | None = None,
        hit_lengths: torch.Tensor | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """One dict per layer with `track_logits` [B, Q] and `assignment_logits` [B, Q, N]."""
        queries = self.initial_queries(hits, query_indices)
        centers = self.cross_attention_centers(queries, hits, query_indices, hit_lengths)
        real_hits = hit_mask(hits, hit_lengths)[:, None, :]
        # Masked variants mask each layer with the previous prediction (the first: from the input queries).
        prediction = self.heads(queries, hits) if centers is None else None
        outputs = []
        for layer in self.layers:
            mask = None
            if prediction is not None:
                mask = attention_mask_from_assignment(prediction["assignment_logits"], real_hits)
            queries = layer(queries, hits, mask=mask, centers=centers, hit_lengths=hit_lengths)
            prediction = self.heads(queries, hits)
            outputs.append(prediction)
        return outputs


def attention_mask_from_assignment(assignment_logits: torch.Tensor, real_hits: torch.Tensor) -> torch.Tensor:
    """Bool [B, Q, N]: sigmoid ≥ 0.5 on real hits; a query with no such hit attends to every real hit."""
    mask = (assignment_logits.detach() >= 0) & real_hits
    return mask | (real_hits & ~mask.any(dim=-1, keepdim=True))  # bool ops: ONNX Runtime has no bool Where


def hit_mask(hits: torch.Tensor, hit_lengths: torch.Tensor | None) -> torch.Tensor:
    """Bool [B, N], True on real hits (all of them when `hit_lengths` is None)."""
    positions = torch.arange(hits.shape[1], device=hits.device)[None, :]
    if hit_lengths is None:
        return (positions >= 0).expand(hits.shape[0], -1)
    return positions < hit_lengths.to(hits.device)[:, None]


def check_query_indices(query_indices: torch.Tensor, hits: torch.Tensor) -> None:
    """Refuse query indices that are not integer [B, Q] within [0, N) (value checks only in eager mode)."""
    if query_indices.dim() != 2 or query_indices.shape[0] != hits.shape[0]:
        raise ValueError(
            f"query_indices: expected shape [B={hits.shape[0]}, Q], got {tuple(query_indices.shape)}"
        )
    if query_indices.is_floating_point() or query_indices.dtype == torch.bool:
        raise TypeError(f"query_indices: expected an integer tensor, got {query_indices.dtype}")
    if not _tracing() and query_indices.numel():
        low, high = int(query_indices.min()), int(query_indices.max())
        if low < 0 or high >= hits.shape[1]:
            raise ValueError(f"query_indices: values must lie in [0, N={hits.shape[1]}), got [{low}, {high}]")
