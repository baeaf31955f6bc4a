"""PyTorch attention backends against the numpy LSCA reference (DESIGN §4.1/§5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trackrt.model import attention
from trackrt.model.attention import (
    LocalStridedCrossAttention,
    SlidingWindowSelfAttention,
    local_window_attention,
    lsca_export_mode,
    masked_attention,
    sliding_window_attention,
    strided_centers,
    window_mask,
)
from trackrt.plugins.lsca.reference import lsca_reference, strided_centers_np, window_mask_np

pytestmark = pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")

CPU_BACKENDS = ("dense", "gathered", "blocked", "flex")


def make_case(seed, b, h, nq, n, d, centers="random", lengths=False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, size, d, generator=g, dtype=dtype) for size in (nq, n, n))
    if centers == "strided":
        c = strided_centers(nq, n)[None].expand(b, -1).contiguous()
    elif centers == "arange":
        c = torch.arange(n)[None].expand(b, -1).contiguous()
    else:
        c = torch.randint(0, n, (b, nq), generator=g)
    key_lengths = torch.randint(1, n + 1, (b,), generator=g) if lengths else None
    return q, k, v, c, key_lengths


def reference(q, k, v, c, window, wrap, key_lengths=None, scale=0.0):
    lengths = None if key_lengths is None else key_lengths.numpy()
    q64, k64, v64 = (t.double().numpy() for t in (q, k, v))
    out = lsca_reference(q64, k64, v64, c.numpy().astype(np.int32), window, int(wrap), scale, lengths)
    return torch.from_numpy(out)


CASES = [
    # (b, h, nq, n, d, window, wrap, centres, lengths)
    (1, 2, 11, 100, 8, 16, True, "strided", False),
    (1, 2, 11, 100, 8, 16, False, "strided", False),
    (2, 2, 33, 300, 16, 64, True, "strided", True),
    (2, 1, 40, 150, 8, 8, False, "random", True),
    (1, 3, 1, 50, 8, 10, True, "strided", False),
    (1, 2, 70, 70, 8, 12, True, "arange", False),
    (2, 2, 130, 130, 4, 20, False, "arange", True),
    (1, 2, 9, 6, 8, 64, True, "random", False),
    (2, 2, 9, 6, 8, 64, False, "strided", True),
    (1, 1, 17, 29, 8, 0, True, "random", False),
    (1, 2, 200, 50, 8, 4, True, "strided", False),
]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(("b", "h", "nq", "n", "d", "window", "wrap", "centers", "lengths"), CASES)
def test_backend_matches_reference(backend, b, h, nq, n, d, window, wrap, centers, lengths):
    q, k, v, c, kl = make_case(nq * 31 + n, b, h, nq, n, d, centers, lengths)
    out = local_window_attention(q, k, v, c, window, wrap, kl, backend=backend)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out.double(), reference(q, k, v, c, window, wrap, kl), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("n", "window", "wrap", "lengths"), [(150, 16, True, False), (150, 64, False, True),
                                                              (37, 512, True, False), (200, 32, True, True)])
def test_sliding_window_matches_reference(n, window, wrap, lengths):
    q, k, v, c, kl = make_case(n, 2, 2, n, n, 8, "arange", lengths)
    expected = reference(q, k, v, c, window, wrap, kl)
    for backend in ("blocked", "gathered", "auto"):
        out = sliding_window_attention(q, k, v, window, wrap, kl, backend=backend)
        torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def test_sliding_window_on_no_hits_gives_an_empty_output():
    """An event the filter empties still encodes (the runtime skips it; training and validation do not)."""
    q = torch.zeros(1, 2, 0, 8)
    for backend in ("blocked", "gathered", "auto"):
        assert sliding_window_attention(q, q, q, 16, True, None, backend=backend).shape == (1, 2, 0, 8)


def test_blocked_splits_into_chunks(monkeypatch):
    monkeypatch.setattr(attention, "_BLOCKED_MAX_SCORES", 2000)
    q, k, v, c, kl = make_case(5, 1, 2, 300, 300, 8, "arange", True)
    out = sliding_window_attention(q, k, v, 10, True, kl, backend="blocked")
    torch.testing.assert_close(out.double(), reference(q, k, v, c, 10, True, kl), atol=1e-5, rtol=1e-5)


def test_explicit_scale():
    q, k, v, c, _ = make_case(2, 1, 2, 12, 40, 8, "strided")
    for backend in CPU_BACKENDS:
        out = local_window_attention(q, k, v, c, 8, True, scale=0.7, backend=backend)
        expected = reference(q, k, v, c, 8, True, scale=0.7)
        torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def test_one_dimensional_centres_broadcast_over_batch():
    q, k, v, _, _ = make_case(3, 2, 2, 10, 60, 8)
    c1 = strided_centers(10, 60)
    out = local_window_attention(q, k, v, c1, 12, True, backend="gathered")
    expected = reference(q, k, v, c1[None].expand(2, -1), 12, True)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("backend", ["dense", "gathered", "blocked"])
def test_half_precision_keeps_dtype(dtype, tol, backend):
    q, k, v, c, kl = make_case(9, 1, 2, 20, 90, 16, "strided", True, dtype=dtype)
    out = local_window_attention(q, k, v, c, 16, True, kl, backend=backend)
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), reference(q, k, v, c, 16, True, kl), atol=tol, rtol=tol)


@pytest.mark.parametrize("backend", ["gathered", "blocked"])  # FlexAttention has no CPU backward
def test_gradients_match_dense(backend):
    q, k, v, c, kl = make_case(4, 2, 2, 15, 45, 8, "strided", True, dtype=torch.float64)
    grads = {}
    for name in ("dense", backend):
        leaves = [t.clone().requires_grad_(True) for t in (q, k, v)]
        out = local_window_attention(*leaves, c, 10, True, kl, backend=name)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
        grads[name] = [t.grad for t in leaves]
    for expected, got in zip(grads["dense"], grads[backend], strict=True):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-8)


def test_strided_centers_match_numpy():
    for nq, n in [(1, 1), (4, 10), (7, 10), (1111, 10000), (3, 1), (50, 20), (0, 4)]:
        np.testing.assert_array_equal(strided_centers(nq, n).numpy(), strided_centers_np(nq, n))
    assert strided_centers(5, 9).dtype == torch.int64


def test_window_mask_matches_numpy():
    g = torch.Generator().manual_seed(0)
    for n, window, wrap in [(20, 4, True), (20, 4, False), (5, 8, True), (33, 0, True), (64, 30, False)]:
        c = torch.randint(0, n, (3, 7), generator=g)
        kl = torch.randint(1, n + 1, (3,), generator=g)
        for lengths in (None, kl):
            got = window_mask(c, n, window, wrap, lengths)
            np_lengths = None if lengths is None else lengths.numpy()
            expected = window_mask_np(c.numpy(), n, window, wrap, np_lengths)
            np.testing.assert_array_equal(got.numpy(), expected)


def test_window_mask_hand_case():
    mask = window_mask(torch.tensor([[0, 5]]), 10, 4, True, torch.tensor([8]))
    assert torch.nonzero(mask[0, 0]).flatten().tolist() == [0, 1, 2, 6, 7]
    assert torch.nonzero(mask[0, 1]).flatten().tolist() == [3, 4, 5, 6, 7]


def test_masked_attention_empty_row_attends_everywhere():
    q, k, v, _, _ = make_case(1, 1, 2, 3, 8, 4)
    mask = torch.zeros(1, 3, 8, dtype=torch.bool)
    mask[0, 1, 2:5] = True
    out = masked_attention(q, k, v, mask)
    full = masked_attention(q, k, v)
    torch.testing.assert_close(out[:, :, 0], full[:, :, 0])
    torch.testing.assert_close(out[:, :, 2], full[:, :, 2])
    scores = (q[:, :, 1:2] @ k[:, :, 2:5].transpose(-1, -2)) / 2.0
    torch.testing.assert_close(out[:, :, 1:2], torch.softmax(scores, -1) @ v[:, :, 2:5])
    with pytest.raises(TypeError, match="mask must be bool"):
        masked_attention(q, k, v, mask.float())


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"window": 5}, ValueError, "window"),
        ({"centers": torch.tensor([[0, 40]])}, ValueError, "centers"),
        ({"centers": torch.tensor([[0.0, 1.0]])}, TypeError, "centers"),
        ({"centers": torch.tensor([[0, 1, 2]])}, ValueError, "centers"),
        ({"key_lengths": torch.tensor([0])}, ValueError, "key_lengths"),
        ({"key_lengths": torch.tensor([3, 3])}, ValueError, "key_lengths"),
        ({"k": torch.zeros(1, 2, 20, 3)}, ValueError, "key"),
        ({"v": torch.zeros(1, 2, 20, 4, dtype=torch.float64)}, TypeError, "value"),
        ({"v": torch.zeros(1, 2, 19, 4)}, ValueError, "same N"),
        ({"q": torch.zeros(2, 2, 4)}, ValueError, "query"),
        ({"backend": "cuda-magic"}, ValueError, "backend"),
    ],
)
def test_invalid_inputs_name_the_problem(change, error, words):
    args = {"q": torch.zeros(1, 2, 2, 4), "k": torch.zeros(1, 2, 20, 4), "v": torch.zeros(1, 2, 20, 4),
            "centers": torch.tensor([[0, 10]]), "window": 4, "wrap": True, "key_lengths": None}
    args.update(change)
    with pytest.raises(error, match=words):
        local_window_attention(**args)


def test_triton_backend_on_cpu_fails_clearly():
    q, k, v, c, _ = make_case(1, 1, 1, 4, 16, 8, "strided")
    with pytest.raises((ImportError, ValueError), match=r"(?i)triton|cuda"):
        local_window_attention(q, k, v, c, 4, True, backend="triton")


def test_export_mode_context_manager():
    assert attention.current_export_mode() == "onnx"
    with lsca_export_mode("plugin"):
        assert attention.current_export_mode() == "plugin"
        with lsca_export_mode("onnx"):
            assert attention.current_export_mode() == "onnx"
        assert attention.current_export_mode() == "plugin"
    assert attention.current_export_mode() == "onnx"
    with pytest.raises(ValueError, match="mode"), lsca_export_mode("tensorrt"):
        pass


def test_cross_attention_module_matches_manual_heads():
    torch.manual_seed(0)
    module = LocalStridedCrossAttention(16, 4, window=8, wrap=True, backend="gathered")
    queries, hits = torch.randn(2, 6, 16), torch.randn(2, 40, 16)
    out = module(queries, hits)
    assert out.shape == (2, 6, 16)
    q = module.q_proj(queries).reshape(2, 6, 4, 4).transpose(1, 2)
    k, v = (t.reshape(2, 40, 4, 4).transpose(1, 2) for t in module.kv_proj(hits).chunk(2, -1))
    c = strided_centers(6, 40)[None].expand(2, -1)
    heads = reference(q.detach(), k.detach(), v.detach(), c, 8, True).float()
    expected = heads.transpose(1, 2).reshape(2, 6, 16)
    torch.testing.assert_close(out.detach(), module.out_proj(expected).detach(), atol=1e-5, rtol=1e-5)


def test_sliding_module_ignores_padding_hits():
    torch.manual_seed(1)
    module = SlidingWindowSelfAttention(16, 2, window=6, wrap=True, backend="blocked")
    x = torch.randn(1, 30, 16)
    padded = torch.cat([x, 100 * torch.randn(1, 10, 16)], dim=1)
    out = module(padded, key_lengths=torch.tensor([30]))
    torch.testing.assert_close(out[:, :30], module(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="divisible"):
        SlidingWindowSelfAttention(10, 3, window=4)


@settings(max_examples=30, deadline=None)
@given(
    b=st.integers(1, 2), nq=st.integers(1, 40), n=st.integers(1, 90), half=st.integers(0, 40),
    wrap=st.booleans(), lengths=st.booleans(), monotone=st.booleans(), seed=st.integers(0, 2**16),
)
def test_property_gathered_and_blocked_match_reference(b, nq, n, half, wrap, lengths, monotone, seed):
    q, k, v, c, kl = make_case(seed, b, 2, nq, n, 4, "strided" if monotone else "random", lengths)
    expected = reference(q, k, v, c, 2 * half, wrap, kl)
    for backend in ("gathered", "blocked"):
        out = local_window_attention(q, k, v, c, 2 * half, wrap, kl, backend=backend)
        torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
