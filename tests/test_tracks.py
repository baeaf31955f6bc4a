"""Seed selection and hit assignment on hand-made cases: thresholds, caps, ties and min_hits."""

from __future__ import annotations

import numpy as np
import pytest

from trackrt.data.tracks import assign_hits, find_tracks_in_passes, select_seeds, sigmoid, valid_queries

BIG = 10.0  # sigmoid(10) ≈ 0.99995


def test_select_seeds_thresholds_on_probability() -> None:
    logits = np.array([0.0, -1.0, 2.0, -3.0, np.log(0.3 / 0.7) + 1e-9])
    seeds = select_seeds(logits, threshold=0.5, max_queries=None)
    assert seeds.dtype == np.int64
    assert seeds.tolist() == [0, 2]  # sigmoid(0) = 0.5 is kept
    assert select_seeds(logits, threshold=0.3, max_queries=10).tolist() == [0, 2, 4]
    assert select_seeds(logits, threshold=0.0, max_queries=None).tolist() == [0, 1, 2, 3, 4]


def test_select_seeds_caps_by_score_and_returns_hit_order() -> None:
    logits = np.array([1.0, 3.0, 2.0, 3.0, 0.5, 2.5])
    assert select_seeds(logits, 0.5, max_queries=2).tolist() == [1, 3]
    assert select_seeds(logits, 0.5, max_queries=3).tolist() == [1, 3, 5]
    assert select_seeds(logits, 0.5, max_queries=0).tolist() == []


def test_select_seeds_ties_keep_lower_hit_index() -> None:
    logits = np.array([-5.0, 2.0, 2.0, 2.0, 2.0])
    assert select_seeds(logits, 0.5, max_queries=2).tolist() == [1, 2]
    saturated = np.array([40.0, 50.0, 45.0])  # probabilities all round to 1.0; logits still rank them
    assert select_seeds(saturated, 0.5, max_queries=1).tolist() == [1]


def test_select_seeds_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"seed_logits: expected shape \[N\]"):
        select_seeds(np.zeros((2, 3)), 0.5, 4)
    with pytest.raises(ValueError, match=r"seed_logits: 1 NaN"):
        select_seeds(np.array([0.0, np.nan]), 0.5, 4)
    with pytest.raises(ValueError, match="threshold: must be a probability"):
        select_seeds(np.zeros(3), 1.5, 4)
    with pytest.raises(ValueError, match="max_queries: must be >= 0"):
        select_seeds(np.zeros(3), 0.5, -1)


def test_assign_hits_hand_case() -> None:
    track_logits = np.array([BIG, -BIG, BIG, BIG])  # query 1 is not a valid track
    assignment = np.full((4, 8), -BIG)
    assignment[0, [0, 1, 2]] = 2.0
    assignment[2, [2, 3, 4, 5]] = 3.0  # hit 2: query 2 (p = 0.95) beats query 0 (p = 0.88)
    assignment[1, [0, 6]] = 9.0  # the invalid query would win hits 0 and 6: it does not count
    assignment[3, 7] = 4.0  # query 3 gets one hit only → dropped (min_hits = 3)
    track_of_hit, scores = assign_hits(track_logits, assignment, min_hits=3)
    assert track_of_hit.dtype == np.int64 and scores.dtype == np.float32
    # query 0 keeps only hits 0, 1 (< 3) → dropped; query 2 → track 0.
    assert track_of_hit.tolist() == [-1, -1, 0, 0, 0, 0, -1, -1]
    np.testing.assert_allclose(scores, [sigmoid(BIG)], rtol=1e-6)
    track_of_hit, scores = assign_hits(track_logits, assignment, min_hits=2)
    assert track_of_hit.tolist() == [0, 0, 1, 1, 1, 1, -1, -1]
    assert len(scores) == 2


def test_assign_hits_ties_go_to_lower_query_and_thresholds_apply() -> None:
    track_logits = np.array([BIG, BIG, 0.1])
    assignment = np.array(
        [
            [1.0, 1.0, 1.0, -0.2],
            [1.0, 1.0, 1.0, -0.1],
            [5.0, 5.0, 5.0, 5.0],
        ]
    )
    track_of_hit, scores = assign_hits(track_logits, assignment, track_threshold=0.6, min_hits=1)
    assert track_of_hit.tolist() == [0, 0, 0, -1]  # equal probabilities → query 0; hit 3 below 0.5
    track_of_hit, _ = assign_hits(
        track_logits, assignment, track_threshold=0.6, hit_threshold=0.45, min_hits=1
    )
    assert track_of_hit.tolist() == [0, 0, 0, 1]  # p = 0.475 (query 1) beats 0.450 (query 0)
    track_of_hit, scores = assign_hits(track_logits, assignment, track_threshold=0.5, min_hits=1)
    assert track_of_hit.tolist() == [0, 0, 0, 0]  # the third query (p = 0.525) is now valid and wins all
    np.testing.assert_allclose(scores, [sigmoid(0.1)], rtol=1e-6)


def test_assign_hits_without_tracks_or_hits() -> None:
    track_of_hit, scores = assign_hits(np.zeros(0), np.zeros((0, 5)))
    assert track_of_hit.tolist() == [-1] * 5 and scores.shape == (0,)
    track_of_hit, scores = assign_hits(np.array([BIG]), np.zeros((1, 0)))
    assert track_of_hit.shape == (0,) and scores.shape == (0,)


