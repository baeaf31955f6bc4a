"""A training run: the hit-filter stage, its threshold calibration, then the tracker stage.

A run trains the hit filter (if configured), sets its threshold for the configured target-hit
efficiency, then trains the tracker on truth-filtered or learned-filtered hits. Each stage writes
`<out_dir>/<stage>/last` (weights + resumable state), `<out_dir>/<stage>/final` (the trained model) and
`<out_dir>/<stage>/metrics.jsonl` (one JSON object per log line or validation); the optimisation
loop itself is `trackrt.train.stage_runner.run_stage`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trackrt.configuration import to_dict
from trackrt.data.features import FeatureConfig
from trackrt.data.samples import CachedSamples, Sample, sample_config
from trackrt.train.checkpoint import load_checkpoint, save_checkpoint
from trackrt.train.config import TrainConfig
from trackrt.train.dataset import HitSelection, open_samples
from trackrt.train.device import resolve_device
from trackrt.train.evaluate import evaluate_samples, seed_statistics
from trackrt.train.filter_metrics import score_samples
from trackrt.train.stage_runner import StageSpec, run_stage
from trackrt.train.steps import hit_filter_step, tracker_step


def _metadata(config: TrainConfig, name: str) -> dict[str, Any]:
    """What every checkpoint of a run records: stage, selection, ⟨μ⟩, seed and the full train config."""
    return {
        "stage": name,
        "selection": config.data.selection,
        "train_pt_min": config.data.train_pt_min,
        "pileup": config.data.pileup,
        "seed": config.seed,
        "train_config": to_dict(config),
    }


def train_and_val_samples(
    config: TrainConfig, features: FeatureConfig
) -> tuple[CachedSamples, CachedSamples | None]:
    """The cached training samples (targets at `data.train_pt_min`) and, when a validation directory is
    configured, the validation ones (the selection's targets)."""
    data, cache = config.data, _cache_dir(config)
    samples = open_samples(
        data.train_dir, cache, data.selection, features, data.max_train_events, data.train_pt_min
    )
    if not data.val_dir:
        return samples, None
    return samples, open_samples(data.val_dir, cache, data.selection, features, data.max_val_events)


def train_hit_filter(config: TrainConfig, device: torch.device, resume: bool = False) -> Path:
    """Train the hit filter, set its threshold for the target efficiency, save `<out>/hit_filter/final`."""
    stage = config.hit_filter
    assert stage is not None
    final = Path(config.out_dir) / "hit_filter" / "final"
    if resume and final.exists():
        return final
    model_config = config.model_config("hit_filter")
    samples, val = train_and_val_samples(config, model_config.features)
    calibration = val if val is not None else samples

    def validate(model: torch.nn.Module) -> dict[str, Any]:
        if val is None:
            return {}
        scores = score_samples(model, val, device)
        threshold = scores.threshold_for_efficiency(stage.target_efficiency)
        return {"loss": scores.mean_loss(), "threshold": threshold, **scores.counts(threshold).summary()}

    spec = StageSpec(
        name="hit_filter",
        stage=stage,
        model_config=model_config,
        samples=samples,
        step=lambda m, s: hit_filter_step(m, s, device, stage.particle_weight_power, stage.vertex_z_scale),
        validate=validate,
        metadata=_metadata(config, "hit_filter"),
    )
    model = run_stage(spec, config, device, resume)
    scores = score_samples(model, calibration, device)
    threshold = scores.threshold_for_efficiency(stage.target_efficiency)
    counts = scores.counts(threshold)
    tuned = dataclasses.replace(model_config, hit_threshold=threshold)
    metadata = {
        **spec.metadata,
        "calibration": {
            "target_efficiency": stage.target_efficiency,
            "threshold": threshold,
            **counts.summary(),
        },
    }
    return save_checkpoint(final, model, tuned, metadata=metadata)


def train_tracker(
    config: TrainConfig, device: torch.device, resume: bool = False, filter_path: Path | None = None
) -> Path:
    """Train the tracker on truth-filtered or learned-filtered hits; save `<out>/tracker/final`."""
    stage = config.tracker
    assert stage is not None
    final = Path(config.out_dir) / "tracker" / "final"
    if resume and final.exists():
        return final
    model_config = config.model_config("tracker")
    selection = sample_config(config.data.selection, model_config.features)
    samples, val = train_and_val_samples(config, model_config.features)
    hit_filter, threshold, source, filter_features = None, None, None, None
    if stage.hits != "truth":
        source = Path(stage.filter_checkpoint) if stage.filter_checkpoint else filter_path
        assert source is not None
        hit_filter, filter_config = load_checkpoint(source, device)
        threshold, filter_features = filter_config.model.hit_threshold, filter_config.features
    hits = HitSelection(
        hit_filter,
        threshold if threshold is not None else 0.5,
        filter_features,
        device,
        particles=stage.particles,
        dropout=stage.hit_dropout,
        contamination=stage.hit_contamination,
        with_truth=stage.hits == "truth+learned",
    )

    def validate(model: torch.nn.Module) -> dict[str, Any]:
        if val is None:
            return {}
        evaluation = evaluate_samples(
            val,
            model,
            model_config,
            selection,
            device,
            hit_filter,
            threshold,
            filter_features=filter_features,
        )
        out: dict[str, Any] = seed_statistics(model, model_config, val, device)
        for mode, metrics in evaluation.tracking.items():
            out[f"{mode}.efficiency"] = metrics.efficiency
            out[f"{mode}.fake_rate"] = metrics.fake_rate
            out[f"{mode}.duplicate_rate_lhc"] = metrics.duplicate_rate_lhc
        return out

    metadata = {
        **_metadata(config, "tracker"),
        "hits": stage.hits,
        "filter_checkpoint": str(source) if source else None,
    }
    spec = StageSpec(
        name="tracker",
        stage=stage,
        model_config=model_config,
        samples=samples,
        step=lambda m, s: tracker_step(m, model_config, stage, hits.targets(s), device, s),
        validate=validate,
        metadata=metadata,
    )
    model = run_stage(spec, config, device, resume)
    return save_checkpoint(final, model, model_config, metadata=spec.metadata)


def train(config: TrainConfig, resume: bool = False) -> dict[str, Path]:
    """Run every configured stage (hit filter, then tracker); returns the final checkpoint of each."""
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "train_config.json").write_text(json.dumps(to_dict(config), indent=2) + "\n")
    device = resolve_device(config.device)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    finals: dict[str, Path] = {}
    if config.hit_filter is not None:
        finals["hit_filter"] = train_hit_filter(config, device, resume)
    if config.tracker is not None:
        finals["tracker"] = train_tracker(config, device, resume, finals.get("hit_filter"))
    return finals


def _cache_dir(config: TrainConfig) -> Path:
    return Path(config.data.cache_dir) if config.data.cache_dir else Path(config.out_dir) / "cache"


def _features(sample: Sample, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(sample.features))[None].to(device)
