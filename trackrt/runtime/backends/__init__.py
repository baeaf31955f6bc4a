"""Backends by name; each is imported only when asked for, so optional packages stay optional.

`auto` tries TensorRT first (it needs built engines, TensorRT and a GPU), then ONNX Runtime, then torch.
"""

from __future__ import annotations

import importlib

from trackrt.runtime.artifact import Artifact
from trackrt.runtime.backends.base import (
    Backend,
    BackendOptions,
    BackendUnavailable,
    DeviceArray,
    GraphRunner,
    HostArray,
)

BACKENDS: dict[str, str] = {
    "tensorrt": "trackrt.runtime.backends.tensorrt:TensorRTBackend",
    "onnxruntime": "trackrt.runtime.backends.onnxruntime:OnnxRuntimeBackend",
    "torch": "trackrt.runtime.backends.torch_reference:TorchReferenceBackend",
}
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "onnxruntime", "torch")

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "Backend",
    "BackendOptions",
    "BackendUnavailable",
    "DeviceArray",
    "GraphRunner",
    "HostArray",
    "backend_class",
    "create_backend",
]


def backend_class(name: str) -> type[Backend]:
    """The backend class registered as `name` (imports its module)."""
    if name not in BACKENDS:
        raise ValueError(f"backend: unknown backend {name!r} (known: auto, {', '.join(BACKENDS)})")
    module_name, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def create_backend(name: str, artifact: Artifact, options: BackendOptions) -> Backend:
    """Backend `name` for `artifact`; `auto` takes the first of AUTO_ORDER that can run here."""
    if name != "auto":
        return backend_class(name)(artifact, options)
    reasons = []
    for candidate in AUTO_ORDER:
        try:
            return backend_class(candidate)(artifact, options)
        except BackendUnavailable as exc:
            reasons.append(f"{candidate}: {exc}")
    raise BackendUnavailable("no backend can run this artifact here:\n  " + "\n  ".join(reasons))
