"""The numpy LSCA reference: DESIGN §4.1 hand cases, strided centres, validation, and torch-free import."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from trackrt.plugins.lsca.reference import lsca_reference, strided_centers_np, window_mask_np


def naive_lsca(query, key, value, centers, window, wrap, scale=0.0, key_lengths=None):
    """Loop-per-query definition written independently of the vectorised reference."""
    b, h, nq, d = query.shape
    n = key.shape[2]
    s = 1 / np.sqrt(d) if scale == 0 else scale
    out = np.zeros((b, h, nq, d))
    for bi in range(b):
        length = n if key_lengths is None else int(key_lengths[bi])
        for i in range(nq):
            c = min(int(centers[bi, i]), length - 1)
            keys = set()
            for j in range(length):
                dist = abs(j - c)
                if wrap:
                    dist = min(dist, length - dist)
                if dist <= window // 2:
                    keys.add(j)
            keys = sorted(keys)
            for hi in range(h):
                logits = np.array([query[bi, hi, i] @ key[bi, hi, j] for j in keys], dtype=np.float64) * s
                w = np.exp(logits - logits.max())
                w /= w.sum()
                out[bi, hi, i] = (w[:, None] * value[bi, hi, keys]).sum(0)
    return out


def random_qkv(rng, b, h, nq, n, d, dtype=np.float64):
    shapes = ((b, h, nq, d), (b, h, n, d), (b, h, n, d))
    return tuple(rng.standard_normal(shape).astype(dtype) for shape in shapes)


def keys_of(mask_row):
    return set(np.flatnonzero(mask_row).tolist())


@pytest.mark.parametrize(
    ("num_keys", "center", "window", "wrap", "length", "expected"),
    [
        (10, 0, 4, True, None, {8, 9, 0, 1, 2}),
        (10, 0, 4, False, None, {0, 1, 2}),
        (10, 9, 4, True, None, {7, 8, 9, 0, 1}),
        (10, 5, 4, False, None, {3, 4, 5, 6, 7}),
        (10, 5, 0, True, None, {5}),
        (4, 1, 8, True, None, {0, 1, 2, 3}),
        (4, 1, 8, False, None, {0, 1, 2, 3}),
        (10, 0, 4, True, 6, {4, 5, 0, 1, 2}),
        (10, 8, 2, True, 6, {4, 5, 0}),
        (10, 8, 2, False, 6, {4, 5}),
        (5, 2, 4, True, None, {0, 1, 2, 3, 4}),
        (6, 0, 4, True, None, {4, 5, 0, 1, 2}),
    ],
)
def test_window_mask_hand_cases(num_keys, center, window, wrap, length, expected):
    lengths = None if length is None else np.array([length])
    mask = window_mask_np(np.array([[center]]), num_keys, window, wrap, lengths)
    assert mask.shape == (1, 1, num_keys)
    assert keys_of(mask[0, 0]) == expected


def test_strided_centers_match_round_half_to_even():
    for nq, n in [(1, 1), (3, 10), (4, 10), (7, 10), (9, 81), (1111, 10000), (2, 5), (6, 9), (10, 10)]:
        expected = np.round(np.arange(nq) * n / nq).astype(np.int64)
        np.testing.assert_array_equal(strided_centers_np(nq, n), np.minimum(expected, n - 1))
    np.testing.assert_array_equal(strided_centers_np(4, 10), [0, 2, 5, 8])  # 2.5 -> 2 and 7.5 -> 8
    np.testing.assert_array_equal(strided_centers_np(3, 1), [0, 0, 0])  # clamped to N - 1
    assert strided_centers_np(0, 5).shape == (0,)


@pytest.mark.parametrize(
    ("b", "h", "nq", "n", "window", "wrap", "with_lengths"),
    [
        (1, 2, 5, 23, 4, 1, False),
        (2, 1, 9, 9, 6, 0, False),
        (2, 2, 7, 5, 8, 1, True),
        (1, 1, 1, 13, 2, 1, False),
        (2, 3, 6, 17, 0, 0, True),
        (1, 2, 4, 3, 16, 0, False),
    ],
)
def test_reference_matches_naive_loop(rng, b, h, nq, n, window, wrap, with_lengths):
    q, k, v = random_qkv(rng, b, h, nq, n, 4)
    centers = rng.integers(0, n, size=(b, nq)).astype(np.int32)
    lengths = rng.integers(1, n + 1, size=b).astype(np.int32) if with_lengths else None
    out = lsca_reference(q, k, v, centers, window, wrap, 0.0, lengths)
    np.testing.assert_allclose(out, naive_lsca(q, k, v, centers, window, wrap, 0.0, lengths), atol=1e-12)


def test_small_n_counts_each_key_once(rng):
    """With N <= w and wrap, every key is in the window exactly once: plain full attention."""
    q, k, v = random_qkv(rng, 1, 2, 3, 5, 8)
    centers = np.array([[0, 2, 4]], dtype=np.int32)
    scores = np.einsum("bhqd,bhnd->bhqn", q, k) / np.sqrt(8)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    full = np.einsum("bhqn,bhnd->bhqd", weights / weights.sum(-1, keepdims=True), v)
    for window in (4, 8, 64):
        np.testing.assert_allclose(lsca_reference(q, k, v, centers, window, 1), full, atol=1e-12)


def test_zero_window_returns_centre_value(rng):
    q, k, v = random_qkv(rng, 1, 2, 4, 11, 3)
    centers = np.array([[0, 3, 7, 10]], dtype=np.int32)
    out = lsca_reference(q, k, v, centers, 0, 1)
    np.testing.assert_allclose(out, v[:, :, centers[0]], atol=1e-12)


def test_padding_keys_never_attended(rng):
    q, k, v = random_qkv(rng, 2, 1, 6, 12, 4)
    centers = rng.integers(0, 12, size=(2, 6)).astype(np.int32)
    lengths = np.array([7, 12], dtype=np.int32)
    out = lsca_reference(q, k, v, centers, 4, 1, 0.0, lengths)
    k2, v2 = k.copy(), v.copy()
    k2[0, :, 7:] = 1e3
    v2[0, :, 7:] = -1e3
    np.testing.assert_allclose(lsca_reference(q, k2, v2, centers, 4, 1, 0.0, lengths), out, atol=1e-12)


def test_explicit_scale_and_output_dtype(rng):
    q, k, v = random_qkv(rng, 1, 1, 3, 8, 4, np.float32)
    centers = np.array([[1, 4, 6]], dtype=np.int32)
    out = lsca_reference(q, k, v, centers, 4, 0, scale=0.25)
    assert out.dtype == np.float32
    expected = naive_lsca(q.astype(np.float64), k, v, centers, 4, 0, 0.25)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert lsca_reference(*(x.astype(np.float16) for x in (q, k, v)), centers, 4, 0).dtype == np.float16


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"window": 3}, ValueError, "window"),
        ({"window": -2}, ValueError, "window"),
        ({"wrap": 2}, ValueError, "wrap"),
        ({"centers": np.array([[0, 8]], dtype=np.int32)}, ValueError, "centers"),
        ({"centers": np.array([[0, -1]], dtype=np.int32)}, ValueError, "centers"),
        ({"centers": np.array([[0.0, 1.0]])}, TypeError, "centers"),
        ({"centers": np.array([0, 1], dtype=np.int32)}, ValueError, "centers"),
        ({"key_lengths": np.array([0], dtype=np.int32)}, ValueError, "key_lengths"),
        ({"key_lengths": np.array([9], dtype=np.int32)}, ValueError, "key_lengths"),
        ({"key_lengths": np.array([3, 4], dtype=np.int32)}, ValueError, "key_lengths"),
        ({"key": np.zeros((1, 2, 8, 5))}, ValueError, "key"),
        ({"value": np.zeros((1, 2, 7, 4))}, ValueError, "N"),
        ({"value": np.zeros((1, 2, 8, 4), dtype=np.float32)}, TypeError, "value"),
        ({"query": np.zeros((2, 2, 4))}, ValueError, "query"),
        ({"query": np.zeros((1, 2, 2, 4), dtype=np.int32)}, TypeError, "query"),
    ],
)
def test_invalid_inputs_name_the_tensor(change, error, words):
    args = {
        "query": np.zeros((1, 2, 2, 4)), "key": np.zeros((1, 2, 8, 4)), "value": np.zeros((1, 2, 8, 4)),
        "centers": np.array([[0, 4]], dtype=np.int32), "window": 4, "wrap": 1, "key_lengths": None,
    }
    args.update(change)
    with pytest.raises(error, match=words):
        lsca_reference(**args)


def test_reference_imports_without_torch():
    code = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "triton", "tensorrt", "onnxscript"):
                    raise ImportError("blocked " + name)
        sys.meta_path.insert(0, Block())
        import trackrt.plugins, trackrt.plugins.lsca
        from trackrt.plugins.lsca import lsca_reference, strided_centers_np
        print(strided_centers_np(4, 10).tolist())
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[0, 2, 5, 8]"
