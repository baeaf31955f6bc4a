"""Resumable training state without pickle: optimiser tensors + RNG states (safetensors), the rest JSON."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trackrt.train.checkpoint_files import (
    FORMAT,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
    CheckpointError,
    read_json,
    read_tensors,
)


@dataclass
class TrainState:
    """Progress of a training run: counters, the sampler position and anything else the loop records."""

    step: int = 0
    epoch: int = 0
    progress: dict[str, Any] = field(default_factory=dict)


def train_state_payload(
    optimizer: torch.optim.Optimizer | None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    state: TrainState,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split optimiser, scheduler and RNG state into tensors (safetensors) and plain values (JSON)."""
    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, cuda_state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = cuda_state
    info: dict[str, Any] = {
        "format": FORMAT,
        "step": state.step,
        "epoch": state.epoch,
        "progress": state.progress,
        "rng": {
            "python": _jsonable(random.getstate()),
        },
        "optimizer": None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
    }
    if optimizer is not None:
        opt_state = optimizer.state_dict()
        per_param: dict[str, dict[str, Any]] = {}
        for index, values in opt_state["state"].items():
            scalars = {}
            for name, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{index}.{name}"] = value.detach().to("cpu").contiguous().clone()
                else:
                    scalars[name] = value
            per_param[str(index)] = scalars
        info["optimizer"] = {"param_groups": _jsonable(opt_state["param_groups"]), "scalars": per_param}
    return tensors, info


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, info: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, scalars in info["scalars"].items():
        state[int(key)] = dict(scalars)
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            _, index, field_name = name.split(".", 2)
            state.setdefault(int(index), {})[field_name] = tensor
    groups = info["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def load_train_state(
    path: str | Path,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    restore_rng: bool = True,
) -> TrainState:
    """Restore optimiser, scheduler and (optionally) the global torch/Python RNGs; return the progress."""
    path = Path(path)
    info = read_json(path / STATE_JSON_FILE)
    tensors = read_tensors(path / STATE_TENSORS_FILE)
    if optimizer is not None:
        if info.get("optimizer") is None:
            raise CheckpointError(f"{path / STATE_JSON_FILE}: no optimiser state to resume from")
        try:
            _restore_optimizer(optimizer, info["optimizer"], tensors)
        except (KeyError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: optimiser state does not fit this model ({exc})") from None
    if scheduler is not None and info.get("scheduler") is not None:
        scheduler.load_state_dict(info["scheduler"])
    if restore_rng:
        torch.set_rng_state(tensors["rng.torch"])
        cuda_states = [
            tensors[f"rng.cuda.{i}"] for i in range(torch.cuda.device_count()) if f"rng.cuda.{i}" in tensors
        ]
        if cuda_states and len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        py = info["rng"]["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    return TrainState(step=int(info["step"]), epoch=int(info["epoch"]), progress=info.get("progress", {}))
