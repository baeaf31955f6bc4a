"""Checkpoints without pickle: safetensors weights + JSON config, and a resumable training state."""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from trackrt import __version__
from trackrt.configuration import ConfigError, to_dict
from trackrt.model.config import HitFilterConfig, TrackerConfig, config_from_dict, model_kind

FORMAT = "trackrt-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_TENSORS_FILE = "train_state.safetensors"
STATE_JSON_FILE = "train_state.json"

ModelConfig = HitFilterConfig | TrackerConfig

THRESHOLD_KEYS: dict[str, tuple[str, ...]] = {
    "hit_filter": ("hit_threshold",),
    "tracker": ("seed_threshold", "max_queries", "track_threshold", "hit_threshold", "min_hits"),
}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, of another format, or its weights do not fit its config."""


@dataclass
class CheckpointConfig:
    """What `config.json` holds: model kind, model config (with feature config), thresholds, metadata."""

    kind: str
    model: ModelConfig
    thresholds: dict[str, float | int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> Any:
        """The hit-feature configuration the model was trained with."""
        return self.model.features


@dataclass
class TrainState:
    """Progress of a training run: counters, the sampler position and anything else the loop records."""

    step: int = 0
    epoch: int = 0
    progress: dict[str, Any] = field(default_factory=dict)


def thresholds_of(config: ModelConfig) -> dict[str, float | int]:
    """The decision thresholds a model config carries (hit filter: hit; tracker: seed/track/hit/min hits)."""
    return {key: getattr(config, key) for key in THRESHOLD_KEYS[model_kind(config)]}


def build_model(config: ModelConfig) -> torch.nn.Module:
    """A freshly initialised `HitFilter` or `Tracker` for `config`."""
    if isinstance(config, HitFilterConfig):
        from trackrt.model.hit_filter import HitFilter

        return HitFilter(config)
    from trackrt.model.tracker import Tracker

    return Tracker(config)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing checkpoint file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level")
    return data


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing checkpoint file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({exc})") from None


def _state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU copies (safetensors refuses tensors that share storage)."""
    return {
        name: tensor.detach().to("cpu").contiguous().clone() for name, tensor in module.state_dict().items()
    }


def check_weights_fit(weights: dict[str, torch.Tensor], model: torch.nn.Module, source: Path) -> None:
    """Raise `CheckpointError` naming the first missing, unexpected or wrongly shaped tensor."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise CheckpointError(
            f"{source}: tensor '{missing[0]}' (shape {list(expected[missing[0]].shape)}) required by the "
            f"config is missing ({len(missing)} missing in all)"
        )
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise CheckpointError(
            f"{source}: tensor '{unexpected[0]}' (shape {list(weights[unexpected[0]].shape)}) is not part "
            f"of the model the config describes ({len(unexpected)} unexpected in all)"
        )
    for name, tensor in expected.items():
        if tuple(weights[name].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{source}: tensor '{name}' has shape {list(weights[name].shape)} but the config needs "
                f"{list(tensor.shape)}"
            )


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    config: ModelConfig,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    state: TrainState | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (a crash leaves the previous checkpoint intact)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_file(_state_tensors(model), str(partial / MODEL_FILE), metadata={"format": FORMAT})
    kind = model_kind(config)
    _write_json(
        partial / CONFIG_FILE,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "model_config": to_dict(config),
            "feature_config": to_dict(config.features),
            "thresholds": thresholds_of(config),
            "metadata": {
                "trackrt_version": __version__,
                "torch_version": torch.__version__,
                **(metadata or {}),
            },
        },
    )
    if optimizer is not None or state is not None:
        tensors, info = _train_state_payload(optimizer, scheduler, state or TrainState())
        save_file(tensors, str(partial / STATE_TENSORS_FILE), metadata={"format": FORMAT})
        _write_json(partial / STATE_JSON_FILE, info)
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(partial, path)
    shutil.rmtree(old, ignore_errors=True)
    return path


def read_checkpoint_config(path: str | Path) -> CheckpointConfig:
    """Parse `config.json`; the `thresholds` entry overrides the model config's threshold fields."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory")
    data = _read_json(path / CONFIG_FILE)
    if data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: not a trackrt checkpoint (format {data.get('format')!r})"
        )
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: checkpoint format version {data.get('format_version')} is not supported "
            f"(this trackrt reads version {FORMAT_VERSION})"
        )
    kind = data.get("kind")
    if kind not in THRESHOLD_KEYS:
        raise CheckpointError(f"{path / CONFIG_FILE}: unknown model kind {kind!r}")
    thresholds = data.get("thresholds", {})
    unknown = sorted(set(thresholds) - set(THRESHOLD_KEYS[kind]))
    if unknown:
        raise CheckpointError(
            f"{path / CONFIG_FILE}: unknown threshold 'thresholds.{unknown[0]}' for a {kind}"
        )
    try:
        model_config = config_from_dict(kind, {**data.get("model_config", {}), **thresholds})
    except ConfigError as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: model_config: {exc}") from None
    return CheckpointConfig(kind, model_config, thresholds_of(model_config), data.get("metadata", {}))


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, CheckpointConfig]:
    """Rebuild the model from `config.json`, load `model.safetensors` into it and return it in eval mode."""
    path = Path(path)
    config = read_checkpoint_config(path)
    model = build_model(config.model)
    load_weights(path, model)
    return model.to(device).eval(), config


def load_weights(path: str | Path, model: torch.nn.Module) -> None:
    """Load a checkpoint's `model.safetensors` into `model`, refusing weights that do not fit it."""
    weights = _read_tensors(Path(path) / MODEL_FILE)
    check_weights_fit(weights, model, Path(path) / MODEL_FILE)
    model.load_state_dict(weights)


def _train_state_payload(
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
    info = _read_json(path / STATE_JSON_FILE)
    tensors = _read_tensors(path / STATE_TENSORS_FILE)
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
