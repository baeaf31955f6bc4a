"""One stage's optimisation loop: AdamW, warm-up + cosine LR, accumulation over events, logging,
validation and resumable checkpoints (`<out_dir>/<stage>/last`, `<out_dir>/<stage>/metrics.jsonl`).
SIGTERM or SIGINT ends the loop after the step in progress, with `last` saved (`trackrt.train.interrupt`)."""

from __future__ import annotations

import dataclasses
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from trackrt.data.samples import Sample
from trackrt.train.checkpoint import build_model, load_weights, save_checkpoint
from trackrt.train.checkpoint_files import CheckpointError
from trackrt.train.config import StageConfig, TrainConfig
from trackrt.train.dataset import event_at
from trackrt.train.interrupt import StopRequested, StopSignals
from trackrt.train.records import MetricsLog
from trackrt.train.schedule import warmup_cosine_factor
from trackrt.train.steps import StepResult
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
    elif stage.init_from:
        _initial_weights(Path(stage.init_from), model, spec.name)
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
    with StopSignals() as stop:
        while state.step < steps:
            lr = optim.lr * warmup_cosine_factor(state.step, optim.warmup_steps, steps, optim.min_lr_ratio)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            used, failed = _accumulate_gradients(
                spec, model, state, num_events, config.seed, autocast, window
            )
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
                if device.type == "cuda":
                    record["peak_gpu_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
                log.write(record)
                bar.set_postfix(loss=f"{record.get('total', math.nan):.4g}")
                window.clear()
            if state.step % val_every == 0 or state.step == steps:
                model.eval()
                log.write({"type": "val", "step": state.step, "epoch": state.epoch, **spec.validate(model)})
                model.train()
            signum = stop.received
            if state.step % checkpoint_every == 0 or state.step == steps or signum is not None:
                metadata = {**spec.metadata, "step": state.step}
                save_checkpoint(
                    last,
                    model,
                    spec.model_config,
                    optimizer=optimizer,
                    state=state,
                    metadata=metadata,
                )
            if signum is not None:
                log.write({"type": "stopped", "step": state.step, "epoch": state.epoch, "signal": signum})
                bar.close()
                raise StopRequested(spec.name, state.step, steps, signum)
    bar.close()
    return model.eval()


def _initial_weights(path: Path, model: torch.nn.Module, stage_name: str) -> None:
    """Load the `init_from` checkpoint's weights, naming the config key when it is missing or does not fit."""
    try:
        load_weights(path, model)
    except CheckpointError as exc:
        raise CheckpointError(f"{stage_name}.init_from: {exc}") from None


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
