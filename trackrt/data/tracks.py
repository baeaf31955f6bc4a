"""Track post-processing shared by training evaluation and the runtime: seed selection, hit assignment,
iterative passes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function in float64 (no overflow warnings)."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(logits, dtype=np.float64)))


def _check_probability(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: must be a probability in [0, 1], got {value}")


def _check_finite(name: str, values: np.ndarray) -> None:
    bad = int(np.count_nonzero(np.isnan(values)))
    if bad:
        raise ValueError(f"{name}: {bad} NaN value(s)")


def select_seeds(seed_logits: np.ndarray, threshold: float, max_queries: int | None) -> np.ndarray:
    """Hits whose seed probability is ≥ threshold, the top `max_queries` by score, in ascending hit order.

    Ties in score keep the lower hit index, so the selection is deterministic.
    """
    logits = np.asarray(seed_logits, dtype=np.float64)
    if logits.ndim != 1:
        raise ValueError(f"seed_logits: expected shape [N], got {logits.shape}")
    _check_finite("seed_logits", logits)
    _check_probability("threshold", threshold)
    if max_queries is not None and max_queries < 0:
        raise ValueError(f"max_queries: must be >= 0 or None, got {max_queries}")
    kept = np.flatnonzero(sigmoid(logits) >= threshold)
    if max_queries is not None and len(kept) > max_queries:
        by_score = np.argsort(-logits[kept], kind="stable")
        kept = np.sort(kept[by_score[:max_queries]])
    return kept.astype(np.int64)


def valid_queries(
    track_logits: np.ndarray,
    assignment_logits: np.ndarray,
    track_threshold: float = 0.5,
    hit_threshold: float = 0.5,
    duplicate_iou: float = 1.0,
) -> np.ndarray:
    """Ascending indices of the queries that make tracks: sigmoid(track logit) ≥ `track_threshold`.

    With `duplicate_iou` < 1, duplicates are resolved greedily, best track logit first (ties: lower
    index): a query is dropped when the IoU of its hit set (assignment probability ≥ `hit_threshold`)
    with that of a query already kept exceeds `duplicate_iou`. Inputs are assumed checked.
    """
    valid = np.flatnonzero(sigmoid(track_logits) >= track_threshold)
    if duplicate_iou >= 1.0 or len(valid) < 2:
        return valid
    masks = sparse.csr_matrix(assignment_logits[valid] >= _logit(hit_threshold), dtype=np.int32)
    sizes = np.asarray(masks.sum(axis=1)).ravel()
    shared = (masks @ masks.T).toarray()
    union = sizes[:, None] + sizes[None, :] - shared
    iou = np.divide(shared, union, out=np.zeros(shared.shape), where=union > 0)
    np.fill_diagonal(iou, 0.0)
    dropped = np.zeros(len(valid), dtype=bool)
    for row in np.argsort(-np.asarray(track_logits, dtype=np.float64)[valid], kind="stable"):
        if not dropped[row]:
            dropped |= iou[row] > duplicate_iou  # IoU is symmetric: no query kept earlier is hit here
    return valid[~dropped]


def assign_hits(
    track_logits: np.ndarray,
    assignment_logits: np.ndarray,
    track_threshold: float = 0.5,
    hit_threshold: float = 0.5,
    min_hits: int = 3,
    duplicate_iou: float = 1.0,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Give each hit to the valid track with the highest assignment probability (if ≥ hit_threshold).

    A track is valid if sigmoid(track_logit) ≥ track_threshold and it is not a duplicate
    (`valid_queries`; `duplicate_iou` = 1 keeps every valid query); tracks left with fewer than
    `min_hits` hits (at least one) are dropped and their hits unassigned (not re-offered to other
    tracks). Ties go to the lower query index. Returns (track_of_hit int64 [N], -1 for none;
    track_scores float32 [T]), with track ids 0..T-1 numbered in query order. `valid` takes the
    `valid_queries` result of a caller that already has it, so duplicates are not resolved twice.
    """
    track_logits = np.asarray(track_logits, dtype=np.float64)
    assignment_logits = np.asarray(assignment_logits, dtype=np.float32)
    if track_logits.ndim != 1:
        raise ValueError(f"track_logits: expected shape [Q], got {track_logits.shape}")
    if assignment_logits.ndim != 2 or assignment_logits.shape[0] != track_logits.shape[0]:
        raise ValueError(
            f"assignment_logits: expected shape [Q={track_logits.shape[0]}, N], got {assignment_logits.shape}"
        )
    _check_finite("track_logits", track_logits)
    _check_finite("assignment_logits", assignment_logits)
    _check_probability("track_threshold", track_threshold)
    _check_probability("hit_threshold", hit_threshold)
    _check_probability("duplicate_iou", duplicate_iou)
    if min_hits < 0:
        raise ValueError(f"min_hits: must be >= 0, got {min_hits}")

    num_queries, num_hits = assignment_logits.shape
    track_of_hit = np.full(num_hits, -1, dtype=np.int64)
    track_prob = sigmoid(track_logits)
    if valid is None:
        valid = valid_queries(track_logits, assignment_logits, track_threshold, hit_threshold, duplicate_iou)
    if len(valid) == 0 or num_hits == 0:
        return track_of_hit, np.zeros(0, dtype=np.float32)

    # The sigmoid is monotonic: compare logits with logit(threshold) instead of squashing [Q, N].
    valid_logits = assignment_logits[valid]
    best_row = np.argmax(valid_logits, axis=0)
    best_query = valid[best_row]
    best_logit = valid_logits[best_row, np.arange(num_hits)]
    assigned = best_logit >= _logit(hit_threshold)
    counts = np.bincount(best_query[assigned], minlength=num_queries)
    kept_queries = np.flatnonzero(counts >= max(min_hits, 1))
    new_id = np.full(num_queries, -1, dtype=np.int64)
    new_id[kept_queries] = np.arange(len(kept_queries))
    track_of_hit[assigned] = new_id[best_query[assigned]]
    return track_of_hit, track_prob[kept_queries].astype(np.float32)


