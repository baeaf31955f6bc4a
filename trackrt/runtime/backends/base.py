"""The runner interface every backend implements: one `GraphRunner` per graph of the artifact.

A backend (ONNX Runtime, the torch reference, TensorRT) turns an `Artifact` into runners for the
graphs `hit_filter`, `tracker_encoder` and `tracker_decoder`; the pre- and post-processing around
them is shared numpy code in `trackrt.runtime.chain`. Outputs can stay on the device as `DeviceArray`
handles, so that the encoder's hit embeddings reach the decoder without a round trip to the host.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from trackrt.runtime.artifact import DECODER_GRAPH, ENCODER_GRAPH, HIT_FILTER_GRAPH, Artifact

GraphOptimization = Literal["disable", "basic", "extended", "all"]


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (package, device or checkpoint missing); the message says what to do."""


class DeviceArray(ABC):
    """A tensor owned by a backend, possibly in device memory; `numpy()` copies it to the host."""

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """The tensor's shape."""

    @abstractmethod
    def numpy(self) -> np.ndarray:
        """A host copy of the tensor."""


class HostArray(DeviceArray):
    """A host array wearing the `DeviceArray` interface (backends without device memory)."""

    def __init__(self, array: np.ndarray):
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    def numpy(self) -> np.ndarray:
        return self.array


GraphValue = np.ndarray | DeviceArray


class GraphRunner(ABC):
    """Runs one graph; safe to call from several threads at once."""

    def __init__(self, name: str, input_names: tuple[str, ...], output_names: tuple[str, ...]):
        self.name = name
        self.input_names = input_names
        self.output_names = output_names

    @abstractmethod
    def run(
        self, inputs: Mapping[str, GraphValue], keep_on_device: Collection[str] = ()
    ) -> dict[str, GraphValue]:
        """Run the graph; outputs named in `keep_on_device` come back as `DeviceArray`, others as numpy."""

    def _check_inputs(self, inputs: Mapping[str, GraphValue]) -> None:
        missing = [n for n in self.input_names if n not in inputs]
        extra = [n for n in inputs if n not in self.input_names]
        if missing or extra:
            raise ValueError(
                f"graph {self.name}: inputs {sorted(inputs)} do not match {list(self.input_names)}"
            )


@dataclass(frozen=True)
class BackendOptions:
    """How to run: device (`cpu`, `cuda`, `cuda:N`), threads, graph optimisation, I/O binding.

    `engine_dir`: where the tensorrt backend finds its engines (default `<artifact>/engines`).
    """

    device: str = "cpu"
    threads: int | None = None
    inter_op_threads: int | None = None
    graph_optimization: GraphOptimization = "all"
    io_binding: bool = True
    checkpoints: dict[str, str] = field(default_factory=dict)
    engine_dir: str | None = None

    def __post_init__(self) -> None:
        parse_device(self.device)
        if self.graph_optimization not in ("disable", "basic", "extended", "all"):
            raise ValueError(
                f"graph_optimization: {self.graph_optimization!r} is not one of disable, basic, extended, all"
            )
        for name in ("threads", "inter_op_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: must be >= 1 or None, got {value}")


def parse_device(device: str) -> tuple[str, int]:
    """`cpu` -> ("cpu", 0); `cuda` -> ("cuda", 0); `cuda:1` -> ("cuda", 1)."""
    kind, _, index = device.partition(":")
    if kind == "cpu" and not index:
        return "cpu", 0
    if kind == "cuda" and (not index or index.isdigit()):
        return "cuda", int(index or 0)
    raise ValueError(f"device: {device!r} is not 'cpu', 'cuda' or 'cuda:N'")


def graph_interface(graph: str, dynamic_queries: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The named inputs and outputs that docs/contracts.md fixes for `graph`."""
    if graph == HIT_FILTER_GRAPH:
        return ("hit_features",), ("hit_logits",)
    if graph == ENCODER_GRAPH:
        return ("hit_features",), ("hit_embeddings", "seed_logits")
    if graph == DECODER_GRAPH:
        inputs = ("hit_embeddings", "query_indices") if dynamic_queries else ("hit_embeddings",)
        return inputs, ("track_logits", "assignment_logits")
    raise ValueError(f"unknown graph {graph!r}")


def check_interface(
    graph: str, dynamic_queries: bool, inputs: Collection[str], outputs: Collection[str], where: str
) -> None:
    """Refuse a graph whose input/output names differ from the contract."""
    want_in, want_out = graph_interface(graph, dynamic_queries)
    if set(inputs) != set(want_in) or set(outputs) != set(want_out):
        raise ValueError(
            f"{where}: graph {graph} has inputs {sorted(inputs)} and outputs {sorted(outputs)}; "
            f"the artifact contract wants inputs {list(want_in)} and outputs {list(want_out)}"
        )


class Backend(ABC):
    """Turns an artifact into graph runners on one device."""

    name: ClassVar[str]

    def __init__(self, artifact: Artifact, options: BackendOptions):
        self.artifact = artifact
        self.options = options

    @abstractmethod
    def runner(self, graph: str) -> GraphRunner:
        """The runner of `graph`; KeyError if the artifact has no such graph."""

    @property
    def max_hits(self) -> int | None:
        """The most hits per event the backend's graphs accept (None: no fixed limit)."""
        return None

    def describe(self) -> dict[str, Any]:
        """Backend name, device and versions, for logs and benchmark records."""
        return {"backend": self.name, "device": self.options.device}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release sessions and device memory."""
