"""The LSCA node in ONNX: the ORT function vs the reference, and torch export in "onnx" and "plugin" modes."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from trackrt.plugins.lsca.onnx_function import (  # noqa: E402
    attach_lsca_function,
    complete_key_lengths,
    is_lsca_node,
    make_lsca_model,
)
from trackrt.plugins.lsca.reference import lsca_reference  # noqa: E402

ONNX_TYPES = {np.float32: onnx.TensorProto.FLOAT, np.float16: onnx.TensorProto.FLOAT16}


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("wrap", [0, 1])
@pytest.mark.parametrize("with_lengths", [True, False])
def test_function_matches_reference(rng, dtype, wrap, with_lengths):
    window, scale = 8, 0.0
    model = make_lsca_model(ONNX_TYPES[dtype], window, wrap, scale, with_lengths)
    sess = session(attach_lsca_function(model))
    tol = 1e-5 if dtype == np.float32 else 2e-3
    for b, h, nq, n, d in [(1, 2, 5, 40, 8), (2, 3, 7, 6, 4), (2, 1, 1, 13, 16), (1, 2, 30, 30, 8)]:
        q, k, v = (rng.standard_normal(s).astype(dtype) for s in ((b, h, nq, d), (b, h, n, d), (b, h, n, d)))
        centers = rng.integers(0, n, (b, nq)).astype(np.int32)
        lengths = rng.integers(1, n + 1, b).astype(np.int32) if with_lengths else None
        feed = {"query": q, "key": k, "value": v, "centers": centers}
        if with_lengths:
            feed["key_lengths"] = lengths
        (out,) = sess.run(None, feed)
        assert out.dtype == dtype and out.shape == q.shape
        q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
        expected = lsca_reference(q64, k64, v64, centers, window, wrap, scale, lengths)
        np.testing.assert_allclose(out.astype(np.float64), expected, atol=tol, rtol=tol)


def formulation_model(op_type: str, dtype: int, window: int, wrap: int) -> onnx.ModelProto:
    """A one-op model calling one formulation function (`...Blocked` / `...Gathered`) directly."""
    model = attach_lsca_function(make_lsca_model(dtype, window, wrap))
    model.graph.node[0].op_type = op_type
    return model


MONOTONE_CASES = [  # (B, H, Q, N, D, window): encoder-like Q = N, Q not a multiple of 64, N <= w, Q = 1
    (1, 2, 150, 150, 8, 16),
    (2, 1, 70, 300, 4, 8),
    (1, 2, 64, 64, 8, 128),
    (2, 3, 1, 9, 4, 6),
    (1, 1, 200, 20, 8, 10),
]


@pytest.mark.parametrize("op_type", ["LocalStridedCrossAttentionBlocked", "LocalStridedCrossAttention"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("wrap", [0, 1])
def test_blocked_formulation_matches_reference_on_monotone_centres(rng, op_type, dtype, wrap):
    tol = 1e-5 if dtype == np.float32 else 2e-3
    for b, h, nq, n, d, window in MONOTONE_CASES:
        sess = session(formulation_model(op_type, ONNX_TYPES[dtype], window, wrap))
        q, k, v = (rng.standard_normal(s).astype(dtype) for s in ((b, h, nq, d), (b, h, n, d), (b, h, n, d)))
        lengths = rng.integers(max(1, n // 2), n + 1, b).astype(np.int32)
        centers = np.sort(rng.integers(0, n, (b, nq)), axis=1).astype(np.int32)
        if nq == n:
            centers[:] = np.arange(n, dtype=np.int32)  # the encoder's sliding window
        feed = {"query": q, "key": k, "value": v, "centers": centers, "key_lengths": lengths}
        (out,) = sess.run(None, feed)
        assert out.dtype == dtype and out.shape == q.shape
        q64, k64, v64 = (x.astype(np.float64) for x in (q, k, v))
        expected = lsca_reference(q64, k64, v64, centers, window, wrap, 0.0, lengths)
        np.testing.assert_allclose(out.astype(np.float64), expected, atol=tol, rtol=tol)


def test_dispatch_picks_blocked_only_for_short_monotone_ranges(rng):
    """The op's function agrees with the gathered body whichever branch it takes."""
    window = 8
    fp32 = onnx.TensorProto.FLOAT
    op_model = session(formulation_model("LocalStridedCrossAttention", fp32, window, 1))
    gathered = session(formulation_model("LocalStridedCrossAttentionGathered", fp32, window, 1))
    n, nq = 2000, 100
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((1, 2, nq, 8), (1, 2, n, 8), (1, 2, n, 8)))
    for centers in (np.arange(nq), np.arange(nq) * 19, rng.integers(0, n, nq), np.arange(nq)[::-1]):
        feed = {"query": q, "key": k, "value": v, "centers": centers[None].astype(np.int32),
                "key_lengths": np.array([n], np.int32)}
        np.testing.assert_allclose(op_model.run(None, feed)[0], gathered.run(None, feed)[0], atol=1e-5)


