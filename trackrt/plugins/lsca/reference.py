"""Numpy ground truth for `trackrt::LocalStridedCrossAttention` v1 (DESIGN §4.1 and §5); no torch needed.

Query i of batch b attends to key j iff j < L_b and d(j, c_bi) <= window/2, with d = |j - c| or, when
wrapped, min(|j - c|, L_b - |j - c|); L_b is ``key_lengths[b]`` (N when absent).  A centre at or beyond
L_b is clamped to L_b - 1, so every query attends to at least one real key.
"""

from __future__ import annotations

import math

import numpy as np

LSCA_DOMAIN = "trackrt"
LSCA_OP_TYPE = "LocalStridedCrossAttention"
LSCA_VERSION = 1

_FLOAT_DTYPES = (np.float16, np.float32, np.float64)
_QUERY_CHUNK_ELEMENTS = 1 << 24  # fp64 score elements per query chunk (128 MiB)


def strided_centers_np(num_queries: int, num_keys: int) -> np.ndarray:
    """Centres round(i·N/Q) with ties to even, clamped to N-1, as int64 [Q] (exact integer arithmetic)."""
    if num_queries < 0 or num_keys < 1:
        raise ValueError(f"strided_centers_np: need num_queries >= 0 and num_keys >= 1, got "
                         f"{num_queries}, {num_keys}")
    numerator = np.arange(num_queries, dtype=np.int64) * num_keys
    base, remainder = np.divmod(numerator, num_queries if num_queries else 1)
    twice = 2 * remainder
    round_up = (twice > num_queries) | ((twice == num_queries) & (base % 2 == 1))
    return np.minimum(base + round_up, num_keys - 1)


def window_mask_np(centers: np.ndarray, num_keys: int, window: int, wrap: bool | int,
                   key_lengths: np.ndarray | None = None) -> np.ndarray:
    """Bool [B, Q, N] (True = attend) for centres [B, Q] (or [Q]) under the §4.1 window rule."""
    _check_window(window)
    centers = np.asarray(centers)
    if centers.ndim == 1:
        centers = centers[None]
    lengths = _lengths(key_lengths, centers.shape[0], num_keys)
    length = lengths[:, None, None]
    c = np.minimum(centers.astype(np.int64), lengths[:, None] - 1)[..., None]
    j = np.arange(num_keys, dtype=np.int64)
    distance = np.abs(j - c)
    if wrap:
        distance = np.minimum(distance, length - distance)
    return (distance <= window // 2) & (j < length)


def lsca_reference(query: np.ndarray, key: np.ndarray, value: np.ndarray, centers: np.ndarray, window: int,
                   wrap: bool | int, scale: float = 0.0, key_lengths: np.ndarray | None = None) -> np.ndarray:
    """The op's output [B, H, Q, D] in the query's dtype, softmax and sums accumulated in fp64."""
    _check_tensors(query, key, value)
    b, h, nq, d = query.shape
    n = key.shape[2]
    centers = _check_centers(centers, b, nq, n)
    key_lengths = _check_key_lengths(key_lengths, b, n)
    _check_window(window)
    if wrap not in (0, 1):
        raise ValueError(f"wrap must be 0 or 1, got {wrap!r}")
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite (0 means 1/sqrt(D)), got {scale!r}")
    s = 1.0 / math.sqrt(d) if scale == 0.0 else float(scale)
    q64, k64, v64 = (x.astype(np.float64) for x in (query, key, value))
    out = np.empty((b, h, nq, d), dtype=np.float64)
    chunk = max(1, _QUERY_CHUNK_ELEMENTS // max(1, h * n))
    for bi in range(b):
        lengths = None if key_lengths is None else key_lengths[bi:bi + 1]
        for first in range(0, nq, chunk):
            rows = slice(first, first + chunk)
            allowed = window_mask_np(centers[bi, rows], n, window, wrap, lengths)[0]  # [q, N]
            scores = np.einsum("hqd,hnd->hqn", q64[bi, :, rows], k64[bi]) * s
            scores = np.where(allowed, scores, -np.inf)
            weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
            weights /= weights.sum(axis=-1, keepdims=True)
            out[bi, :, rows] = np.einsum("hqn,hnd->hqd", weights, v64[bi])
    return out.astype(query.dtype)


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0 or window % 2:
        raise ValueError(f"window must be a non-negative even int, got {window!r}")


def _check_tensors(query: np.ndarray, key: np.ndarray, value: np.ndarray) -> None:
    for name, x in (("query", query), ("key", key), ("value", value)):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"{name} must be 4-D [B, H, L, D], got shape {x.shape}")
        if x.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name} must be float16, float32 or float64, got {x.dtype}")
    b, h, _, d = query.shape
    for name, x in (("key", key), ("value", value)):
        if x.dtype != query.dtype:
            raise TypeError(f"{name} dtype {x.dtype} differs from query dtype {query.dtype}")
        if (x.shape[0], x.shape[1], x.shape[3]) != (b, h, d):
            raise ValueError(f"{name} must be [B={b}, H={h}, N, D={d}] like query, got {x.shape}")
    if key.shape[2] != value.shape[2]:
        raise ValueError(f"key and value must have the same N, got {key.shape[2]} and {value.shape[2]}")
    if key.shape[2] < 1:
        raise ValueError("key must hold at least one key (N >= 1)")


def _check_centers(centers: np.ndarray, batch: int, num_queries: int, num_keys: int) -> np.ndarray:
    centers = np.asarray(centers)
    if not np.issubdtype(centers.dtype, np.integer):
        raise TypeError(f"centers must be an integer array (int32 in the op), got {centers.dtype}")
    if centers.shape != (batch, num_queries):
        raise ValueError(f"centers must be [B={batch}, Q={num_queries}], got {centers.shape}")
    if centers.size and (centers.min() < 0 or centers.max() >= num_keys):
        raise ValueError(f"centers must lie in [0, N={num_keys}), got range "
                         f"[{centers.min()}, {centers.max()}]")
    return centers.astype(np.int64)


def _check_key_lengths(key_lengths: np.ndarray | None, batch: int, num_keys: int) -> np.ndarray | None:
    if key_lengths is None:
        return None
    key_lengths = np.asarray(key_lengths)
    if not np.issubdtype(key_lengths.dtype, np.integer):
        raise TypeError(f"key_lengths must be an integer array (int32 in the op), got {key_lengths.dtype}")
    if key_lengths.shape != (batch,):
        raise ValueError(f"key_lengths must be [B={batch}], got {key_lengths.shape}")
    if key_lengths.min() < 1 or key_lengths.max() > num_keys:
        raise ValueError(f"key_lengths must lie in [1, N={num_keys}], got {key_lengths.tolist()}")
    return key_lengths.astype(np.int64)


def _lengths(key_lengths: np.ndarray | None, batch: int, num_keys: int) -> np.ndarray:
    if key_lengths is None:
        return np.full(batch, num_keys, dtype=np.int64)
    return np.asarray(key_lengths, dtype=np.int64)
