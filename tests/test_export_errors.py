"""Bad input to `trackrt export`: clear errors, and never a partial artifact directory left behind."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
import torch
from click.testing import CliRunner
from onnx import helper

from trackrt.export import exporter
from trackrt.export.cli import export as export_command
from trackrt.export.config import ExportOptions
from trackrt.export.exporter import ExportError, export_artifact
from trackrt.model.config import preset
from trackrt.train.checkpoint import build_model, save_checkpoint


@pytest.fixture(scope="module")
def tracker_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = preset("tiny", "tracker")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tracker", build_model(config), config)


@pytest.fixture(scope="module")
def filter_checkpoint(tmp_path_factory) -> Path:
    config = preset("tiny", "hit_filter")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "filter", build_model(config), config)


def _copy(checkpoint: Path, destination: Path) -> Path:
    destination.mkdir()
    for file in checkpoint.iterdir():
        (destination / file.name).write_bytes(file.read_bytes())
    return destination


def _placeholder_model(spec) -> onnx.ModelProto:
    """A graph with the spec's inputs and outputs (Identity-free, never run)."""
    inputs = [helper.make_tensor_value_info(t.name, t.onnx_dtype, [1, "num_hits"]) for t in spec.inputs]
    outputs = [helper.make_tensor_value_info(t.name, t.onnx_dtype, [1, "num_hits"]) for t in spec.outputs]
    nodes = [helper.make_node("Identity", [spec.inputs[0].name], [t.name]) for t in spec.outputs]
    return helper.make_model(helper.make_graph(nodes, spec.name, inputs, outputs))


def _run(*args: str):
    return CliRunner().invoke(export_command, list(args))


def _assert_nothing_written(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_missing_checkpoint(tmp_path):
    result = _run(str(tmp_path / "nope"), "--out", str(tmp_path / "out"))
    assert result.exit_code != 0 and "checkpoint not found" in result.output
    _assert_nothing_written(tmp_path, tmp_path / "out")


def test_truncated_weights(tracker_checkpoint, tmp_path):
    broken = _copy(tracker_checkpoint, tmp_path / "broken")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    result = _run(str(broken), "--out", str(tmp_path / "out"))
    assert result.exit_code != 0 and "truncated" in result.output and "model.safetensors" in result.output
    _assert_nothing_written(tmp_path, tmp_path / "out")


def test_weights_that_do_not_fit_the_config(tracker_checkpoint, tmp_path):
    broken = _copy(tracker_checkpoint, tmp_path / "wider")
    config = json.loads((broken / "config.json").read_text())
    config["model_config"]["encoder"]["dim"] = 64
    (broken / "config.json").write_text(json.dumps(config))
    result = _run(str(broken), "--out", str(tmp_path / "out"))
    assert result.exit_code != 0 and "shape" in result.output
    _assert_nothing_written(tmp_path, tmp_path / "out")


def test_hit_filter_given_as_the_tracker(filter_checkpoint, tmp_path):
    result = _run(str(filter_checkpoint), "--out", str(tmp_path / "out"))
    assert result.exit_code != 0 and "--filter-checkpoint" in result.output


def test_tracker_given_as_the_hit_filter(tracker_checkpoint, tmp_path):
    with pytest.raises(ExportError, match="expected a hit_filter"):
        export_artifact(tracker_checkpoint, tmp_path / "out", filter_checkpoint=tracker_checkpoint)


def test_opset_below_18(tracker_checkpoint, tmp_path):
    result = _run(str(tracker_checkpoint), "--out", str(tmp_path / "out"), "--opset", "17")
    assert result.exit_code == 2 and "opset 17 is below 18" in result.output
    with pytest.raises(ValueError, match="below 18"):
        ExportOptions(opset=17)
    _assert_nothing_written(tmp_path, tmp_path / "out")


def test_existing_output_directory_is_refused_without_force(tracker_checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = _run(str(tracker_checkpoint), "--out", str(out))
    assert result.exit_code != 0 and "already exists; pass --force" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_failure_midway_leaves_no_partial_files(tracker_checkpoint, filter_checkpoint, tmp_path, monkeypatch):
    """The second graph fails after the first was written: neither the output nor the staging dir remains."""
    written = []

    def write_then_fail(job, record, options, directory):
        if written:
            raise RuntimeError("simulated exporter crash")
        model = _placeholder_model(job.spec)
        path = directory / job.spec.filename
        onnx.save(model, str(path))
        written.append(path)
        return [(path, model, "both")]

    monkeypatch.setattr(exporter, "_write_graph", write_then_fail)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated"):
        export_artifact(tracker_checkpoint, out, filter_checkpoint)
    assert written and not written[0].exists()
    _assert_nothing_written(tmp_path, out)


def test_existing_directory_survives_a_failed_forced_export(tracker_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "artifact.json").write_text("{}")

    def fail(*args, **kwargs):
        raise RuntimeError("simulated exporter crash")

    monkeypatch.setattr(exporter, "_write_graph", fail)
    with pytest.raises(RuntimeError):
        export_artifact(tracker_checkpoint, out, force=True)
    assert (out / "artifact.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_exporter_crash_names_the_graph_and_leaves_nothing(tracker_checkpoint, tmp_path, monkeypatch):
    def crash(module, inputs, spec, options):
        raise RuntimeError("Constraints violated (num_hits)")

    monkeypatch.setattr(exporter, "export_module", crash)
    result = _run(str(tracker_checkpoint), "--out", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "tracker_encoder: the ONNX exporter failed: RuntimeError: Constraints violated" in result.output
    _assert_nothing_written(tmp_path, tmp_path / "out")
