"""The LSCA Triton kernel: tile configuration and PTX handling (CPU), Triton's interpreter and PTX
compilation (where Triton is installed), and the kernel on CUDA against the reference (`gpu`)."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from trackrt.plugins.lsca.kernel_config import (
    LOG2_E,
    TACTICS,
    KernelConfig,
    block_d_for,
    choose_config,
    config_for_tactic,
    kernel_constexprs,
    key_span,
)
from trackrt.plugins.lsca.ptx import drop_unused_trailing_params
from trackrt.plugins.lsca.reference import lsca_reference, strided_centers_np

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="Triton is not installed")


def test_kernel_config_rules():
    assert [block_d_for(d) for d in (1, 16, 17, 32, 64, 80)] == [16, 16, 32, 32, 64, 128]
    assert choose_config(1111, 10000, 64) == TACTICS[1]  # sparse cross-attention: small query blocks
    assert choose_config(10000, 10000, 512) == TACTICS[3]  # encoder sliding window: large blocks
    assert config_for_tactic(2, 10, 10, 4) == TACTICS[2]
    assert config_for_tactic(0, 1111, 10000, 64) == TACTICS[1]
    with pytest.raises(ValueError, match="block_q"):
        KernelConfig(block_q=24, block_n=64)
    with pytest.raises(ValueError, match="head dimension"):
        block_d_for(0)


def test_kernel_constexprs():
    c = kernel_constexprs(TACTICS[1], 32, 128, True, 0.0, "fp16")
    assert c["HALF_WINDOW"] == 64 and c["WRAP"] is True and c["BLOCK_D"] == 32
    assert math.isclose(c["QK_SCALE_LOG2"], LOG2_E / math.sqrt(32))
    assert c["DOT_PRECISION"] == "tf32"
    assert kernel_constexprs(TACTICS[1], 8, 4, 0, 0.5, "fp32")["DOT_PRECISION"] == "ieee"
    assert math.isclose(kernel_constexprs(TACTICS[1], 8, 4, 0, 0.5, "fp32")["QK_SCALE_LOG2"], 0.5 * LOG2_E)
    with pytest.raises(ValueError, match="dtype"):
        kernel_constexprs(TACTICS[1], 8, 4, 0, 0.0, "fp64")
    with pytest.raises(ValueError, match="window"):
        kernel_constexprs(TACTICS[1], 8, 5, 0, 0.0, "fp32")


def test_key_span_covers_every_window_of_a_block():
    for nq, n, window in [(1111, 10000, 64), (6667, 60000, 128), (5000, 5000, 512), (3, 7, 64)]:
        centers = strided_centers_np(nq, n)
        for config in TACTICS.values():
            blocks = range(0, nq, config.block_q)
            needed = max(centers[min(i + config.block_q, nq) - 1] - centers[i] for i in blocks)
            assert key_span(config, nq, n, window) >= min(needed + window + 1, n)


FAKE_PTX = """
.visible .entry k(
\t.param .u64 .ptr .global .align 1 k_param_0,
\t.param .u32 k_param_1,
\t.param .u64 .ptr .global .align 1 k_param_2,
\t.param .u64 .ptr .global .align 1 k_param_3
)
{
\tld.param.b64 %rd1, [k_param_0];
\tld.param.b32 %r1, [k_param_1];
\t{body}
}
"""


def test_drop_unused_trailing_params():
    ptx = FAKE_PTX.replace("{body}", "ret;")
    stripped = drop_unused_trailing_params(ptx, "k", 2)
    assert "k_param_2" not in stripped and "k_param_3" not in stripped
    assert "k_param_0,\n\t.param .u32 k_param_1\n)" in stripped
    assert drop_unused_trailing_params(ptx, "k", 4).count("\t.param") == 4
    with pytest.raises(RuntimeError, match="k_param_3"):
        drop_unused_trailing_params(FAKE_PTX.replace("{body}", "ld.param.b64 %rd2, [k_param_3];"), "k", 2)
    with pytest.raises(RuntimeError, match="not found"):
        drop_unused_trailing_params(ptx, "other", 2)
    with pytest.raises(RuntimeError, match="expected at least"):
        drop_unused_trailing_params(ptx, "k", 5)


INTERPRETER_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np, torch
    from trackrt.plugins.lsca.kernel_config import TACTICS
    from trackrt.plugins.lsca.reference import lsca_reference, strided_centers_np
    from trackrt.plugins.lsca.triton_ops import launch_lsca_kernel
    g = torch.Generator().manual_seed(0)
    errors = []
    for b, h, nq, n, d, w, wrap, lengths, monotone, tactic in json.loads(sys.argv[1]):
        q, k, v = (torch.randn(b, h, s, d, generator=g) for s in (nq, n, n))
        if monotone:
            c = torch.from_numpy(np.broadcast_to(strided_centers_np(nq, n), (b, nq)).copy())
        else:
            c = torch.randint(0, n, (b, nq), generator=g)
        kl = torch.randint(1, n + 1, (b,), generator=g) if lengths else torch.full((b,), n)
        out = torch.empty_like(q)
        launch_lsca_kernel(q, k, v, c.int(), kl.int(), w, wrap, 0.0, out, TACTICS[tactic])
        ref = lsca_reference(*(t.double().numpy() for t in (q, k, v)), c.numpy().astype(np.int32), w, wrap,
                             0.0, kl.numpy().astype(np.int32) if lengths else None)
        errors.append(float(np.abs(out.double().numpy() - ref).max()))
    print(json.dumps(errors))
    """
)

