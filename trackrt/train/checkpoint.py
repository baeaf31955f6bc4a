"""Model checkpoints without pickle: `model.safetensors` + `config.json`, plus the optional training state."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from trackrt import __version__
from trackrt.configuration import ConfigError, to_dict
from trackrt.data.features import FeatureConfig
from trackrt.model.config import HitFilterConfig, TrackerConfig, config_from_dict, model_kind
from trackrt.train.checkpoint_files import (
    CONFIG_FILE,
    FORMAT,
    FORMAT_VERSION,
    MODEL_FILE,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
    CheckpointError,
    read_json,
    read_tensors,
    write_json,
)
from trackrt.train.train_state import TrainState, train_state_payload

ModelConfig = HitFilterConfig | TrackerConfig

THRESHOLD_KEYS: dict[str, tuple[str, ...]] = {
    "hit_filter": ("hit_threshold",),
    "tracker": (
        "seed_threshold",
        "max_queries",
        "track_threshold",
        "hit_threshold",
        "min_hits",
        "duplicate_iou",
        "filter_threshold",
        "passes",
    ),
}


@dataclass
class CheckpointConfig:
    """What `config.json` holds: model kind, model config (with feature config), thresholds, metadata."""

    kind: str
    model: ModelConfig
    thresholds: dict[str, float | int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> FeatureConfig:
        """The hit-feature configuration the model was trained with."""
        return self.model.features


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
    write_json(
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
        tensors, info = train_state_payload(optimizer, scheduler, state or TrainState())
        save_file(tensors, str(partial / STATE_TENSORS_FILE), metadata={"format": FORMAT})
        write_json(partial / STATE_JSON_FILE, info)
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
    data = read_json(path / CONFIG_FILE)
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


def set_thresholds(path: str | Path, values: dict[str, Any]) -> CheckpointConfig:
    """Rewrite a checkpoint's decision thresholds in `config.json` (weights untouched); returns the result.

    Keys must be thresholds of the checkpoint's kind; values are validated as the model config does.
    The previous values are kept under `metadata.threshold_changes`; setting a threshold to the value it
    already has changes nothing.
    """
    path = Path(path)
    current = read_checkpoint_config(path)
    unknown = sorted(set(values) - set(THRESHOLD_KEYS[current.kind]))
    if unknown:
        known = ", ".join(THRESHOLD_KEYS[current.kind])
        raise CheckpointError(f"{path}: '{unknown[0]}' is not a {current.kind} threshold (known: {known})")
    try:
        updated = config_from_dict(current.kind, {**to_dict(current.model), **values})
    except ConfigError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    changed = {
        key: {"from": current.thresholds[key], "to": getattr(updated, key)}
        for key in values
        if getattr(updated, key) != current.thresholds[key]
    }
    if not changed:
        return current
    data = read_json(path / CONFIG_FILE)
    data.setdefault("metadata", {}).setdefault("threshold_changes", []).append(changed)
    data["model_config"] = to_dict(updated)
    data["thresholds"] = thresholds_of(updated)
    partial = path / (CONFIG_FILE + ".partial")
    write_json(partial, data)
    os.replace(partial, path / CONFIG_FILE)
    return read_checkpoint_config(path)


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
    weights = read_tensors(Path(path) / MODEL_FILE)
    check_weights_fit(weights, model, Path(path) / MODEL_FILE)
    model.load_state_dict(weights)
