"""The torch reference backend: checkpoint-backed models behind the same chain, and parity with ONNX."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
checkpoint = pytest.importorskip("trackrt.train.checkpoint")
metadata = pytest.importorskip("trackrt.export.metadata")

from trackrt.data.features import hit_features, phi_sort_order  # noqa: E402
from trackrt.data.tracks import assign_hits, select_seeds, sigmoid  # noqa: E402
from trackrt.model.config import preset  # noqa: E402
from trackrt.runtime import ArtifactError, BackendUnavailable, Tracker  # noqa: E402
from trackrt.runtime.synthetic import synthetic_event  # noqa: E402

EVENT = synthetic_event(num_particles=40, num_noise_hits=40, seed=9)


def _save_tiny(directory: Path, kind: str, seed: int, overrides: dict | None = None) -> Path:
    torch.manual_seed(seed)
    config = preset("tiny", kind, overrides=overrides)
    model = checkpoint.build_model(config)
    if kind == "hit_filter":
        # Untrained weights: put the threshold at the median probability so that half the hits pass.
        features = torch.from_numpy(hit_features(EVENT.hits, config.features))[None]
        with torch.inference_mode():
            config.hit_threshold = float(np.median(sigmoid(model(features)[0].numpy())))
    return checkpoint.save_checkpoint(directory / kind, model, config)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("checkpoints")
    return {
        "tracker": _save_tiny(directory, "tracker", 1, {"seed_threshold": 0.3, "hit_threshold": 0.3}),
        "hit_filter": _save_tiny(directory, "hit_filter", 2),
    }


def _write_manifest(directory: Path, checkpoints: dict[str, Path]) -> Path:
    """artifact.json as the exporter writes it (its own record classes), without graph files."""
    models = {}
    for kind, path in checkpoints.items():
        config = checkpoint.read_checkpoint_config(path).model
        models[kind] = metadata.ModelRecord.from_config(kind, config, path)
    record = metadata.ExportRecord(lsca_mode="onnx", opset=18, models=models)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / metadata.ARTIFACT_JSON).write_text(json.dumps(record.to_json()))
    return directory


@pytest.fixture(scope="module")
def torch_tracker(tmp_path_factory, checkpoints):
    directory = _write_manifest(tmp_path_factory.mktemp("manifest"), checkpoints)
    with Tracker.load(directory, backend="torch", threads=1) as loaded:
        yield loaded


def _filtered(checkpoints: dict[str, Path], hits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """φ order of `hits`, the sorted hits the filter keeps and the tracker's features of those."""
    hit_filter, filter_config = checkpoint.load_checkpoint(checkpoints["hit_filter"])
    tracker_features = checkpoint.read_checkpoint_config(checkpoints["tracker"]).features
    order = phi_sort_order(hits)
    ordered = hits.iloc[order].reset_index(drop=True)
    with torch.inference_mode():
        filter_in = torch.from_numpy(hit_features(ordered, filter_config.model.features))[None]
        kept = np.flatnonzero(sigmoid(hit_filter(filter_in)[0].numpy()) >= filter_config.model.hit_threshold)
    return order, kept, hit_features(ordered, tracker_features)[kept]


def _in_input_order(order: np.ndarray, kept: np.ndarray, track_of_kept: np.ndarray) -> np.ndarray:
    track_of_sorted = np.full(len(order), -1)
    track_of_sorted[kept] = track_of_kept
    track_of_hit = np.empty(len(order), dtype=np.int64)
    track_of_hit[order] = track_of_sorted
    return track_of_hit


def _direct(checkpoints: dict[str, Path], hits: pd.DataFrame) -> np.ndarray:
    """Track id per hit (in `hits` order) from calling the models directly, outside the runtime."""
    tracker, tracker_config = checkpoint.load_checkpoint(checkpoints["tracker"])
    order, kept, features = _filtered(checkpoints, hits)
    with torch.inference_mode():
        embeddings, seed_logits = tracker.encode(torch.from_numpy(features)[None])
        config = tracker_config.model
        queries = select_seeds(seed_logits[0].numpy(), config.seed_threshold, config.max_queries)
        last = tracker.decode(embeddings, torch.from_numpy(queries)[None])[-1]
        track_of_kept, _ = assign_hits(
            last["track_logits"][0].numpy(),
            last["assignment_logits"][0].numpy(),
            config.track_threshold,
            config.hit_threshold,
            config.min_hits,
        )
    return _in_input_order(order, kept, track_of_kept)


