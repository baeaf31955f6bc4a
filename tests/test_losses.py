"""Losses on hand-computed values, and the gradients they send to matched and unmatched queries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trackrt.train.config import LossConfig
from trackrt.train.losses import (
    dice_loss,
    focal_loss,
    hit_filter_loss,
    hit_filter_pos_weight,
    layer_loss,
    seed_loss,
    target_hit_weights,
    target_vertex_weights,
    tracker_loss,
    vertex_z_factor,
)
from trackrt.train.matching import Match

LOG2 = math.log(2.0)


def test_focal_hand_values() -> None:
    # p = 0.5 everywhere: each element is 0.25 · log 2 whatever the target.
    assert focal_loss(torch.zeros(4), torch.tensor([1, 0, 1, 0]), 2.0).item() == pytest.approx(0.25 * LOG2)
    # logit log(3): p = 0.75; target 1 → 0.25² · log(4/3); target 0 → 0.75² · log 4.
    x = torch.full((2,), math.log(3.0))
    expected = (0.0625 * math.log(4 / 3) + 0.5625 * math.log(4.0)) / 2
    assert focal_loss(x, torch.tensor([1, 0]), 2.0).item() == pytest.approx(expected, rel=1e-6)
    # γ = 0 is plain BCE.
    assert focal_loss(x, torch.tensor([1, 1]), 0.0).item() == pytest.approx(math.log(4 / 3), rel=1e-6)


def test_focal_mask_averages_over_real_hits_only() -> None:
    x = torch.tensor([0.0, 0.0, 50.0])
    t = torch.tensor([1, 0, 0])
    mask = torch.tensor([True, True, False])
    assert focal_loss(x, t, 2.0, mask).item() == pytest.approx(0.25 * LOG2)


def test_dice_hand_values() -> None:
    assert dice_loss(torch.zeros(2), torch.tensor([1, 0])).item() == pytest.approx(1 / 3)
    perfect = dice_loss(torch.tensor([30.0, -30.0, 30.0]), torch.tensor([1, 0, 1])).item()
    assert perfect == pytest.approx(0.0, abs=1e-6)
    wrong = dice_loss(torch.tensor([-30.0, 30.0]), torch.tensor([1, 0])).item()
    assert wrong == pytest.approx(1 - 1 / 3, rel=1e-6)


def test_layer_loss_hand_values() -> None:
    weights = LossConfig(valid_weight=0.1, dice_weight=2.0, focal_weight=25.0)
    track_logits = torch.zeros(3, requires_grad=True)
    assignment_logits = torch.zeros(3, 2, requires_grad=True)
    targets = torch.tensor([[1, 0]], dtype=torch.bool)
    match = Match(torch.tensor([1]), torch.tensor([0]))
    terms = layer_loss(track_logits, assignment_logits, targets, match, weights)
    assert terms["valid"].item() == pytest.approx(0.1 * LOG2, rel=1e-6)
    assert terms["focal"].item() == pytest.approx(25 * 0.25 * LOG2, rel=1e-6)
    assert terms["dice"].item() == pytest.approx(2 / 3, rel=1e-6)
    terms["total"].backward()
    # Unmatched queries are pushed towards "not valid", the matched one towards "valid"; only the
    # matched query's assignment logits get a gradient.
    assert track_logits.grad[0] > 0 and track_logits.grad[2] > 0 and track_logits.grad[1] < 0
    assert torch.all(assignment_logits.grad[[0, 2]] == 0)
    assert assignment_logits.grad[1, 0] < 0 and assignment_logits.grad[1, 1] > 0


def test_layer_loss_target_weights_scale_each_matched_pair() -> None:
    weights = LossConfig(valid_weight=1.0, dice_weight=1.0, focal_weight=1.0)
    track_logits = torch.tensor([0.5, -1.0, 2.0])
    assignment_logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, -3.0], [1.0, 1.0, 1.0]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 1]], dtype=torch.bool)
    # query 2 → target 0, query 0 → target 1; query 1 unmatched
    match = Match(torch.tensor([2, 0]), torch.tensor([0, 1]))
    plain = layer_loss(track_logits, assignment_logits, targets, match, weights)
    ones = layer_loss(track_logits, assignment_logits, targets, match, weights, target_weight=torch.ones(2))
    for name in ("valid", "focal", "dice"):
        assert ones[name].item() == pytest.approx(plain[name].item(), rel=1e-6)
    weighted = layer_loss(
        track_logits, assignment_logits, targets, match, weights, target_weight=torch.tensor([3.0, 0.5])
    )
    valid_bce = torch.nn.functional.binary_cross_entropy_with_logits(
        track_logits, torch.tensor([1.0, 0.0, 1.0]), reduction="none"
    )
    expected_valid = (0.5 * valid_bce[0] + valid_bce[1] + 3.0 * valid_bce[2]) / 3
    assert weighted["valid"].item() == pytest.approx(expected_valid.item(), rel=1e-6)
    pair_focal = focal_loss(assignment_logits[[2, 0]], targets[[0, 1]], 2.0)
    pair_dice = dice_loss(assignment_logits[[2, 0]], targets[[0, 1]])
    assert weighted["focal"].item() == pytest.approx(((3.0 * pair_focal[0] + 0.5 * pair_focal[1]) / 2).item())
    assert weighted["dice"].item() == pytest.approx(((3.0 * pair_dice[0] + 0.5 * pair_dice[1]) / 2).item())


def test_tracker_loss_weighs_each_targets_seed_hit() -> None:
    targets = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    layer = {"track_logits": torch.zeros(2), "assignment_logits": torch.zeros(2, 4)}
    outputs = {"seed_logits": torch.tensor([0.0, 1.0, -1.0, 2.0]), "layers": [layer]}
    seeds = torch.tensor([1.0, 0, 1, 0])
    _, log = tracker_loss(outputs, targets, seeds, LossConfig(), target_weight=torch.tensor([4.0, 2.0]))
    logits = outputs["seed_logits"]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, seeds, reduction="none")
    # target 0's seed hit (0) weighs 4, target 1's (2) weighs 2, the other hits 1
    expected = (4.0 * bce[0] + bce[1] + 2.0 * bce[2] + bce[3]) / 4
    assert log["seed"] == pytest.approx(expected.item(), rel=1e-6)


def test_target_vertex_weights() -> None:
    assert np.allclose(vertex_z_factor(np.array([0.0, 50.0, -100.0]), 50.0), [1.0, 2.0, 5.0])
    weights = target_vertex_weights(np.array([0.0, -100.0]), 50.0)
    assert weights.dtype == np.float32
    assert weights.mean() == pytest.approx(1.0)
    assert weights[1] == pytest.approx(5 * weights[0])
    assert target_vertex_weights(np.zeros(0), 50.0).shape == (0,)
    with pytest.raises(ValueError, match="target_vertex_z: a target particle has no finite production z"):
        target_vertex_weights(np.array([0.0, np.nan]), 50.0)


def test_layer_loss_without_matches_still_backpropagates() -> None:
    track_logits = torch.zeros(2, requires_grad=True)
    assignment_logits = torch.zeros(2, 4, requires_grad=True)
    empty = Match(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    terms = layer_loss(
        track_logits, assignment_logits, torch.zeros(0, 4, dtype=torch.bool), empty, LossConfig()
    )
    assert terms["focal"].item() == 0 and terms["dice"].item() == 0
    terms["total"].backward()
    assert torch.all(track_logits.grad > 0)


def test_absent_queries_get_no_loss() -> None:
    track_logits = torch.tensor([0.0, 40.0], requires_grad=True)
    empty = Match(torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    terms = layer_loss(
        track_logits,
        torch.zeros(2, 3),
        torch.zeros(0, 3, dtype=torch.bool),
        empty,
        LossConfig(valid_weight=1.0),
        query_mask=torch.tensor([True, False]),
    )
    assert terms["valid"].item() == pytest.approx(LOG2, rel=1e-6)
    terms["total"].backward()
    assert track_logits.grad[1] == 0


def test_seed_loss_hand_values() -> None:
    logits = torch.tensor([0.0, 0.0])
    targets = torch.tensor([1.0, 0.0])
    assert seed_loss(logits, targets).item() == pytest.approx(LOG2)
    assert seed_loss(logits, targets, pos_weight=3.0).item() == pytest.approx(2 * LOG2)


def test_hit_filter_loss_positive_weight() -> None:
    targets = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert hit_filter_pos_weight(targets).item() == pytest.approx(4.0)
    # logits 0: positive term 4 · log 2, three negative terms log 2 each → mean 7/4 · log 2.
    assert hit_filter_loss(torch.zeros(4), targets).item() == pytest.approx(7 / 4 * LOG2, rel=1e-6)
    assert hit_filter_pos_weight(torch.zeros(3)).item() == 1.0
    masked = hit_filter_loss(
        torch.zeros(5), torch.tensor([1.0, 0, 0, 0, 1]), torch.tensor([1, 1, 1, 1, 0]).bool()
    )
    assert masked.item() == pytest.approx(7 / 4 * LOG2, rel=1e-6)


def test_target_hit_weights_favour_short_tracks() -> None:
    # particle 5 has 3 hits, particle 9 has 6, particle 0 is noise and 7 is not a target
    particle = np.array([5, 0, 9, 5, 9, 9, 7, 5, 9, 9, 9])
    on_target = np.isin(particle, [5, 9])
    assert np.array_equal(target_hit_weights(particle, on_target, 0.0), np.ones(11, np.float32))
    weights = target_hit_weights(particle, on_target, 1.0)
    assert weights.dtype == np.float32
    assert weights[on_target].mean() == pytest.approx(1.0)
    assert np.all(weights[~on_target] == 1.0)
    # 1/3 against 1/6: each hit of the 3-hit particle weighs twice as much, so both particles weigh alike
    assert weights[0] == pytest.approx(2 * weights[2])
    assert weights[particle == 5].sum() == pytest.approx(weights[particle == 9].sum())
    half = target_hit_weights(particle, on_target, 0.5)
    assert half[0] / half[2] == pytest.approx(math.sqrt(2))
    assert np.array_equal(target_hit_weights(particle, np.zeros(11, bool), 1.0), np.ones(11, np.float32))


def test_target_hit_weights_favour_far_vertices() -> None:
    # particle 5 (3 hits) made at z = 0, particle 9 (6 hits) at z = -100 mm; 0 is noise, 7 no target
    particle = np.array([5, 0, 9, 5, 9, 9, 7, 5, 9, 9, 9])
    on_target = np.isin(particle, [5, 9])
    vertex_z = np.where(particle == 9, -100.0, np.where(particle == 5, 0.0, np.nan))
    weights = target_hit_weights(particle, on_target, hit_vertex_z=vertex_z, vertex_z_scale=50.0)
    assert weights.dtype == np.float32
    assert weights[on_target].mean() == pytest.approx(1.0)
    assert np.all(weights[~on_target] == 1.0)
    # 1 + (100 / 50)² = 5 against 1
    assert weights[2] == pytest.approx(5 * weights[0])
    both = target_hit_weights(particle, on_target, 1.0, vertex_z, 50.0)
    # n^-1 halves particle 9's hits against particle 5's: 5 / 2
    assert both[2] == pytest.approx(2.5 * both[0])
    assert both[on_target].mean() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="hit_vertex_z: required"):
        target_hit_weights(particle, on_target, vertex_z_scale=50.0)
    with pytest.raises(ValueError, match="hit_vertex_z: a target hit has no finite production z"):
        target_hit_weights(particle, on_target, hit_vertex_z=np.full(11, np.nan), vertex_z_scale=50.0)


def test_hit_filter_loss_hit_weights() -> None:
    targets = torch.tensor([1.0, 1.0, 0.0, 0.0])
    logits = torch.tensor([0.5, -1.0, 0.3, -2.0])
    plain = hit_filter_loss(logits, targets)
    assert hit_filter_loss(logits, targets, hit_weight=torch.ones(4)).item() == pytest.approx(plain.item())
    # weight only the second hit: the loss is its term alone (pos_weight 2) over the 4 hits
    weighted = hit_filter_loss(logits, targets, hit_weight=torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert weighted.item() == pytest.approx(2 * math.log1p(math.exp(1.0)) / 4, rel=1e-6)


def test_tracker_loss_sums_layers_and_seed() -> None:
    targets = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1]], dtype=torch.bool)
    layer = {"track_logits": torch.zeros(3), "assignment_logits": torch.zeros(3, 4)}
    outputs = {"seed_logits": torch.zeros(4), "layers": [layer, layer]}
    seeds = torch.tensor([1.0, 0, 1, 0])
    weights = LossConfig()
    total, log = tracker_loss(outputs, targets, seeds, weights)
    only_last, _ = tracker_loss(outputs, targets, seeds, LossConfig(intermediate_layers=False))
    assert log["matched"] == 2
    assert log["matching_seconds"] >= 0.0
    per_layer = log["final_total"]
    assert total.item() == pytest.approx(2 * per_layer + LOG2, rel=1e-6)
    assert only_last.item() == pytest.approx(per_layer + LOG2, rel=1e-6)
