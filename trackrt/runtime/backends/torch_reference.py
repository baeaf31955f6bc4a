"""Torch reference backend: the checkpointed PyTorch models behind the graph-runner interface.

For parity checks against the exported graphs: the same chain, features, seed selection and hit
assignment run around `HitFilter.forward`, `Tracker.encode` and the last layer of `Tracker.decode`.
torch is imported only when this backend is created.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trackrt.runtime.artifact import DECODER_GRAPH, ENCODER_GRAPH, HIT_FILTER_GRAPH, Artifact
from trackrt.runtime.backends.base import (
    Backend,
    BackendOptions,
    BackendUnavailable,
    DeviceArray,
    GraphRunner,
    GraphValue,
    graph_interface,
)

TensorFunction = Callable[[dict[str, Any]], dict[str, Any]]


class TorchDeviceArray(DeviceArray):
    """A torch tensor kept on its device between graphs."""

    def __init__(self, tensor: Any):
        self.tensor = tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    def numpy(self) -> np.ndarray:
        return self.tensor.detach().cpu().numpy()


class TorchGraphRunner(GraphRunner):
    """Runs a function of named tensors under `torch.inference_mode` on one device."""

    def __init__(
        self,
        name: str,
        function: TensorFunction,
        torch: Any,
        device: Any,
        input_names: tuple[str, ...],
        output_names: tuple[str, ...],
    ):
        super().__init__(name, input_names, output_names)
        self._function = function
        self._torch = torch
        self._device = device

    def run(
        self, inputs: Mapping[str, GraphValue], keep_on_device: Collection[str] = ()
    ) -> dict[str, GraphValue]:
        self._check_inputs(inputs)
        torch = self._torch
        tensors = {}
        for name, value in inputs.items():
            if isinstance(value, TorchDeviceArray):
                tensors[name] = value.tensor
            else:
                host = value.numpy() if isinstance(value, DeviceArray) else value
                tensors[name] = torch.from_numpy(np.ascontiguousarray(host)).to(self._device)
        with torch.inference_mode():
            outputs = self._function(tensors)
        return {
            name: TorchDeviceArray(outputs[name])
            if name in keep_on_device
            else outputs[name].float().cpu().numpy()
            for name in self.output_names
        }


def import_torch() -> Any:
    """torch, or BackendUnavailable saying how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(
            "the torch reference backend needs PyTorch: pip install 'trackrt[torch]'"
        ) from exc
    return torch


def _checkpoint_path(artifact: Artifact, kind: str, recorded: str | None, overrides: dict[str, str]) -> Path:
    """Where the `kind` checkpoint is: an explicit override, else the path recorded at export time."""
    candidate = overrides.get(kind) or recorded
    if not candidate:
        raise BackendUnavailable(
            f"no {kind} checkpoint recorded in artifact.json; pass checkpoints={{'{kind}': DIR}}"
        )
    path = Path(candidate)
    if not path.is_absolute() and (artifact.directory / path).exists():
        path = artifact.directory / path
    if not path.exists():
        raise BackendUnavailable(f"{kind} checkpoint {path} not found; pass checkpoints={{'{kind}': DIR}}")
    return path


def _verify_checkpoint(path: Path, expected: str | None, kind: str) -> None:
    """Refuse a checkpoint whose hash differs from the one recorded when the graphs were exported."""
    if not expected:
        return
    from trackrt.export.metadata import checkpoint_sha256

    actual = checkpoint_sha256(path)
    if actual != expected:
        raise BackendUnavailable(
            f"{kind} checkpoint {path}: sha256 {actual[:12]}… differs from the exported {expected[:12]}…; "
            "parity against these graphs would be meaningless"
        )


class TorchReferenceBackend(Backend):
    """The artifact's checkpoints loaded as PyTorch modules (eval mode) on one device."""

    name = "torch"

    def __init__(self, artifact: Artifact, options: BackendOptions):
        super().__init__(artifact, options)
        torch = import_torch()
        try:
            from trackrt.train.checkpoint import load_checkpoint
        except ImportError as exc:
            raise BackendUnavailable(f"the torch backend needs trackrt.train.checkpoint: {exc}") from exc
        self._torch = torch
        device = torch.device(options.device)
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        dynamic = artifact.tracker.dynamic_queries
        self._runners: dict[str, TorchGraphRunner] = {}
        settings = {"tracker": artifact.tracker, "hit_filter": artifact.hit_filter}
        models = {}
        for kind, setting in settings.items():
            if setting is None:
                continue
            path = _checkpoint_path(artifact, kind, setting.checkpoint, options.checkpoints)
            _verify_checkpoint(path, setting.checkpoint_sha256, kind)
            model, _config = load_checkpoint(path, device=device)
            models[kind] = model.eval()
        tracker = models["tracker"]

        def encode(t: dict[str, Any]) -> dict[str, Any]:
            embeddings, seeds = tracker.encode(t["hit_features"])
            return {"hit_embeddings": embeddings, "seed_logits": seeds}

        def decode(t: dict[str, Any]) -> dict[str, Any]:
            last = tracker.decode(t["hit_embeddings"], t.get("query_indices"))[-1]
            return {"track_logits": last["track_logits"], "assignment_logits": last["assignment_logits"]}

        functions: dict[str, TensorFunction] = {ENCODER_GRAPH: encode, DECODER_GRAPH: decode}
        if "hit_filter" in models:
            hit_filter = models["hit_filter"]
            functions[HIT_FILTER_GRAPH] = lambda t: {"hit_logits": hit_filter(t["hit_features"])}
        for graph, function in functions.items():
            inputs, outputs = graph_interface(graph, dynamic)
            self._runners[graph] = TorchGraphRunner(graph, function, torch, device, inputs, outputs)

    def runner(self, graph: str) -> GraphRunner:
        return self._runners[graph]

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": self.options.device,
            "torch": self._torch.__version__,
            "threads": self._torch.get_num_threads(),
        }

    def close(self) -> None:
        self._runners.clear()
