"""Local window attention in PyTorch: LSCA masks and the dense, gathered, blocked, flex and triton backends.

Semantics are DESIGN §4.1/§5: query i attends to key j iff d(j, c_i) <= window/2 (circular distance when
``wrap``), keys at or beyond ``key_lengths[b]`` are padding, and ``key_lengths[b]`` replaces N in the
distance.  Centres at or beyond a batch's key length are clamped to its last key.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Backend = Literal["auto", "dense", "gathered", "blocked", "flex", "triton"]
ExportMode = Literal["plugin", "onnx"]

LSCA_OP_NAME = "trackrt::LocalStridedCrossAttention"
LSCA_OP_VERSION = 1
BACKENDS: tuple[str, ...] = ("auto", "dense", "gathered", "blocked", "flex", "triton")
EXPORT_MODES: tuple[str, ...] = ("plugin", "onnx")

_BLOCKED_QUERY_BLOCK = 64
_BLOCKED_MAX_SCORES = 1 << 25  # score elements per eager chunk of the blocked backend (128 MiB in fp32)
_export_mode: list[ExportMode] = ["onnx"]


@contextlib.contextmanager
def lsca_export_mode(mode: ExportMode) -> Iterator[None]:
    """During ONNX export inside this block, emit the custom LSCA node ("plugin") or standard ops ("onnx")."""
    if mode not in EXPORT_MODES:
        raise ValueError(f"lsca_export_mode: mode must be one of {EXPORT_MODES}, got {mode!r}")
    _export_mode.append(mode)
    try:
        yield
    finally:
        _export_mode.pop()


def current_export_mode() -> ExportMode:
    """The LSCA export mode in force ("onnx" outside any `lsca_export_mode` block)."""
    return _export_mode[-1]


def _tracing() -> bool:
    """True under ONNX export or torch.compile: no data-dependent checks or Python loops then."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def strided_centers(num_queries: int | torch.SymInt, num_keys: int | torch.SymInt,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """Centres round(i·N/Q), half to even, clamped to N-1, as int64 [Q]; integer ops only so it exports."""
    i = torch.arange(num_queries, device=device, dtype=torch.int64)
    numerator = i * num_keys
    base = torch.div(numerator, num_queries, rounding_mode="floor")
    twice_rem = 2 * (numerator - base * num_queries)
    round_up = (twice_rem > num_queries) | ((twice_rem == num_queries) & (torch.remainder(base, 2) == 1))
    return torch.clamp(base + round_up.to(torch.int64), max=num_keys - 1)


def _key_lengths_or_n(key_lengths: torch.Tensor | None, batch: int, num_keys: int,
                      device: torch.device) -> torch.Tensor:
    """Per-batch key lengths as int64 [B] (N everywhere when not given)."""
    if key_lengths is None:
        return torch.full((batch,), num_keys, dtype=torch.int64, device=device)
    return key_lengths.to(device=device, dtype=torch.int64)


def _clamped_centers(centers: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Centres [B, Q] as int64, clamped to each batch's last real key."""
    return torch.minimum(centers.to(torch.int64), (lengths - 1)[:, None])


