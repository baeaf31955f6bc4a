"""Training losses: matched-query focal/dice/valid losses, the seed-head loss and the hit-filter loss."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from trackrt.train.config import LossConfig
from trackrt.train.matching import Match, focal_terms, match_layers


def _zero_like_graph(tensor: torch.Tensor) -> torch.Tensor:
    """A zero that keeps `tensor` in the autograd graph (so backward works when nothing is matched)."""
    return tensor.float().sum() * 0.0


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, gamma: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Focal loss (γ, no α) averaged over the last axis (only where `mask`), one value per leading row."""
    positive, negative = focal_terms(logits, gamma)
    targets = targets.float()
    per_element = targets * positive + (1.0 - targets) * negative
    if mask is None:
        return per_element.mean(-1)
    keep = mask.float().expand_as(per_element)
    return (per_element * keep).sum(-1) / keep.sum(-1).clamp_min(1.0)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """1 − (2·Σp·t + 1) / (Σp + Σt + 1) over the last axis, one value per leading row."""
    probs = torch.sigmoid(logits.float())
    targets = targets.float()
    if mask is not None:
        probs = probs * mask.float()
        targets = targets * mask.float()
    return 1.0 - (2.0 * (probs * targets).sum(-1) + 1.0) / (probs.sum(-1) + targets.sum(-1) + 1.0)


