"""Training speed of a config's stages: seconds per optimiser step, peak GPU memory and the projected time of
the full schedule; writes results/training_throughput_<label>.{json,png}.

Each stage (hit filter, then tracker) runs `--steps` optimiser steps on the config's data with a log line
every `--log-interval` steps. Seconds per step are measured between the first log line after step 1 and the
last one, so the first step (Triton JIT, cuDNN autotuning) and the cache build are left out; the one
validation at the end is not timed either. The projection multiplies that by the stage's full step count for
`--train-events` events (epochs × events / gradient accumulation, or max_steps). The step time between each
two log lines is kept too (`intervals`, with the tracker's mean matching seconds per event from its log),
since a step's cost changes as the model learns (the Hungarian matching of an untrained tracker is far
slower than a trained one's).

With `--from-run RUN_DIR` nothing is trained: the stages' `metrics.jsonl` of an earlier run (or of one
stopped by a time limit) are read instead.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import platform
import time
from pathlib import Path

import click
import numpy as np
import torch
from matplotlib.figure import Figure

from trackrt.train.cli import load_train_config
from trackrt.train.device import resolve_device
from trackrt.train.loop import train_and_val_samples, train_hit_filter, train_tracker
from trackrt.train.records import read_metrics_log
from trackrt.train.stage_runner import total_steps

RESULTS = Path(__file__).resolve().parent / "results"


def timed_steps(metrics_path: Path) -> dict[str, float | int | None]:
    """Seconds per step between the second and the last train record of a stage's metrics log."""
    records = [r for r in read_metrics_log(metrics_path) if r.get("type") == "train"]
    if len(records) < 3:
        raise click.ClickException(f"{metrics_path}: fewer than 3 train records; raise --steps")
    first, last = records[1], records[-1]
    seconds_per_step = (last["seconds"] - first["seconds"]) / (last["step"] - first["step"])
    peaks = [r["peak_gpu_memory_mib"] for r in records if "peak_gpu_memory_mib" in r]
    intervals = [
        {"step": int(b["step"]), "seconds_per_step": (b["seconds"] - a["seconds"]) / (b["step"] - a["step"]),
         "matching_seconds_per_event": b.get("matching_seconds")}
        for a, b in itertools.pairwise(records[1:])
    ]
    return {
        "timed_steps": int(last["step"] - first["step"]),
        "seconds_per_step": seconds_per_step,
        "last_interval_seconds_per_step": intervals[-1]["seconds_per_step"],
        "intervals": intervals,
        "first_step_seconds": float(records[0]["seconds"]),
        "peak_gpu_memory_mib": max(peaks) if peaks else None,
        "skipped_events": int(last.get("skipped_events", 0)),
        "last_loss": last.get("total"),
    }


def hit_statistics(config, features) -> dict[str, float]:
    """Mean hits and target hits per training event of the run (the sizes the steps were timed at)."""
    samples, _ = train_and_val_samples(config, features)
    hits = [s.num_hits for s in samples]
    on_target = [int(s.hit_on_target.sum()) for s in samples]
    return {"events": len(hits), "mean_hits": float(np.mean(hits)),
            "mean_target_hits": float(np.mean(on_target))}


