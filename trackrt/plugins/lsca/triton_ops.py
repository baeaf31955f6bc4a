"""PyTorch entry points for the LSCA Triton kernel: launch into a tensor, and an autograd Function.

The forward pass runs the block-sparse kernel; the backward pass recomputes the attention with the
PyTorch gathered/blocked backend under autograd (exact, memory O(Q·w)), so training can use the kernel.
"""

from __future__ import annotations

import torch

from trackrt.plugins.lsca.kernel_config import KernelConfig, choose_config, kernel_constexprs

_TORCH_TO_KERNEL_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def launch_lsca_kernel(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, centers: torch.Tensor,
                       key_lengths: torch.Tensor, window: int, wrap: bool | int, scale: float,
                       out: torch.Tensor, config: KernelConfig | None = None) -> torch.Tensor:
    """Run the kernel on contiguous CUDA tensors (centres [B, Q] and key_lengths [B] int32) into `out`."""
    from trackrt.plugins.lsca import triton_kernel

    b, h, nq, d = query.shape
    n = key.shape[2]
    if nq == 0:
        return out
    config = config or choose_config(nq, n, window)
    constexprs = kernel_constexprs(config, d, window, wrap, scale, _TORCH_TO_KERNEL_DTYPE[query.dtype])
    grid = (triton_kernel.triton.cdiv(nq, config.block_q), h, b)
    triton_kernel.lsca_forward_kernel[grid](
        query, key, value, centers, key_lengths, h, nq, n, out,
        num_warps=config.num_warps, num_stages=config.num_stages, **constexprs,
    )  # fmt: skip
    return out


def lsca_forward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, centers: torch.Tensor,
                 window: int, wrap: bool | int, scale: float | None = None,
                 key_lengths: torch.Tensor | None = None, config: KernelConfig | None = None) -> torch.Tensor:
    """Checked forward pass: validates device/dtype/shapes, makes inputs contiguous, returns a new tensor."""
    from trackrt.plugins.lsca import triton_kernel  # noqa: F401  (clear ImportError without Triton)

    for name, t in (("query", query), ("key", key), ("value", value)):
        if not t.is_cuda:
            raise ValueError(f"the LSCA Triton kernel needs CUDA tensors; {name} is on {t.device}")
        if t.dtype not in _TORCH_TO_KERNEL_DTYPE:
            raise TypeError(f"the LSCA Triton kernel takes float32/float16/bfloat16; {name} is {t.dtype}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be [B, H, L, D], got shape {tuple(t.shape)}")
    if key.dtype != query.dtype or value.dtype != query.dtype:
        raise TypeError(f"query, key and value must share a dtype, got {query.dtype}, {key.dtype}, "
                        f"{value.dtype}")
    b, _, nq, _ = query.shape
    n = key.shape[2]
    if centers.dim() == 1:
        centers = centers[None].expand(b, -1)
    if tuple(centers.shape) != (b, nq):
        raise ValueError(f"centers must be [B={b}, Q={nq}], got {tuple(centers.shape)}")
    if key_lengths is None:
        key_lengths = torch.full((b,), n, dtype=torch.int32, device=query.device)
    elif tuple(key_lengths.shape) != (b,):
        raise ValueError(f"key_lengths must be [B={b}], got {tuple(key_lengths.shape)}")
    out = torch.empty_like(query, memory_format=torch.contiguous_format)
    return launch_lsca_kernel(
        query.contiguous(), key.contiguous(), value.contiguous(),
        centers.to(device=query.device, dtype=torch.int32).contiguous(),
        key_lengths.to(device=query.device, dtype=torch.int32).contiguous(),
        window, wrap, 0.0 if scale is None else float(scale), out, config,
    )  # fmt: skip


class LSCATritonFunction(torch.autograd.Function):
    """Kernel forward; backward through the PyTorch gathered (or blocked, when Q >= N/2) backend."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, query: torch.Tensor, key: torch.Tensor,
                value: torch.Tensor, centers: torch.Tensor, key_lengths: torch.Tensor | None, window: int,
                wrap: bool, scale: float | None) -> torch.Tensor:
        ctx.save_for_backward(query, key, value, centers, key_lengths)
        ctx.window, ctx.wrap, ctx.scale = window, wrap, scale
        return lsca_forward(query, key, value, centers, window, wrap, scale, key_lengths)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_out: torch.Tensor) -> tuple:
        from trackrt.model.attention import local_window_attention

        query, key, value, centers, key_lengths = ctx.saved_tensors
        backend = "blocked" if 2 * query.shape[2] >= key.shape[2] else "gathered"
        needs = ctx.needs_input_grad[:3]
        leaves = [t.detach().requires_grad_(need) for t, need in zip((query, key, value), needs, strict=True)]
        with torch.enable_grad():
            out = local_window_attention(*leaves, centers, ctx.window, ctx.wrap, key_lengths, ctx.scale,
                                         backend=backend)
            wanted = [t for t in leaves if t.requires_grad]
            grads = iter(torch.autograd.grad(out, wanted, grad_out)) if wanted else iter(())
        return (*(next(grads) if t.requires_grad else None for t in leaves), None, None, None, None, None)


def lsca_triton(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, centers: torch.Tensor,
                window: int, wrap: bool, scale: float | None = None,
                key_lengths: torch.Tensor | None = None) -> torch.Tensor:
    """LSCA through the Triton kernel with autograd support; same arguments as the reference op."""
    return LSCATritonFunction.apply(query, key, value, centers, key_lengths, window, wrap, scale)