INTERPRETER_CASES = [  # b, h, q, n, d, window, wrap, key_lengths, monotone centres, tactic
    (1, 2, 11, 100, 8, 16, 1, 0, 1, 1), (2, 2, 33, 300, 16, 64, 1, 1, 1, 2),
    (2, 1, 40, 150, 8, 8, 0, 1, 0, 3), (1, 1, 1, 50, 32, 10, 1, 0, 1, 1),
    (1, 2, 70, 70, 8, 12, 1, 0, 1, 3), (2, 2, 130, 130, 4, 20, 0, 1, 1, 2),
    (1, 2, 9, 6, 8, 64, 1, 0, 0, 1), (2, 2, 9, 6, 8, 64, 0, 1, 1, 1),
    (1, 1, 17, 29, 8, 0, 1, 0, 0, 2), (1, 2, 200, 50, 8, 4, 1, 0, 1, 3),
]


@needs_triton
def test_kernel_in_triton_interpreter_matches_reference():
    """Runs the real kernel source on CPU through TRITON_INTERPRET=1 (no GPU needed)."""
    import json

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", INTERPRETER_SCRIPT, json.dumps(INTERPRETER_CASES)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(errors) == len(INTERPRETER_CASES) and max(errors) < 1e-5, errors


@needs_triton
@pytest.mark.parametrize("dtype", ["fp32", "fp16"])
def test_compiles_to_ptx_with_the_aot_signature(dtype):
    from trackrt.plugins.lsca.triton_kernel import compile_lsca_ptx

    kernel = compile_lsca_ptx(dtype, 32, 128, 1, 0.0, TACTICS[1], arch=90)
    entry = kernel.ptx[kernel.ptx.index(f".entry {kernel.name}("):]
    declaration = entry[:entry.index(")")]
    assert declaration.count(".param") == 9  # 5 input pointers, 3 int32 scalars, 1 output pointer
    assert declaration.count(".param .u32") == 3
    assert kernel.num_warps * 32 == 128 and 0 < kernel.shared_mem <= 48 * 1024


torch = pytest.importorskip("torch")


def test_autograd_wrapper_backward_matches_dense(monkeypatch):
    """The Function's backward (recompute through PyTorch) on CPU, with the kernel swapped for `gathered`."""
    from trackrt.model.attention import local_window_attention
    from trackrt.plugins.lsca import triton_ops

    def forward_on_cpu(q, k, v, centers, window, wrap, scale=None, key_lengths=None, config=None):
        return local_window_attention(q, k, v, centers, window, wrap, key_lengths, scale, backend="gathered")

    monkeypatch.setattr(triton_ops, "lsca_forward", forward_on_cpu)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, size, 8, generator=g, dtype=torch.float64) for size in (12, 50, 50))
    centers = torch.from_numpy(np.broadcast_to(strided_centers_np(12, 50), (2, 12)).copy())
    lengths = torch.tensor([50, 31])
    weights = torch.randn(2, 2, 12, 8, generator=g, dtype=torch.float64)
    for needs in [(True, True, True), (False, True, False)]:
        grads = {}
        for name in ("dense", "wrapper"):
            leaves = [t.clone().requires_grad_(need) for t, need in zip((q, k, v), needs, strict=True)]
            if name == "dense":
                out = local_window_attention(*leaves, centers, 10, True, lengths, backend="dense")
            else:
                out = triton_ops.lsca_triton(*leaves, centers, 10, True, None, lengths)
            (out * weights).sum().backward()
            grads[name] = [t.grad for t in leaves]
        for expected, got, need in zip(grads["dense"], grads["wrapper"], needs, strict=True):
            assert (got is None) == (not need)
            if need:
                torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-8)


