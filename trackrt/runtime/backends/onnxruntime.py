"""ONNX Runtime backend: one InferenceSession per graph, CPU or CUDA, with I/O binding.

Sessions are shared by all threads (ONNX Runtime's `run` is thread-safe); every call makes its own
`IOBinding`, so concurrent calls never share binding state. With I/O binding, outputs the caller
keeps on the device (the encoder's hit embeddings) stay as `OrtValue`s in device memory and are bound
straight into the decoder; only the outputs the host needs (seed logits, decoder logits) are copied.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from types import ModuleType
from typing import Any

import numpy as np

from trackrt.runtime.artifact import Artifact
from trackrt.runtime.backends.base import (
    Backend,
    BackendOptions,
    BackendUnavailable,
    DeviceArray,
    GraphRunner,
    GraphValue,
    HostArray,
    check_interface,
    parse_device,
)

_OPTIMIZATION_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def import_onnxruntime() -> ModuleType:
    """The onnxruntime module, or BackendUnavailable saying how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            "the onnxruntime backend needs onnxruntime: pip install 'trackrt[runtime]' "
            "(or onnxruntime-gpu for CUDA)"
        ) from exc
    return onnxruntime


class OrtDeviceArray(DeviceArray):
    """An `OrtValue` that may live in device memory."""

    def __init__(self, value: Any):
        self.value = value

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape())

    @property
    def device(self) -> str:
        return str(self.value.device_name())

    def numpy(self) -> np.ndarray:
        return self.value.numpy()


class OrtGraphRunner(GraphRunner):
    """One ONNX Runtime session; `run` binds inputs and outputs on the session's device."""

    def __init__(self, name: str, session: Any, ort: ModuleType, device: str, io_binding: bool):
        super().__init__(
            name,
            tuple(i.name for i in session.get_inputs()),
            tuple(o.name for o in session.get_outputs()),
        )
        self.session = session
        self._ort = ort
        self._device_type, self._device_id = parse_device(device)
        self._io_binding = io_binding

    def input_shape(self, name: str) -> list[int | str | None]:
        """The declared shape of input `name` (strings or None for dynamic axes)."""
        return next(i.shape for i in self.session.get_inputs() if i.name == name)

    def run(
        self, inputs: Mapping[str, GraphValue], keep_on_device: Collection[str] = ()
    ) -> dict[str, GraphValue]:
        self._check_inputs(inputs)
        if not self._io_binding:
            return self._run_plain(inputs, keep_on_device)
        binding = self.session.io_binding()
        bound = []
        for name in self.input_names:
            value = inputs[name]
            if isinstance(value, OrtDeviceArray):
                ort_value = value.value
            else:
                host = value.numpy() if isinstance(value, DeviceArray) else value
                ort_value = self._ort.OrtValue.ortvalue_from_numpy(
                    np.ascontiguousarray(host), self._device_type, self._device_id
                )
            bound.append(ort_value)
            binding.bind_ortvalue_input(name, ort_value)
        for name in self.output_names:
            if name in keep_on_device:
                binding.bind_output(name, self._device_type, self._device_id)
            else:
                binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {
            name: OrtDeviceArray(value) if name in keep_on_device else value.numpy()
            for name, value in zip(self.output_names, values, strict=True)
        }

    def _run_plain(
        self, inputs: Mapping[str, GraphValue], keep_on_device: Collection[str]
    ) -> dict[str, GraphValue]:
        feeds = {k: v.numpy() if isinstance(v, DeviceArray) else v for k, v in inputs.items()}
        values = self.session.run(list(self.output_names), feeds)
        return {
            name: HostArray(value) if name in keep_on_device else value
            for name, value in zip(self.output_names, values, strict=True)
        }


def session_options(ort: ModuleType, options: BackendOptions) -> Any:
    """SessionOptions from the backend options (threads, graph optimisation, quiet logging)."""
    so = ort.SessionOptions()
    if options.threads is not None:
        so.intra_op_num_threads = options.threads
    if options.inter_op_threads is not None:
        so.inter_op_num_threads = options.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    so.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, _OPTIMIZATION_LEVELS[options.graph_optimization]
    )
    so.log_severity_level = 3
    return so


def execution_providers(ort: ModuleType, device: str) -> list[Any]:
    """Providers for `device`: CUDA first (with CPU fallback for unsupported nodes) or CPU only."""
    device_type, device_id = parse_device(device)
    if device_type == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailable(
            f"device {device}: this onnxruntime has no CUDAExecutionProvider (available: "
            f"{', '.join(available)}); install onnxruntime-gpu matching your CUDA version"
        )
    return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime sessions for the artifact's graphs on one device."""

    name = "onnxruntime"

    def __init__(self, artifact: Artifact, options: BackendOptions):
        super().__init__(artifact, options)
        ort = import_onnxruntime()
        self._ort = ort
        providers = execution_providers(ort, options.device)
        so = session_options(ort, options)
        self._runners: dict[str, OrtGraphRunner] = {}
        for graph, path in artifact.require_graphs().items():
            try:
                session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
            except Exception as exc:
                raise BackendUnavailable(f"{path}: onnxruntime cannot load the graph: {exc}") from exc
            if options.device != "cpu" and "CUDAExecutionProvider" not in session.get_providers():
                raise BackendUnavailable(f"{path}: onnxruntime could not place the graph on {options.device}")
            runner = OrtGraphRunner(graph, session, ort, options.device, options.io_binding)
            check_interface(
                graph, artifact.tracker.dynamic_queries, runner.input_names, runner.output_names, str(path)
            )
            self._check_feature_width(runner, path)
            self._runners[graph] = runner
        self._providers = list(session.get_providers())

    def _check_feature_width(self, runner: OrtGraphRunner, path: Any) -> None:
        if "hit_features" not in runner.input_names:
            return
        settings = self.artifact.hit_filter if runner.name == "hit_filter" else self.artifact.tracker
        assert settings is not None
        width = runner.input_shape("hit_features")[-1]
        if isinstance(width, int) and width != settings.features.num_features:
            raise ValueError(
                f"{path}: hit_features has {width} features but artifact.json's feature config gives "
                f"{settings.features.num_features} ({', '.join(settings.features.feature_names)})"
            )

    def runner(self, graph: str) -> GraphRunner:
        return self._runners[graph]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": self.options.device,
            "providers": self._providers,
            "onnxruntime": self._ort.__version__,
            "io_binding": self.options.io_binding,
            "threads": self.options.threads,
            "graph_optimization": self.options.graph_optimization,
        }

    def close(self) -> None:
        self._runners.clear()
