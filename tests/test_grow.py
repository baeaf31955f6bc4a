"""Growing an encoder: identity layers appended, same outputs, and the deeper model trains from there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from trackrt.cli import main
from trackrt.data.features import hit_features
from trackrt.data.triplets import HELIX_FEATURES, TripletConfig
from trackrt.model.config import preset
from trackrt.train.checkpoint import CheckpointError, build_model, load_checkpoint, save_checkpoint
from trackrt.train.grow import grow_checkpoint, grow_encoder, widen_features


def _trained_like(kind: str) -> tuple[torch.nn.Module, object]:
    """A tiny model with every weight random (as after training: no zero projection left)."""
    torch.manual_seed(0)
    config = preset("tiny", kind)
    model = build_model(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    return model.eval(), config


@pytest.mark.parametrize("kind", ["hit_filter", "tracker"])
def test_grown_encoder_computes_the_same_embeddings(kind: str) -> None:
    model, config = _trained_like(kind)
    grown, grown_config = grow_encoder(model, config, config.encoder.num_layers + 2)
    assert grown_config.encoder.num_layers == config.encoder.num_layers + 2 == len(grown.encoder.layers)
    features = torch.randn(2, 150, config.features.num_features)
    lengths = torch.tensor([150, 97])
    torch.testing.assert_close(grown.encoder(features, lengths), model.encoder(features, lengths))
    new_layer = grown.encoder.layers[-1]
    assert new_layer.attention.out_proj.weight.abs().sum() == 0 and new_layer.ffn.down.weight.abs().sum() == 0
    assert new_layer.attention.qkv_proj.weight.abs().sum() > 0  # the rest is freshly initialised


def test_grown_layers_learn() -> None:
    """The zero projections get gradients, so training moves the new layer off the identity."""
    model, config = _trained_like("hit_filter")
    grown, _ = grow_encoder(model, config, config.encoder.num_layers + 1)
    grown.train()
    grown(torch.randn(1, 80, config.features.num_features)).square().mean().backward()
    layer = grown.encoder.layers[-1]
    assert layer.attention.out_proj.weight.grad.abs().sum() > 0 and layer.ffn.down.weight.grad.abs().sum() > 0


def test_grow_refuses_fewer_layers() -> None:
    model, config = _trained_like("hit_filter")
    with pytest.raises(CheckpointError, match="already has 2 layers"):
        grow_encoder(model, config, 2)


def test_grow_cli_writes_a_checkpoint_that_loads(tmp_path: Path) -> None:
    model, config = _trained_like("hit_filter")
    save_checkpoint(tmp_path / "filter", model, config, metadata={"selection": "Pix1.0"})
    result = CliRunner().invoke(
        main, ["grow", str(tmp_path / "filter"), "--layers", "3", "--out", str(tmp_path / "deeper")]
    )
    assert result.exit_code == 0, result.output
    assert "encoder.num_layers=3" in result.output
    grown, info = load_checkpoint(tmp_path / "deeper")
    assert info.model.encoder.num_layers == 3 and info.metadata["selection"] == "Pix1.0"
    assert info.metadata["grown_from"] == {"checkpoint": str(tmp_path / "filter"), "encoder_layers": 2}
    features = torch.randn(1, 64, config.features.num_features)
    torch.testing.assert_close(grown(features), model(features))
    refused = CliRunner().invoke(
        main, ["grow", str(tmp_path / "filter"), "--layers", "1", "--out", str(tmp_path / "x")]
    )
    assert refused.exit_code != 0 and "already has 2 layers" in refused.output
    with pytest.raises(CheckpointError):
        grow_checkpoint(tmp_path / "deeper", tmp_path / "y", 3)


def _event_hits(rng: np.random.Generator, count: int = 120) -> np.ndarray:
    r = rng.choice([32.0, 72.0, 116.0, 172.0], count)
    phi = rng.uniform(-np.pi, np.pi, count)
    return np.stack([r * np.cos(phi), r * np.sin(phi), rng.uniform(-300, 300, count)], axis=1)


@pytest.mark.parametrize("kind", ["hit_filter", "tracker"])
def test_widened_model_reads_triplets_and_computes_the_same(kind: str, rng: np.random.Generator) -> None:
    model, config = _trained_like(kind)
    wide_features = dataclasses.replace(config.features, triplets=TripletConfig())
    wide, wide_config = widen_features(model, config, wide_features)
    assert wide_config.features.num_features == config.features.num_features + 4
    hits = _event_hits(rng)
    old = torch.from_numpy(hit_features(hits, config.features))[None]
    new = torch.from_numpy(hit_features(hits, wide_features))[None]
    torch.testing.assert_close(wide.encoder(new), model.encoder(old))
    wide.train()
    wide.encoder(new).square().mean().backward()
    weight = wide.encoder.input_projection.net[0].weight
    assert weight.grad[:, -4:].abs().sum() > 0  # the new columns start at zero but learn


def test_widening_refuses_removed_or_rescaled_features() -> None:
    model, config = _trained_like("hit_filter")
    with pytest.raises(CheckpointError, match="no feature added"):
        widen_features(model, config, config.features)
    fewer = dataclasses.replace(config.features, features=config.features.features[1:])
    with pytest.raises(CheckpointError, match="cannot be removed"):
        widen_features(model, config, dataclasses.replace(fewer, triplets=TripletConfig()))
    rescaled = dataclasses.replace(config.features, z_scale=10.0, triplets=TripletConfig())
    with pytest.raises(CheckpointError, match=r"features\.z_scale"):
        widen_features(model, config, rescaled)


def test_grow_cli_adds_features_and_layers(tmp_path: Path, rng: np.random.Generator) -> None:
    model, config = _trained_like("hit_filter")
    save_checkpoint(tmp_path / "filter", model, config)
    result = CliRunner().invoke(
        main,
        ["grow", str(tmp_path / "filter"), "--feature", "triplets={partners: 8}", "--layers", "3",
         "--out", str(tmp_path / "grown")],
    )
    assert result.exit_code == 0, result.output
    assert "features.triplets={'partners': 8}" in result.output
    grown, info = load_checkpoint(tmp_path / "grown")
    assert info.features.triplets == TripletConfig(partners=8) and info.model.encoder.num_layers == 3
    assert info.metadata["grown_from"]["features"] == config.features.feature_names
    hits = _event_hits(rng)
    torch.testing.assert_close(
        grown(torch.from_numpy(hit_features(hits, info.features))[None]),
        model(torch.from_numpy(hit_features(hits, config.features))[None]),
    )
    for args, message in [
        ([], "give encoder layers, feature changes or both"),
        (["--feature", "triplets={window: 3}"], "unknown config key 'features.triplets.window'"),
    ]:
        refused = CliRunner().invoke(
            main, ["grow", str(tmp_path / "filter"), *args, "--out", str(tmp_path / "x")]
        )
        assert refused.exit_code != 0 and message in refused.output, refused.output


@pytest.mark.parametrize("kind", ["hit_filter", "tracker"])
def test_widened_model_reads_the_helix_columns_and_computes_the_same(
    kind: str, rng: np.random.Generator
) -> None:
    model, config = _trained_like(kind)
    with_triplets = dataclasses.replace(config.features, triplets=TripletConfig())
    model, config = widen_features(model, config, with_triplets)
    wide, wide_config = widen_features(model, config, dataclasses.replace(with_triplets, triplet_helix=True))
    assert wide_config.features.num_features == with_triplets.num_features + len(HELIX_FEATURES)
    hits = _event_hits(rng)
    old = torch.from_numpy(hit_features(hits, with_triplets))[None]
    new = torch.from_numpy(hit_features(hits, wide_config.features))[None]
    torch.testing.assert_close(wide.encoder(new), model.encoder(old))
    with pytest.raises(CheckpointError, match="'helix_support' is read by the model"):
        widen_features(wide, wide_config, dataclasses.replace(with_triplets, sinusoidal=["eta"]))