def environment(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {"python": platform.python_version(), "torch": torch.__version__,
                               "cpu_count": os.cpu_count(), "device": str(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_bytes=props.total_memory, cuda=torch.version.cuda)
    return info


def here() -> torch.device:
    """This machine's GPU when it has one (a `--from-run` analysis runs where the run ran), else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def plot(stages: dict[str, dict], path: Path, title: str) -> None:
    figure = Figure(figsize=(13, 4), constrained_layout=True)
    left, middle, right = figure.subplots(1, 3)
    names = list(stages)
    left.bar(names, [stages[n]["seconds_per_step"] for n in names])
    left.set(ylabel="seconds per optimiser step", title="mean step time (after step 1)")
    middle.bar(names, [stages[n]["projected_hours"] for n in names])
    middle.set(ylabel="hours", title="projected full schedule")
    for name in names:
        intervals = stages[name]["intervals"]
        steps = [i["step"] for i in intervals]
        right.plot(steps, [i["seconds_per_step"] for i in intervals], "o-", label=f"{name}: step")
        if all(i["matching_seconds_per_event"] is not None for i in intervals):
            matching = [i["matching_seconds_per_event"] for i in intervals]
            right.plot(steps, matching, "s--", label=f"{name}: matching per event")
    right.set(xlabel="step", ylabel="seconds per optimiser step", title="step time between log lines")
    right.legend()
    for axis in (left, middle, right):
        axis.grid(True, axis="y", alpha=0.3)
    figure.suptitle(title)
    figure.savefig(path, dpi=110)


@click.command()
@click.argument("config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--set", "assignments", multiple=True, help="Config override KEY=VALUE (as `trackrt train`).")
@click.option("--steps", default=40, show_default=True, help="Optimiser steps per stage.")
@click.option("--log-interval", default=5, show_default=True)
@click.option("--train-events", default=2000, show_default=True, help="Training events of the full schedule.")
@click.option("--label", default="pix1.0", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
@click.option("--from-run", "from_run", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Read the stages' metrics.jsonl of this run directory instead of training.")
def main(config_path: Path, assignments: tuple[str, ...], steps: int, log_interval: int, train_events: int,
         label: str, out: Path, from_run: Path | None) -> None:
    """Time a few optimiser steps of each stage of CONFIG_PATH and project the full schedule."""
    full = load_train_config(config_path, assignments)
    shortened = [f"{s}.{k}={v}" for s in ("hit_filter", "tracker") if getattr(full, s)
                 for k, v in (("max_steps", steps), ("log_interval", log_interval),
                              ("val_interval", steps), ("checkpoint_interval", steps))]
    short = load_train_config(config_path, (*assignments, *shortened))
    short = dataclasses.replace(short, progress_bar=False)
    device = resolve_device(short.device) if from_run is None else here()
    run_dir = from_run or Path(short.out_dir)
    stages: dict[str, dict] = {}
    filter_final = None
    for name, stage in (("hit_filter", short.hit_filter), ("tracker", short.tracker)):
        log_path = run_dir / name / "metrics.jsonl"
        if stage is None or (from_run is not None and not log_path.exists()):
            continue
        wall = None
        if from_run is None:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            started = time.monotonic()
            if name == "hit_filter":
                filter_final = train_hit_filter(short, device)
            else:
                train_tracker(short, device, filter_path=filter_final)
            wall = time.monotonic() - started
        measured = timed_steps(log_path)
        full_steps = total_steps(getattr(full, name), train_events)
        stages[name] = {**measured, "stage_wall_seconds": wall, "full_schedule_steps": full_steps,
                        "projected_hours": full_steps * measured["seconds_per_step"] / 3600,
                        **hit_statistics(short, short.model_config(name).features)}
        print(f"{name}: {measured['seconds_per_step']:.3f} s/step, "
              f"peak {measured['peak_gpu_memory_mib']} MiB, "
              f"{full_steps} steps -> {stages[name]['projected_hours']:.1f} h", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "training_throughput", "config": str(config_path), "overrides": list(assignments),
              "steps_per_stage": steps, "train_events_projected": train_events,
              "timed": __doc__.split("\n\n")[1].replace("\n", " "),
              "environment": environment(device),
              "from_run": str(from_run) if from_run is not None else None,
              "stages": stages}
    (out / f"training_throughput_{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    hardware = result["environment"].get("gpu") or platform.processor() or "CPU"
    plot(stages, out / f"training_throughput_{label}.png", f"{config_path.name} on {hardware}")
    print(f"wrote {out / f'training_throughput_{label}.json'} and .png")


if __name__ == "__main__":
    main()
