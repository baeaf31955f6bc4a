"""The training loop: AdamW, warm-up + cosine LR, accumulation over events, validation, resumable checkpoints.

A run trains the hit filter (if configured), sets its threshold for the configured target-hit
efficiency, then trains the tracker on truth-filtered or learned-filtered hits. Each stage writes
`<out_dir>/<stage>/last` (weights + resumable state), `<out_dir>/<stage>/final` (the trained model) and
`<out_dir>/<stage>/metrics.jsonl` (one JSON object per log line or validation).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from trackrt.configuration import to_dict
from trackrt.data.samples import Sample, sample_config
from trackrt.train.checkpoint import build_model, load_checkpoint, load_weights, save_checkpoint
from trackrt.train.config import StageConfig, TrainConfig
from trackrt.train.dataset import HitSelection, event_at, open_samples
from trackrt.train.device import resolve_device
from trackrt.train.evaluate import (
    evaluate_samples,
    filter_counts,
    filter_threshold_for_efficiency,
    seed_statistics,
)
from trackrt.train.losses import hit_filter_loss
from trackrt.train.records import MetricsLog
from trackrt.train.schedule import warmup_cosine_factor
from trackrt.train.steps import StepResult, hit_filter_step, tracker_step
from trackrt.train.train_state import TrainState, load_train_state

StepFn = Callable[[torch.nn.Module, Sample], StepResult | None]
ValidateFn = Callable[[torch.nn.Module], dict[str, Any]]


@dataclasses.dataclass
class StageSpec:
    """What `run_stage` needs to train one model."""

    name: str
    stage: StageConfig
    model_config: Any
    samples: Sequence[Sample]
    step: StepFn
    validate: ValidateFn
    metadata: dict[str, Any]


def total_steps(stage: StageConfig, num_events: int) -> int:
    """Optimiser steps of a stage: ⌈epochs × events / accumulation⌉, capped by `max_steps`.

    Accumulation groups consecutive events of the seeded order and may span an epoch boundary.
    """
    steps = math.ceil(stage.epochs * num_events / stage.optim.grad_accumulation)
    return min(steps, stage.max_steps) if stage.max_steps is not None else steps


def run_stage(spec: StageSpec, config: TrainConfig, device: torch.device, resume: bool) -> torch.nn.Module:
    """Train one model; resumes from `<stage>/last` when asked and present. Returns the trained model."""
    stage, optim = spec.stage, spec.stage.optim
    stage_dir = Path(config.out_dir) / spec.name
    num_events = len(spec.samples)
    if num_events == 0:
        raise ValueError(f"{spec.name}: no training events")
    torch.manual_seed(config.seed)
    model = build_model(spec.model_config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay
    )
    steps = total_steps(stage, num_events)
    state = TrainState()
    last = stage_dir / "last"
    resuming = resume and last.exists()
    if resuming:
        load_weights(last, model)
        state = load_train_state(last, optimizer)
    log = MetricsLog(stage_dir / "metrics.jsonl", append=resuming)
    steps_per_epoch = math.ceil(num_events / optim.grad_accumulation)
    val_every = stage.val_interval or steps_per_epoch
    checkpoint_every = stage.checkpoint_interval or steps_per_epoch
    autocast = dict(
        device_type=device.type, dtype=torch.bfloat16, enabled=config.bf16 and device.type == "cuda"
    )
    window: dict[str, list[float]] = defaultdict(list)
    skipped = int(state.progress.get("skipped_events", 0))
    started = time.monotonic()
    bar = tqdm(total=steps, initial=state.step, desc=spec.name, unit="step", disable=not config.progress_bar)
    model.train()
    while state.step < steps:
        lr = optim.lr * warmup_cosine_factor(state.step, optim.warmup_steps, steps, optim.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        used, failed = _accumulate_gradients(spec, model, state, num_events, config.seed, autocast, window)
        skipped += failed
        grad_norm = _clip_gradients(model, optim.grad_clip)
        if used and math.isfinite(grad_norm):
            optimizer.step()
        else:
            skipped += used
        state.step += 1
        state.progress["skipped_events"] = skipped
        bar.update(1)
        if state.step % stage.log_interval == 0 or state.step in (1, steps):
            record = {name: float(np.mean(values)) for name, values in window.items()}
            record.update(
                type="train",
                step=state.step,
                epoch=state.epoch,
                lr=lr,
                grad_norm=grad_norm,
                skipped_events=skipped,
                seconds=time.monotonic() - started,
            )
            log.write(record)
            bar.set_postfix(loss=f"{record.get('total', math.nan):.4g}")
            window.clear()
        if state.step % val_every == 0 or state.step == steps:
            model.eval()
            log.write({"type": "val", "step": state.step, "epoch": state.epoch, **spec.validate(model)})
            model.train()
        if state.step % checkpoint_every == 0 or state.step == steps:
            metadata = {**spec.metadata, "step": state.step}
            save_checkpoint(
                last,
                model,
                spec.model_config,
                optimizer=optimizer,
                state=state,
                metadata=metadata,
            )
    bar.close()
    return model.eval()


def _accumulate_gradients(
    spec: StageSpec,
    model: torch.nn.Module,
    state: TrainState,
    num_events: int,
    seed: int,
    autocast: dict[str, Any],
    window: dict[str, list[float]],
) -> tuple[int, int]:
    """Forward + backward over the events of optimiser step `state.step`; returns (used, skipped) events.

    Events without hits or with a non-finite loss are skipped; per-event log items go into `window`.
    """
    accumulation = spec.stage.optim.grad_accumulation
    used = skipped = 0
    for micro in range(accumulation):
        state.epoch, index = event_at(state.step * accumulation + micro, num_events, seed)
        with torch.autocast(**autocast):
            result = spec.step(model, spec.samples[index])
        if result is None or not torch.isfinite(result[0].detach()):
            skipped += 1
            continue
        loss, items = result
        (loss / accumulation).backward()
        used += 1
        for name, value in items.items():
            window[name].append(value)
    return used, skipped


def _clip_gradients(model: torch.nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm to `max_norm` (no clipping when ≤ 0); return the norm before."""
    parameters = [p for p in model.parameters() if p.grad is not None]
    if not parameters:
        return 0.0
    limit = max_norm if max_norm > 0 else math.inf
    return float(torch.nn.utils.clip_grad_norm_(parameters, limit))


