"""Static checks on an exported ONNX graph: validity, shapes, and what TensorRT's parser can take."""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import click
import onnx
from onnx import numpy_helper

from trackrt.export.config import MIN_OPSET, GraphSpec
from trackrt.export.tensorrt_op_support import (
    DATA_DEPENDENT_SHAPE_OPS,
    LSCA_OP_TYPE,
    OPSET_RANGE,
    SHAPE_INPUTS,
    SUPPORTED_OPS,
    TOPK_MAX_K,
    TRACKRT_DOMAIN,
)

DEFAULT_DOMAINS = ("", "ai.onnx")

GraphRole = Literal["onnxruntime", "tensorrt", "both"]
"""`onnxruntime`: carries model-local functions; `tensorrt`: bare custom nodes; `both`: no custom nodes."""


@dataclass(frozen=True)
class CheckResult:
    """One named check: passed or not, with a short human-readable detail."""

    name: str
    passed: bool
    detail: str


@dataclass
class GraphReport:
    """Every check run on one graph file."""

    graph: str
    role: GraphRole
    results: list[CheckResult] = field(default_factory=list)
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of `graph`, including those inside If/Loop/Scan bodies."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from iter_nodes(sub)


def _qualified(node: onnx.NodeProto) -> str:
    return f"{node.domain}::{node.op_type}" if node.domain not in DEFAULT_DOMAINS else node.op_type


def check_onnx_checker(model: onnx.ModelProto) -> CheckResult:
    """`onnx.checker.check_model(full_check=True)`: IR, opsets, node schemas, types, strict inference."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        return CheckResult("onnx checker (full)", False, str(exc).splitlines()[0][:200])
    return CheckResult("onnx checker (full)", True, f"ir_version {model.ir_version}")


def _dims(value: onnx.ValueInfoProto) -> list[str]:
    shape = value.type.tensor_type.shape
    return [
        d.dim_param if d.dim_param else (str(d.dim_value) if d.HasField("dim_value") else "?")
        for d in shape.dim
    ]


def check_shape_inference(model: onnx.ModelProto) -> CheckResult:
    """Strict shape inference must give every graph output a known dtype and the declared rank."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        return CheckResult("shape inference", False, str(exc).splitlines()[0][:200])
    known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    problems = []
    summary = []
    for out in model.graph.output:
        value = known.get(out.name)
        if value is None or value.type.tensor_type.elem_type == onnx.TensorProto.UNDEFINED:
            problems.append(f"{out.name}: no inferred type")
            continue
        if len(value.type.tensor_type.shape.dim) != len(out.type.tensor_type.shape.dim):
            problems.append(f"{out.name}: inferred rank differs from the declared one")
        summary.append(f"{out.name}[{','.join(_dims(value))}]")
    if problems:
        return CheckResult("shape inference", False, "; ".join(problems))
    return CheckResult("shape inference", True, " ".join(summary))


def check_opset(model: onnx.ModelProto, role: GraphRole) -> CheckResult:
    """Default-domain opset ≥ 18, and inside TensorRT's parser range for TensorRT-bound files."""
    opset = next((o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS), 0)
    if opset < MIN_OPSET:
        return CheckResult("opset", False, f"opset {opset} < {MIN_OPSET}")
    if role != "onnxruntime":
        out_of_range = [v for v, (lo, hi) in OPSET_RANGE.items() if not lo <= opset <= hi]
        if out_of_range:
            return CheckResult("opset", False, f"opset {opset} is outside TensorRT {', '.join(out_of_range)}")
    return CheckResult("opset", True, f"opset {opset}")


def check_tensorrt_ops(model: onnx.ModelProto, version: str) -> CheckResult:
    """Every default-domain op type must be one TensorRT `version`'s ONNX parser imports."""
    supported = SUPPORTED_OPS[version]
    used = {n.op_type for n in iter_nodes(model.graph) if n.domain in DEFAULT_DOMAINS}
    missing = sorted(used - supported)
    name = f"TensorRT {version} ops"
    if missing:
        return CheckResult(name, False, "unsupported: " + ", ".join(missing))
    return CheckResult(name, True, f"{len(used)} op types, all supported")


