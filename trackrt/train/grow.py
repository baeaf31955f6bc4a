"""Grow a trained model without changing what it computes, so that training goes on from the same function.

Deeper: a new pre-norm encoder layer whose attention output projection and feed-forward down projection
are zero adds nothing to its input. Wider: new input features enter through zero columns of the input
projection. Either way the grown model computes exactly what the trained one did, and fine-tuning then
gives the new layer or feature something to learn.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from trackrt.configuration import ConfigError, from_dict, to_dict
from trackrt.data.features import FeatureConfig
from trackrt.train.checkpoint import (
    CheckpointError,
    ModelConfig,
    build_model,
    load_checkpoint,
    save_checkpoint,
)


def grow_encoder(
    model: torch.nn.Module, config: ModelConfig, num_layers: int
) -> tuple[torch.nn.Module, ModelConfig]:
    """(model, config) with `num_layers` encoder layers: the trained ones, then identity layers appended."""
    current = config.encoder.num_layers
    if num_layers <= current:
        raise CheckpointError(f"num_layers: the encoder already has {current} layers; give more than that")
    grown_config = dataclasses.replace(
        config, encoder=dataclasses.replace(config.encoder, num_layers=num_layers)
    )
    grown = build_model(grown_config)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    new_prefixes = tuple(f"encoder.layers.{i}." for i in range(current, num_layers))
    if unexpected or any(not key.startswith(new_prefixes) for key in missing):
        raise CheckpointError(f"grow_encoder: weights do not carry over ({missing=}, {unexpected=})")
    with torch.no_grad():
        for layer in grown.encoder.layers[current:]:
            for projection in (layer.attention.out_proj, layer.ffn.down):
                projection.weight.zero_()
                if projection.bias is not None:
                    projection.bias.zero_()
    return grown.eval(), grown_config


def _unchanged_scales(old: FeatureConfig, new: FeatureConfig) -> None:
    """Refuse a new feature config in which a feature the model already reads would mean something else."""
    for item in dataclasses.fields(FeatureConfig):
        if item.name in ("features", "sinusoidal", "triplets", "triplet_helix"):
            continue
        if item.name == "sinusoidal_frequencies" and not (old.sinusoidal and new.sinusoidal):
            continue
        if getattr(old, item.name) != getattr(new, item.name):
            raise CheckpointError(
                f"features.{item.name}: {getattr(old, item.name)} -> {getattr(new, item.name)} would "
                "change features the model already reads; only add features"
            )
    if old.triplets is not None and old.triplets != new.triplets:
        raise CheckpointError(
            "features.triplets: the model already reads triplet features; keep them as they are"
        )


def widen_features(
    model: torch.nn.Module, config: ModelConfig, features: FeatureConfig
) -> tuple[torch.nn.Module, ModelConfig]:
    """(model, config) reading `features`, a superset of the trained ones; new ones start at zero weight."""
    old_names, new_names = config.features.feature_names, features.feature_names
    dropped = [name for name in old_names if name not in new_names]
    if dropped:
        raise CheckpointError(f"features: {dropped[0]!r} is read by the model and cannot be removed")
    if len(new_names) == len(old_names):
        raise CheckpointError("features: no feature added")
    _unchanged_scales(config.features, features)
    wide_config = dataclasses.replace(config, features=features)
    wide = build_model(wide_config)
    state = model.state_dict()
    key = "encoder.input_projection.net.0.weight"
    weight = state[key]
    columns = torch.zeros(weight.shape[0], len(new_names), dtype=weight.dtype)
    columns[:, [new_names.index(name) for name in old_names]] = weight
    wide.load_state_dict({**state, key: columns})
    return wide.eval(), wide_config


def grow_checkpoint(
    source: str | Path,
    out: str | Path,
    num_layers: int | None = None,
    feature_changes: dict[str, Any] | None = None,
) -> Path:
    """Write a copy of checkpoint `source` deepened to `num_layers` encoder layers and/or reading the
    features after `feature_changes` (feature-config keys to new values); same outputs either way."""
    if num_layers is None and not feature_changes:
        raise CheckpointError("grow: give encoder layers, feature changes or both")
    model, info = load_checkpoint(source)
    config = info.model
    grown_from: dict[str, Any] = {"checkpoint": str(source), "encoder_layers": config.encoder.num_layers}
    if feature_changes:
        try:
            features = from_dict(FeatureConfig, {**to_dict(config.features), **feature_changes}, "features")
        except ConfigError as exc:
            raise CheckpointError(str(exc)) from None
        grown_from["features"] = config.features.feature_names
        model, config = widen_features(model, config, features)
    if num_layers is not None:
        model, config = grow_encoder(model, config, num_layers)
    metadata = {**info.metadata, "grown_from": grown_from}
    return save_checkpoint(out, model, config, metadata=metadata)
