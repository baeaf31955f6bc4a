"""Hungarian matching: the batched cost against per-pair formulas, and assignments against brute force."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from trackrt.train.config import LossConfig
from trackrt.train.matching import (
    PARALLEL_MIN_SIZE,
    candidate_queries,
    hungarian_match,
    match_layers,
    matching_cost,
    pairwise_dice_cost,
    pairwise_focal_cost,
)


def brute_force_cost(cost: np.ndarray) -> float:
    """Smallest total cost over every assignment of min(Q, T) pairs."""
    q, t = cost.shape
    best = math.inf
    if q >= t:
        for rows in itertools.permutations(range(q), t):
            best = min(best, sum(cost[r, c] for c, r in enumerate(rows)))
    else:
        for cols in itertools.permutations(range(t), q):
            best = min(best, sum(cost[r, c] for r, c in enumerate(cols)))
    return best


@pytest.mark.parametrize("shape", [(3, 3), (5, 3), (3, 5), (6, 6), (1, 4), (4, 1)])
def test_assignment_matches_brute_force(shape: tuple[int, int], rng: np.random.Generator) -> None:
    for _ in range(5):
        cost = rng.normal(size=shape)
        match = hungarian_match(torch.from_numpy(cost))
        assert match.size == min(shape)
        assert len(set(match.query_index.tolist())) == match.size
        assert len(set(match.target_index.tolist())) == match.size
        total = cost[match.query_index.numpy(), match.target_index.numpy()].sum()
        assert total == pytest.approx(brute_force_cost(cost), abs=1e-12)


def test_known_cost_matrix() -> None:
    cost = torch.tensor([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    match = hungarian_match(cost)
    assert match.query_index.tolist() == [0, 1, 2]
    assert match.target_index.tolist() == [1, 0, 2]


def test_absent_queries_are_never_matched() -> None:
    cost = torch.tensor([[0.0, 0.0], [5.0, 6.0], [7.0, 5.0]])
    query_mask = torch.tensor([False, True, True])
    weights = LossConfig()
    masked = cost.masked_fill(~query_mask.unsqueeze(-1), weights.absent_query_cost)
    match = hungarian_match(masked, query_mask)
    assert 0 not in match.query_index.tolist()
    assert sorted(zip(match.query_index.tolist(), match.target_index.tolist(), strict=False)) == [
        (1, 0),
        (2, 1),
    ]


def test_more_targets_than_present_queries_drops_absent_pairs() -> None:
    cost = torch.zeros(2, 3)
    query_mask = torch.tensor([True, False])
    match = hungarian_match(cost.masked_fill(~query_mask.unsqueeze(-1), 1e6), query_mask)
    assert match.query_index.tolist() == [0]


def test_empty_inputs() -> None:
    assert hungarian_match(torch.zeros(0, 3)).size == 0
    assert hungarian_match(torch.zeros(4, 0)).size == 0


def _focal(x: float, t: float, gamma: float) -> float:
    p = 1.0 / (1.0 + math.exp(-x))
    return -((1 - p) ** gamma) * math.log(p) if t else -(p**gamma) * math.log(1 - p)


def test_batched_cost_equals_per_pair_formula(rng: np.random.Generator) -> None:
    q, t, n = 4, 3, 7
    logits = torch.from_numpy(rng.normal(size=(q, n)) * 2)
    track_logits = torch.from_numpy(rng.normal(size=q))
    targets = torch.from_numpy(rng.random((t, n)) < 0.4)
    weights = LossConfig(valid_weight=0.1, dice_weight=2.0, focal_weight=25.0, focal_gamma=2.0)
    cost = matching_cost(track_logits, logits, targets, weights).numpy()
    for i in range(q):
        for j in range(t):
            x = logits[i].numpy()
            y = targets[j].numpy().astype(float)
            p = 1 / (1 + np.exp(-x))
            focal = sum(_focal(float(a), float(b), 2.0) for a, b in zip(x, y, strict=True))
            dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
            valid = -math.log(1 / (1 + math.exp(-float(track_logits[i]))))
            assert cost[i, j] == pytest.approx(0.1 * valid + 2 * dice + 25 * focal, rel=1e-5)


def test_padding_hits_do_not_change_cost(rng: np.random.Generator) -> None:
    logits = torch.from_numpy(rng.normal(size=(3, 5)))
    targets = torch.from_numpy(rng.random((2, 5)) < 0.5)
    padded_logits = torch.cat([logits, torch.full((3, 2), 9.0, dtype=logits.dtype)], dim=1)
    padded_targets = torch.cat([targets, torch.ones(2, 2, dtype=torch.bool)], dim=1)
    hit_mask = torch.tensor([True] * 5 + [False] * 2)
    assert torch.allclose(
        pairwise_focal_cost(padded_logits, padded_targets, 2.0, hit_mask),
        pairwise_focal_cost(logits, targets, 2.0, None),
    )
    assert torch.allclose(
        pairwise_dice_cost(padded_logits, padded_targets, hit_mask), pairwise_dice_cost(logits, targets, None)
    )


def test_perfect_predictions_match_their_targets() -> None:
    targets = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]], dtype=torch.bool)
    order = [2, 0, 1]
    logits = torch.where(targets[order], 8.0, -8.0)
    logits = torch.cat([logits, torch.full((2, 6), -8.0)])
    outputs = [{"track_logits": torch.full((5,), 3.0), "assignment_logits": logits}] * 3
    matches = match_layers(outputs, targets, LossConfig())
    assert len(matches) == 3
    for match in matches:
        assert dict(zip(match.query_index.tolist(), match.target_index.tolist(), strict=True)) == {
            0: 2,
            1: 0,
            2: 1,
        }


def test_nan_logits_do_not_break_assignment() -> None:
    logits = torch.tensor([[float("nan"), 0.0], [1.0, -1.0]])
    match = hungarian_match(
        matching_cost(torch.zeros(2), logits, torch.tensor([[True, False]]), LossConfig())
    )
    assert match.query_index.tolist() == [1]


def test_candidate_queries_drops_rows_beaten_by_enough_others() -> None:
    cost = np.array([[1.0, 2.0], [2.0, 1.0], [10.0, 10.0], [3.0, 3.0], [2.0, 5.0]])
    # row 2: four rows have every cost below 10; row 3: rows 0 and 1 (max 2 < 3) are enough for T = 2;
    # row 4 (min 2): no row has every cost below 2, so it stays.
    assert candidate_queries(cost).tolist() == [0, 1, 4]
    assert candidate_queries(cost.T).tolist() == [0, 1]  # Q ≤ T: every row stays


def test_candidate_queries_keeps_absent_rows_when_too_few_queries_are_present() -> None:
    cost = np.full((5, 3), 1e6)
    cost[:2] = [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]
    assert candidate_queries(cost).tolist() == [0, 1, 2, 3, 4]
    match = hungarian_match(cost, torch.tensor([True, True, False, False, False]))
    assert dict(zip(match.query_index.tolist(), match.target_index.tolist(), strict=True)) == {0: 0, 1: 2}


@pytest.mark.parametrize("ties", [False, True])
def test_pruned_assignment_has_the_optimal_cost(ties: bool, rng: np.random.Generator) -> None:
    pruned_rows = 0
    for _ in range(20):
        q, t = int(rng.integers(20, 120)), int(rng.integers(5, 40))
        # per-query offsets spread wider than a row's own spread, as for hopeless queries of a real event
        cost = rng.exponential(30.0, size=(q, 1)) + rng.uniform(0.0, 10.0, size=(q, t))
        if ties:
            cost = np.round(cost / 5.0)
        full_rows, full_cols = linear_sum_assignment(cost)
        match = hungarian_match(cost)
        assert match.size == min(q, t)
        assert len(set(match.target_index.tolist())) == match.size
        chosen = cost[match.query_index.numpy(), match.target_index.numpy()].sum()
        assert chosen == pytest.approx(cost[full_rows, full_cols].sum(), rel=1e-12, abs=1e-9)
        pruned_rows += q - len(candidate_queries(cost))
    assert pruned_rows > 0  # the cases exercise the pruning


def test_layers_matched_on_threads_agree_with_one_by_one(rng: np.random.Generator) -> None:
    num_queries, num_targets, num_hits = 500, 240, 60
    assert num_queries * num_targets >= PARALLEL_MIN_SIZE
    targets = torch.from_numpy(rng.random((num_targets, num_hits)) < 0.05)
    outputs = [
        {
            "track_logits": torch.from_numpy(rng.normal(size=num_queries)),
            "assignment_logits": torch.from_numpy(rng.normal(scale=3.0, size=(num_queries, num_hits))),
        }
        for _ in range(3)
    ]
    weights = LossConfig()
    matches = match_layers(outputs, targets, weights)
    for out, match in zip(outputs, matches, strict=True):
        cost = matching_cost(out["track_logits"], out["assignment_logits"], targets, weights)
        alone = hungarian_match(cost)
        assert torch.equal(match.query_index, alone.query_index)
        assert torch.equal(match.target_index, alone.target_index)
