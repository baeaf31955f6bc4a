"""`trackrt run` through click's CliRunner: outputs, logs, metrics and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from trackrt.cli import main
from trackrt.data.trackml import write_event
from trackrt.runtime.helix_fit import PARAMETER_COLUMNS
from trackrt.runtime.synthetic import synthetic_event, write_synthetic_artifact

GOOD_EVENTS = (1, 2, 3)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return write_synthetic_artifact(tmp_path_factory.mktemp("artifact"))


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("events")
    for event_id in GOOD_EVENTS:
        write_event(directory, synthetic_event(event_id=event_id, num_particles=25, seed=event_id))
    return directory


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args], catch_exceptions=False)
    return result.exit_code, result.output


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_writes_every_output(artifact, events, tmp_path):
    out = tmp_path / "out"
    code, output = invoke(str(artifact), str(events), "--out", str(out), "--workers", "2")
    assert code == 0, output
    assert "efficiency DM 1.0000" in output and "TrackML score" in output
    for event_id in GOOD_EVENTS:
        hits = pd.read_csv(events / f"event{event_id:09d}-hits.csv.gz")
        submission = pd.read_csv(out / f"event{event_id:09d}-submission.csv")
        assert list(submission.columns) == ["event_id", "hit_id", "track_id"]
        assert (submission.event_id == event_id).all()
        assert sorted(submission.hit_id) == sorted(hits.hit_id)
        tracks = pd.read_csv(out / f"event{event_id:09d}-tracks.csv")
        assert list(tracks.columns) == ["event_id", *PARAMETER_COLUMNS]
        assert len(tracks) == submission.track_id[submission.track_id >= 0].nunique() == 25
    timings = read_jsonl(out / "timings.jsonl")
    assert [t["event_id"] for t in timings] == list(GOOD_EVENTS)
    assert {"features", "hit_filter", "encoder", "seeding", "decoder", "post_processing", "total"} <= set(
        timings[0]["timings_ms"]
    )
    assert (out / "errors.jsonl").read_text() == ""
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["efficiency"] == 1.0
    assert metrics["overall"]["counts"]["target_particles"] == 75
    assert [row["event_id"] for row in metrics["per_event"]] == list(GOOD_EVENTS)
    assert [row["targets"] for row in metrics["per_event"]] == [25, 25, 25]
    assert metrics["event_bootstrap"]["intervals"]["efficiency"] == [1.0, 1.0]
    summary = json.loads((out / "run.json").read_text())
    assert summary["events"] == 3 and summary["failed"] == 0
    assert summary["backend"]["backend"] == "onnxruntime"


def test_failed_events_are_logged_and_others_still_run(artifact, events, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in events.iterdir():
        (mixed / path.name).write_bytes(path.read_bytes())
    outside = synthetic_event(event_id=4, num_particles=10, seed=4)
    outside.hits.loc[[0, 1], "x"] = 900.0
    write_event(mixed, outside)
    (mixed / "event000000005-hits.csv").write_text("hit_id,x,y\n1,2.0,3.0\n")

    out = tmp_path / "out"
    code, output = invoke(str(artifact), str(mixed), "--out", str(out), "--no-progress", "--no-warmup")
    assert code == 1, output
    errors = read_jsonl(out / "errors.jsonl")
    by_event = {e["event_id"]: e for e in errors}
    assert set(by_event) == {4, 5}
    assert by_event[4]["check"] == "outside_detector" and by_event[4]["bad_rows"] == 2
    assert by_event[5]["stage"] == "read" and by_event[5]["check"] == "read_failed"
    assert "event000000005" in by_event[5]["source"]
    written = {int(p.name[5:14]) for p in out.glob("event*-submission.csv")}
    assert written == set(GOOD_EVENTS)
    assert written | set(by_event) == {1, 2, 3, 4, 5}
    assert "2 event(s) failed" in output


def test_parquet_without_truth_and_same_result_for_any_worker_count(artifact, events, tmp_path):
    hits_only = tmp_path / "hits_only"
    hits_only.mkdir()
    for path in events.glob("*-hits.csv.gz"):
        (hits_only / path.name).write_bytes(path.read_bytes())
    one, two = tmp_path / "one", tmp_path / "two"
    code, output = invoke(
        str(artifact), str(hits_only), "--out", str(one), "--format", "parquet", "--no-progress"
    )
    assert code == 0, output
    assert "efficiency" not in output and not (one / "metrics.json").exists()
    tracks = pd.read_parquet(one / "event000000001-tracks.parquet")
    assert list(tracks.columns) == ["event_id", *PARAMETER_COLUMNS]
    code, _ = invoke(str(artifact), str(hits_only), "--out", str(two), "--workers", "3", "--no-progress")
    assert code == 0
    for event_id in GOOD_EVENTS:
        name = f"event{event_id:09d}-submission.csv"
        assert (one / name).read_bytes() == (two / name).read_bytes()


def test_setup_failures_exit_2(artifact, events, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = invoke(str(artifact), str(empty), "--out", str(tmp_path / "o1"))
    assert code == 2 and "no TrackML events" in output
    code, output = invoke(str(empty), str(events), "--out", str(tmp_path / "o2"))
    assert code == 2 and "artifact.json" in output
    code, output = invoke(str(artifact), str(events), "--out", str(tmp_path / "o3"), "--device", "tpu")
    assert code == 2 and "device" in output
    code, _ = invoke(str(artifact), str(events), "--out", str(tmp_path / "o4"), "--backend", "nonsense")
    assert code == 2
