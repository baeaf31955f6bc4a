"""`trackrt demo` end to end on tiny checkpoints and one tiny simulated event, and its error messages."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from trackrt.cli import main
from trackrt.demo_pipeline import (
    HIT_FILTER_DIR,
    MARKER_FILE,
    SUMMARY_FILE,
    TRACKER_DIRS,
    VARIANT_OVERRIDES,
    DemoError,
    locate_models,
    prepare_output,
)
from trackrt.demo_report import format_table
from trackrt.model.config import preset
from trackrt.train.checkpoint import build_model, save_checkpoint

PILEUP = 2.0
STAGE_COLUMNS = ("features", "filter", "encoder", "seeding", "decoder", "post", "other", "total ms")


def _save(directory: Path, kind: str, seed: int, metadata: dict, **overrides) -> Path:
    torch.manual_seed(seed)
    config = preset("tiny", kind, overrides=overrides)
    return save_checkpoint(directory, build_model(config), config, metadata=metadata)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> Path:
    """Tiny hit filter and trackers under the shipped names; ⟨μ⟩ recorded in the metadata."""
    directory = tmp_path_factory.mktemp("checkpoints")
    metadata = {"selection": "Pix1.0", "pileup": PILEUP}
    _save(directory / HIT_FILTER_DIR, "hit_filter", 1, metadata, hit_threshold=0.3)
    for seed, (variant, name) in enumerate(TRACKER_DIRS.items(), start=2):
        _save(directory / name, "tracker", seed, metadata, **VARIANT_OVERRIDES[variant], seed_threshold=0.3)
    return directory


@pytest.fixture(scope="module")
def demo_run(checkpoints, trackml_dir, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    args = ["demo", "--checkpoints", str(checkpoints), "--out", str(out), "--events", "1"]
    args += ["--variant", "dq-lsca", "--threads", "1", "--detector", str(trackml_dir)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return out, result.stdout


def _table_row(stdout: str, first: str) -> list[str]:
    rows = [line.split() for line in stdout.splitlines() if line.split()[:1] == [first]]
    assert len(rows) == 1, stdout
    return rows[0]


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}%"


def test_demo_prints_one_row_per_variant_agreeing_with_the_summary(demo_run):
    out, stdout = demo_run
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert list(summary["variants"]) == ["dq-lsca"]
    assert summary["pileup"] == PILEUP and summary["pileup_source"] == "checkpoint metadata"
    header = _table_row(stdout, "decoder")
    assert header[header.index("|") + 1 :] == [*STAGE_COLUMNS[:-1], "total", "ms"]
    row = _table_row(stdout, "dq-lsca")
    record = summary["variants"]["dq-lsca"]
    metrics = record["metrics"]
    assert row[1:5] == [_percent(metrics[k]) for k in ("efficiency", "efficiency_perfect", "fake_rate")] + [
        _percent(metrics["duplicate_rate"])
    ]
    score = metrics["trackml_score"]
    assert row[5] == ("n/a" if score is None else f"{score:.3f}")
    timings = record["mean_timings_ms"]
    latency = [float(cell) for cell in row[7:]]
    assert latency[-1] == pytest.approx(timings["total"], abs=0.051)
    assert sum(latency[:-1]) == pytest.approx(timings["total"], abs=0.05 * len(latency))
    assert f"{metrics['counts']['target_particles']} target particles" in stdout


def test_demo_summary_matches_the_run_outputs(demo_run):
    out, _ = demo_run
    record = json.loads((out / SUMMARY_FILE).read_text())["variants"]["dq-lsca"]
    run_json = json.loads(Path(record["run_json"]).read_text())
    assert run_json["metrics"] == record["metrics"]
    assert run_json["backend"]["backend"] == "onnxruntime"
    assert record["events"] == 1 and record["failed_events"] == 0
    lines = [
        json.loads(line) for line in (Path(record["run_dir"]) / "timings.jsonl").read_text().splitlines()
    ]
    assert record["mean_timings_ms"]["total"] == pytest.approx(
        np.mean([r["timings_ms"]["total"] for r in lines])
    )
    overall = json.loads(Path(record["metrics_json"]).read_text())["overall"]
    assert overall["counts"] == record["metrics"]["counts"]
    assert record["export_seconds"] > 0 and math.isfinite(record["export_seconds"])


def test_demo_writes_events_artifact_submissions_and_plots(demo_run):
    out, stdout = demo_run
    record = json.loads((out / SUMMARY_FILE).read_text())["variants"]["dq-lsca"]
    hits = pd.read_csv(out / "events" / "event000000001-hits.csv.gz")
    [submission_path] = record["submissions"]
    submission = pd.read_csv(submission_path)
    assert list(submission.columns) == ["event_id", "hit_id", "track_id"]
    assert sorted(submission["hit_id"]) == sorted(hits["hit_id"])
    assert (submission["event_id"] == 1).all()
    artifact = json.loads((Path(record["artifact"]) / "artifact.json").read_text())
    assert {"hit_filter", "tracker_encoder", "tracker_decoder"} <= set(artifact["graphs"])
    assert sorted(Path(p).name for p in record["plots"]) == [
        "efficiency_vs_eta.png",
        "efficiency_vs_pt.png",
        "fake_rate_vs_eta.png",
        "fake_rate_vs_pt.png",
    ]
    assert all(Path(p).stat().st_size > 1000 for p in record["plots"])
    assert str(out / SUMMARY_FILE) in stdout or SUMMARY_FILE in stdout
    assert "plots/{efficiency,fake_rate}_vs_{pt,eta}.png" in stdout


def test_missing_checkpoints_are_named_one_by_one(tmp_path):
    empty = tmp_path / "checkpoints"
    empty.mkdir()
    result = CliRunner().invoke(main, ["demo", "--checkpoints", str(empty), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    for name in (HIT_FILTER_DIR, *TRACKER_DIRS.values()):
        assert str(empty / name) in result.output
    assert "--checkpoints DIR" in result.output
    assert not (tmp_path / "o").exists()


def test_only_the_requested_variants_are_required(checkpoints, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / HIT_FILTER_DIR).symlink_to(checkpoints / HIT_FILTER_DIR)
    (partial / "small-fq-ma").symlink_to(checkpoints / "small-fq-ma")
    assert set(locate_models(partial, ["fq-ma"]).trackers) == {"fq-ma"}
    with pytest.raises(DemoError) as error:
        locate_models(partial, ["fq-ma", "dq-ma"])
    assert str(partial / "small-dq-ma") in str(error.value)
    assert str(partial / "small-fq-ma") not in str(error.value)


def test_a_tracker_of_another_variant_is_refused(checkpoints, tmp_path):
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    (swapped / HIT_FILTER_DIR).symlink_to(checkpoints / HIT_FILTER_DIR)
    (swapped / "small-dq-ma").symlink_to(checkpoints / "small-dq-lsca")
    with pytest.raises(DemoError, match="a dq-lsca tracker, expected dq-ma"):
        locate_models(swapped, ["dq-ma"])
    (swapped / "small-dq-lsca-seed").symlink_to(checkpoints / "small-dq-lsca")  # strided, not seed-centred
    with pytest.raises(DemoError, match="a dq-lsca tracker, expected dq-lsca-seed"):
        locate_models(swapped, ["dq-lsca-seed"])
    assert set(locate_models(checkpoints, ["dq-lsca-seed"]).trackers) == {"dq-lsca-seed"}


def test_missing_detector_is_reported_before_anything_is_written(checkpoints, tmp_path):
    nowhere = tmp_path / "no-detector"
    nowhere.mkdir()
    args = [
        "demo",
        "--checkpoints",
        str(checkpoints),
        "--out",
        str(tmp_path / "o"),
        "--detector",
        str(nowhere),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "detectors.csv" in result.output and "--detector" in result.output
    assert not (tmp_path / "o").exists()


def test_output_directory_is_replaced_only_when_it_holds_an_earlier_demo(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not an earlier demo output"):
        prepare_output(foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"
    earlier = tmp_path / "earlier"
    (earlier / "events").mkdir(parents=True)
    (earlier / "events" / "event000000009-hits.csv").write_text("stale")
    (earlier / MARKER_FILE).write_text("")
    (earlier / "mine.txt").write_text("kept")
    prepare_output(earlier)
    assert not (earlier / "events").exists()
    assert (earlier / "mine.txt").exists()


def test_table_columns_are_aligned():
    rows = [["decoder", "DM eff", "total ms"], ["dq-lsca", "97.1%", "12.5"], ["fq-ma", "n/a", "1234.0"]]
    lines = format_table(rows).splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[1].startswith("dq-lsca ") and lines[2].endswith("1234.0")
    assert lines[2].index("n/a") + 3 == lines[0].index("DM eff") + len("DM eff")
