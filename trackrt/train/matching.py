"""Hungarian matching of decoder queries to target particles (DESIGN §4 cost), batched in torch."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from trackrt.train.config import LossConfig

PARALLEL_MIN_SIZE = 100_000  # cost entries below which threads cost more than they save


@dataclass(frozen=True)
class Match:
    """One event's query↔target assignment: `query_index[k]` is matched to `target_index[k]`."""

    query_index: torch.Tensor
    target_index: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.query_index.numel())


def focal_terms(logits: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Element-wise focal loss towards target 1 and towards target 0 (no α), computed in log space."""
    logits = logits.float()
    log_p = F.logsigmoid(logits)
    log_not_p = F.logsigmoid(-logits)
    positive = -torch.exp(gamma * log_not_p) * log_p
    negative = -torch.exp(gamma * log_p) * log_not_p
    return positive, negative


def pairwise_focal_cost(
    assignment_logits: torch.Tensor, target_masks: torch.Tensor, gamma: float, hit_mask: torch.Tensor | None
) -> torch.Tensor:
    """Focal loss summed over hits for every (query, target) pair: [..., Q, N] × [T, N] → [..., Q, T]."""
    positive, negative = focal_terms(assignment_logits, gamma)
    targets = target_masks.float()
    if hit_mask is not None:
        keep = hit_mask.float()
        positive, negative, targets = positive * keep, negative * keep, targets * keep
        not_targets = (1.0 - target_masks.float()) * keep
    else:
        not_targets = 1.0 - targets
    return positive @ targets.transpose(-1, -2) + negative @ not_targets.transpose(-1, -2)


def pairwise_dice_cost(
    assignment_logits: torch.Tensor, target_masks: torch.Tensor, hit_mask: torch.Tensor | None
) -> torch.Tensor:
    """1 − (2·Σp·t + 1) / (Σp + Σt + 1) for every (query, target) pair: → [..., Q, T]."""
    probs = torch.sigmoid(assignment_logits.float())
    targets = target_masks.float()
    if hit_mask is not None:
        probs = probs * hit_mask.float()
        targets = targets * hit_mask.float()
    overlap = probs @ targets.transpose(-1, -2)
    total = probs.sum(-1).unsqueeze(-1) + targets.sum(-1).unsqueeze(-2)
    return 1.0 - (2.0 * overlap + 1.0) / (total + 1.0)


def matching_cost(
    track_logits: torch.Tensor,
    assignment_logits: torch.Tensor,
    target_masks: torch.Tensor,
    weights: LossConfig,
    hit_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cost [..., Q, T] = w_valid·BCE(valid→1) + w_dice·dice + w_focal·Σ_hits focal; absent queries huge.

    `track_logits` [..., Q], `assignment_logits` [..., Q, N], `target_masks` [T, N] (bool),
    `hit_mask` [N] (False = padding hit), `query_mask` [..., Q] (False = padded or absent query).
    Leading dimensions (e.g. decoder layers) are handled in one batched computation.
    """
    valid_cost = F.softplus(-track_logits.float()).unsqueeze(-1)
    cost = (
        weights.valid_weight * valid_cost
        + weights.dice_weight * pairwise_dice_cost(assignment_logits, target_masks, hit_mask)
        + weights.focal * pairwise_focal_cost(assignment_logits, target_masks, weights.focal_gamma, hit_mask)
    )
    cost = torch.nan_to_num(cost, nan=weights.absent_query_cost, posinf=weights.absent_query_cost)
    if query_mask is not None:
        cost = cost.masked_fill(~query_mask.bool().unsqueeze(-1), weights.absent_query_cost)
    return cost


def candidate_queries(cost: np.ndarray) -> np.ndarray:
    """Rows of a [Q, T] cost matrix that can be in a minimum-cost assignment (all rows when Q ≤ T).

    Row q is left out when at least T rows have every cost strictly below q's smallest cost: in any
    assignment that uses q, one of those rows is free and taking it instead lowers the total, so no
    optimal assignment uses q. This keeps the answer exact while sparing the solver most of the
    hopeless queries of a large event (at ⟨μ⟩ = 200, 2,000 queries for ~1,200 targets).
    """
    num_rows, num_cols = cost.shape
    if num_rows <= num_cols:
        return np.arange(num_rows)
    below = np.searchsorted(np.sort(cost.max(1)), cost.min(1), side="left")
    return np.flatnonzero(below < num_cols)


def hungarian_match(cost: torch.Tensor | np.ndarray, query_mask: torch.Tensor | None = None) -> Match:
    """Minimum-cost assignment of a [Q, T] cost matrix on CPU; pairs that use an absent query are dropped."""
    if isinstance(cost, torch.Tensor):
        cost = cost.detach().to("cpu", torch.float64).numpy()
    matrix = np.asarray(cost, dtype=np.float64)
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return Match(empty, empty)
    candidates = candidate_queries(matrix)
    rows, cols = linear_sum_assignment(matrix[candidates])
    rows = candidates[rows]
    if query_mask is not None:
        present = query_mask.detach().cpu().numpy().astype(bool)[rows]
        rows, cols = rows[present], cols[present]
    order = np.argsort(rows, kind="stable")
    return Match(
        torch.from_numpy(rows[order].astype(np.int64)), torch.from_numpy(cols[order].astype(np.int64))
    )


@torch.no_grad()
def match_layers(
    layer_outputs: list[dict[str, torch.Tensor]],
    target_masks: torch.Tensor,
    weights: LossConfig,
    hit_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
) -> list[Match]:
    """Match every decoder layer's predictions (one event, no batch dim) to the targets; one `Match` each.

    The costs are computed on the model's device, the assignments by `solve_layers`.
    """
    costs = [
        matching_cost(
            out["track_logits"], out["assignment_logits"], target_masks, weights, hit_mask, query_mask
        ).to("cpu", torch.float64).numpy()
        for out in layer_outputs
    ]
    return solve_layers(costs, query_mask)


def solve_layers(costs: list[np.ndarray], query_mask: torch.Tensor | None = None) -> list[Match]:
    """`hungarian_match` of each layer's cost matrix, on one CPU thread per layer when they are large
    (scipy releases the GIL, so the layers' solves overlap)."""
    if len(costs) < 2 or min(c.size for c in costs) < PARALLEL_MIN_SIZE:
        return [hungarian_match(cost, query_mask) for cost in costs]
    with ThreadPoolExecutor(max_workers=min(len(costs), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda cost: hungarian_match(cost, query_mask), costs))
