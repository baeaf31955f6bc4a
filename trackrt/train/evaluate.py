"""Evaluation with the PyTorch models: hit filter (optional) + tracker per event, tracks, DESIGN §7 metrics.

Two efficiencies are reported: `tracking_only` runs the tracker on the ideal (truth) hit filter's
hits; `filter_and_tracking` runs it on the learned filter's hits, so filter losses count against it.
Both are counted on truth before any filter (all pixel hits of the event). Each mode also reports
where the target particles are lost (filter, seed, valid query, track building).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from trackrt.data.features import FeatureConfig
from trackrt.data.samples import Sample, SampleConfig, make_sample, sample_config, tracker_targets
from trackrt.data.trackml import PIXEL_VOLUMES, iter_events
from trackrt.data.tracks import assign_hits, find_tracks_in_passes, select_seeds, valid_queries
from trackrt.metrics.plots import plot_metrics
from trackrt.metrics.report import metrics_report
from trackrt.metrics.target_losses import stage_counts, stage_counts_by_vertex_radius, target_loss_stages
from trackrt.metrics.tracking import TrackingMetrics, combine_metrics, evaluate_tracks
from trackrt.model.config import TrackerConfig
from trackrt.train.checkpoint import load_checkpoint
from trackrt.train.dataset import HitSelection
from trackrt.train.device import resolve_device
from trackrt.train.filter_metrics import FilterCounts
from trackrt.train.records import json_safe

MODES = ("tracking_only", "filter_and_tracking")
VERTEX_COLUMNS = ("vx", "vy", "vz")


class DecodedEvent(NamedTuple):
    """The final decoder layer's outputs and the seed hits (into the M hits) of its queries (None: fq-ma)."""

    track_logits: np.ndarray  # [Q]
    assignment_logits: np.ndarray  # [Q, M]
    query_hits: np.ndarray | None  # int64 [Q]


class EventPrediction(NamedTuple):
    """Tracks of one event (`assign_hits`) plus the seed hits of all and of the valid queries."""

    track_of_hit: np.ndarray  # int64 [M], -1 for none
    track_scores: np.ndarray  # float32 [T]
    query_hits: np.ndarray | None  # int64, into the M hits; None for fixed queries
    valid_query_hits: np.ndarray | None


@torch.no_grad()
def decode_event(
    tracker: torch.nn.Module, config: TrackerConfig, features: np.ndarray, device: torch.device
) -> DecodedEvent | None:
    """The final decoder layer on φ-sorted hits [M, F], and the queries' seed hits.

    Queries are the seeds ≥ `seed_threshold` capped at `max_queries` (`fq-ma`: its learned queries), as in
    the runtime. None when there are no hits or no seed.
    """
    if len(features) == 0:
        return None
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))[None].to(device)
    hit_embeddings, seed_logits = tracker.encode(x)
    seeds, query_indices = None, None
    if config.dynamic_queries:
        seeds = select_seeds(seed_logits[0].float().cpu().numpy(), config.seed_threshold, config.max_queries)
        if len(seeds) == 0:
            return None
        query_indices = torch.from_numpy(seeds)[None].to(device)
    final = tracker.decode(hit_embeddings, query_indices)[-1]
    track_logits = final["track_logits"][0].float().cpu().numpy()
    return DecodedEvent(track_logits, final["assignment_logits"][0].float().cpu().numpy(), seeds)


def assign_decoded(
    decoded: DecodedEvent | None,
    num_hits: int,
    track_threshold: float,
    hit_threshold: float,
    min_hits: int,
    duplicate_iou: float,
) -> tuple[np.ndarray, np.ndarray]:
    """`assign_hits` on a decoded event of `num_hits` hits; no tracks when nothing was decoded."""
    if decoded is None:
        return np.full(num_hits, -1, dtype=np.int64), np.zeros(0, np.float32)
    logits = (decoded.track_logits, decoded.assignment_logits)
    return assign_hits(*logits, track_threshold, hit_threshold, min_hits, duplicate_iou)


