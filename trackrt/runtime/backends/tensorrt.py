"""TensorRT backend: serialized engines (built by `trackrt build-engines`) run through polygraphy's runner.

Importing this module registers the LSCA plugin with TensorRT when `tensorrt.plugin` is present, so
engines that contain it deserialize. Engines live in `<artifact>/engines/` with a JSON sidecar each;
a sidecar that does not fit (re-exported ONNX, other TensorRT, other GPU) makes the backend unavailable
with the reason. No torch: device memory is polygraphy's ctypes wrapper around the CUDA runtime.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Collection, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from trackrt.plugins.lsca.tensorrt_plugin import register_lsca_plugin
from trackrt.runtime.artifact import Artifact
from trackrt.runtime.backends.base import (
    Backend,
    BackendOptions,
    BackendUnavailable,
    DeviceArray,
    GraphRunner,
    GraphValue,
    check_interface,
    parse_device,
)
from trackrt.runtime.engine_spec import (
    ENGINE_DIR,
    EngineError,
    ShapeRange,
    check_shape_in_profile,
    engine_paths,
    read_sidecar,
    sidecar_problems,
    sidecar_profile,
    tensorrt_graph_file,
)

_CUDA_ATTRIBUTE_CC_MAJOR, _CUDA_ATTRIBUTE_CC_MINOR = 75, 76


def import_tensorrt() -> tuple[ModuleType, ModuleType]:
    """(tensorrt, polygraphy's TensorRT backend), or BackendUnavailable saying how to install them."""
    try:
        import tensorrt
        from polygraphy.backend import trt as polygraphy_trt
    except ImportError as exc:
        raise BackendUnavailable(
            f"the tensorrt backend needs TensorRT >= 10.9 and polygraphy ({exc}): "
            "pip install 'trackrt[tensorrt]'"
        ) from exc
    return tensorrt, polygraphy_trt


def _register_plugin_if_available() -> str | None:
    """Register the LSCA plugin when `tensorrt.plugin` imports; else the reason it is not registered."""
    try:
        register_lsca_plugin()
    except ImportError as exc:
        return f"TensorRT's Python plugin API is not available ({exc})"
    except Exception as exc:  # a TensorRT whose plugin API refuses the definition: say so when it matters
        return f"registering the LSCA plugin failed: {type(exc).__name__}: {exc}"
    return None


LSCA_PLUGIN_PROBLEM = _register_plugin_if_available()
"""None once the LSCA plugin is registered with TensorRT; otherwise why it is not."""


def cuda_compute_capability() -> str | None:
    """'sm_90'-style compute capability of the current CUDA device, None when it cannot be read."""
    try:
        from polygraphy import cuda

        handle = cuda.wrapper().handle
        major, minor = ctypes.c_int(), ctypes.c_int()
        if handle.cudaDeviceGetAttribute(ctypes.byref(major), _CUDA_ATTRIBUTE_CC_MAJOR, 0) != 0:
            return None
        if handle.cudaDeviceGetAttribute(ctypes.byref(minor), _CUDA_ATTRIBUTE_CC_MINOR, 0) != 0:
            return None
    except Exception:  # no CUDA runtime library or no device: the check is skipped, TensorRT still checks
        return None
    return f"sm_{major.value}{minor.value}"


class TrtDeviceArray(DeviceArray):
    """A copy of an engine output in device memory (polygraphy `DeviceArray`), freed with this object."""

    def __init__(self, array: Any):
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def numpy(self) -> np.ndarray:
        return self.array.numpy()

    def __del__(self) -> None:
        array = getattr(self, "array", None)
        if array is not None:
            array.free()


def _device_copy(view: Any) -> TrtDeviceArray:
    """A device-to-device copy of an output view, so the next run of the engine cannot overwrite it."""
    from polygraphy import cuda

    copy = cuda.DeviceArray(shape=tuple(view.shape), dtype=view.dtype)
    cuda.wrapper().memcpy(copy.ptr, view.ptr, view.nbytes, cuda.MemcpyKind.DeviceToDevice)
    return TrtDeviceArray(copy)


class TrtGraphRunner(GraphRunner):
    """One engine and execution context; calls are serialised by a lock (one context, one stream)."""

    def __init__(self, name: str, runner: Any, input_names: tuple[str, ...], output_names: tuple[str, ...],
                 profile: dict[str, ShapeRange]):
        super().__init__(name, input_names, output_names)
        self._runner = runner
        self._profile = profile
        self._lock = threading.Lock()

    def run(
        self, inputs: Mapping[str, GraphValue], keep_on_device: Collection[str] = ()
    ) -> dict[str, GraphValue]:
        self._check_inputs(inputs)
        feeds = {}
        for name in self.input_names:
            value = inputs[name]
            check_shape_in_profile(self.name, name, tuple(value.shape), self._profile[name])
            if isinstance(value, TrtDeviceArray):
                feeds[name] = value.array
            else:
                host = value.numpy() if isinstance(value, DeviceArray) else value
                feeds[name] = np.ascontiguousarray(host)
        with self._lock:
            views = self._runner.infer(feeds, copy_outputs_to_host=False)
            return {
                name: _device_copy(views[name]) if name in keep_on_device else views[name].numpy()
                for name in self.output_names
            }

    def close(self) -> None:
        """Free the execution context and its buffers."""
        self._runner.deactivate()


class TensorRTBackend(Backend):
    """Serialized TensorRT engines of the artifact's graphs on the current CUDA device."""

    name = "tensorrt"

    def __init__(self, artifact: Artifact, options: BackendOptions):
        super().__init__(artifact, options)
        kind, index = parse_device(options.device)
        if kind != "cuda" or index != 0:
            raise BackendUnavailable(
                f"the tensorrt backend runs on the current CUDA device (device='cuda'), not "
                f"{options.device!r}; choose the GPU with CUDA_VISIBLE_DEVICES"
            )
        trt, polygraphy_trt = import_tensorrt()
        if not hasattr(trt, "Runtime"):
            raise BackendUnavailable("this tensorrt package has no Runtime; install the full TensorRT")
        self._trt = trt
        self.engine_dir = Path(options.engine_dir) if options.engine_dir else artifact.directory / ENGINE_DIR
        self._sidecars: dict[str, dict[str, Any]] = {}
        here = cuda_compute_capability()
        for graph in artifact.required_graphs:
            self._sidecars[graph] = self._usable_sidecar(graph, trt.__version__, here)
        if any(record.get("lsca_plugin") for record in self._sidecars.values()) and LSCA_PLUGIN_PROBLEM:
            raise BackendUnavailable(f"the engines contain the LSCA plugin, but {LSCA_PLUGIN_PROBLEM}")
        self._runners: dict[str, TrtGraphRunner] = {}
        for graph, record in self._sidecars.items():
            self._runners[graph] = self._open(graph, record, polygraphy_trt)

    def _usable_sidecar(self, graph: str, tensorrt_version: str, capability: str | None) -> dict[str, Any]:
        engine_file, sidecar_file = engine_paths(self.engine_dir, graph)
        try:
            record = read_sidecar(sidecar_file)
        except EngineError as exc:
            raise BackendUnavailable(str(exc)) from None
        if not engine_file.is_file():
            raise BackendUnavailable(f"{engine_file}: missing; build it with `trackrt build-engines`")
        onnx_file = tensorrt_graph_file(self.artifact, graph)
        problems = sidecar_problems(record, onnx_file, tensorrt_version, capability)
        if problems:
            raise BackendUnavailable(
                f"{engine_file}: cannot run here: {'; '.join(problems)}. Rebuild with `trackrt build-engines "
                f"{self.artifact.directory}`"
            )
        return record

    def _open(self, graph: str, record: dict[str, Any], polygraphy_trt: ModuleType) -> TrtGraphRunner:
        engine_file, _ = engine_paths(self.engine_dir, graph)
        engine = polygraphy_trt.EngineFromBytes(engine_file.read_bytes())()
        if engine is None:
            raise BackendUnavailable(f"{engine_file}: TensorRT could not deserialize the engine")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = tuple(n for n in names if engine.get_tensor_mode(n) == self._trt.TensorIOMode.INPUT)
        outputs = tuple(n for n in names if n not in inputs)
        check_interface(graph, self.artifact.tracker.dynamic_queries, inputs, outputs, str(engine_file))
        runner = polygraphy_trt.TrtRunner(engine, name=f"trackrt-{graph}")
        runner.activate()
        return TrtGraphRunner(graph, runner, inputs, outputs, sidecar_profile(record))

    def runner(self, graph: str) -> GraphRunner:
        return self._runners[graph]

    @property
    def max_hits(self) -> int:
        """The first graph's profile maximum of hits: events with more get an error record."""
        first = self.artifact.required_graphs[0]
        return int(sidecar_profile(self._sidecars[first])["hit_features"][2][1])

    def describe(self) -> dict[str, Any]:
        first = next(iter(self._sidecars.values()))
        return {
            "backend": self.name,
            "device": self.options.device,
            "tensorrt": self._trt.__version__,
            "precision": first.get("precision"),
            "engine_dir": str(self.engine_dir),
            "compute_capability": first.get("compute_capability"),
        }

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