def layer_loss(
    track_logits: torch.Tensor,
    assignment_logits: torch.Tensor,
    target_masks: torch.Tensor,
    match: Match,
    weights: LossConfig,
    hit_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    target_weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted valid-BCE (all present queries; matched → 1, unmatched → 0), focal and dice (matched only).

    One event: `track_logits` [Q], `assignment_logits` [Q, N], `target_masks` [T, N]. `target_weight`
    [T] scales the terms of the query matched to each target (unmatched queries weigh 1). Returns the
    weighted terms `valid`, `focal`, `dice` and their sum `total`.
    """
    device = track_logits.device
    valid_target = torch.zeros_like(track_logits, dtype=torch.float32)
    valid_target[match.query_index.to(device)] = 1.0
    valid_bce = F.binary_cross_entropy_with_logits(track_logits.float(), valid_target, reduction="none")
    pair_weight = None
    if target_weight is not None:
        pair_weight = target_weight.to(device).float()[match.target_index.to(device)]
        query_weight = torch.ones_like(valid_bce)
        query_weight[match.query_index.to(device)] = pair_weight
        valid_bce = valid_bce * query_weight
    if query_mask is not None:
        keep = query_mask.float()
        valid = (valid_bce * keep).sum() / keep.sum().clamp_min(1.0)
    else:
        valid = valid_bce.mean() if valid_bce.numel() else _zero_like_graph(track_logits)
    if match.size:
        matched_logits = assignment_logits[match.query_index.to(device)]
        matched_targets = target_masks[match.target_index.to(device)]
        focal = focal_loss(matched_logits, matched_targets, weights.focal_gamma, hit_mask)
        dice = dice_loss(matched_logits, matched_targets, hit_mask)
        if pair_weight is not None:
            focal, dice = focal * pair_weight, dice * pair_weight
        focal, dice = focal.mean(), dice.mean()
    else:
        focal = _zero_like_graph(assignment_logits)
        dice = _zero_like_graph(assignment_logits)
    terms = {
        "valid": weights.valid_weight * valid,
        "focal": weights.focal * focal,
        "dice": weights.dice_weight * dice,
    }
    terms["total"] = terms["valid"] + terms["focal"] + terms["dice"]
    return terms


def seed_loss(
    seed_logits: torch.Tensor,
    seed_targets: torch.Tensor,
    pos_weight: float = 1.0,
    hit_mask: torch.Tensor | None = None,
    hit_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-hit BCE of the seed head toward "this hit is the first (smallest-r) hit of a target particle",
    each hit's term scaled by `hit_weight` [N] when given."""
    weight = torch.tensor(pos_weight, device=seed_logits.device, dtype=torch.float32)
    bce = F.binary_cross_entropy_with_logits(
        seed_logits.float(), seed_targets.float(), pos_weight=weight, reduction="none"
    )
    if hit_weight is not None:
        bce = bce * hit_weight.to(bce.device)
    if hit_mask is None:
        return bce.mean() if bce.numel() else _zero_like_graph(seed_logits)
    keep = hit_mask.float()
    return (bce * keep).sum() / keep.sum().clamp_min(1.0)


def hit_filter_pos_weight(targets: torch.Tensor, hit_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Positive-class weight 1 / mean(target) over real hits (1 when an event has no target hit)."""
    targets = targets.float()
    if hit_mask is not None:
        keep = hit_mask.float()
        mean = (targets * keep).sum() / keep.sum().clamp_min(1.0)
    else:
        mean = targets.mean() if targets.numel() else targets.new_zeros(())
    return torch.where(mean > 0, 1.0 / mean.clamp_min(1e-12), torch.ones_like(mean))


def hit_filter_loss(
    hit_logits: torch.Tensor,
    targets: torch.Tensor,
    hit_mask: torch.Tensor | None = None,
    hit_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-hit BCE of the hit filter with positive weight 1/mean(target), averaged over real hits;
    `hit_weight` scales each hit's term (e.g. `target_hit_weights`)."""
    pos_weight = hit_filter_pos_weight(targets, hit_mask).detach()
    bce = F.binary_cross_entropy_with_logits(
        hit_logits.float(), targets.float(), pos_weight=pos_weight, reduction="none"
    )
    if hit_weight is not None:
        bce = bce * hit_weight
    if hit_mask is None:
        return bce.mean() if bce.numel() else _zero_like_graph(hit_logits)
    keep = hit_mask.float()
    return (bce * keep).sum() / keep.sum().clamp_min(1.0)


def target_hit_weights(
    hit_particle_id: np.ndarray,
    hit_on_target: np.ndarray,
    power: float = 0.0,
    hit_vertex_z: np.ndarray | None = None,
    vertex_z_scale: float | None = None,
) -> np.ndarray:
    """Float32 [N]: for target hits n^-power (n: hits of the hit's particle) times 1 + (vz / vertex_z_scale)²
    (vz: its particle's production z, mm) when a scale is given, normalised to mean 1 over target hits;
    1 for the other hits."""
    weights = np.ones(len(hit_particle_id), dtype=np.float32)
    on_target = np.asarray(hit_on_target, dtype=bool)
    if (power == 0.0 and vertex_z_scale is None) or not on_target.any():
        return weights
    _, inverse, counts = np.unique(hit_particle_id[on_target], return_inverse=True, return_counts=True)
    raw = counts[inverse].astype(np.float64) ** -power
    if vertex_z_scale is not None:
        if hit_vertex_z is None:
            raise ValueError("hit_vertex_z: required when vertex_z_scale is given")
        vertex_z = np.asarray(hit_vertex_z, dtype=np.float64)[on_target]
        raw = raw * vertex_z_factor(vertex_z, vertex_z_scale, "hit_vertex_z: a target hit")
    weights[on_target] = raw / raw.mean()
    return weights


def vertex_z_factor(vertex_z: np.ndarray, scale: float, what: str = "vertex_z: an entry") -> np.ndarray:
    """1 + (vz / scale)² per entry: how much more a particle made at production z `vz` (mm) weighs;
    a non-finite vz is an error that names `what`."""
    vertex_z = np.asarray(vertex_z, dtype=np.float64)
    if not np.isfinite(vertex_z).all():
        raise ValueError(f"{what} has no finite production z")
    return 1.0 + (vertex_z / scale) ** 2


def target_vertex_weights(target_vertex_z: np.ndarray, scale: float) -> np.ndarray:
    """Float32 [T]: `vertex_z_factor` of each target particle's production z, normalised to mean 1."""
    raw = vertex_z_factor(target_vertex_z, scale, "target_vertex_z: a target particle")
    return (raw / raw.mean()).astype(np.float32) if len(raw) else raw.astype(np.float32)


def tracker_loss(
    outputs: dict,
    target_masks: torch.Tensor,
    seed_targets: torch.Tensor,
    weights: LossConfig,
    hit_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    target_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Tracker loss for one event: Hungarian-matched losses of each decoder layer (summed) plus the seed loss.

    `outputs` holds `seed_logits` [N] and `layers`, a list of dicts with `track_logits` [Q] and
    `assignment_logits` [Q, N]; only the last layer counts unless `weights.intermediate_layers`.
    `target_weight` [T] scales each target's matched terms and its seed hits' seed terms (`layer_loss`).
    Returns the differentiable total and a log of floats (final-layer terms, seed loss, matched count and
    the seconds spent matching, cost matrices and solves).
    """
    layers = outputs["layers"] if weights.intermediate_layers else outputs["layers"][-1:]
    started = _synchronized_clock(target_masks)
    matches = match_layers(layers, target_masks, weights, hit_mask, query_mask)
    matching_seconds = time.perf_counter() - started
    total = _zero_like_graph(outputs["seed_logits"])
    terms: dict[str, torch.Tensor] = {}
    for layer, match in zip(layers, matches, strict=True):
        terms = layer_loss(
            layer["track_logits"],
            layer["assignment_logits"],
            target_masks,
            match,
            weights,
            hit_mask,
            query_mask,
            target_weight,
        )
        total = total + terms["total"]
    seed_hit_weight = None
    if target_weight is not None:
        seed_hit_weight = target_masks.float().T @ target_weight.to(target_masks.device).float()
        seed_hit_weight = torch.where(seed_targets.bool(), seed_hit_weight, torch.ones_like(seed_hit_weight))
    seed = seed_loss(outputs["seed_logits"], seed_targets, weights.seed_pos_weight, hit_mask, seed_hit_weight)
    total = total + weights.seed_weight * seed
    log = {f"final_{name}": float(value.detach()) for name, value in terms.items()}
    log.update(
        seed=float(seed.detach()),
        matched=float(matches[-1].size),
        total=float(total.detach()),
        matching_seconds=matching_seconds,
    )
    return total, log


def _synchronized_clock(tensor: torch.Tensor) -> float:
    """`time.perf_counter()` once the device of `tensor` has finished its queued work, so that a CUDA
    forward pass still running is not counted as matching time."""
    if tensor.is_cuda:
        torch.cuda.synchronize(tensor.device)
    return time.perf_counter()
