"""What a TensorRT engine of an artifact graph is built for, and whether it still fits (no tensorrt import).

Profiles (min/opt/max per dynamic input) come from the artifact's graph contract and `EngineLimits`;
`build_settings` splits TensorRT 10.x (FP16 builder flag allowed) from 11.x (strongly typed only);
each engine carries a JSON sidecar, and `sidecar_problems` says why a stored engine cannot be used here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from trackrt.runtime.artifact import (
    DECODER_GRAPH,
    ENCODER_GRAPH,
    HIT_FILTER_GRAPH,
    Artifact,
    ArtifactError,
    file_sha256,
    read_format_json,
)

ENGINE_FORMAT = "trackrt-tensorrt-engine"
ENGINE_FORMAT_VERSION = 1
ENGINE_DIR = "engines"
MIN_TENSORRT = (10, 9)
Precision = Literal["fp32", "fp16"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16")
ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


class EngineError(ValueError):
    """An engine cannot be built or used as asked; the message names the graph, file or setting."""


@dataclass(frozen=True)
class EngineLimits:
    """Event sizes an engine's optimisation profile covers: hits into the filter, kept hits, queries."""

    max_hits: int = 120_000
    opt_hits: int = 60_000
    max_kept_hits: int = 40_000
    opt_kept_hits: int = 12_000
    max_queries: int = 8_000
    opt_queries: int = 1_500

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 1:
                raise EngineError(f"engine limits: {name} must be an int >= 1, got {value!r}")
        for size in ("hits", "kept_hits", "queries"):
            opt, high = getattr(self, f"opt_{size}"), getattr(self, f"max_{size}")
            if opt > high:
                raise EngineError(f"engine limits: opt_{size} ({opt}) exceeds max_{size} ({high})")
        if self.max_kept_hits > self.max_hits:
            raise EngineError(
                f"engine limits: max_kept_hits ({self.max_kept_hits}) exceeds max_hits ({self.max_hits})"
            )


@dataclass(frozen=True)
class BuildSettings:
    """How to configure TensorRT's builder for one precision."""

    strongly_typed: bool
    fp16_flag: bool


def parse_version(version: str) -> tuple[int, int]:
    """(major, minor) of a TensorRT version string such as '10.13.0.35'."""
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise EngineError(f"cannot read a TensorRT version from {version!r}") from None


def build_settings(tensorrt_version: str, precision: str, onnx_float: str) -> BuildSettings:
    """Builder settings for `precision` on this TensorRT, given the graph's float type in ONNX."""
    if precision not in PRECISIONS:
        raise EngineError(f"precision: {precision!r} is not one of {list(PRECISIONS)}")
    version = parse_version(tensorrt_version)
    if version < MIN_TENSORRT:
        raise EngineError(
            f"TensorRT {tensorrt_version}: trackrt needs >= {'.'.join(map(str, MIN_TENSORRT))} "
            "(the LSCA plugin's ahead-of-time implementation)"
        )
    if precision == onnx_float:
        return BuildSettings(strongly_typed=True, fp16_flag=False)
    if version[0] >= 11:
        raise EngineError(
            f"TensorRT {tensorrt_version} builds strongly typed networks only: the precision comes from "
            f"the ONNX types, and these graphs are {onnx_float}; build {onnx_float} engines or export "
            f"{precision} graphs"
        )
    if precision == "fp16" and onnx_float == "fp32":
        return BuildSettings(strongly_typed=False, fp16_flag=True)
    raise EngineError(f"cannot build {precision} engines from {onnx_float} graphs")


def _graph_entry(artifact: Artifact, graph: str) -> dict[str, Any]:
    entry = (artifact.raw.get("graphs") or {}).get(graph)
    if not isinstance(entry, dict):
        raise ArtifactError(f"{artifact.directory}: artifact.json has no 'graphs.{graph}' entry")
    return entry


def _onnx_inputs(path: Path) -> dict[str, tuple[int, list[int | str]]]:
    """(ONNX element type, shape with axis names for dynamic axes) of each graph input of `path`."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inputs = {}
    for value in model.graph.input:
        tensor = value.type.tensor_type
        inputs[value.name] = (tensor.elem_type, [d.dim_param or d.dim_value for d in tensor.shape.dim])
    return inputs


def _static_width(artifact: Artifact, graph: str, tensor: str) -> int:
    """The static last axis (features or embedding width) of `tensor` in the TensorRT-bound graph."""
    path = tensorrt_graph_file(artifact, graph)
    inputs = _onnx_inputs(path)
    if tensor not in inputs:
        raise ArtifactError(f"{path}: no input '{tensor}' (inputs: {sorted(inputs)})")
    width = inputs[tensor][1][-1] if inputs[tensor][1] else None
    if not isinstance(width, int) or width < 1:
        raise ArtifactError(f"{path}: input {tensor}: the last axis must be static, got {width!r}")
    return width


def graph_float_type(artifact: Artifact, graph: str) -> str:
    """'fp32' or 'fp16': the element type of the graph's float inputs."""
    from onnx import TensorProto

    path = tensorrt_graph_file(artifact, graph)
    names = {TensorProto.FLOAT: "fp32", TensorProto.FLOAT16: "fp16"}
    integers = (TensorProto.INT32, TensorProto.INT64)
    floats = {names.get(t, "other") for t, _ in _onnx_inputs(path).values() if t not in integers}
    if len(floats) != 1 or "other" in floats:
        raise ArtifactError(f"{path}: the float inputs must all be float32 or all float16")
    return floats.pop()


