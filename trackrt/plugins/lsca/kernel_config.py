"""Tile sizes and compile-time constants of the LSCA Triton kernel (pure Python: no torch, no Triton)."""

from __future__ import annotations

import math
from dataclasses import dataclass

LOG2_E = 1.4426950408889634
SUPPORTED_DTYPES = ("fp32", "fp16", "bf16")
MAX_AOT_SHARED_BYTES = 48 * 1024  # static shared memory a kernel launched without opt-in may use


@dataclass(frozen=True)
class KernelConfig:
    """Queries per program (block_q), keys per tile (block_n), and launch settings."""

    block_q: int
    block_n: int
    num_warps: int = 4
    num_stages: int = 2

    def __post_init__(self) -> None:
        for name in ("block_q", "block_n"):
            value = getattr(self, name)
            if value < 16 or value & (value - 1):
                raise ValueError(f"KernelConfig.{name} must be a power of two >= 16, got {value}")


# TensorRT tactics (the plugin's autotune advertises these ids) and the JIT heuristic's choices.
TACTICS: dict[int, KernelConfig] = {
    1: KernelConfig(block_q=16, block_n=64),
    2: KernelConfig(block_q=32, block_n=64),
    3: KernelConfig(block_q=64, block_n=64),
}


def block_d_for(head_dim: int) -> int:
    """The head dimension padded to a power of two >= 16 (what tl.dot needs)."""
    if head_dim < 1:
        raise ValueError(f"head dimension must be >= 1, got {head_dim}")
    return max(16, 1 << (head_dim - 1).bit_length())


def choose_config(num_queries: int, num_keys: int, window: int) -> KernelConfig:
    """Pick the tactic whose key span per query is smallest without starving the tensor cores.

    A block of q queries with stride s = N/Q spans about q·s + w + 1 keys; sparse cross-attention
    (large s) wants small blocks, the encoder's sliding window (s = 1, large w) wants large ones.
    """
    stride = num_keys / max(num_queries, 1)
    if stride >= 4:
        return TACTICS[1]
    if stride >= 1.5 or window < 32:
        return TACTICS[2]
    return TACTICS[3]


def config_for_tactic(tactic: int | None, num_queries: int, num_keys: int, window: int) -> KernelConfig:
    """The tactic's config, or the heuristic's when the tactic is unknown (0 or None)."""
    if tactic in TACTICS:
        return TACTICS[tactic]
    return choose_config(num_queries, num_keys, window)


def kernel_constexprs(config: KernelConfig, head_dim: int, window: int, wrap: bool | int, scale: float,
                      dtype: str) -> dict[str, object]:
    """The kernel's constexpr arguments; scale 0 means 1/sqrt(head_dim)."""
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"LSCA kernel dtype must be one of {SUPPORTED_DTYPES}, got {dtype!r}")
    if window < 0 or window % 2:
        raise ValueError(f"window must be a non-negative even int, got {window}")
    effective_scale = 1.0 / math.sqrt(head_dim) if scale == 0.0 else float(scale)
    return {
        "HEAD_DIM": head_dim,
        "BLOCK_D": block_d_for(head_dim),
        "BLOCK_Q": config.block_q,
        "BLOCK_N": config.block_n,
        "HALF_WINDOW": window // 2,
        "WRAP": bool(wrap),
        "QK_SCALE_LOG2": effective_scale * LOG2_E,
        "DOT_PRECISION": "ieee" if dtype == "fp32" else "tf32",
    }


def key_span(config: KernelConfig, num_queries: int, num_keys: int, window: int) -> int:
    """Keys one program visits with strided centres (tiles rounded up): the kernel's work per block."""
    stride = num_keys / max(num_queries, 1)
    span = min(math.ceil((config.block_q - 1) * stride) + window + 1, num_keys)
    return math.ceil(span / config.block_n) * config.block_n
