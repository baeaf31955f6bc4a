"""ONNX Runtime implementation of `trackrt::LocalStridedCrossAttention`: a model-local onnxscript function.

ONNX Runtime inlines a model-local function whose (domain, name) matches a custom node, so attaching
this function makes an exported graph with the bare LSCA node run on any ORT build.  The function, in
standard ops computed in fp32, picks one of two formulations (`_onnxscript_lsca`): blocked (blocks of
`FUNCTION_BLOCK` queries against their common key range, O(N·(64 + w)) memory: the encoders' sliding
window) for non-decreasing centres, gathered (each query against its w+1 window keys) otherwise; both
take keys modulo the key length when wrapped and count each key once.  The TensorRT-bound copy of a
model must keep the bare node: TensorRT would prefer the function over the plugin.  Needs onnx and
onnxscript (imported lazily by `attach_lsca_function`).
"""

from __future__ import annotations

import copy
import functools
from typing import TYPE_CHECKING

from trackrt.plugins.lsca.reference import LSCA_DOMAIN, LSCA_OP_TYPE, LSCA_VERSION

if TYPE_CHECKING:
    import onnx

_IR_VERSION = 10  # what torch.onnx writes; ONNX Runtime 1.18+ and TensorRT 10 read it
MIN_DEFAULT_OPSET = 15  # Shape(start, end) and CastLike, used by the function body
FUNCTION_BLOCK = 64  # queries per block of the function's blocked formulation
FUNCTION_SPAN_FACTOR = 4  # blocked only while a block's key range is ≤ FACTOR·(w+1) + BLOCK keys
_MISSING = "The LSCA ONNX Runtime function needs onnx and onnxscript: pip install 'trackrt[export]'"


def _imports() -> tuple:
    try:
        import onnx
        import onnxscript
    except ImportError as exc:
        raise ImportError(_MISSING) from exc
    return onnx, onnxscript


@functools.cache
def lsca_function_protos() -> tuple[onnx.FunctionProto, ...]:
    """`trackrt::LocalStridedCrossAttention` (5 inputs; attributes window, wrap, scale) and the two
    formulation functions it calls (`...Blocked`, `...Gathered`, same signature), op function last."""
    _imports()
    from trackrt.plugins.lsca import _onnxscript_lsca as bodies

    return tuple(
        function.to_function_proto()
        for function in (
            bodies.LocalStridedCrossAttentionBlocked,
            bodies.LocalStridedCrossAttentionGathered,
            bodies.LocalStridedCrossAttention,
        )
    )


def _default_opset(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return entry.version
    raise ValueError("the model imports no default ONNX opset")


def is_lsca_node(node: onnx.NodeProto) -> bool:
    """True for a `trackrt::LocalStridedCrossAttention` node."""
    return node.domain == LSCA_DOMAIN and node.op_type == LSCA_OP_TYPE


def complete_key_lengths(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every 4-input LSCA node an explicit key_lengths input (= N for each batch), in place.

    The TensorRT plugin and the ORT function take five inputs; a node without key_lengths gets
    `Cast(Expand(Shape(key)[2:3], Shape(query)[0:1]), int32)` computed just before it.
    """
    nodes = []
    for index, node in enumerate(model.graph.node):
        if is_lsca_node(node) and (len(node.input) < 5 or not node.input[4]):
            if len(node.input) < 4:
                raise ValueError(f"LSCA node {node.name!r} has {len(node.input)} inputs; it needs query, "
                                 "key, value and centers")
            name = f"{node.name or 'lsca'}_{index}_key_lengths"
            nodes += _full_key_lengths_nodes(node.input[0], node.input[1], name)
            del node.input[4:]
            node.input.append(name)
        nodes.append(node)
    model.graph.ClearField("node")
    model.graph.node.extend(nodes)
    return model


def _full_key_lengths_nodes(query: str, key: str, name: str) -> list[onnx.NodeProto]:
    """Nodes computing `name` = int32 [B] filled with N from the query and key shapes."""
    onnx, _ = _imports()
    make = onnx.helper.make_node
    return [
        make("Shape", [key], [f"{name}_n"], start=2, end=3, name=f"{name}_n"),
        make("Shape", [query], [f"{name}_b"], start=0, end=1, name=f"{name}_b"),
        make("Expand", [f"{name}_n", f"{name}_b"], [f"{name}_i64"], name=f"{name}_expand"),
        make("Cast", [f"{name}_i64"], [name], to=onnx.TensorProto.INT32, name=name),
    ]


def attach_lsca_function(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` that ONNX Runtime can run: key_lengths made explicit and the function appended.

    Keep the original (bare node) for TensorRT.  Raises when the model's default opset is below 15.
    """
    onnx, _ = _imports()
    opset = _default_opset(model)
    if opset < MIN_DEFAULT_OPSET:
        raise ValueError(f"attach_lsca_function needs default opset >= {MIN_DEFAULT_OPSET}, "
                         f"the model has {opset}")
    result = complete_key_lengths(copy.deepcopy(model))
    functions = [copy.deepcopy(function) for function in lsca_function_protos()]
    for function in functions:
        for entry in function.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = opset
        if not any(entry.domain == LSCA_DOMAIN for entry in function.opset_import):  # its If branches call it
            function.opset_import.append(onnx.helper.make_opsetid(LSCA_DOMAIN, LSCA_VERSION))
    names = {(function.domain, function.name) for function in functions}
    kept = [f for f in result.functions if (f.domain, f.name) not in names]
    result.ClearField("functions")
    result.functions.extend([*kept, *functions])
    if not any(entry.domain == LSCA_DOMAIN for entry in result.opset_import):
        result.opset_import.append(onnx.helper.make_opsetid(LSCA_DOMAIN, LSCA_VERSION))
    return result


def make_lsca_model(dtype: int, window: int, wrap: int, scale: float = 0.0, with_key_lengths: bool = True,
                    opset: int = 18, head_dim: int | None = None) -> onnx.ModelProto:
    """A one-op model with the bare LSCA node; B, H, Q, N are dynamic, D too unless `head_dim` is given."""
    onnx, _ = _imports()
    helper = onnx.helper
    names = ["query", "key", "value", "centers"] + (["key_lengths"] if with_key_lengths else [])
    d = head_dim or "D"
    shapes = {"query": ["B", "H", "Q", d], "key": ["B", "H", "N", d], "value": ["B", "H", "N", d],
              "centers": ["B", "Q"], "key_lengths": ["B"]}
    inputs = [helper.make_tensor_value_info(name, onnx.TensorProto.INT32 if name in ("centers", "key_lengths")
                                            else dtype, shapes[name]) for name in names]
    output = helper.make_tensor_value_info("output", dtype, ["B", "H", "Q", d])
    node = helper.make_node(LSCA_OP_TYPE, names, ["output"], domain=LSCA_DOMAIN, name="lsca",
                            window=window, wrap=wrap, scale=float(scale))
    graph = helper.make_graph([node], "lsca", inputs, [output])
    return helper.make_model(graph, ir_version=_IR_VERSION, opset_imports=[
        helper.make_opsetid("", opset), helper.make_opsetid(LSCA_DOMAIN, LSCA_VERSION)])