def tensorrt_graph_file(artifact: Artifact, graph: str) -> Path:
    """The ONNX file TensorRT parses for `graph` (bare LSCA nodes when the artifact has a twin)."""
    entry = _graph_entry(artifact, graph)
    path = artifact.directory / entry.get("tensorrt_file", entry.get("file", f"{graph}.onnx"))
    if not path.is_file():
        raise ArtifactError(f"{path}: missing (graphs.{graph}.tensorrt_file of artifact.json)")
    return path


def graph_profiles(artifact: Artifact, limits: EngineLimits) -> dict[str, dict[str, ShapeRange]]:
    """min/opt/max shapes of every dynamic input of the artifact's required graphs."""
    profiles: dict[str, dict[str, ShapeRange]] = {}
    tracker_hits = (limits.opt_kept_hits, limits.max_kept_hits)
    if artifact.hit_filter is not None:
        width = _static_width(artifact, HIT_FILTER_GRAPH, "hit_features")
        profiles[HIT_FILTER_GRAPH] = {
            "hit_features": ((1, 1, width), (1, limits.opt_hits, width), (1, limits.max_hits, width))
        }
    else:
        tracker_hits = (limits.opt_hits, limits.max_hits)
    opt_n, max_n = tracker_hits
    width = _static_width(artifact, ENCODER_GRAPH, "hit_features")
    profiles[ENCODER_GRAPH] = {"hit_features": ((1, 1, width), (1, opt_n, width), (1, max_n, width))}
    embed = _static_width(artifact, DECODER_GRAPH, "hit_embeddings")
    decoder = {"hit_embeddings": ((1, 1, embed), (1, opt_n, embed), (1, max_n, embed))}
    if artifact.tracker.dynamic_queries:
        max_q = min(limits.max_queries, max_n, artifact.tracker.max_queries or limits.max_queries)
        opt_q = min(limits.opt_queries, max_q)
        decoder["query_indices"] = ((1, 1), (1, opt_q), (1, max_q))
    profiles[DECODER_GRAPH] = decoder
    return profiles


def check_shape_in_profile(graph: str, name: str, shape: tuple[int, ...], profile: ShapeRange) -> None:
    """ValueError naming the graph, tensor and axis when `shape` lies outside the engine's profile."""
    low, _, high = profile
    if len(shape) != len(low):
        raise ValueError(f"graph {graph}: input {name} has rank {len(shape)}, the engine wants {len(low)}")
    for axis, (size, lo, hi) in enumerate(zip(shape, low, high, strict=True)):
        if not lo <= size <= hi:
            raise ValueError(
                f"graph {graph}: input {name} axis {axis} is {size}, outside the engine's profile "
                f"[{lo}, {hi}]; rebuild the engines with larger limits (trackrt build-engines --help)"
            )


def engine_paths(engine_dir: Path, graph: str) -> tuple[Path, Path]:
    """(engine file, JSON sidecar) of `graph` under `engine_dir`."""
    return engine_dir / f"{graph}.engine", engine_dir / f"{graph}.engine.json"


def engine_sidecar(
    graph: str,
    onnx_path: Path,
    precision: str,
    settings: BuildSettings,
    profile: dict[str, ShapeRange],
    tensorrt_version: str,
    compute_capability: str | None,
    lsca_plugin: dict[str, Any] | None,
    trackrt_version: str,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON record stored beside an engine: what it was built from, for what, and how."""
    return {
        "format": ENGINE_FORMAT,
        "format_version": ENGINE_FORMAT_VERSION,
        "graph": graph,
        "onnx_file": onnx_path.name,
        "onnx_sha256": file_sha256(onnx_path),
        "precision": precision,
        "strongly_typed": settings.strongly_typed,
        "fp16_flag": settings.fp16_flag,
        "profile": {name: {"min": r[0], "opt": r[1], "max": r[2]} for name, r in profile.items()},
        "tensorrt_version": tensorrt_version,
        "compute_capability": compute_capability,
        "lsca_plugin": lsca_plugin,
        "trackrt_version": trackrt_version,
        **extra,
    }


def read_sidecar(path: Path) -> dict[str, Any]:
    """A sidecar's record; EngineError naming the file when it is missing or not ours."""
    if not path.is_file():
        raise EngineError(f"{path}: missing; build the engines with `trackrt build-engines`")
    record = read_format_json(path, ENGINE_FORMAT, EngineError)
    if record.get("format_version") != ENGINE_FORMAT_VERSION:
        raise EngineError(f"{path}: format_version {record.get('format_version')!r} is not supported")
    return record


def sidecar_profile(record: dict[str, Any]) -> dict[str, ShapeRange]:
    """The profile of a sidecar as (min, opt, max) tuples per input."""
    return {
        name: (tuple(r["min"]), tuple(r["opt"]), tuple(r["max"]))
        for name, r in record.get("profile", {}).items()
    }


def sidecar_problems(
    record: dict[str, Any], onnx_path: Path, tensorrt_version: str, compute_capability: str | None
) -> list[str]:
    """Why the engine of `record` cannot run here, one sentence each; empty when it can."""
    problems = []
    if record.get("onnx_file") != onnx_path.name or record.get("onnx_sha256") != file_sha256(onnx_path):
        problems.append(f"it was built from another {onnx_path.name} (the artifact was re-exported)")
    built = record.get("tensorrt_version")
    if record.get("version_compatible"):
        if parse_version(str(built))[0] != parse_version(tensorrt_version)[0]:
            problems.append(f"it was built with TensorRT {built}, this is {tensorrt_version}")
    elif built != tensorrt_version:
        problems.append(f"it was built with TensorRT {built}, this is {tensorrt_version}")
    built_cc = record.get("compute_capability")
    if (not record.get("hardware_compatibility_level") and built_cc and compute_capability
            and built_cc != compute_capability):
        problems.append(
            f"it was built for a GPU of compute capability {built_cc}, this one is {compute_capability}"
        )
    return problems