def window_mask(centers: torch.Tensor, num_keys: int, window: int, wrap: bool,
                key_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Bool [B, Q, N] (True = attend): d(j, c_i) <= window/2, circular over the key length when wrapped."""
    _check_window(window)
    if centers.dim() == 1:
        centers = centers[None]
    batch = centers.shape[0]
    lengths = _key_lengths_or_n(key_lengths, batch, num_keys, centers.device)
    c = _clamped_centers(centers, lengths)[..., None]
    j = torch.arange(num_keys, device=centers.device, dtype=torch.int64)
    length = lengths[:, None, None]
    distance = (j - c).abs()
    if wrap:
        distance = torch.minimum(distance, length - distance)
    return (distance <= window // 2) & (j < length)


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                     scale: float | None = None) -> torch.Tensor:
    """Dense SDPA with a bool mask ([Q,N], [B,Q,N] or [B,H,Q,N]); an all-False row attends to every key."""
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"masked_attention: mask must be bool, got {mask.dtype}")
        if mask.dim() == 3:
            mask = mask[:, None]
        mask = mask | ~mask.any(dim=-1, keepdim=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=_scale_value(scale, q.shape[-1]))


def _scale_value(scale: float | None, head_dim: int) -> float:
    return 1.0 / math.sqrt(head_dim) if scale is None or scale == 0.0 else float(scale)


def _check_window(window: int) -> None:
    if not isinstance(window, int) or window < 0 or window % 2:
        raise ValueError(f"window must be a non-negative even int, got {window!r}")


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centers: torch.Tensor,
                  key_lengths: torch.Tensor | None, window: int) -> torch.Tensor:
    """Validate shapes/dtypes (and centre range in eager mode); return centres as [B, Q]."""
    _check_window(window)
    if q.dim() != 4:
        raise ValueError(f"query must be [B, H, Q, D], got shape {tuple(q.shape)}")
    b, h, nq, d = q.shape
    for name, t in (("key", k), ("value", v)):
        if t.dim() != 4 or t.shape[0] != b or t.shape[1] != h or t.shape[3] != d:
            raise ValueError(f"{name} must be [B={b}, H={h}, N, D={d}] like query, got {tuple(t.shape)}")
        if t.dtype != q.dtype:
            raise TypeError(f"{name} dtype {t.dtype} differs from query dtype {q.dtype}")
    if k.shape[2] != v.shape[2]:
        raise ValueError(f"key and value must have the same N, got {k.shape[2]} and {v.shape[2]}")
    if not q.is_floating_point():
        raise TypeError(f"query must be floating point, got {q.dtype}")
    if centers.is_floating_point() or centers.dtype == torch.bool:
        raise TypeError(f"centers must be an integer tensor, got {centers.dtype}")
    if centers.dim() == 1:
        centers = centers[None].expand(b, -1)
    if centers.dim() != 2 or centers.shape[0] != b or centers.shape[1] != nq:
        raise ValueError(f"centers must be [B={b}, Q={nq}] (or [Q]), got {tuple(centers.shape)}")
    if key_lengths is not None and (key_lengths.dim() != 1 or key_lengths.shape[0] != b):
        raise ValueError(f"key_lengths must be [B={b}], got {tuple(key_lengths.shape)}")
    if not _tracing() and centers.numel():
        n = k.shape[2]
        if int(centers.min()) < 0 or int(centers.max()) >= n:
            raise ValueError(f"centers must lie in [0, N={n}), got range [{int(centers.min())}, "
                             f"{int(centers.max())}]")
        if key_lengths is not None and (int(key_lengths.min()) < 1 or int(key_lengths.max()) > n):
            raise ValueError(f"key_lengths must lie in [1, N={n}], got {key_lengths.tolist()}")
    return centers


def _gather_keys(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather rows of x [B, H, N, D] at per-batch key indices [B, ...] -> [B, H, ..., D] (one flat Gather)."""
    b, h, n, d = x.shape
    base = (torch.arange(b, device=x.device)[:, None] * h + torch.arange(h, device=x.device)) * n  # [B, H]
    flat = base.reshape(b, h, *([1] * (index.dim() - 1))) + index[:, None]
    out = x.reshape(b * h * n, d).index_select(0, flat.reshape(-1))
    return out.reshape(*flat.shape, d)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Softmax statistics are kept in fp32 (or fp64 when the inputs are fp64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _softmax_weighted(scores: torch.Tensor, allowed: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Masked softmax in fp32 over the last axis of scores, then the weighted sum of gathered values."""
    probs = torch.softmax(_at_least_fp32(scores).masked_fill(~allowed, float("-inf")), dim=-1)
    return (probs.to(values.dtype).unsqueeze(-2) @ values).squeeze(-2)


def _gathered(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centers: torch.Tensor, window: int,
              wrap: bool, key_lengths: torch.Tensor | None, scale: float) -> torch.Tensor:
    """Each query against its own w+1 gathered keys; O(Q·w) memory, exportable with dynamic Q and N."""
    b, _, _, _ = q.shape
    n = k.shape[2]
    half = window // 2
    lengths = _key_lengths_or_n(key_lengths, b, n, q.device)
    length = lengths[:, None, None]
    offsets = torch.arange(-half, half + 1, device=q.device, dtype=torch.int64)
    index = _clamped_centers(centers, lengths)[..., None] + offsets  # [B, Q, W]
    if wrap:
        allowed = (offsets + half) < length  # the first L offsets cover every key exactly once
        index = torch.remainder(index, length)
    else:
        allowed = (index >= 0) & (index < length)
        index = torch.clamp(index, min=0, max=n - 1)
    kg, vg = _gather_keys(k, index), _gather_keys(v, index)  # [B, H, Q, W, D]
    scores = ((q * scale).unsqueeze(-2) @ kg.transpose(-1, -2)).squeeze(-2)  # [B, H, Q, W]
    return _softmax_weighted(scores, allowed[:, None], vg)


def _blocked(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centers: torch.Tensor, window: int,
             wrap: bool, key_lengths: torch.Tensor | None, scale: float, band: int | None = None,
             block: int = _BLOCKED_QUERY_BLOCK) -> torch.Tensor:
    """Blocks of consecutive queries against the contiguous (circular) key band their windows cover.

    ``band`` is the band length; None computes it from the centres (eager only).  With centres =
    arange(N) the band is block + window, which keeps memory O(N·w).
    """
    b, h, nq, d = q.shape
    n = k.shape[2]
    if nq == 0 or n == 0:  # an event with no hits left (e.g. none kept by the filter)
        return q.new_zeros(b, h, nq, v.shape[-1])
    half = window // 2
    num_blocks = (nq + block - 1) // block
    pad = num_blocks * block - nq
    lengths = _key_lengths_or_n(key_lengths, b, n, q.device)
    c = _clamped_centers(centers, lengths)
    c = torch.cat([c, c[:, -1:].expand(b, pad)], dim=1).reshape(b, num_blocks, block)
    lo = c.min(dim=-1).values - half  # [B, nb]
    if band is None:
        band = min(int((c.max(dim=-1).values - c.min(dim=-1).values).max()) + window + 1, n)
    if wrap:
        start = lo
    else:
        start = torch.clamp(torch.minimum(lo, torch.full_like(lo, n - band)), min=0)
    qb = F.pad(q, (0, 0, 0, pad)).reshape(b, h, num_blocks, block, d)
    if _tracing():
        out = _blocked_chunk(qb, k, v, c, start, band, lengths, half, wrap, scale)
    else:
        chunk = max(1, _BLOCKED_MAX_SCORES // max(1, b * h * block * band))
        out = torch.cat([_blocked_chunk(qb[:, :, i:i + chunk], k, v, c[:, i:i + chunk], start[:, i:i + chunk],
                                        band, lengths, half, wrap, scale)
                         for i in range(0, num_blocks, chunk)], dim=2)
    return out.reshape(b, h, num_blocks * block, d)[:, :, :nq]


def _query_block(num_queries: int, num_keys: int) -> int:
    """Queries per block: small when the stride N/Q is large, so the key band stays close to the windows."""
    stride = num_keys / max(num_queries, 1)
    return 16 if stride >= 4 else 32 if stride >= 1.5 else _BLOCKED_QUERY_BLOCK


def _blocked_chunk(qb: torch.Tensor, k: torch.Tensor, v: torch.Tensor, c: torch.Tensor, start: torch.Tensor,
                   band: int, lengths: torch.Tensor, half: int, wrap: bool, scale: float) -> torch.Tensor:
    """One chunk of query blocks [B, H, nb, block, D] against their key bands."""
    n = k.shape[2]
    position = torch.arange(band, device=qb.device, dtype=torch.int64)
    length = lengths[:, None, None]
    index = start[..., None] + position  # [B, nb, band]
    if wrap:
        in_band = (position < length).expand_as(index)  # the first L positions cover every key once
        index = torch.remainder(index, length)
    else:
        in_band = (index >= 0) & (index < length)
        index = torch.clamp(index, min=0, max=n - 1)
    distance = (index[:, :, None, :] - c[..., None]).abs()  # [B, nb, block, band]
    if wrap:
        distance = torch.minimum(distance, length[..., None] - distance)
    allowed = in_band[:, :, None, :] & (distance <= half)
    kg, vg = _gather_keys(k, index), _gather_keys(v, index)  # [B, H, nb, band, D]
    scores = (qb * scale) @ kg.transpose(-1, -2)  # [B, H, nb, block, band]
    probs = torch.softmax(_at_least_fp32(scores).masked_fill(~allowed[:, None], float("-inf")), dim=-1)
    return probs.to(vg.dtype) @ vg


def _dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centers: torch.Tensor, window: int,
           wrap: bool, key_lengths: torch.Tensor | None, scale: float) -> torch.Tensor:
    """The reference: full [B, Q, N] window mask and dense SDPA, computed in at least fp32."""
    mask = window_mask(centers, k.shape[2], window, wrap, key_lengths)
    work = torch.promote_types(q.dtype, torch.float32)
    out = F.scaled_dot_product_attention(q.to(work), k.to(work), v.to(work), attn_mask=mask[:, None],
                                         scale=scale)
    return out.to(q.dtype)


@functools.cache
def _compiled_flex_attention() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)  # shapes change per event: automatic dynamic shapes after one


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centers: torch.Tensor, window: int,
          wrap: bool, key_lengths: torch.Tensor | None, scale: float) -> torch.Tensor:
    """FlexAttention with a block mask from the window rule (compiled on CUDA; unfused eager on CPU)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    b, _, nq, _ = q.shape
    n = k.shape[2]
    half = window // 2
    lengths = _key_lengths_or_n(key_lengths, b, n, q.device)
    c = _clamped_centers(centers, lengths)

    def mask_mod(bi: torch.Tensor, hi: torch.Tensor, qi: torch.Tensor, kj: torch.Tensor) -> torch.Tensor:
        length = lengths[bi]
        distance = (kj - c[bi, qi]).abs()
        if wrap:
            distance = torch.minimum(distance, length - distance)
        return (distance <= half) & (kj < length)

    block_mask = create_block_mask(mask_mod, b, None, nq, n, device=q.device, _compile=q.is_cuda)
    attend = _compiled_flex_attention() if q.is_cuda else flex_attention
    return attend(q, k, v, block_mask=block_mask, scale=scale)


def _triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centers: torch.Tensor, window: int,
            wrap: bool, key_lengths: torch.Tensor | None, scale: float) -> torch.Tensor:
    """The block-sparse Triton kernel (CUDA); backward recomputes through the gathered path."""
    from trackrt.plugins.lsca.triton_ops import lsca_triton

    return lsca_triton(q, k, v, centers, window, wrap, scale, key_lengths)


_BACKEND_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "dense": _dense,
    "gathered": _gathered,
    "flex": _flex,
    "triton": _triton,
}


@functools.cache
def triton_available() -> bool:
    """True when Triton and a CUDA device are present (the triton backend can run)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def _auto_backend(q: torch.Tensor, num_keys: int, sliding: bool) -> str:
    if q.is_cuda and q.dtype in (torch.float32, torch.float16, torch.bfloat16) and triton_available():
        return "triton"
    return "blocked" if sliding or 2 * q.shape[2] >= num_keys else "gathered"


def _emit_lsca_node(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centers: torch.Tensor, window: int,
                    wrap: bool, key_lengths: torch.Tensor | None, scale: float | None) -> torch.Tensor:
    """The bare `trackrt::LocalStridedCrossAttention` node (DESIGN §5) for the TensorRT plugin."""
    if key_lengths is None:  # always five inputs: the TensorRT plugin's signature has no optional input
        key_lengths = torch.full_like(centers[:, 0], k.shape[2])
    inputs = [q, k, v, centers.to(torch.int32), key_lengths.to(torch.int32)]
    attrs = {"window": int(window), "wrap": int(bool(wrap)), "scale": float(scale or 0.0)}
    return torch.onnx.ops.symbolic(LSCA_OP_NAME, inputs, attrs, dtype=q.dtype, shape=q.shape,
                                   version=LSCA_OP_VERSION)


def local_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centers: torch.Tensor,
                           window: int, wrap: bool = True, key_lengths: torch.Tensor | None = None,
                           scale: float | None = None, backend: Backend = "auto") -> torch.Tensor:
    """LSCA: q [B,H,Q,D] attends to k/v [B,H,N,D] within window/2 of its centre (centers [B,Q] or [Q])."""
    return _local_window_attention(q, k, v, centers, window, wrap, key_lengths, scale, backend, sliding=False)


def sliding_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int,
                             wrap: bool = True, key_lengths: torch.Tensor | None = None,
                             scale: float | None = None, backend: Backend = "auto") -> torch.Tensor:
    """The encoder's sliding window: LSCA with centres = arange(N) (q, k, v all [B, H, N, D])."""
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"sliding_window_attention: query length {q.shape[2]} must equal key length "
                         f"{k.shape[2]}")
    centers = torch.arange(q.shape[2], device=q.device, dtype=torch.int64)[None].expand(q.shape[0], -1)
    return _local_window_attention(q, k, v, centers, window, wrap, key_lengths, scale, backend, sliding=True)