def _logit(probability: float) -> float:
    """Inverse sigmoid, with ±inf at 0 and 1."""
    if probability <= 0.0:
        return -np.inf
    if probability >= 1.0:
        return np.inf
    return float(np.log(probability) - np.log1p(-probability))


PassTracks = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def find_tracks_in_passes(
    num_hits: int, passes: int, find_tracks: PassTracks
) -> tuple[np.ndarray, np.ndarray]:
    """Iterative track finding: pass 1 on all `num_hits` hits, each later pass on the hits that no
    track of an earlier pass took, at most `passes` passes, stopping after a pass that finds no track.

    `find_tracks(hits)` gets the ascending hit indices of its pass and returns (track_of_hit over them,
    -1 for none; track_scores). Returns (track_of_hit int64 [num_hits]; track_scores float32 [T]), with
    track ids numbered pass after pass.
    """
    if passes < 1:
        raise ValueError(f"passes: must be >= 1, got {passes}")
    track_of_hit = np.full(num_hits, -1, dtype=np.int64)
    scores: list[np.ndarray] = []
    num_tracks = 0
    for _ in range(passes):
        hits = np.flatnonzero(track_of_hit < 0)
        if len(hits) == 0:
            break
        pass_track_of_hit, pass_scores = find_tracks(hits)
        pass_track_of_hit = np.asarray(pass_track_of_hit, dtype=np.int64)
        if pass_track_of_hit.shape != hits.shape:
            raise ValueError(
                f"track_of_hit: a pass on {len(hits)} hits returned shape {pass_track_of_hit.shape}"
            )
        if len(pass_scores) == 0:
            break
        assigned = pass_track_of_hit >= 0
        track_of_hit[hits[assigned]] = num_tracks + pass_track_of_hit[assigned]
        scores.append(np.asarray(pass_scores, dtype=np.float32))
        num_tracks += len(pass_scores)
    all_scores = np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)
    return track_of_hit, all_scores
