"""The runtime on contract-shaped synthetic artifacts: reconstruction, timings, determinism, threads."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest

from trackrt.metrics import evaluate_tracks
from trackrt.runtime import (
    TIMING_STAGES,
    ArtifactError,
    BackendUnavailable,
    ReconstructionResult,
    Tracker,
    load_artifact,
)
from trackrt.runtime.backends.base import BackendOptions
from trackrt.runtime.synthetic import SyntheticModel, synthetic_event, write_synthetic_artifact


@pytest.fixture(scope="module")
def artifact_dir(tmp_path_factory):
    return write_synthetic_artifact(tmp_path_factory.mktemp("artifact"))


@pytest.fixture(scope="module")
def tracker(artifact_dir):
    with Tracker.load(artifact_dir, backend="onnxruntime", threads=1) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def event():
    return synthetic_event(event_id=7, num_particles=50, num_noise_hits=30, seed=11)


def assert_same_result(a: ReconstructionResult, b: ReconstructionResult) -> None:
    pd.testing.assert_frame_equal(a.hits, b.hits)
    pd.testing.assert_frame_equal(a.track_scores, b.track_scores)
    pd.testing.assert_frame_equal(a.parameters, b.parameters)


def test_reconstructs_simulated_tracks(tracker, event):
    result = tracker.reconstruct(event.hits, event_id=event.event_id)
    assert result.event_id == 7
    assert result.hits["hit_id"].tolist() == event.hits["hit_id"].tolist()
    metrics = evaluate_tracks(
        result.tracks, event.truth, event.particles, track_scores=result.track_scores, hits=event.hits
    )
    assert metrics.efficiency >= 0.95
    assert metrics.fake_rate <= 0.05
    assert result.num_tracks == len(result.track_scores) == result.parameters.shape[0]
    assert result.num_queries >= result.num_tracks
    assigned = result.hits[result.hits.track_id >= 0]
    assert ((assigned.hit_score >= 0.5) & (assigned.hit_score <= 1.0)).all()
    assert result.hits.loc[result.hits.track_id < 0, "hit_score"].isna().all()
    assert (result.track_scores.score >= 0.5).all()

    # Fitted parameters of each track agree with its majority particle.
    truth = event.truth.merge(result.tracks, on="hit_id")
    majority = truth[truth.track_id >= 0].groupby("track_id").particle_id.agg(lambda s: s.mode().iloc[0])
    particles = event.particles.set_index("particle_id").loc[majority.to_numpy()]
    fitted = result.parameters.set_index("track_id").loc[majority.index]
    true_pt = np.hypot(particles.px, particles.py).to_numpy()
    assert np.median(np.abs(fitted.pt.to_numpy() / true_pt - 1)) < 0.01
    np.testing.assert_array_equal(fitted.charge.to_numpy(), particles.q.to_numpy())
    np.testing.assert_allclose(fitted.z0.to_numpy(), particles.vz.to_numpy(), atol=0.05)


def test_stage_timings(tracker, event):
    timings = tracker.reconstruct(event.hits).timings_ms
    assert list(timings) == [*TIMING_STAGES, "total"]
    assert all(value >= 0.0 for value in timings.values())
    for stage in ("features", "hit_filter", "encoder", "seeding", "decoder", "post_processing"):
        assert timings[stage] > 0.0, stage
    assert timings["total"] >= sum(v for k, v in timings.items() if k != "total") * 0.99


def test_repeat_and_threads_give_identical_outputs(tracker, event):
    other = synthetic_event(event_id=8, num_particles=30, seed=5)
    first = tracker.reconstruct(event.hits, event.event_id)
    assert_same_result(first, tracker.reconstruct(event.hits, event.event_id))

    batch = [(event.event_id, event.hits), (other.event_id, other.hits)] * 3
    results = list(tracker.reconstruct_many(batch, workers=3))
    assert [r.event_id for r in results] == [7, 8] * 3
    for result in results[::2]:
        assert_same_result(first, result)

    from_threads: list[ReconstructionResult] = []
    lock = threading.Lock()

    def work() -> None:
        result = tracker.reconstruct(event.hits, event.event_id)
        with lock:
            from_threads.append(result)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(from_threads) == 4
    for result in from_threads:
        assert_same_result(first, result)


def test_plain_array_inputs_and_input_order(tracker, event):
    reference = tracker.reconstruct(event.hits)
    columns = {c: event.hits[c].to_numpy() for c in ("hit_id", "x", "y", "z")}
    assert_same_result(reference, tracker.reconstruct(columns))
    xyz = event.hits[["x", "y", "z"]].to_numpy()
    from_array = tracker.reconstruct(xyz)
    assert from_array.hits.hit_id.tolist() == list(range(1, len(xyz) + 1))
    np.testing.assert_array_equal(from_array.hits.track_id, reference.hits.track_id)

    shuffled = event.hits.sample(frac=1.0, random_state=3)
    result = tracker.reconstruct(shuffled)
    assert result.hits.hit_id.tolist() == shuffled.hit_id.tolist()
    merged = result.tracks.merge(reference.tracks, on="hit_id", suffixes=("", "_ref"))
    assert len(merged.groupby(["track_id", "track_id_ref"])) == len(merged.groupby("track_id"))


def test_io_binding_and_plain_run_agree(artifact_dir, tracker, event):
    options = {"io_binding": False, "graph_optimization": "basic"}
    with Tracker.load(artifact_dir, backend="onnxruntime", **options) as plain:
        assert plain.describe()["io_binding"] is False
        assert_same_result(tracker.reconstruct(event.hits), plain.reconstruct(event.hits))


def test_encoder_embeddings_stay_on_device_between_graphs(tracker, event):
    from trackrt.runtime.backends.onnxruntime import OrtDeviceArray

    encoder = tracker.backend.runner("tracker_encoder")
    features = np.zeros((1, 10, 8), dtype=np.float32)
    features[0, :, 0] = features[0, :, 3] = 0.05
    out = encoder.run({"hit_features": features}, keep_on_device={"hit_embeddings"})
    assert isinstance(out["hit_embeddings"], OrtDeviceArray)
    assert out["hit_embeddings"].shape == (1, 10, 3)
    assert isinstance(out["seed_logits"], np.ndarray)
    decoder = tracker.backend.runner("tracker_decoder")
    decoded = decoder.run({"hit_embeddings": out["hit_embeddings"], "query_indices": np.array([[0, 4]])})
    assert decoded["assignment_logits"].shape == (1, 2, 10)
    with pytest.raises(ValueError, match="do not match"):
        decoder.run({"hit_embeddings": out["hit_embeddings"]})


@pytest.mark.gpu
def test_cuda_keeps_embeddings_on_device(artifact_dir, tracker, event):
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider")
    with Tracker.load(artifact_dir, backend="onnxruntime", device="cuda:0") as gpu:
        features = np.full((1, 16, 8), 0.05, dtype=np.float32)
        encoder = gpu.backend.runner("tracker_encoder")
        out = encoder.run({"hit_features": features}, keep_on_device={"hit_embeddings"})
        assert out["hit_embeddings"].device.lower().startswith("cuda")
        on_gpu = gpu.reconstruct(event.hits)
    np.testing.assert_array_equal(on_gpu.hits.track_id, tracker.reconstruct(event.hits).hits.track_id)


def test_hit_filter_removes_hits(tmp_path, event):
    directory = write_synthetic_artifact(tmp_path, SyntheticModel(filter_max_r_mm=150.0, min_hits=2))
    with Tracker.load(directory) as narrow:
        result = narrow.reconstruct(event.hits)
    r = np.hypot(event.hits.x, event.hits.y).to_numpy()
    outer = r > 150.0
    assert result.num_filtered_hits == int((~outer).sum())
    assert (result.hits.track_id[outer] == -1).all()
    assert (result.hits.filter_score[outer] < 0.5).all() and (result.hits.filter_score[~outer] >= 0.5).all()
    assert result.num_tracks >= 45


@pytest.mark.parametrize(
    ("spec", "filtered", "queries"),
    [(SyntheticModel(filter_max_r_mm=10.0), 0, 0), (SyntheticModel(seed_max_r_mm=10.0), None, 0)],
    ids=["all-hits-filtered", "no-seeds"],
)
def test_events_without_tracks(tmp_path, event, spec, filtered, queries):
    with Tracker.load(write_synthetic_artifact(tmp_path, spec)) as empty:
        result = empty.reconstruct(event.hits, event.event_id)
    assert result.num_tracks == 0 and result.num_queries == queries
    assert filtered is None or result.num_filtered_hits == filtered
    assert (result.hits.track_id == -1).all() and len(result.hits) == len(event.hits)
    assert result.parameters is not None and len(result.parameters) == 0
    assert (result.submission().track_id == -1).all()


def test_without_hit_filter_and_fixed_queries(tmp_path, event):
    directory = write_synthetic_artifact(tmp_path, SyntheticModel(variant="fq-ma", with_hit_filter=False))
    with Tracker.load(directory) as fixed:
        assert fixed.chain.stage_names == ["tracker", "track_parameters"]
        result = fixed.reconstruct(event.hits)
    assert result.num_queries == SyntheticModel().fixed_queries
    assert result.hits.filter_score.isna().all()
    assert result.timings_ms["seeding"] == 0.0 and result.timings_ms["hit_filter"] == 0.0
    assert result.num_tracks > 0


def test_stages_replace_one_by_one(tracker, event):
    class CountingStage:
        name = "track_parameters"

        def __init__(self) -> None:
            self.calls = 0

        def __call__(self, work) -> None:
            self.calls += 1
            work.parameters = pd.DataFrame({"track_id": np.unique(work.track_of_hit[work.track_of_hit >= 0])})

    counting = CountingStage()
    replaced = tracker.with_stage("track_parameters", counting)
    result = replaced.reconstruct(event.hits)
    assert counting.calls == 1 and list(result.parameters.columns) == ["track_id"]
    assert tracker.chain.stage_names == replaced.chain.stage_names
    unfiltered = tracker.without_stage("hit_filter").reconstruct(event.hits)
    assert unfiltered.hits.filter_score.isna().all()
    with pytest.raises(KeyError, match="no stage"):
        tracker.with_stage("vertexing", counting)


def test_warmup_and_describe(tracker):
    timings = tracker.warmup(num_hits=300, repeats=2)
    assert timings["total"] > 0
    described = tracker.describe()
    assert described["backend"] == "onnxruntime" and described["providers"] == ["CPUExecutionProvider"]
    assert described["stages"] == ["hit_filter", "tracker", "track_parameters"]


def test_backend_and_device_errors(artifact_dir):
    with pytest.raises(ValueError, match="unknown backend"):
        Tracker.load(artifact_dir, backend="tensorflow")
    with pytest.raises(ValueError, match="device"):
        Tracker.load(artifact_dir, device="gpu0")
    with pytest.raises(ValueError, match="graph_optimization"):
        BackendOptions(graph_optimization="max")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
            Tracker.load(artifact_dir, backend="onnxruntime", device="cuda:0")
    assert Tracker.load(artifact_dir, backend="auto").backend.name == "onnxruntime"


def _rewrite_manifest(directory, change) -> None:
    path = directory / "artifact.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_artifact_errors(tmp_path):
    with pytest.raises(ArtifactError, match=r"no artifact\.json"):
        load_artifact(tmp_path)

    future = write_synthetic_artifact(tmp_path / "future")
    _rewrite_manifest(future, lambda d: d.update(format_version=99))
    with pytest.raises(ArtifactError, match="format_version 99 is not supported"):
        load_artifact(future)

    other = write_synthetic_artifact(tmp_path / "other")
    _rewrite_manifest(other, lambda d: d.update(format="something-else"))
    with pytest.raises(ArtifactError, match="format is 'something-else'"):
        load_artifact(other)

    missing = write_synthetic_artifact(tmp_path / "missing")
    (missing / "tracker_decoder.onnx").unlink()
    with pytest.raises(ArtifactError, match=r"tracker_decoder\.onnx"):
        Tracker.load(missing, backend="onnxruntime")

    tampered = write_synthetic_artifact(tmp_path / "tampered")
    wrong_hash = {"tracker_encoder.onnx": "0" * 64}
    _rewrite_manifest(tampered, lambda d: d["graphs"]["tracker_encoder"].update(sha256=wrong_hash))
    with pytest.raises(ArtifactError, match="sha256 differs"):
        load_artifact(tampered)

    in_graph = write_synthetic_artifact(tmp_path / "in_graph")
    _rewrite_manifest(in_graph, lambda d: d.update(seed_selection={"where": "graph"}))
    with pytest.raises(ArtifactError, match="seeds on the host"):
        load_artifact(in_graph)

    no_threshold = write_synthetic_artifact(tmp_path / "thresholds")
    _rewrite_manifest(no_threshold, lambda d: d["models"]["tracker"]["thresholds"].pop("seed_threshold"))
    with pytest.raises(ArtifactError, match="seed_threshold"):
        load_artifact(no_threshold)

    older = write_synthetic_artifact(tmp_path / "older")  # written before duplicate resolution existed
    manifest = json.loads((older / "artifact.json").read_text())
    assert "duplicate_iou" not in manifest["models"]["tracker"]["thresholds"]
    assert load_artifact(older).tracker.duplicate_iou == 1.0
    bad_iou = write_synthetic_artifact(tmp_path / "bad_iou")
    _rewrite_manifest(bad_iou, lambda d: d["models"]["tracker"]["thresholds"].update(duplicate_iou=1.5))
    with pytest.raises(ArtifactError, match=r"thresholds\.duplicate_iou: must be in \[0, 1\]"):
        load_artifact(bad_iou)
    assert load_artifact(older).tracker.passes == 1  # written before passes existed
    bad_passes = write_synthetic_artifact(tmp_path / "bad_passes")
    _rewrite_manifest(bad_passes, lambda d: d["models"]["tracker"]["thresholds"].update(passes=1.5))
    with pytest.raises(ArtifactError, match=r"thresholds\.passes: must be an integer >= 1, got 1\.5"):
        load_artifact(bad_passes)


def test_graph_contract_is_enforced(tmp_path):
    wide = write_synthetic_artifact(tmp_path / "wide")
    _rewrite_manifest(
        wide, lambda d: d["models"]["tracker"]["features"].update(features=["x", "y", "z", "r", "eta", "phi"])
    )
    with pytest.raises(ValueError, match="hit_features has 8 features"):
        Tracker.load(wide, backend="onnxruntime")

    variant = write_synthetic_artifact(tmp_path / "variant")
    _rewrite_manifest(variant, lambda d: d["models"]["tracker"]["config"].update(variant="fq-ma"))
    with pytest.raises(ValueError, match="query_indices"):
        Tracker.load(variant, backend="onnxruntime")


def test_artifact_format_matches_exporter():
    metadata = pytest.importorskip("trackrt.export.metadata")
    from trackrt.runtime import artifact

    assert artifact.ARTIFACT_FORMAT == metadata.ARTIFACT_FORMAT
    assert metadata.ARTIFACT_FORMAT_VERSION in artifact.SUPPORTED_FORMAT_VERSIONS
    assert artifact.ARTIFACT_JSON == metadata.ARTIFACT_JSON
