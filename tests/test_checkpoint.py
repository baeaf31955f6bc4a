"""Checkpoints: safetensors + JSON round trip, optimiser/RNG resume, and clear errors for broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from trackrt.cli import main
from trackrt.model.config import preset
from trackrt.model.hit_filter import HitFilter
from trackrt.train.checkpoint import (
    CheckpointError,
    build_model,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
    set_thresholds,
)
from trackrt.train.schedule import warmup_cosine_factor
from trackrt.train.train_state import TrainState, load_train_state


def _hit_filter() -> tuple[HitFilter, object]:
    torch.manual_seed(0)
    config = preset("tiny", "hit_filter", overrides={"hit_threshold": 0.3})
    return HitFilter(config), config


def _scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_cosine_factor(step, 2, 10, 0.1))


def _features(config: object, n: int = 40) -> torch.Tensor:
    return torch.randn(1, n, config.features.num_features, generator=torch.Generator().manual_seed(1))


def _train_steps(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, x: torch.Tensor, n: int
) -> None:
    for _ in range(n):
        loss = (model(x) - torch.rand(x.shape[:2])).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


def test_round_trip_preserves_outputs_and_config(tmp_path: Path) -> None:
    model, config = _hit_filter()
    x = _features(config)
    save_checkpoint(tmp_path / "ckpt", model, config, metadata={"note": "unit test"})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    loaded, info = load_checkpoint(tmp_path / "ckpt")
    assert info.kind == "hit_filter"
    assert info.model == config
    assert info.features == config.features
    assert info.thresholds == {"hit_threshold": 0.3}
    assert info.metadata["note"] == "unit test"
    assert not loaded.training
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_thresholds_in_config_json_override_model_config(tmp_path: Path) -> None:
    model, config = _hit_filter()
    save_checkpoint(tmp_path / "ckpt", model, config)
    path = tmp_path / "ckpt" / "config.json"
    data = json.loads(path.read_text())
    data["thresholds"]["hit_threshold"] = 0.05
    path.write_text(json.dumps(data))
    assert read_checkpoint_config(tmp_path / "ckpt").model.hit_threshold == 0.05
    data["thresholds"]["seed_threshold"] = 0.2
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"thresholds\.seed_threshold"):
        read_checkpoint_config(tmp_path / "ckpt")


def test_resume_continues_exactly(tmp_path: Path) -> None:
    model, config = _hit_filter()
    x = _features(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = _scheduler(optimizer)
    _train_steps(model, optimizer, scheduler, x, 3)
    save_checkpoint(
        tmp_path / "ckpt",
        model,
        config,
        optimizer=optimizer,
        scheduler=scheduler,
        state=TrainState(step=3, epoch=1, progress={"position": 7}),
    )
    _train_steps(model, optimizer, scheduler, x, 2)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    expected_lr = optimizer.param_groups[0]["lr"]

    resumed, _ = load_checkpoint(tmp_path / "ckpt")
    resumed.train()
    optimizer2 = torch.optim.AdamW(resumed.parameters(), lr=1e-2)
    scheduler2 = _scheduler(optimizer2)
    state = load_train_state(tmp_path / "ckpt", optimizer2, scheduler2)
    assert (state.step, state.epoch, state.progress) == (3, 1, {"position": 7})
    _train_steps(resumed, optimizer2, scheduler2, x, 2)
    assert optimizer2.param_groups[0]["lr"] == expected_lr
    for name, tensor in resumed.state_dict().items():
        assert torch.equal(tensor, expected[name]), name


def test_missing_and_truncated_files_are_named(tmp_path: Path) -> None:
    model, config = _hit_filter()
    ckpt = save_checkpoint(tmp_path / "ckpt", model, config)
    weights = ckpt / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable or truncated"):
        load_checkpoint(ckpt)
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        load_checkpoint(ckpt)
    (ckpt / "config.json").write_text('{"format": "trackrt-checkpoint", "kind"')
    with pytest.raises(CheckpointError, match=r"config\.json: unreadable or truncated"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match=r"train_state\.json: missing"):
        load_train_state(ckpt)


def test_weights_that_do_not_fit_the_config_name_the_tensor(tmp_path: Path) -> None:
    model, config = _hit_filter()
    ckpt = save_checkpoint(tmp_path / "ckpt", model, config)
    data = json.loads((ckpt / "config.json").read_text())
    data["model_config"]["encoder"]["dim"] = 48
    (ckpt / "config.json").write_text(json.dumps(data))
    with pytest.raises(
        CheckpointError, match=r"tensor '[\w.]+' has shape \[\d+(, \d+)*\] but the config needs"
    ):
        load_checkpoint(ckpt)
    data["model_config"]["encoder"]["dim"] = 32
    data["model_config"]["encoder"]["num_layers"] = 3
    (ckpt / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"tensor 'encoder\.layers\.2\.[\w.]+' .* is missing"):
        load_checkpoint(ckpt)


def test_bad_model_config_in_checkpoint_names_the_key(tmp_path: Path) -> None:
    model, config = _hit_filter()
    ckpt = save_checkpoint(tmp_path / "ckpt", model, config)
    data = json.loads((ckpt / "config.json").read_text())
    data["model_config"]["encoder"]["windw"] = 8
    (ckpt / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"encoder\.windw"):
        load_checkpoint(ckpt)


def test_saving_over_a_checkpoint_replaces_it(tmp_path: Path) -> None:
    model, config = _hit_filter()
    save_checkpoint(tmp_path / "ckpt", model, config, optimizer=torch.optim.AdamW(model.parameters()))
    save_checkpoint(tmp_path / "ckpt", model, config)
    assert not (tmp_path / "ckpt" / "train_state.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_thresholds_are_rewritten_without_touching_the_weights(tmp_path: Path) -> None:
    config = preset("tiny", "tracker")
    path = save_checkpoint(tmp_path / "tracker", build_model(config), config)
    weights = (path / "model.safetensors").read_bytes()
    info = set_thresholds(path, {"duplicate_iou": 0.5, "track_threshold": 0.6})
    assert info.thresholds["duplicate_iou"] == 0.5 and info.model.track_threshold == 0.6
    assert (path / "model.safetensors").read_bytes() == weights
    _, reread = load_checkpoint(path)
    assert reread.thresholds == info.thresholds
    assert reread.metadata["threshold_changes"] == [
        {"duplicate_iou": {"from": 1.0, "to": 0.5}, "track_threshold": {"from": 0.5, "to": 0.6}}
    ]
    with pytest.raises(CheckpointError, match="'window' is not a tracker threshold"):
        set_thresholds(path, {"window": 3})
    with pytest.raises(CheckpointError, match=r"duplicate_iou: must be a probability"):
        set_thresholds(path, {"duplicate_iou": 2.0})
    assert read_checkpoint_config(path).thresholds == info.thresholds  # a refused change writes nothing
    set_thresholds(path, {"duplicate_iou": 0.5, "min_hits": 4})  # only min_hits is a change
    changes = read_checkpoint_config(path).metadata["threshold_changes"]
    assert changes[1:] == [{"min_hits": {"from": 3, "to": 4}}]
    unchanged = (path / "config.json").read_bytes()
    set_thresholds(path, {"duplicate_iou": 0.5})
    assert (path / "config.json").read_bytes() == unchanged

    runner = CliRunner()
    shown = runner.invoke(main, ["thresholds", str(path)])
    assert shown.exit_code == 0 and "duplicate_iou: 0.5" in shown.output
    changed = runner.invoke(main, ["thresholds", str(path), "--set", "min_hits=5"])
    assert changed.exit_code == 0 and "min_hits: 5" in changed.output
    refused = runner.invoke(main, ["thresholds", str(path), "--set", "min_hits=zero"])
    assert refused.exit_code != 0 and "min_hits" in refused.output


def test_a_tracker_can_name_the_filter_threshold_it_runs_behind(tmp_path: Path) -> None:
    config = preset("tiny", "tracker")
    path = save_checkpoint(tmp_path / "tracker", build_model(config), config)
    assert read_checkpoint_config(path).thresholds["filter_threshold"] is None
    assert config.chain_filter_threshold(0.7) == 0.7
    info = set_thresholds(path, {"filter_threshold": 0.42})
    assert info.model.filter_threshold == 0.42 and info.model.chain_filter_threshold(0.7) == 0.42
    with pytest.raises(CheckpointError, match=r"filter_threshold: must be a probability in \[0, 1\]"):
        set_thresholds(path, {"filter_threshold": 1.5})
    cleared = CliRunner().invoke(main, ["thresholds", str(path), "--set", "filter_threshold=null"])
    assert cleared.exit_code == 0 and "filter_threshold: None" in cleared.output
    assert read_checkpoint_config(path).metadata["threshold_changes"][-1] == {
        "filter_threshold": {"from": 0.42, "to": None}
    }


def test_a_tracker_can_run_more_passes(tmp_path: Path) -> None:
    config = preset("tiny", "tracker")
    path = save_checkpoint(tmp_path / "tracker", build_model(config), config)
    assert read_checkpoint_config(path).thresholds["passes"] == 1
    assert set_thresholds(path, {"passes": 2}).model.passes == 2
    with pytest.raises(CheckpointError, match="passes: must be >= 1, got 0"):
        set_thresholds(path, {"passes": 0})
    refused = CliRunner().invoke(main, ["thresholds", str(path), "--set", "passes=1.5"])
    assert refused.exit_code != 0 and "passes" in refused.output
