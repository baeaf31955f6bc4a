"""One training step's forward pass and loss for each model kind (one event, batch 1)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from trackrt.data.samples import Sample, TrackerTargets
from trackrt.model.config import TrackerConfig
from trackrt.train.config import TrackerStageConfig
from trackrt.train.losses import hit_filter_loss, target_hit_weights, target_vertex_weights, tracker_loss
from trackrt.train.queries import training_query_indices

StepResult = tuple[torch.Tensor, dict[str, float]]


def hit_filter_step(
    model: torch.nn.Module,
    sample: Sample,
    device: torch.device,
    particle_weight_power: float = 0.0,
    vertex_z_scale: float | None = None,
) -> StepResult | None:
    """BCE (positive weight 1/mean(target)) of the hit filter on all pixel hits, target hits weighed by
    `target_hit_weights`; None for an empty event."""
    if sample.num_hits == 0:
        return None
    features = torch.from_numpy(np.ascontiguousarray(sample.features))[None].to(device)
    targets = torch.from_numpy(sample.hit_on_target).to(device)
    weights = None
    if particle_weight_power > 0.0 or vertex_z_scale is not None:
        vertex_z = hit_vertex_z(sample) if vertex_z_scale is not None else None
        weights = target_hit_weights(
            sample.hit_particle_id, sample.hit_on_target, particle_weight_power, vertex_z, vertex_z_scale
        )
        weights = torch.from_numpy(weights).to(device)
    logits = model(features)[0]
    loss = hit_filter_loss(logits, targets, hit_weight=weights)
    with torch.no_grad():
        predicted = logits.float() >= 0
        true_positive = float((predicted & targets).sum())
        efficiency = true_positive / max(float(targets.sum()), 1.0)
        purity = true_positive / max(float(predicted.sum()), 1.0)
    return loss, {"total": float(loss.detach()), "efficiency@0.5": efficiency, "purity@0.5": purity}


def hit_vertex_z(sample: Sample) -> np.ndarray:
    """Float64 [N]: the production z (mm) of each hit's particle; NaN for noise hits."""
    return particle_vertex_z(sample, sample.hit_particle_id)


def particle_vertex_z(sample: Sample, particle_id: np.ndarray) -> np.ndarray:
    """Float64, one per entry of `particle_id`: its production z (mm) in the sample's particles table,
    NaN where the table has none (noise)."""
    vertex_z = sample.particles.set_index("particle_id")["vz"]
    return vertex_z.reindex(np.asarray(particle_id, dtype=np.int64)).to_numpy(dtype=np.float64)


def tracker_outputs(
    model: torch.nn.Module,
    config: TrackerConfig,
    stage: TrackerStageConfig,
    targets: TrackerTargets,
    device: torch.device,
) -> dict | None:
    """The tracker's training forward pass on one event's selected hits: `seed_logits` [N] and `layers`
    (per decoder layer `track_logits` [Q], `assignment_logits` [Q, N]), batch dimension dropped.

    Dynamic-query variants take their queries from `training_query_indices`. None when there are no
    hits or the seed logits are not finite.
    """
    if len(targets.hit_index) == 0:
        return None
    features = torch.from_numpy(np.ascontiguousarray(targets.features))[None].to(device)
    hit_embeddings, seed_logits = model.encode(features)
    if not bool(torch.isfinite(seed_logits).all()):
        return None
    query_indices = None
    if config.dynamic_queries:
        threshold = stage.queries.seed_threshold
        max_queries = stage.queries.max_queries
        chosen = training_query_indices(
            seed_logits[0].detach().float().cpu().numpy(),
            targets.seed_target,
            config.seed_threshold if threshold is None else threshold,
            config.max_queries if max_queries is None else max_queries,
            stage.queries.include_true_seeds,
        )
        query_indices = torch.from_numpy(chosen)[None].to(device)
    layers = model.decode(hit_embeddings, query_indices)
    return {
        "seed_logits": seed_logits[0],
        "layers": [{name: value[0] for name, value in layer.items()} for layer in layers],
    }


def tracker_step(
    model: torch.nn.Module,
    config: TrackerConfig,
    stage: TrackerStageConfig,
    targets: TrackerTargets,
    device: torch.device,
    sample: Sample | None = None,
) -> StepResult | None:
    """Tracker loss on one event's selected hits (Hungarian matching per decoder layer + seed loss).

    `fq-ma` uses its learned queries and gets no seed loss (the 2024 baseline has no seed head). None
    (the loop skips the event) when `tracker_outputs` gives none. With `stage.vertex_z_scale` each
    target's terms are weighed by `target_vertex_weights` of its production z in `sample`.
    """
    target_weight = None
    if stage.vertex_z_scale is not None:
        if sample is None:
            raise ValueError("sample: required when tracker.vertex_z_scale is set")
        vertex_z = particle_vertex_z(sample, targets.particle_id)
        target_weight = torch.from_numpy(target_vertex_weights(vertex_z, stage.vertex_z_scale)).to(device)
    outputs = tracker_outputs(model, config, stage, targets, device)
    if outputs is None:
        return None
    target_masks = torch.from_numpy(targets.assignment_matrix()).to(device)
    weights = stage.loss
    if not config.dynamic_queries and weights.seed_weight:
        weights = dataclasses.replace(weights, seed_weight=0.0)
    seed_targets = torch.from_numpy(targets.seed_target).to(device)
    loss, log = tracker_loss(outputs, target_masks, seed_targets, weights, target_weight=target_weight)
    log["queries"] = float(outputs["layers"][-1]["track_logits"].shape[-1])
    log["targets"] = float(len(targets.particle_id))
    return loss, log
