"""Build TensorRT engines for an artifact's graphs with polygraphy's loaders (TensorRT 10.9+ and 11.x).

Each graph's TensorRT-bound ONNX file (bare LSCA nodes) is parsed with the LSCA plugin registered,
given one optimisation profile from `EngineLimits`, built at the asked precision and written to
`<artifact>/engines/<graph>.engine` with a JSON sidecar saying what it was built from and for.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from trackrt import __version__
from trackrt.plugins.lsca.tensorrt_plugin import PLUGIN_ID, PLUGIN_VERSION
from trackrt.runtime.artifact import Artifact
from trackrt.runtime.backends.base import BackendUnavailable
from trackrt.runtime.backends.tensorrt import LSCA_PLUGIN_PROBLEM, cuda_compute_capability, import_tensorrt
from trackrt.runtime.engine_spec import (
    ENGINE_DIR,
    BuildSettings,
    EngineError,
    EngineLimits,
    ShapeRange,
    build_settings,
    engine_paths,
    engine_sidecar,
    graph_float_type,
    graph_profiles,
    parse_version,
    tensorrt_graph_file,
)


@dataclass(frozen=True)
class EngineBuildOptions:
    """Precision, event-size limits, plugin implementation and portability of the engines."""

    precision: str = "fp32"
    limits: EngineLimits = field(default_factory=EngineLimits)
    plugin_aot: bool = True
    version_compatible: bool = False
    hardware_compatibility_level: str | None = None
    workspace_mib: int | None = None


def _onnx_has_lsca(path: Path) -> bool:
    """True when the ONNX file has a bare `trackrt::LocalStridedCrossAttention` node."""
    import onnx

    from trackrt.plugins.lsca.onnx_function import is_lsca_node

    model = onnx.load(str(path), load_external_data=False)
    return any(is_lsca_node(node) for node in model.graph.node)


def _network_loader(polygraphy_trt: Any, path: Path, strongly_typed: bool, needs_namespace: bool) -> Any:
    """A polygraphy network loader; TensorRT 10.9 needs the plugin namespace as a node attribute."""
    if not needs_namespace:
        return polygraphy_trt.NetworkFromOnnxPath(str(path), strongly_typed=strongly_typed)
    import onnx

    from trackrt.plugins.lsca.tensorrt_plugin import add_plugin_namespace

    model = add_plugin_namespace(onnx.load(str(path)))
    return polygraphy_trt.NetworkFromOnnxBytes(model.SerializeToString(), strongly_typed=strongly_typed)


def _config_loader(trt: Any, polygraphy_trt: Any, settings: BuildSettings, profile: dict[str, ShapeRange],
                   options: EngineBuildOptions, has_plugin: bool) -> Any:
    """polygraphy's CreateConfig (no FP16 flag on strongly typed networks) plus the plugin preference."""
    shapes = polygraphy_trt.Profile()
    for name, (low, opt, high) in profile.items():
        shapes.add(name, min=low, opt=opt, max=high)
    kwargs: dict[str, Any] = {"profiles": [shapes]}
    if settings.fp16_flag:
        kwargs["fp16"] = True
    if options.version_compatible:
        kwargs["version_compatible"] = True
    if options.hardware_compatibility_level:
        kwargs["hardware_compatibility_level"] = getattr(
            trt.HardwareCompatibilityLevel, options.hardware_compatibility_level
        )
    if options.workspace_mib:
        kwargs["memory_pool_limits"] = {trt.MemoryPoolType.WORKSPACE: options.workspace_mib << 20}
    config = polygraphy_trt.CreateConfig(**kwargs)
    if not has_plugin:
        return config
    flag_name = "PREFER_AOT_PYTHON_PLUGINS" if options.plugin_aot else "PREFER_JIT_PYTHON_PLUGINS"
    flag = getattr(trt.BuilderFlag, flag_name)
    return polygraphy_trt.PostprocessConfig(config, lambda builder, network, cfg: cfg.set_flag(flag))


def build_engines(artifact: Artifact, options: EngineBuildOptions, engine_dir: Path | None = None,
                  log: Any = print) -> dict[str, dict[str, Any]]:
    """Build and write one engine per required graph; returns the sidecar records by graph."""
    try:
        trt, polygraphy_trt = import_tensorrt()
    except BackendUnavailable as exc:
        raise EngineError(str(exc)) from None
    if not hasattr(trt, "Builder"):
        raise EngineError("this tensorrt package cannot build engines (lean runtime); "
                          "install the full TensorRT")
    engine_dir = engine_dir or artifact.directory / ENGINE_DIR
    engine_dir.mkdir(parents=True, exist_ok=True)
    profiles = graph_profiles(artifact, options.limits)
    capability = cuda_compute_capability()
    records = {}
    for graph in artifact.required_graphs:
        onnx_path = tensorrt_graph_file(artifact, graph)
        settings = build_settings(trt.__version__, options.precision, graph_float_type(artifact, graph))
        has_plugin = _onnx_has_lsca(onnx_path)
        if has_plugin and LSCA_PLUGIN_PROBLEM:
            raise EngineError(f"{onnx_path}: has LSCA nodes, but {LSCA_PLUGIN_PROBLEM}")
        needs_namespace = has_plugin and parse_version(trt.__version__) < (10, 10)
        started = time.perf_counter()
        network = _network_loader(polygraphy_trt, onnx_path, settings.strongly_typed, needs_namespace)
        config = _config_loader(trt, polygraphy_trt, settings, profiles[graph], options, has_plugin)
        engine_bytes = polygraphy_trt.EngineBytesFromNetwork(network, config)()
        if engine_bytes is None:
            raise EngineError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
        engine_file, sidecar_file = engine_paths(engine_dir, graph)
        engine_file.write_bytes(bytes(engine_bytes))
        plugin = ({"id": PLUGIN_ID, "version": PLUGIN_VERSION,
                   "implementation": "aot" if options.plugin_aot else "jit"} if has_plugin else None)
        record = engine_sidecar(
            graph, onnx_path, options.precision, settings, profiles[graph], trt.__version__, capability,
            plugin, __version__, version_compatible=options.version_compatible,
            hardware_compatibility_level=options.hardware_compatibility_level,
            build_seconds=round(time.perf_counter() - started, 2),
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        sidecar_file.write_text(json.dumps(record, indent=1) + "\n")
        records[graph] = record
        log(f"{graph}: {engine_file} ({engine_file.stat().st_size / 2**20:.1f} MiB, {options.precision}, "
            f"{record['build_seconds']} s)")
    return records