def test_torch_backend_matches_direct_model_calls(torch_tracker, checkpoints):
    event = EVENT
    result = torch_tracker.reconstruct(event.hits, event.event_id)
    assert torch_tracker.describe()["backend"] == "torch"
    assert 0 < result.num_filtered_hits < len(event.hits)
    assert result.num_queries > 0
    np.testing.assert_array_equal(result.hits.track_id.to_numpy(), _direct(checkpoints, event.hits))
    again = torch_tracker.reconstruct(event.hits, event.event_id)
    pd.testing.assert_frame_equal(result.hits, again.hits)


def _reconstruct_with(directory: Path, checkpoints: dict[str, Path], thresholds: dict) -> tuple:
    """A copy of the tracker with `thresholds` set, behind the same filter: (its checkpoints, the result)."""
    copied = {**checkpoints, "tracker": directory / "tracker"}
    shutil.copytree(checkpoints["tracker"], copied["tracker"])
    checkpoint.set_thresholds(copied["tracker"], thresholds)
    with Tracker.load(_write_manifest(directory / "manifest", copied), backend="torch", threads=1) as loaded:
        return copied, loaded.reconstruct(EVENT.hits, EVENT.event_id)


def test_a_second_pass_builds_tracks_on_the_hits_left_over(tmp_path, checkpoints):
    from trackrt.train.evaluate import predict_event

    # Thresholds at which the untrained tracker leaves hits over after one pass and finds a track in them.
    thresholds = {"track_threshold": 0.45, "hit_threshold": 0.6, "duplicate_iou": 0.3}
    _, first = _reconstruct_with(tmp_path / "one", checkpoints, thresholds)
    two_passes, result = _reconstruct_with(tmp_path / "two", checkpoints, {**thresholds, "passes": 2})
    assert result.num_tracks > first.num_tracks > 0 and result.num_queries > first.num_queries
    first_ids, ids = first.hits.track_id.to_numpy(), result.hits.track_id.to_numpy()
    np.testing.assert_array_equal(ids[first_ids >= 0], first_ids[first_ids >= 0])  # pass 1 unchanged
    assert set(ids[(first_ids < 0) & (ids >= 0)]) == set(range(first.num_tracks, result.num_tracks))
    np.testing.assert_array_equal(result.track_scores.score[: first.num_tracks], first.track_scores.score)

    tracker, config = checkpoint.load_checkpoint(two_passes["tracker"])
    order, kept, features = _filtered(two_passes, EVENT.hits)
    prediction = predict_event(tracker, config.model, features, torch.device("cpu"))
    np.testing.assert_array_equal(ids, _in_input_order(order, kept, prediction.track_of_hit))
    np.testing.assert_allclose(result.track_scores.score, prediction.track_scores, atol=1e-6)


def test_checkpoint_hash_and_location_are_checked(tmp_path, checkpoints):
    directory = _write_manifest(tmp_path / "changed", checkpoints)
    path = directory / "artifact.json"
    data = json.loads(path.read_text())
    data["models"]["tracker"]["checkpoint_sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(BackendUnavailable, match="differs from the exported"):
        Tracker.load(directory, backend="torch")

    data["models"]["tracker"]["checkpoint_sha256"] = ""
    data["models"]["tracker"]["checkpoint"] = str(tmp_path / "gone")
    path.write_text(json.dumps(data))
    with pytest.raises(BackendUnavailable, match="not found"):
        Tracker.load(directory, backend="torch")
    moved = Tracker.load(directory, backend="torch", checkpoints={"tracker": str(checkpoints["tracker"])})
    assert moved.backend.name == "torch"
    with pytest.raises(ArtifactError, match="tracker_encoder"):
        Tracker.load(directory, backend="onnxruntime")


@pytest.mark.slow
def test_onnxruntime_matches_torch_on_exported_artifact(tmp_path, checkpoints):
    from trackrt.export.config import ExportOptions
    from trackrt.export.exporter import export_artifact

    export_artifact(
        checkpoints["tracker"],
        tmp_path / "artifact",
        filter_checkpoint=checkpoints["hit_filter"],
        options=ExportOptions(lsca_mode="plugin"),
    )
    event = EVENT
    with Tracker.load(tmp_path / "artifact", backend="onnxruntime") as ort_tracker:
        ort_result = ort_tracker.reconstruct(event.hits)
    with Tracker.load(tmp_path / "artifact", backend="torch") as torch_reference:
        torch_result = torch_reference.reconstruct(event.hits)
    assert ort_result.num_queries == torch_result.num_queries > 0
    np.testing.assert_array_equal(ort_result.hits.track_id, torch_result.hits.track_id)
    np.testing.assert_allclose(ort_result.hits.filter_score, torch_result.hits.filter_score, atol=1e-5)
    np.testing.assert_allclose(ort_result.track_scores.score, torch_result.track_scores.score, atol=1e-5)