def _joined(pairs: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{domain}::{name}" for domain, name in pairs)


def check_custom_ops(model: onnx.ModelProto, role: GraphRole) -> CheckResult:
    """Custom-domain nodes: TensorRT files keep only a bare LSCA node; ONNX Runtime files need functions."""
    custom = collections.Counter(
        (n.domain, n.op_type) for n in iter_nodes(model.graph) if n.domain not in DEFAULT_DOMAINS
    )
    functions = {(f.domain, f.name) for f in model.functions}
    allowed = {(TRACKRT_DOMAIN, LSCA_OP_TYPE)}
    names = ", ".join(f"{d}::{t}×{c}" for (d, t), c in sorted(custom.items())) or "none"
    if role == "tensorrt":
        if model.functions:
            return CheckResult("custom ops", False, "model-local functions would shadow the TensorRT plugin")
        other = sorted(set(custom) - allowed)
        if other:
            return CheckResult("custom ops", False, f"not a TensorRT plugin: {_joined(other)}")
        return CheckResult("custom ops", True, f"{names}; no functions")
    if role == "both" and custom:
        return CheckResult("custom ops", False, f"{names} in a graph meant to run everywhere")
    missing = sorted(set(custom) - functions)
    if missing:
        return CheckResult("custom ops", False, f"no model-local function for {_joined(missing)}")
    detail = f"{names}; functions: {_joined(sorted(functions)) or 'none'}"
    return CheckResult("custom ops", True, detail)


def check_data_dependent_shapes(model: onnx.ModelProto) -> CheckResult:
    """No NonZero/Unique/NMS/Compress output may decide a shape or reach a graph output."""
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = collections.defaultdict(list)
    nodes = list(iter_nodes(model.graph))
    for node in nodes:
        for index, name in enumerate(node.input):
            if name:
                consumers[name].append((node, index))
    frontier = [out for n in nodes if n.op_type in DATA_DEPENDENT_SHAPE_OPS for out in n.output if out]
    sources = sorted({n.op_type for n in nodes if n.op_type in DATA_DEPENDENT_SHAPE_OPS})
    reached = set(frontier)
    problems: list[str] = []
    while frontier:
        tensor = frontier.pop()
        for node, index in consumers.get(tensor, []):
            if index in SHAPE_INPUTS.get(node.op_type, ()):
                problems.append(f"{node.op_type} '{node.name}' input {index}")
            for out in node.output:
                if out and out not in reached:
                    reached.add(out)
                    frontier.append(out)
    outputs = [o.name for o in model.graph.output if o.name in reached]
    problems += [f"graph output '{o}'" for o in outputs]
    if problems:
        return CheckResult(
            "data-dependent shapes",
            False,
            f"{', '.join(sources)} decides: " + "; ".join(sorted(set(problems))[:4]),
        )
    detail = f"{', '.join(sources)} present, shapes unaffected" if sources else "none"
    return CheckResult("data-dependent shapes", True, detail)


def _constant_values(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    values = {t.name: t for t in model.graph.initializer}
    for node in iter_nodes(model.graph):
        if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    return values


def check_topk(model: onnx.ModelProto) -> CheckResult:
    """TensorRT's TopK needs a constant K below 3840 and sorted=1."""
    constants = _constant_values(model)
    topks = [n for n in iter_nodes(model.graph) if n.op_type == "TopK" and n.domain in DEFAULT_DOMAINS]
    if not topks:
        return CheckResult("TopK limits", True, "no TopK")
    problems = []
    for node in topks:
        k = constants.get(node.input[1])
        if k is None:
            problems.append(f"'{node.name}': K is computed at run time")
        elif int(numpy_helper.to_array(k).reshape(-1)[0]) >= TOPK_MAX_K:
            problems.append(f"'{node.name}': K={int(numpy_helper.to_array(k).reshape(-1)[0])} ≥ {TOPK_MAX_K}")
        if any(a.name == "sorted" and a.i == 0 for a in node.attribute):
            problems.append(f"'{node.name}': sorted=0")
    if problems:
        return CheckResult("TopK limits", False, "; ".join(problems))
    return CheckResult("TopK limits", True, f"{len(topks)} TopK, constant K < {TOPK_MAX_K}")


def check_interface(model: onnx.ModelProto, spec: GraphSpec) -> CheckResult:
    """Input/output names, dtypes and dynamic axis names exactly as the artifact contract says."""
    problems = []
    for kind, actual, expected in (
        ("inputs", model.graph.input, spec.inputs),
        ("outputs", model.graph.output, spec.outputs),
    ):
        names = [v.name for v in actual]
        if names != [t.name for t in expected]:
            problems.append(f"{kind} {names} != {[t.name for t in expected]}")
            continue
        for value, tensor in zip(actual, expected, strict=True):
            if value.type.tensor_type.elem_type != tensor.onnx_dtype:
                problems.append(f"{value.name}: dtype {value.type.tensor_type.elem_type}")
            dims = _dims(value)
            if len(dims) != len(tensor.axes):
                problems.append(f"{value.name}: rank {len(dims)} != {len(tensor.axes)}")
                continue
            for dim, axis in zip(dims, tensor.axes, strict=True):
                if axis in spec.dynamic_axes and dim != axis:
                    problems.append(f"{value.name}: axis '{axis}' is '{dim}', not dynamic")
    if problems:
        return CheckResult("interface", False, "; ".join(problems))
    signature = ", ".join(f"{v.name}[{','.join(_dims(v))}]" for v in model.graph.input)
    return CheckResult("interface", True, signature)


def check_graph(
    model: onnx.ModelProto | str | Path,
    role: GraphRole,
    spec: GraphSpec | None = None,
    tensorrt_versions: Sequence[str] = tuple(SUPPORTED_OPS),
    name: str | None = None,
) -> GraphReport:
    """Run every check on one graph; `role` says which runtime the file is meant for."""
    if name is None:
        name = str(model) if isinstance(model, (str, Path)) else (model.graph.name or "model")
    if isinstance(model, (str, Path)):
        model = onnx.load(str(model))
    report = GraphReport(graph=name, role=role)
    report.op_counts = dict(collections.Counter(_qualified(n) for n in iter_nodes(model.graph)).most_common())
    report.results.append(check_onnx_checker(model))
    report.results.append(check_shape_inference(model))
    report.results.append(check_opset(model, role))
    if spec is not None:
        report.results.append(check_interface(model, spec))
    report.results.append(check_custom_ops(model, role))
    if role != "onnxruntime":
        report.results.extend(check_tensorrt_ops(model, v) for v in tensorrt_versions)
        report.results.append(check_topk(model))
    report.results.append(check_data_dependent_shapes(model))
    return report


SHORT_NAMES = {
    "onnx checker (full)": "checker",
    "shape inference": "shapes",
    "opset": "opset",
    "interface": "I/O",
    "custom ops": "custom",
    "TensorRT 10.x ops": "TRT10",
    "TensorRT 11.x ops": "TRT11",
    "TopK limits": "TopK",
    "data-dependent shapes": "dyn-shape",
}


def format_reports(reports: Sequence[GraphReport], verbose: bool = False) -> str:
    """One row per graph and one ✓/✗/– column per check, then the detail of every failure.

    `verbose` adds every check's detail (inferred output shapes, custom nodes, op counts).
    """
    columns = list(SHORT_NAMES)
    names = [Path(r.graph).name for r in reports]
    width = max([len("graph"), *map(len, names)])
    header = f"{'graph':<{width}}  " + "  ".join(SHORT_NAMES[c] for c in columns)
    lines = [header]
    notes = []
    for name, report in zip(names, reports, strict=True):
        by_name = {r.name: r for r in report.results}
        cells = []
        for column in columns:
            result = by_name.get(column)
            mark = "–" if result is None else ("✓" if result.passed else "✗")
            cells.append(f"{mark:^{len(SHORT_NAMES[column])}}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells) + f"  ({report.role})")
        for result in report.results:
            if verbose or not result.passed:
                notes.append(f"{'✓' if result.passed else '✗'} {name}: {result.name}: {result.detail}")
    return "\n".join(lines + notes)


def echo_reports(reports: Sequence[GraphReport], verbose: bool = False) -> None:
    """Print `format_reports`, failures in red."""
    for line in format_reports(reports, verbose).splitlines():
        click.secho(line, fg="red" if line.startswith("✗") else None)
