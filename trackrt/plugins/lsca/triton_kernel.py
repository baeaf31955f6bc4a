"""Block-sparse Triton kernel for `trackrt::LocalStridedCrossAttention` (needs Triton; launched from CUDA).

One program (grid: query blocks x heads x batch) handles BLOCK_Q consecutive queries of one (batch,
head).  It loads only the key range [min(c) - w/2, max(c) + w/2] that the block's windows cover
(modulo the key length when wrapped, at most L positions so every key is visited once), in tiles of
BLOCK_N keys, and keeps an online softmax in fp32.  With non-decreasing centres the range is about
BLOCK_Q·N/Q + w keys; arbitrary centres stay correct and only widen the range.  Tensors are
contiguous [B, H, L, D]; centres [B, Q] and key lengths [B] are int32.  The argument order (inputs,
integer scalars, output) is the calling convention of TensorRT's AOT plugins, so the same kernel is
compiled to PTX for the plugin.
"""

# No `from __future__ import annotations` here: Triton reads the `tl.constexpr` annotations at runtime.
import inspect
from dataclasses import dataclass

from trackrt.plugins.lsca.kernel_config import MAX_AOT_SHARED_BYTES, KernelConfig, kernel_constexprs
from trackrt.plugins.lsca.ptx import drop_unused_trailing_params

try:
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
except ImportError as exc:  # pragma: no cover - exercised only where Triton is absent
    raise ImportError(
        "The LSCA Triton kernel needs Triton (and a CUDA GPU to run it): pip install 'trackrt[gpu]'"
    ) from exc


_LAUNCH_ARG_COUNT = 9  # 5 input pointers, 3 integer scalars, 1 output pointer