def _local_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centers: torch.Tensor,
                            window: int, wrap: bool, key_lengths: torch.Tensor | None, scale: float | None,
                            backend: str, sliding: bool) -> torch.Tensor:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    centers = _check_inputs(q, k, v, centers, key_lengths, window)
    if torch.onnx.is_in_onnx_export():
        if current_export_mode() == "plugin":
            return _emit_lsca_node(q, k, v, centers, window, wrap, key_lengths, scale)
        backend = "blocked" if sliding else "gathered"
    elif backend == "auto":
        backend = _auto_backend(q, k.shape[2], sliding)
    s = _scale_value(scale, q.shape[-1])
    if backend == "blocked":
        if sliding:  # static band, so it also exports with dynamic N
            band, block = window + _BLOCKED_QUERY_BLOCK, _BLOCKED_QUERY_BLOCK
        else:
            band, block = None, _query_block(q.shape[2], k.shape[2])
        return _blocked(q, k, v, centers, window, wrap, key_lengths, s, band=band, block=block)
    return _BACKEND_FUNCTIONS[backend](q, k, v, centers, window, wrap, key_lengths, s)


class LocalStridedCrossAttention(nn.Module):
    """Multi-head cross-attention from queries [B,Q,E] to hits [B,N,E], each query limited to its window."""

    def __init__(self, dim: int, num_heads: int, window: int, wrap: bool = True, bias: bool = False,
                 backend: Backend = "auto") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        _check_window(window)
        self.num_heads, self.window, self.wrap, self.backend = num_heads, window, wrap, backend
        self.q_proj = nn.Linear(dim, dim, bias=bias)
        self.kv_proj = nn.Linear(dim, 2 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, queries: torch.Tensor, hits: torch.Tensor, centers: torch.Tensor | None = None,
                key_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Centres default to the strided rule round(i·N/Q); returns [B, Q, E]."""
        b, nq, n = queries.shape[0], queries.shape[1], hits.shape[1]
        if centers is None:
            centers = strided_centers(nq, n, device=queries.device)[None].expand(b, -1)
        q = split_heads(self.q_proj(queries), self.num_heads)
        k, v = (split_heads(t, self.num_heads) for t in self.kv_proj(hits).chunk(2, dim=-1))
        out = local_window_attention(q, k, v, centers, self.window, self.wrap, key_lengths,
                                     backend=self.backend)
        return self.out_proj(merge_heads(out))


class SlidingWindowSelfAttention(nn.Module):
    """Multi-head self-attention over a φ-sorted sequence [B,N,E]; each hit sees ±window/2 neighbours."""

    def __init__(self, dim: int, num_heads: int, window: int, wrap: bool = True, bias: bool = False,
                 backend: Backend = "auto") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        _check_window(window)
        self.num_heads, self.window, self.wrap, self.backend = num_heads, window, wrap, backend
        self.qkv_proj = nn.Linear(dim, 3 * dim, bias=bias)
        self.out_proj = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, key_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, N, E] -> [B, N, E]; key_lengths [B] marks trailing padding hits."""
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv_proj(x).chunk(3, dim=-1))
        out = sliding_window_attention(q, k, v, self.window, self.wrap, key_lengths, backend=self.backend)
        return self.out_proj(merge_heads(out))


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, L, E] -> [B, H, L, E/H]."""
    b, length, e = x.shape
    return x.reshape(b, length, num_heads, e // num_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """[B, H, L, D] -> [B, L, H·D]."""
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)