def test_assign_hits_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match=r"assignment_logits: expected shape \[Q=2, N\]"):
        assign_hits(np.zeros(2), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"track_logits: expected shape \[Q\]"):
        assign_hits(np.zeros((2, 1)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="assignment_logits: 1 NaN"):
        assign_hits(np.zeros(1), np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="hit_threshold: must be a probability"):
        assign_hits(np.zeros(1), np.zeros((1, 2)), hit_threshold=-0.1)


def test_assign_hits_matches_a_per_hit_reference(rng: np.random.Generator) -> None:
    track_logits = rng.normal(size=30)
    assignment = rng.normal(scale=3.0, size=(30, 400))
    track_of_hit, scores = assign_hits(track_logits, assignment, min_hits=3)
    valid = sigmoid(track_logits) >= 0.5
    owner = {}
    for hit in range(400):
        probs = [(sigmoid(assignment[q, hit]), -q) for q in range(30) if valid[q]]
        best_p, neg_q = max(probs)
        if best_p >= 0.5:
            owner[hit] = -neg_q
    counts = {q: sum(1 for o in owner.values() if o == q) for q in set(owner.values())}
    kept = sorted(q for q, c in counts.items() if c >= 3)
    expected = [kept.index(owner[h]) if owner.get(h) in kept else -1 for h in range(400)]
    assert track_of_hit.tolist() == expected
    np.testing.assert_allclose(scores, sigmoid(track_logits[kept]), rtol=1e-6)


def test_duplicates_resolved_best_track_first() -> None:
    """Query 1 (best) keeps its hits; query 0 shares 3 of 5 hits with it (IoU 0.6) and is dropped at 0.5."""
    track_logits = np.array([2.0, 3.0, 1.0, BIG])
    assignment = np.full((4, 10), -BIG)
    assignment[0, [0, 1, 2, 3]] = 1.0
    assignment[1, [1, 2, 3, 4]] = 2.0  # IoU(0, 1) = 3 / 5
    assignment[2, [5, 6, 7]] = 1.0  # disjoint: kept
    assignment[3, [8, 9]] = -BIG  # an empty hit set overlaps nothing
    assert valid_queries(track_logits, assignment, duplicate_iou=1.0).tolist() == [0, 1, 2, 3]
    assert valid_queries(track_logits, assignment, duplicate_iou=0.6).tolist() == [0, 1, 2, 3]  # not > 0.6
    assert valid_queries(track_logits, assignment, duplicate_iou=0.5).tolist() == [1, 2, 3]
    track_of_hit, scores = assign_hits(track_logits, assignment, min_hits=3, duplicate_iou=0.5)
    assert track_of_hit.tolist() == [-1, 0, 0, 0, 0, 1, 1, 1, -1, -1]  # hit 0 is nobody's once 0 is gone
    np.testing.assert_allclose(scores, sigmoid(np.array([3.0, 1.0])), rtol=1e-6)
    with pytest.raises(ValueError, match="duplicate_iou: must be a probability"):
        assign_hits(track_logits, assignment, duplicate_iou=1.5)


def test_duplicate_resolution_matches_a_greedy_reference(rng: np.random.Generator) -> None:
    track_logits = rng.normal(size=40)
    assignment = rng.normal(loc=-1.0, scale=2.0, size=(40, 60))
    masks = assignment >= 0
    valid = [q for q in np.argsort(-track_logits, kind="stable") if sigmoid(track_logits[q]) >= 0.5]
    kept: list[int] = []
    for q in valid:
        ious = [(masks[q] & masks[k]).sum() / max((masks[q] | masks[k]).sum(), 1) for k in kept]
        if all(iou <= 0.3 for iou in ious):
            kept.append(int(q))
    assert valid_queries(track_logits, assignment, duplicate_iou=0.3).tolist() == sorted(kept)
    assert len(kept) < len(valid)  # the case exercises suppression


def test_later_passes_see_only_the_hits_no_track_took() -> None:
    seen: list[list[int]] = []

    def find_tracks(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(hits.tolist())
        if len(seen) == 1:  # two tracks: hits 0, 2, 3 and 5, 6; hits 1, 4, 7 left over
            return np.array([0, -1, 0, 0, -1, 1, 1, -1]), np.array([0.9, 0.8], np.float32)
        if len(seen) == 2:  # one track on the left-over hits 1 and 7
            return np.array([0, -1, 0]), np.array([0.6], np.float32)
        return np.full(len(hits), -1), np.zeros(0, np.float32)

    track_of_hit, scores = find_tracks_in_passes(8, 5, find_tracks)
    assert seen == [[0, 1, 2, 3, 4, 5, 6, 7], [1, 4, 7], [4]]  # the third pass finds nothing: stop
    assert track_of_hit.tolist() == [0, 2, 0, 0, -1, 1, 1, 2]
    np.testing.assert_array_equal(scores, np.array([0.9, 0.8, 0.6], np.float32))

    seen.clear()
    one_pass = find_tracks_in_passes(8, 1, find_tracks)
    assert len(seen) == 1 and one_pass[0].tolist() == [0, -1, 0, 0, -1, 1, 1, -1]
    assert find_tracks_in_passes(0, 3, find_tracks)[0].shape == (0,)  # no hits: no pass runs
    assert len(seen) == 1


def test_passes_refuse_bad_input() -> None:
    def wrong_shape(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(hits) + 1, dtype=np.int64), np.ones(1, np.float32)

    with pytest.raises(ValueError, match="passes: must be >= 1"):
        find_tracks_in_passes(4, 0, wrong_shape)
    with pytest.raises(ValueError, match=r"a pass on 4 hits returned shape \(5,\)"):
        find_tracks_in_passes(4, 2, wrong_shape)