gpu = pytest.mark.skipif(not (HAS_TRITON and torch.cuda.is_available()), reason="needs CUDA and Triton")


def cuda_case(b, h, nq, n, d, dtype, centers="strided", lengths=False, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    q, k, v = (torch.randn(b, h, s, d, generator=g, device="cuda", dtype=dtype) for s in (nq, n, n))
    if centers == "strided":
        c = torch.from_numpy(np.broadcast_to(strided_centers_np(nq, n), (b, nq)).copy()).cuda()
    else:
        c = torch.randint(0, n, (b, nq), generator=g, device="cuda")
    kl = torch.randint(1, n + 1, (b,), generator=g, device="cuda") if lengths else None
    return q, k, v, c, kl


def reference_of(q, k, v, c, window, wrap, kl):
    q64, k64, v64 = (t.double().cpu().numpy() for t in (q, k, v))
    lengths = None if kl is None else kl.cpu().numpy().astype(np.int32)
    out = lsca_reference(q64, k64, v64, c.cpu().numpy().astype(np.int32), window, int(wrap), 0.0, lengths)
    return torch.from_numpy(out)


GPU_CASES = [
    (1, 8, 1111, 10000, 32, 64, True, "strided", False),
    (2, 4, 333, 3000, 32, 128, False, "strided", True),
    (1, 2, 1000, 1000, 32, 512, True, "strided", False),
    (2, 2, 257, 1001, 16, 64, True, "random", True),
    (1, 2, 1, 77, 64, 16, True, "strided", False),
    (1, 2, 20, 40, 32, 128, True, "strided", False),
]


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-5), ("float16", 2e-3), ("bfloat16", 2e-2)])
@pytest.mark.parametrize(("b", "h", "nq", "n", "d", "window", "wrap", "centers", "lengths"), GPU_CASES)
def test_kernel_matches_reference_on_gpu(dtype, tol, b, h, nq, n, d, window, wrap, centers, lengths):
    from trackrt.plugins.lsca.triton_ops import lsca_triton

    q, k, v, c, kl = cuda_case(b, h, nq, n, d, getattr(torch, dtype), centers, lengths)
    out = lsca_triton(q, k, v, c, window, wrap, None, kl)
    assert out.dtype == q.dtype and out.shape == q.shape
    expected = reference_of(q, k, v, c, window, wrap, kl)
    torch.testing.assert_close(out.double().cpu(), expected, atol=tol, rtol=tol)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("tactic", sorted(TACTICS))
def test_every_tactic_agrees_on_gpu(tactic):
    from trackrt.plugins.lsca.triton_ops import lsca_forward

    q, k, v, c, kl = cuda_case(2, 4, 500, 4500, 32, torch.float32, "strided", True)
    out = lsca_forward(q, k, v, c, 64, True, None, kl, TACTICS[tactic])
    expected = reference_of(q, k, v, c, 64, True, kl)
    torch.testing.assert_close(out.double().cpu(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@gpu
def test_kernel_matches_flex_attention_fp16():
    from trackrt.model.attention import local_window_attention

    q, k, v, c, _ = cuda_case(1, 8, 2222, 20000, 32, torch.float16)
    out = local_window_attention(q, k, v, c, 128, True, backend="triton")
    flex = local_window_attention(q, k, v, c, 128, True, backend="flex")
    torch.testing.assert_close(out, flex, atol=2e-3, rtol=2e-3)


@pytest.mark.gpu
@gpu
def test_kernel_gradients_match_dense():
    from trackrt.model.attention import local_window_attention

    q, k, v, c, kl = cuda_case(1, 2, 100, 900, 32, torch.float32, "strided", True)
    grads = {}
    for backend in ("dense", "triton"):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = local_window_attention(*leaves, c, 64, True, kl, backend=backend)
        (out * torch.arange(out.numel(), device="cuda").reshape(out.shape).sin()).sum().backward()
        grads[backend] = [t.grad for t in leaves]
    for expected, got in zip(grads["dense"], grads["triton"], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