def assign_in_passes(
    tracker: torch.nn.Module,
    config: TrackerConfig,
    features: np.ndarray,
    first_pass: DecodedEvent | None,
    thresholds: tuple[float, float, int, float],
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """`config.passes` passes with the `assign_decoded` thresholds (track, hit, min_hits, duplicate_iou):
    pass 1 from `first_pass` (decoded once on all hits [M, F], reusable across thresholds), later passes
    decoded afresh, since their hits depend on the thresholds."""

    def find_tracks(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        whole = len(hits) == len(features)
        decoded = first_pass if whole else decode_event(tracker, config, features[hits], device)
        return assign_decoded(decoded, len(hits), *thresholds)

    return find_tracks_in_passes(len(features), config.passes, find_tracks)


def predict_pass(
    tracker: torch.nn.Module, config: TrackerConfig, features: np.ndarray, device: torch.device
) -> EventPrediction:
    """One tracker pass on φ-sorted hits [M, F]: tracks by `assign_hits` with the config's thresholds,
    exactly as in the runtime, and which queries were seeded where and kept as valid."""
    decoded = decode_event(tracker, config, features, device)
    if decoded is None:
        none = np.full(len(features), -1, dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64) if config.dynamic_queries else None
        return EventPrediction(none, np.zeros(0, np.float32), empty, empty)
    logits = (decoded.track_logits, decoded.assignment_logits)
    thresholds = (config.track_threshold, config.hit_threshold)
    valid = valid_queries(*logits, *thresholds, config.duplicate_iou)
    track_of_hit, scores = assign_hits(
        *logits, *thresholds, config.min_hits, config.duplicate_iou, valid=valid
    )
    query_hits = decoded.query_hits
    valid_hits = None if query_hits is None else query_hits[valid]
    return EventPrediction(track_of_hit, scores, query_hits, valid_hits)


def predict_event(
    tracker: torch.nn.Module, config: TrackerConfig, features: np.ndarray, device: torch.device
) -> EventPrediction:
    """The tracker's `config.passes` passes on φ-sorted hits [M, F] (`find_tracks_in_passes`), as in the
    runtime; the seeded and valid query hits are those of all passes, in ascending order."""
    query_hits: list[np.ndarray] = []
    valid_hits: list[np.ndarray] = []

    def find_tracks(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prediction = predict_pass(tracker, config, features[hits], device)
        if prediction.query_hits is not None and prediction.valid_query_hits is not None:
            query_hits.append(hits[prediction.query_hits])
            valid_hits.append(hits[prediction.valid_query_hits])
        return prediction.track_of_hit, prediction.track_scores

    track_of_hit, scores = find_tracks_in_passes(len(features), config.passes, find_tracks)
    if not config.dynamic_queries:
        return EventPrediction(track_of_hit, scores, None, None)
    return EventPrediction(track_of_hit, scores, _union(query_hits), _union(valid_hits))


def _union(indices: list[np.ndarray]) -> np.ndarray:
    """Sorted union of index arrays (empty int64 for none)."""
    return np.unique(np.concatenate(indices)).astype(np.int64) if indices else np.zeros(0, np.int64)


def predict_tracks(
    tracker: torch.nn.Module, config: TrackerConfig, features: np.ndarray, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """(track_of_hit int64 [M], −1 for none; track_scores [T]) of `predict_event`."""
    prediction = predict_event(tracker, config, features, device)
    return prediction.track_of_hit, prediction.track_scores


@torch.no_grad()
def seed_statistics(
    tracker: torch.nn.Module, config: TrackerConfig, samples: Iterable[Sample], device: torch.device
) -> dict[str, float]:
    """Seed-head quality on truth-filtered hits: share of target first hits kept as queries; queries/event.

    Selection as at inference (`seed_threshold`, capped at `max_queries`); empty for `fq-ma`.
    """
    if not config.dynamic_queries:
        return {}
    was_training = tracker.training
    tracker.eval()
    found = first_hits = queries = events = 0
    for sample in samples:
        targets = tracker_targets(sample)
        events += 1
        if len(targets.hit_index) == 0:
            continue
        x = torch.from_numpy(np.ascontiguousarray(targets.features))[None].to(device)
        seeds = select_seeds(
            tracker.encode(x)[1][0].float().cpu().numpy(), config.seed_threshold, config.max_queries
        )
        found += int(targets.seed_target[seeds].sum())
        first_hits += len(targets.first_hit)
        queries += len(seeds)
    tracker.train(was_training)
    return {
        "seed_efficiency": found / first_hits if first_hits else math.nan,
        "queries_per_event": queries / events if events else math.nan,
    }


def event_metrics(
    sample: Sample,
    hit_index: np.ndarray,
    track_of_hit: np.ndarray,
    track_scores: np.ndarray,
    selection: SampleConfig,
) -> TrackingMetrics:
    """DESIGN §7 metrics of one event's tracks (on the kept hits `hit_index`) against all its truth.

    A sample holds pixel hits only, so all its hits are declared pixel hits to `evaluate_tracks`
    (the selection is then reported as pixel-only, as it is).
    """
    assigned = track_of_hit >= 0
    tracks = pd.DataFrame(
        {"hit_id": sample.hit_id[hit_index][assigned], "track_id": track_of_hit[assigned].astype(np.int64)}
    )
    scores = pd.DataFrame({"track_id": np.arange(len(track_scores), dtype=np.int64), "score": track_scores})
    return evaluate_tracks(
        tracks,
        sample.truth_frame(),
        sample.particles,
        pt_min=selection.pt_min,
        eta_max=selection.eta_max,
        min_hits=selection.min_hits,
        track_scores=scores,
        hits=pd.DataFrame({"hit_id": sample.hit_id, "volume_id": PIXEL_VOLUMES[1]}),
    )


@dataclass
class Evaluation:
    """Pooled tracking metrics per mode, hit-filter counts (with a filter) and the events evaluated.

    `target_losses` holds, per mode, one row per target particle and event with the chain stage where
    it is lost (`trackrt.metrics.target_losses`).
    """

    tracking: dict[str, TrackingMetrics]
    filter_counts: FilterCounts | None
    filter_threshold: float | None
    event_ids: list[int] = field(default_factory=list)
    target_losses: dict[str, pd.DataFrame] = field(default_factory=dict)


def event_target_losses(
    sample: Sample,
    hit_index: np.ndarray,
    kept: np.ndarray,
    prediction: EventPrediction,
    metrics: TrackingMetrics,
) -> pd.DataFrame:
    """Where each target particle of one event is lost, given the kept hits (`hit_index`, as a bool
    mask `kept` [N]) and the tracker's prediction on them; with each particle's pT, η and, where the
    particles table has them, its production vertex (vx, vy, vz)."""
    particles = metrics.particle_table
    targets = particles.loc[particles["target"], "particle_id"].to_numpy()
    found = particles.loc[particles["target"] & particles["matched_dm"], "particle_id"].to_numpy()
    query_hits, valid_hits = prediction.query_hits, prediction.valid_query_hits
    table = target_loss_stages(
        sample.hit_particle_id,
        targets,
        kept,
        found,
        None if query_hits is None else hit_index[query_hits],
        None if valid_hits is None else hit_index[valid_hits],
    )
    properties = particles.set_index("particle_id")[["pt", "eta"]]
    vertex = [c for c in VERTEX_COLUMNS if c in sample.particles.columns]
    if vertex:
        properties = properties.join(sample.particles.set_index("particle_id")[vertex])
    table = table.join(properties, on="particle_id")
    return table.assign(event_id=sample.event_id)


def evaluate_samples(
    samples: Iterable[Sample],
    tracker: torch.nn.Module,
    tracker_config: TrackerConfig,
    selection: SampleConfig,
    device: torch.device,
    hit_filter: torch.nn.Module | None = None,
    filter_threshold: float | None = None,
    progress: bool = False,
    filter_features: FeatureConfig | None = None,
) -> Evaluation:
    """Run the tracker on each sample with the truth filter and, given `hit_filter`, with the learned one.

    `filter_features` is the hit filter's feature config when it differs from the samples' (the tracker's).
    """
    selections = {"tracking_only": HitSelection(cache=False)}
    counts = None
    if hit_filter is not None:
        if filter_threshold is None:
            raise ValueError("filter_threshold: required with a hit filter")
        selections["filter_and_tracking"] = HitSelection(
            hit_filter, filter_threshold, filter_features, device, cache=False
        )
        counts = FilterCounts()
    per_mode: dict[str, list[TrackingMetrics]] = {mode: [] for mode in selections}
    losses: dict[str, list[pd.DataFrame]] = {mode: [] for mode in selections}
    event_ids = []
    was_training = tracker.training
    tracker.eval()
    for sample in tqdm(samples, desc="evaluate", unit="event", disable=not progress):
        event_ids.append(sample.event_id)
        for mode, hit_selection in selections.items():
            targets = hit_selection.targets(sample)
            kept = np.zeros(sample.num_hits, dtype=bool)
            kept[targets.hit_index] = True
            if counts is not None and mode == "filter_and_tracking":
                counts.add(sample.hit_on_target, kept)
            prediction = predict_event(tracker, tracker_config, targets.features, device)
            metrics = event_metrics(sample, targets.hit_index, *prediction[:2], selection)
            per_mode[mode].append(metrics)
            losses[mode].append(event_target_losses(sample, targets.hit_index, kept, prediction, metrics))
    tracker.train(was_training)
    if not event_ids:
        raise ValueError("evaluate_samples: no events to evaluate")
    tracking = {mode: combine_metrics(metrics, event_ids) for mode, metrics in per_mode.items()}
    target_losses = {mode: pd.concat(tables, ignore_index=True) for mode, tables in losses.items()}
    return Evaluation(tracking, counts, filter_threshold, event_ids, target_losses)


def write_evaluation(evaluation: Evaluation, out_dir: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write `metrics.json` (overall + binned per mode, hit filter), per-mode PNGs and
    `target_losses.parquet` (one row per mode, event and target particle: the stage it is lost at, its
    hit counts, pT, η and vertex); return the JSON path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "events": len(evaluation.event_ids),
        "event_ids": evaluation.event_ids,
        **(info or {}),
    }
    if evaluation.filter_counts is not None:
        report["hit_filter"] = {
            "threshold": evaluation.filter_threshold,
            **evaluation.filter_counts.summary(),
        }
    for mode, metrics in evaluation.tracking.items():
        report[mode] = metrics_report(metrics)
        if mode in evaluation.target_losses:
            counts = stage_counts(evaluation.target_losses[mode])
            total = sum(counts.values())
            report[mode]["target_losses"] = {
                "stages": counts,
                "fractions": {stage: n / total if total else math.nan for stage, n in counts.items()},
                "by_vertex_radius": stage_counts_by_vertex_radius(evaluation.target_losses[mode]),
            }
        plots = plot_metrics(metrics, out_dir / mode, label=mode.replace("_", " "))
        report[mode]["plots"] = [str(p.relative_to(out_dir)) for p in plots]
    if evaluation.target_losses:
        tables = [table.assign(mode=mode) for mode, table in evaluation.target_losses.items()]
        pd.concat(tables, ignore_index=True).to_parquet(out_dir / "target_losses.parquet", index=False)
        report["target_losses_table"] = "target_losses.parquet"
    path = out_dir / "metrics.json"
    path.write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    return path


def evaluate_directory(
    tracker_checkpoint: str | Path,
    events_dir: str | Path,
    filter_checkpoint: str | Path | None = None,
    out_dir: str | Path | None = None,
    selection: str | None = None,
    max_events: int | None = None,
    device: str | torch.device = "auto",
    progress: bool = True,
) -> Path:
    """Evaluate a tracker checkpoint (and optionally a hit filter) on a directory of TrackML events.

    The filter runs at the tracker's `filter_threshold` when the tracker sets one, else at its own.
    `selection` defaults to the one recorded at training (else `Pix1.0`). Writes `metrics.json` and
    plots to `out_dir` (default: `<tracker_checkpoint>-evaluation` beside it); returns the JSON path.
    """
    device = resolve_device(device)
    tracker, tracker_info = load_checkpoint(tracker_checkpoint, device)
    if tracker_info.kind != "tracker":
        raise ValueError(f"{tracker_checkpoint}: a {tracker_info.kind} checkpoint, not a tracker")
    selection = selection or tracker_info.metadata.get("selection", "Pix1.0")
    sample_cfg = sample_config(selection, tracker_info.features)
    hit_filter, threshold, filter_features = None, None, None
    if filter_checkpoint is not None:
        hit_filter, filter_info = load_checkpoint(filter_checkpoint, device)
        if filter_info.kind != "hit_filter":
            raise ValueError(f"{filter_checkpoint}: a {filter_info.kind} checkpoint, not a hit filter")
        threshold = tracker_info.model.chain_filter_threshold(filter_info.model.hit_threshold)
        filter_features = filter_info.features
    events = iter_events(events_dir, parts=("hits", "particles", "truth"), pixel_only=True)
    samples = (make_sample(event, sample_cfg) for event in itertools.islice(events, max_events))
    evaluation = evaluate_samples(
        samples,
        tracker,
        tracker_info.model,
        sample_cfg,
        device,
        hit_filter,
        threshold,
        progress,
        filter_features=filter_features,
    )
    info = {
        "tracker_checkpoint": str(tracker_checkpoint),
        "filter_checkpoint": str(filter_checkpoint) if filter_checkpoint is not None else None,
        "selection": selection,
        "variant": tracker_info.model.variant,
        "thresholds": tracker_info.thresholds,
    }
    default_out = Path(tracker_checkpoint).with_name(Path(tracker_checkpoint).name + "-evaluation")
    return write_evaluation(evaluation, out_dir or default_out, info)
