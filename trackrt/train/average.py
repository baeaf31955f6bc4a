"""Weight averaging ("model soup"): one checkpoint with the mean weights of several of one architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trackrt.configuration import to_dict
from trackrt.train.checkpoint import CheckpointConfig, CheckpointError, load_checkpoint, save_checkpoint


def _architecture(info: CheckpointConfig) -> dict[str, Any]:
    """A checkpoint's kind and model config without its decision thresholds (those may differ)."""
    config = {key: value for key, value in to_dict(info.model).items() if key not in info.thresholds}
    return {"kind": info.kind, **config}


def average_checkpoints(sources: list[str | Path], out: str | Path) -> Path:
    """Write the element-wise mean of the weights of `sources` (same kind and architecture) to `out`,
    with the first source's thresholds and metadata plus `averaged_from`."""
    if len(sources) < 2:
        raise CheckpointError("average: give at least two checkpoints")
    model, first = load_checkpoint(sources[0])
    state = model.state_dict()
    total = {key: value.to(torch.float64) for key, value in state.items()}
    for source in sources[1:]:
        other, info = load_checkpoint(source)
        if _architecture(info) != _architecture(first):
            raise CheckpointError(
                f"average: {source} is not the same model as {sources[0]}"
                " (kind, size, window or input features differ)"
            )
        for key, value in other.state_dict().items():
            total[key] += value.to(torch.float64)
    model.load_state_dict({key: (total[key] / len(sources)).to(state[key].dtype) for key in state})
    metadata = {**first.metadata, "averaged_from": [str(source) for source in sources]}
    return save_checkpoint(out, model, first.model, metadata=metadata)
