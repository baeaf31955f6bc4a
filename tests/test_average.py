"""Weight averaging: the mean of the weights, the first source's thresholds, and refusal of unlike models."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from trackrt.cli import main
from trackrt.model.config import preset
from trackrt.train.average import average_checkpoints
from trackrt.train.checkpoint import CheckpointError, build_model, load_checkpoint, save_checkpoint


def _saved_tracker(path: Path, seed: int, **changes: object) -> dict[str, torch.Tensor]:
    """Save a tiny tracker with random weights (and config `changes`) at `path`; return its weights."""
    torch.manual_seed(seed)
    config = dataclasses.replace(preset("tiny", "tracker"), **changes)
    model = build_model(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.2)
    save_checkpoint(path, model, config, metadata={"stage": f"seed {seed}"})
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_average_is_the_mean_of_the_weights_with_the_first_thresholds(tmp_path: Path) -> None:
    a = _saved_tracker(tmp_path / "a", 0, duplicate_iou=0.4)
    b = _saved_tracker(tmp_path / "b", 1, duplicate_iou=0.7, max_queries=64)
    c = _saved_tracker(tmp_path / "c", 2)
    out = average_checkpoints([tmp_path / "a", tmp_path / "b", tmp_path / "c"], tmp_path / "mean")
    model, info = load_checkpoint(out)
    for key, value in model.state_dict().items():
        expected = (a[key].double() + b[key].double() + c[key].double()) / 3
        torch.testing.assert_close(value.double(), expected, rtol=0, atol=1e-6)
    assert not torch.equal(model.state_dict()[next(iter(a))], a[next(iter(a))])
    assert info.thresholds["duplicate_iou"] == 0.4
    assert info.metadata["stage"] == "seed 0"
    assert info.metadata["averaged_from"] == [str(tmp_path / name) for name in ("a", "b", "c")]


def test_average_refuses_models_of_another_size_or_kind(tmp_path: Path) -> None:
    _saved_tracker(tmp_path / "a", 0)
    _saved_tracker(tmp_path / "wide", 1, lsca_window=8)
    with pytest.raises(CheckpointError, match=r"wide.*not the same model"):
        average_checkpoints([tmp_path / "a", tmp_path / "wide"], tmp_path / "x")
    filter_config = preset("tiny", "hit_filter")
    save_checkpoint(tmp_path / "filter", build_model(filter_config), filter_config)
    with pytest.raises(CheckpointError, match=r"filter.*not the same model"):
        average_checkpoints([tmp_path / "a", tmp_path / "filter"], tmp_path / "x")
    with pytest.raises(CheckpointError, match="at least two"):
        average_checkpoints([tmp_path / "a"], tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_average_cli(tmp_path: Path) -> None:
    _saved_tracker(tmp_path / "a", 0)
    _saved_tracker(tmp_path / "b", 1)
    args = ["average", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "mean of 2 checkpoints" in result.output
    refused = CliRunner().invoke(main, ["average", str(tmp_path / "a"), "--out", str(tmp_path / "n")])
    assert refused.exit_code != 0 and "at least two" in refused.output
