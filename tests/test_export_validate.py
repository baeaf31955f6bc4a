"""Validation logic without exporting: output comparison, and tracing track differences to float ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trackrt.data.tracks import assign_hits
from trackrt.export.metadata import checkpoint_sha256
from trackrt.export.validate import (
    ChainOutputs,
    EventResult,
    OutputComparison,
    Tolerances,
    ValidationError,
    iter_validation_events,
    load_torch_chain,
    logit,
    trace_differences,
    validate_artifact,
)


class _Pipeline:
    """Just the thresholds `trace_differences` reads."""

    def __init__(self) -> None:
        self.hit_filter = {"thresholds": {"hit_threshold": 0.5}}
        self.tracker = {"thresholds": {"seed_threshold": 0.5, "track_threshold": 0.5, "hit_threshold": 0.5}}


def _run(
    kept, hit_logits, seed_logits, queries, track_logits, assignment_logits, track_of_hit
) -> ChainOutputs:
    f32 = np.float32
    return ChainOutputs(
        kept=np.asarray(kept, bool), hit_logits=np.asarray(hit_logits, f32), hit_embeddings=np.zeros(1),
        seed_logits=np.asarray(seed_logits, f32), query_indices=np.asarray(queries, np.int64),
        track_logits=np.asarray(track_logits, f32), assignment_logits=np.asarray(assignment_logits, f32),
        track_of_hit=np.asarray(track_of_hit, np.int64), track_scores=np.zeros(2, f32),
    )  # fmt: skip


TOL = Tolerances(atol=1e-4, rtol=1e-3)


def test_output_comparison_reports_largest_differences_and_failures():
    comparison = OutputComparison("g", "y")
    reference = np.array([1.0, -2.0, 0.0], np.float32)
    comparison.update(reference + np.array([1e-5, 0.0, 0.0], np.float32), reference, TOL)
    assert comparison.passed and comparison.max_abs == pytest.approx(1e-5, rel=1e-2)
    comparison.update(reference + np.array([0.0, 0.0, 1e-3], np.float32), reference, TOL)
    assert not comparison.passed and comparison.failures == 1
    assert comparison.max_abs == pytest.approx(1e-3, rel=1e-3)
    assert comparison.max_rel == pytest.approx(1e-3 / 1e-4, rel=1e-3)
    with pytest.raises(ValidationError, match="shape"):
        comparison.update(reference[:2], reference, TOL)


def test_an_output_never_compared_does_not_pass():
    assert not OutputComparison("g", "y").passed


def test_logit_inverts_the_sigmoid():
    assert logit(0.5) == 0.0 and logit(0.0) == -math.inf and logit(1.0) == math.inf
    assert 1 / (1 + math.exp(-logit(0.1))) == pytest.approx(0.1)


def test_hit_filter_difference_at_the_threshold_is_a_tie():
    base = dict(
        seed_logits=[0, 0, 0],
        queries=[0],
        track_logits=[1.0],
        assignment_logits=[[1, 1, 1]],
        track_of_hit=[0, 0, 0],
    )
    torch_run = _run(kept=[True, True, False], hit_logits=[3.0, 1e-6, -2.0], **base)
    onnx_run = _run(kept=[True, False, False], hit_logits=[3.0, -1e-6, -2.0], **base)
    (stage,) = trace_differences(_Pipeline(), onnx_run, torch_run, TOL)
    assert stage.stage == "hit filter" and stage.differing == 1 and stage.ties == 1 and stage.explained


def test_hit_filter_difference_far_from_the_threshold_is_not_explained():
    base = dict(
        seed_logits=[0, 0, 0],
        queries=[0],
        track_logits=[1.0],
        assignment_logits=[[1, 1, 1]],
        track_of_hit=[0, 0, 0],
    )
    torch_run = _run(kept=[True, True, False], hit_logits=[3.0, 0.5, -2.0], **base)
    onnx_run = _run(kept=[True, False, False], hit_logits=[3.0, -0.5, -2.0], **base)
    (stage,) = trace_differences(_Pipeline(), onnx_run, torch_run, TOL)
    assert stage.differing == 1 and stage.ties == 0 and not stage.explained


def test_seed_difference_at_the_top_k_edge_is_a_tie():
    base = dict(
        kept=[True] * 4,
        hit_logits=[1] * 4,
        track_logits=[1.0, 1.0],
        assignment_logits=[[1] * 4] * 2,
        track_of_hit=[0, 0, 1, 1],
    )
    torch_run = _run(seed_logits=[2.0, 0.7, 0.7 - 1e-5, 3.0], queries=[0, 1, 3], **base)
    onnx_run = _run(seed_logits=[2.0, 0.7 - 1e-5, 0.7, 3.0], queries=[0, 2, 3], **base)
    (stage,) = trace_differences(_Pipeline(), onnx_run, torch_run, TOL)
    assert stage.stage == "seed selection" and stage.differing == 2 and stage.explained


def _decoded(assignment_logits: list[list[float]]) -> ChainOutputs:
    """A run whose track_of_hit comes from `assign_hits` on the given logits (two valid queries)."""
    track_logits = np.array([2.0, 2.0], np.float32)
    track_of_hit, _ = assign_hits(track_logits, np.asarray(assignment_logits), 0.5, 0.5, min_hits=1)
    return _run([True] * 4, [1] * 4, [1] * 4, [0, 1], track_logits, assignment_logits, track_of_hit)


def test_hit_between_two_equally_likely_tracks_is_a_tie_but_a_clear_move_is_not():
    torch_run = _decoded([[2.0, 1.0, 5.0, -3.0], [2.0 - 1e-5, 4.0, -5.0, -3.0]])
    tie = _decoded([[2.0 - 1e-5, 1.0, 5.0, -3.0], [2.0, 4.0, -5.0, -3.0]])
    assert tie.track_of_hit[0] != torch_run.track_of_hit[0]
    (stage,) = trace_differences(_Pipeline(), tie, torch_run, TOL)
    assert stage.stage == "track building" and stage.differing == 1 and stage.explained
    clear = _decoded([[2.0, 1.0, -5.0, -3.0], [2.0 - 1e-5, 4.0, 5.0, -3.0]])
    (stage,) = trace_differences(_Pipeline(), clear, torch_run, TOL)
    assert stage.differing == 1 and stage.ties == 0 and not stage.explained


def test_tracks_that_differ_without_any_moved_hit_are_unexplained():
    torch_run = _decoded([[2.0, 1.0, 5.0, -3.0], [1.0, 4.0, -5.0, -3.0]])
    tampered = _decoded([[2.0, 1.0, 5.0, -3.0], [1.0, 4.0, -5.0, -3.0]])
    tampered.track_of_hit[3] = 0
    (stage,) = trace_differences(_Pipeline(), tampered, torch_run, TOL)
    assert stage.differing == 1 and not stage.explained


def test_identical_runs_have_no_differences_and_an_event_passes_on_explained_ties():
    run = _run([True], [1.0], [1.0], [0], [1.0], [[1.0]], [0])
    assert trace_differences(_Pipeline(), run, run, TOL) == []
    event = EventResult(
        1,
        10,
        10,
        1,
        {"torch": 1, "onnxruntime": 1},
        tracks_identical=True,
        metrics={"torch": {"fake_rate": math.nan}, "onnxruntime": {"fake_rate": math.nan}},
    )
    assert event.metrics_identical and event.passed


def test_validate_refuses_a_directory_without_artifact_json(tmp_path):
    with pytest.raises(ValidationError, match=r"no artifact\.json"):
        validate_artifact(tmp_path, tmp_path)


def test_validate_refuses_a_checkpoint_other_than_the_exported_one(tmp_path):
    torch = pytest.importorskip("torch")
    from trackrt.model.config import preset
    from trackrt.train.checkpoint import build_model, save_checkpoint

    torch.manual_seed(0)
    config = preset("tiny", "tracker")
    path = save_checkpoint(tmp_path / "tracker", build_model(config), config)
    artifact = {
        "models": {"tracker": {"checkpoint": str(path), "checkpoint_sha256": checkpoint_sha256(path)}}
    }
    assert load_torch_chain(artifact, None, None).hit_filter is None
    artifact["models"]["tracker"]["checkpoint_sha256"] = "0" * 64
    with pytest.raises(ValidationError, match="sha256 differs"):
        load_torch_chain(artifact, None, None)
    with pytest.raises(ValidationError, match="checkpoint not found"):
        load_torch_chain(artifact, tmp_path / "elsewhere", None)


def test_validate_needs_events(tmp_path):
    with pytest.raises(ValidationError, match="no TrackML events"):
        next(iter_validation_events(tmp_path, None))
