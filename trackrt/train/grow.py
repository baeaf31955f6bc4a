"""Deepen a trained model's encoder with identity layers, so that training goes on from the same function.

A new pre-norm encoder layer whose attention output projection and feed-forward down projection are zero
adds nothing to its input: the grown model computes exactly what the trained one did, and fine-tuning
then gives the extra layer (its context and capacity) something to learn.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

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


def grow_checkpoint(source: str | Path, out: str | Path, num_layers: int) -> Path:
    """Write a copy of checkpoint `source` with its encoder deepened to `num_layers` (same outputs)."""
    model, info = load_checkpoint(source)
    grown, grown_config = grow_encoder(model, info.model, num_layers)
    metadata = {
        **info.metadata,
        "grown_from": {"checkpoint": str(source), "encoder_layers": info.model.encoder.num_layers},
    }
    return save_checkpoint(out, grown, grown_config, metadata=metadata)