def _metadata(config: TrainConfig, name: str) -> dict[str, Any]:
    """What every checkpoint of a run records: stage, selection, ⟨μ⟩, seed and the full train config."""
    return {
        "stage": name,
        "selection": config.data.selection,
        "pileup": config.data.pileup,
        "seed": config.seed,
        "train_config": to_dict(config),
    }


def train_hit_filter(config: TrainConfig, device: torch.device, resume: bool = False) -> Path:
    """Train the hit filter, set its threshold for the target efficiency, save `<out>/hit_filter/final`."""
    stage = config.hit_filter
    assert stage is not None
    final = Path(config.out_dir) / "hit_filter" / "final"
    if resume and final.exists():
        return final
    model_config = config.model_config("hit_filter")
    data, cache = config.data, _cache_dir(config)
    samples = open_samples(
        data.train_dir, cache, data.selection, model_config.features, data.max_train_events
    )
    val = (
        open_samples(data.val_dir, cache, data.selection, model_config.features, data.max_val_events)
        if data.val_dir
        else None
    )
    calibration = val if val is not None else samples

    def validate(model: torch.nn.Module) -> dict[str, Any]:
        if val is None:
            return {}
        with torch.no_grad():
            losses = [
                float(
                    hit_filter_loss(
                        model(_features(s, device))[0], torch.from_numpy(s.hit_on_target).to(device)
                    )
                )
                for s in val
                if s.num_hits
            ]
        threshold = filter_threshold_for_efficiency(model, val, stage.target_efficiency, device)
        return {
            "loss": float(np.mean(losses)) if losses else math.nan,
            "threshold": threshold,
            **filter_counts(model, val, threshold, device).summary(),
        }

    spec = StageSpec(
        name="hit_filter",
        stage=stage,
        model_config=model_config,
        samples=samples,
        step=lambda m, s: hit_filter_step(m, s, device),
        validate=validate,
        metadata=_metadata(config, "hit_filter"),
    )
    model = run_stage(spec, config, device, resume)
    threshold = filter_threshold_for_efficiency(model, calibration, stage.target_efficiency, device)
    counts = filter_counts(model, calibration, threshold, device)
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
    data, cache = config.data, _cache_dir(config)
    selection = sample_config(data.selection, model_config.features)
    samples = open_samples(
        data.train_dir, cache, data.selection, model_config.features, data.max_train_events
    )
    val = (
        open_samples(data.val_dir, cache, data.selection, model_config.features, data.max_val_events)
        if data.val_dir
        else None
    )
    hit_filter, threshold, source = None, None, None
    if stage.hits == "learned":
        source = Path(stage.filter_checkpoint) if stage.filter_checkpoint else filter_path
        assert source is not None
        hit_filter, filter_config = load_checkpoint(source, device)
        if filter_config.features != model_config.features:
            raise ValueError(f"{source}: the hit filter's feature config differs from the tracker's")
        threshold = filter_config.model.hit_threshold
    hits = HitSelection(hit_filter, threshold if threshold is not None else 0.5, device)

    def validate(model: torch.nn.Module) -> dict[str, Any]:
        if val is None:
            return {}
        evaluation = evaluate_samples(val, model, model_config, selection, device, hit_filter, threshold)
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
        step=lambda m, s: tracker_step(m, model_config, stage, hits.targets(s), device),
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