def test_function_explicit_scale_and_zero_window(rng):
    shapes = ((1, 2, 4, 8), (1, 2, 21, 8), (1, 2, 21, 8))
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in shapes)
    centers = np.array([[0, 5, 13, 20]], dtype=np.int32)
    feed = {"query": q, "key": k, "value": v, "centers": centers, "key_lengths": np.array([21], np.int32)}
    for window, scale in [(0, 0.0), (6, 0.3)]:
        model = attach_lsca_function(make_lsca_model(onnx.TensorProto.FLOAT, window, 1, scale))
        (out,) = session(model).run(None, feed)
        np.testing.assert_allclose(out, lsca_reference(q, k, v, centers, window, 1, scale), atol=1e-5)


def test_attach_copies_and_is_idempotent():
    bare = make_lsca_model(onnx.TensorProto.FLOAT, 4, 1, with_key_lengths=False)
    attached = attach_lsca_function(attach_lsca_function(bare))
    assert len(bare.functions) == 0 and len(bare.graph.node) == 1 and len(bare.graph.node[0].input) == 4
    assert [(f.domain, f.name) for f in attached.functions] == [
        ("trackrt", "LocalStridedCrossAttentionBlocked"),
        ("trackrt", "LocalStridedCrossAttentionGathered"),
        ("trackrt", "LocalStridedCrossAttention"),
    ]
    assert all({o.domain: o.version for o in f.opset_import}[""] == 18 for f in attached.functions)
    onnx.checker.check_model(attached)


def test_function_opset_follows_model():
    attached = attach_lsca_function(make_lsca_model(onnx.TensorProto.FLOAT, 4, 1, opset=20))
    assert all({o.domain: o.version for o in f.opset_import}[""] == 20 for f in attached.functions)
    with pytest.raises(ValueError, match="opset >= 15"):
        attach_lsca_function(make_lsca_model(onnx.TensorProto.FLOAT, 4, 1, opset=14))


def test_complete_key_lengths_adds_explicit_input():
    model = complete_key_lengths(make_lsca_model(onnx.TensorProto.FLOAT, 4, 1, with_key_lengths=False))
    (lsca,) = [node for node in model.graph.node if is_lsca_node(node)]
    assert len(lsca.input) == 5 and lsca.input[4]
    assert [node.op_type for node in model.graph.node] == ["Shape", "Shape", "Expand", "Cast",
                                                           "LocalStridedCrossAttention"]
    onnx.checker.check_model(model)


torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_model():
    from trackrt.model.attention import LocalStridedCrossAttention, SlidingWindowSelfAttention

    class Tiny(torch.nn.Module):
        """Encoder sliding window over hits (no wrap), then strided cross-attention (wrapped) from queries."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = SlidingWindowSelfAttention(16, 2, window=8, wrap=False)
            self.cross = LocalStridedCrossAttention(16, 2, window=6)

        def forward(self, hits, queries):
            return self.cross(queries, self.encoder(hits))

    torch.manual_seed(0)
    return Tiny().eval()


def export_tiny(model, mode):
    from torch.export import Dim

    from trackrt.model.attention import lsca_export_mode

    with lsca_export_mode(mode):
        program = torch.onnx.export(
            model, (torch.randn(1, 40, 16), torch.randn(1, 6, 16)), dynamo=True, external_data=False,
            input_names=["hits", "queries"], dynamic_shapes={"hits": {1: Dim("N")}, "queries": {1: Dim("Q")}},
        )  # fmt: skip
    return program.model_proto


@pytest.mark.parametrize("mode", ["onnx", "plugin"])
def test_exported_module_runs_in_ort_at_other_sizes(tiny_model, mode):
    proto = export_tiny(tiny_model, mode)
    custom = [node for node in proto.graph.node if is_lsca_node(node)]
    if mode == "plugin":
        assert len(custom) == 2 and all(len(node.input) == 5 for node in custom)
        assert {a.name: onnx.helper.get_attribute_value(a) for a in custom[1].attribute} == {
            "window": 6, "wrap": 1, "scale": 0.0}
        assert len(proto.functions) == 0  # the TensorRT-bound graph keeps the bare node
        proto = attach_lsca_function(proto)
    else:
        assert not custom
    sess = session(proto)
    generator = torch.Generator().manual_seed(1)
    for n, nq in [(50, 7), (23, 23), (5, 2), (301, 33)]:
        hits = torch.randn(1, n, 16, generator=generator)
        queries = torch.randn(1, nq, 16, generator=generator)
        (out,) = sess.run(None, {"hits": hits.numpy(), "queries": queries.numpy()})
        with torch.no_grad():
            expected = tiny_model(hits, queries).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-5, rtol=1e-5)
