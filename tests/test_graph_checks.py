"""Graph checks on small hand-built ONNX graphs: each check must pass good graphs and catch bad ones."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from trackrt.export.config import HIT_FILTER, TRACKER_ENCODER, decoder_spec
from trackrt.export.graph_checks import check_graph, format_reports
from trackrt.export.tensorrt_op_support import SUPPORTED_OPS_TRT10, SUPPORTED_OPS_TRT11, TOPK_MAX_K


def _model(nodes, inputs, outputs, initializers=(), opset=18, functions=(), extra_opsets=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    opsets = [helper.make_opsetid("", opset), *extra_opsets]
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions), ir_version=10)


def _hit_filter_like(opset: int = 18) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("hit_features", TensorProto.FLOAT, [1, "num_hits", 4])
    y = helper.make_tensor_value_info("hit_logits", TensorProto.FLOAT, [1, "num_hits"])
    w = numpy_helper.from_array(np.ones((4, 1), np.float32), "w")
    axes = numpy_helper.from_array(np.array([-1], np.int64), "axes")
    nodes = [
        helper.make_node("MatMul", ["hit_features", "w"], ["m"]),
        helper.make_node("Squeeze", ["m", "axes"], ["hit_logits"]),
    ]
    return _model(nodes, [x], [y], [w, axes], opset=opset)


def _result(report, name):
    return next(r for r in report.results if r.name == name)


def _lsca_nodes_and_io():
    q = helper.make_tensor_value_info("q", TensorProto.FLOAT, [1, 2, "num_queries", 4])
    k = helper.make_tensor_value_info("k", TensorProto.FLOAT, [1, 2, "num_hits", 4])
    c = helper.make_tensor_value_info("c", TensorProto.INT32, [1, "num_queries"])
    o = helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, 2, "num_queries", 4])
    node = helper.make_node(
        "LocalStridedCrossAttention",
        ["q", "k", "k", "c"],
        ["o"],
        domain="trackrt",
        window=4,
        wrap=1,
        scale=0.0,
    )
    return [node], [q, k, c], [o]


def _identity_function(domain: str, name: str) -> onnx.FunctionProto:
    body = [helper.make_node("Identity", ["query"], ["out"])]
    return helper.make_function(
        domain,
        name,
        ["query", "key", "value", "centers"],
        ["out"],
        body,
        [helper.make_opsetid("", 18)],
        attributes=["window", "wrap", "scale"],
    )


def test_a_clean_graph_passes_every_check():
    report = check_graph(_hit_filter_like(), role="both", spec=HIT_FILTER)
    assert report.passed, format_reports([report])
    names = [r.name for r in report.results]
    assert names[:4] == ["onnx checker (full)", "shape inference", "opset", "interface"]
    assert {"TensorRT 10.x ops", "TensorRT 11.x ops", "TopK limits", "data-dependent shapes"} <= set(names)
    assert report.op_counts == {"MatMul": 1, "Squeeze": 1}


def test_opset_below_18_fails():
    report = check_graph(_hit_filter_like(opset=17), role="both")
    assert not _result(report, "opset").passed


def test_interface_catches_wrong_names_and_static_axes():
    assert not _result(check_graph(_hit_filter_like(), role="both", spec=TRACKER_ENCODER), "interface").passed
    model = _hit_filter_like()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 100
    assert "not dynamic" in _result(check_graph(model, role="both", spec=HIT_FILTER), "interface").detail
    assert decoder_spec("fq-ma").input_names == ["hit_embeddings"]
    assert decoder_spec("dq-lsca").input_names == ["hit_embeddings", "query_indices"]


def test_checker_failure_is_reported_not_raised():
    model = _hit_filter_like()
    model.graph.node[0].input[1] = "missing_weight"
    report = check_graph(model, role="both")
    assert not _result(report, "onnx checker (full)").passed


def test_op_unsupported_by_tensorrt_is_named():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    report = check_graph(_model([helper.make_node("Unique", ["x"], ["y"])], [x], [y]), role="tensorrt")
    assert "Unique" in _result(report, "TensorRT 10.x ops").detail
    assert not _result(report, "TensorRT 11.x ops").passed
    assert "Unique" not in SUPPORTED_OPS_TRT10 and "NonZero" in SUPPORTED_OPS_TRT10
    assert SUPPORTED_OPS_TRT10 < SUPPORTED_OPS_TRT11


def test_nonzero_feeding_a_reshape_is_a_data_dependent_shape():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])
    nodes = [
        helper.make_node("NonZero", ["x"], ["nz"]),
        helper.make_node("Shape", ["nz"], ["s"]),
        helper.make_node("Slice", ["s", "one", "two"], ["count"]),
        helper.make_node("Reshape", ["x", "count"], ["y"]),
    ]
    consts = [
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
    ]
    report = check_graph(_model(nodes, [x], [y], consts), role="both")
    result = _result(report, "data-dependent shapes")
    assert not result.passed and "Reshape" in result.detail and "NonZero" in result.detail


def _topk_model(k: int | None) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "n"])
    inputs = [x]
    initializers = []
    if k is None:
        inputs.append(helper.make_tensor_value_info("k", TensorProto.INT64, [1]))
    else:
        initializers.append(numpy_helper.from_array(np.array([k], np.int64), "k"))
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, None])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [1, None])
    return _model([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=-1)], inputs, [v, i], initializers)


@pytest.mark.parametrize(("k", "passes"), [(2000, True), (TOPK_MAX_K, False), (4000, False), (None, False)])
def test_topk_k_limit(k, passes):
    assert _result(check_graph(_topk_model(k), role="tensorrt"), "TopK limits").passed is passes


def test_tensorrt_file_keeps_the_bare_lsca_node_and_no_functions():
    nodes, inputs, outputs = _lsca_nodes_and_io()
    trackrt_opset = [helper.make_opsetid("trackrt", 1)]
    bare = _model(nodes, inputs, outputs, extra_opsets=trackrt_opset)
    report = check_graph(bare, role="tensorrt")
    assert report.passed, format_reports([report])
    assert report.op_counts == {"trackrt::LocalStridedCrossAttention": 1}

    function = _identity_function("trackrt", "LocalStridedCrossAttention")
    with_function = _model(nodes, inputs, outputs, functions=[function], extra_opsets=trackrt_opset)
    assert not _result(check_graph(with_function, role="tensorrt"), "custom ops").passed
    assert _result(check_graph(with_function, role="onnxruntime"), "custom ops").passed
    assert not _result(check_graph(bare, role="onnxruntime"), "custom ops").passed
    assert not _result(check_graph(bare, role="both"), "custom ops").passed


def test_other_custom_ops_are_refused_for_tensorrt():
    nodes, inputs, outputs = _lsca_nodes_and_io()
    nodes[0].op_type = "SomethingElse"
    model = _model(nodes, inputs, outputs, extra_opsets=[helper.make_opsetid("trackrt", 1)])
    assert "trackrt::SomethingElse" in _result(check_graph(model, role="tensorrt"), "custom ops").detail


def test_report_is_one_line_per_check(tmp_path):
    path = tmp_path / "hit_filter.onnx"
    onnx.save(_hit_filter_like(), path)
    report = check_graph(path, role="both", spec=HIT_FILTER)
    text = format_reports([report])
    assert len(text.splitlines()) == 2 and "hit_filter.onnx" in text and "✗" not in text
    assert len(format_reports([report], verbose=True).splitlines()) == 2 + len(report.results)
    failing = check_graph(_hit_filter_like(opset=17), role="both")
    assert "✗ g: opset: opset 17 < 18" in format_reports([failing])