@triton.jit
def lsca_forward_kernel(
    query_ptr,
    key_ptr,
    value_ptr,
    centers_ptr,
    lengths_ptr,
    num_heads,
    num_queries,
    num_keys,
    out_ptr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
    HALF_WINDOW: tl.constexpr,
    WRAP: tl.constexpr,
    QK_SCALE_LOG2: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """out[b, h, i] = softmax over window keys of (q·k)·scale, times v; fp32 statistics."""
    block = tl.program_id(0)
    batch = tl.program_id(2)
    batch_head = batch * num_heads + tl.program_id(1)

    rows = block * BLOCK_Q + tl.arange(0, BLOCK_Q)
    row_ok = rows < num_queries
    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < HEAD_DIM

    length = tl.load(lengths_ptr + batch)
    length = tl.minimum(tl.maximum(length, 1), num_keys)
    centers = tl.load(centers_ptr + batch.to(tl.int64) * num_queries + rows, mask=row_ok, other=0)
    centers = tl.minimum(tl.maximum(centers, 0), length - 1)
    lowest = tl.min(tl.where(row_ok, centers, num_keys), axis=0)
    highest = tl.max(tl.where(row_ok, centers, -1), axis=0)
    if WRAP:
        first = lowest - HALF_WINDOW
        count = tl.minimum(highest - lowest + 2 * HALF_WINDOW + 1, length)
    else:
        first = tl.maximum(lowest - HALF_WINDOW, 0)
        count = tl.minimum(highest + HALF_WINDOW, length - 1) - first + 1

    head_base = batch_head.to(tl.int64)
    q_offsets = (head_base * num_queries + rows[:, None]) * HEAD_DIM + dims[None, :]
    q_mask = row_ok[:, None] & dim_ok[None, :]
    q = tl.load(query_ptr + q_offsets, mask=q_mask, other=0.0)
    key_base = head_base * num_keys

    m_i = tl.full([BLOCK_Q], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_Q], dtype=tl.float32)
    acc = tl.zeros([BLOCK_Q, BLOCK_D], dtype=tl.float32)
    for start in range(0, count, BLOCK_N):
        positions = start + tl.arange(0, BLOCK_N)
        position_ok = positions < count
        keys = first + positions
        if WRAP:
            keys = ((keys % length) + length) % length
        kv_offsets = (key_base + keys[:, None]) * HEAD_DIM + dims[None, :]
        kv_mask = position_ok[:, None] & dim_ok[None, :]
        k = tl.load(key_ptr + kv_offsets, mask=kv_mask, other=0.0)
        v = tl.load(value_ptr + kv_offsets, mask=kv_mask, other=0.0)

        scores = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * QK_SCALE_LOG2
        distance = tl.abs(keys[None, :] - centers[:, None])
        if WRAP:
            distance = tl.minimum(distance, length - distance)
        allowed = position_ok[None, :] & (distance <= HALF_WINDOW)
        scores = tl.where(allowed, scores, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(scores - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        weighted = tl.dot(p.to(value_ptr.dtype.element_ty), v, input_precision=DOT_PRECISION)
        acc = acc * alpha[:, None] + weighted
        m_i = m_new

    out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
    tl.store(out_ptr + q_offsets, out.to(out_ptr.dtype.element_ty), mask=q_mask)


@dataclass(frozen=True)
class PTXKernel:
    """A compiled kernel as TensorRT's AOT plugins take it."""

    name: str
    ptx: str
    num_warps: int
    shared_mem: int


def compile_lsca_ptx(dtype: str, head_dim: int, window: int, wrap: bool | int, scale: float,
                     config: KernelConfig, arch: int | None = None) -> PTXKernel:
    """Compile the kernel for one dtype ("fp32" | "fp16" | "bf16"), head dim and window to PTX.

    ``arch`` is the CUDA compute capability as an int (90 for H100); None targets the current GPU.
    """
    constexprs = kernel_constexprs(config, head_dim, window, wrap, scale, dtype)
    types = {name: f"*{dtype}" for name in ("query_ptr", "key_ptr", "value_ptr", "out_ptr")}
    types.update({"centers_ptr": "*i32", "lengths_ptr": "*i32", "num_heads": "i32", "num_queries": "i32",
                  "num_keys": "i32"})
    target = None if arch is None else GPUTarget("cuda", arch, 32)
    compiled = triton.compile(_ast_source(types, constexprs), target=target,
                              options={"num_warps": config.num_warps, "num_stages": config.num_stages})
    metadata = compiled.metadata
    if getattr(metadata, "global_scratch_size", 0) or getattr(metadata, "profile_scratch_size", 0):
        raise RuntimeError("the LSCA kernel compiled with a global scratch buffer, which TensorRT's AOT "
                           "launch does not provide; use the JIT plugin path with this Triton version")
    if metadata.shared > MAX_AOT_SHARED_BYTES:
        raise RuntimeError(f"the LSCA kernel needs {metadata.shared} B of shared memory, over the "
                           f"{MAX_AOT_SHARED_BYTES} B an AOT plugin launch may use; pick a smaller tactic")
    ptx = drop_unused_trailing_params(compiled.asm["ptx"], metadata.name, _LAUNCH_ARG_COUNT)
    return PTXKernel(name=metadata.name, ptx=ptx, num_warps=metadata.num_warps, shared_mem=metadata.shared)


def _ast_source(types: dict[str, str], constexprs: dict[str, object]) -> object:
    """`triton.compiler.ASTSource` for the kernel, for Triton >= 3.2 (named signature) and 3.0/3.1."""
    fn = lsca_forward_kernel
    parameters = inspect.signature(triton.compiler.ASTSource.__init__).parameters
    if "constexprs" in parameters:
        signature = {name: types.get(name, "constexpr") for name in fn.arg_names}
        pointers = [fn.arg_names.index(name) for name, kind in types.items() if kind.startswith("*")]
        attrs = {(index,): [["tt.divisibility", 16]] for index in pointers}
        return triton.compiler.ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)
    signature = {fn.arg_names.index(name): kind for name, kind in types.items()}
    constants = {fn.arg_names.index(name): value for name, value in constexprs.items()}
    return triton.compiler.ASTSource(fn=fn, signature=signature, constants=constants)
