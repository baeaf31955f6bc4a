"""Hungarian matching of one tracker training step at reference scale: the decoder layers' assignments
solved on the full cost matrices (scipy, one layer after another: the matcher before the pruning),
on the candidate queries only, and as `solve_layers` solves them for `match_layers` (candidates, one
thread per layer).
Writes results/matching_speed_<label>.{json,png}.

Timed: the CPU solves only (the costs are computed once per layer and shared); one tracker forward pass
per event on CPU (torch) gives the costs, with the training query selection of the config and the truth
hit filter, so the matrix sizes are those of `tracker.hits: truth` training. Every way's total cost is
checked against the full solve.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import click
import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.optimize import linear_sum_assignment

from trackrt.train.checkpoint import build_model, load_checkpoint
from trackrt.train.cli import load_train_config
from trackrt.train.dataset import HitSelection
from trackrt.train.loop import train_and_val_samples
from trackrt.train.matching import candidate_queries, hungarian_match, matching_cost, solve_layers
from trackrt.train.steps import tracker_outputs

RESULTS = Path(__file__).resolve().parent / "results"


def solve_seconds(solve, cost: np.ndarray) -> tuple[float, float]:
    """Wall seconds of one solve and the total cost of its assignment."""
    started = time.perf_counter()
    rows, cols = solve(cost)
    return time.perf_counter() - started, float(cost[rows, cols].sum())


def candidates_solve(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    match = hungarian_match(cost)
    return match.query_index.numpy(), match.target_index.numpy()


def measure_event(model, model_config, stage, event_id: int, targets) -> dict:
    """Time the three ways on one event's decoder layers."""
    with torch.no_grad():
        outputs = tracker_outputs(model, model_config, stage, targets, torch.device("cpu"))
    if outputs is None:
        raise click.ClickException(f"event {event_id}: no hits or non-finite seed logits")
    target_masks = torch.from_numpy(targets.assignment_matrix())
    layers = outputs["layers"]
    costs = [matching_cost(layer["track_logits"], layer["assignment_logits"], target_masks, stage.loss)
             .double().numpy() for layer in layers]
    rows, full_totals = [], []
    for index, cost in enumerate(costs):
        full_s, full_total = solve_seconds(linear_sum_assignment, cost)
        full_totals.append(full_total)
        kept_s, kept_total = solve_seconds(candidates_solve, cost)
        rows.append({"layer": index, "queries": cost.shape[0], "targets": cost.shape[1],
                     "candidate_queries": len(candidate_queries(cost)), "full_seconds": full_s,
                     "candidates_seconds": kept_s,
                     "relative_cost_difference": abs(kept_total - full_total) / abs(full_total)})
    started = time.perf_counter()
    matches = solve_layers(costs)
    threaded = time.perf_counter() - started
    for row, match, cost, full in zip(rows, matches, costs, full_totals, strict=True):
        total = float(cost[match.query_index.numpy(), match.target_index.numpy()].sum())
        row["solve_layers_relative_cost_difference"] = abs(total - full) / abs(full)
    return {"event_id": event_id, "hits": len(targets.hit_index), "layers": rows,
            "full_seconds": sum(r["full_seconds"] for r in rows),
            "candidates_seconds": sum(r["candidates_seconds"] for r in rows),
            "solve_layers_seconds": threaded}


def plot(events: list[dict], path: Path, title: str) -> None:
    figure = Figure(figsize=(8, 4), constrained_layout=True)
    axis = figure.subplots()
    ways = [("full_seconds", "full matrices, one by one"), ("candidates_seconds", "candidates, one by one"),
            ("solve_layers_seconds", "solve_layers (candidates, threads)")]
    x = np.arange(len(events))
    for offset, (key, label) in enumerate(ways):
        axis.bar(x + (offset - 1) * 0.27, [e[key] for e in events], width=0.27, label=label)
    axis.set_xticks(x, [f"event {e['event_id']}" for e in events])
    axis.set(ylabel="seconds per training step (all decoder layers)", title=title)
    axis.grid(True, axis="y", alpha=0.3)
    axis.legend()
    figure.savefig(path, dpi=110)


@click.command()
@click.argument("events_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default="configs/pix1.0.yaml", show_default=True)
@click.option("--set", "assignments", multiple=True, help="Config override KEY=VALUE (as `trackrt train`).")
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Tracker weights to use (default: the config's model, freshly initialised).")
@click.option("--events", "num_events", default=3, show_default=True)
@click.option("--label", default="pix1.0", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
def main(events_dir: Path, config_path: Path, assignments: tuple[str, ...], checkpoint: Path | None,
         num_events: int, label: str, out: Path) -> None:
    """Time the decoder layers' assignments of NUM_EVENTS events of EVENTS_DIR."""
    event_overrides = (f"data.train_dir={events_dir}", "data.val_dir=null",
                       f"data.max_train_events={num_events}")
    config = load_train_config(config_path, (*assignments, *event_overrides))
    stage = config.tracker
    torch.manual_seed(config.seed)
    if checkpoint is None:
        model_config = config.model_config("tracker")
        model = build_model(model_config).eval()
    else:
        model, loaded = load_checkpoint(checkpoint)
        model_config = loaded.model
    samples, _ = train_and_val_samples(config, model_config.features)
    selection = HitSelection(None, particles=stage.particles, cache=False)
    events = []
    for sample in samples:
        events.append(measure_event(model, model_config, stage, sample.event_id, selection.targets(sample)))
        e = events[-1]
        print(f"event {e['event_id']}: {e['hits']} hits, full {e['full_seconds']:.2f} s, candidates "
              f"{e['candidates_seconds']:.2f} s, solve_layers {e['solve_layers_seconds']:.2f} s", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": "matching_speed", "config": str(config_path), "overrides": list(assignments),
              "checkpoint": str(checkpoint) if checkpoint else None,
              "timed": __doc__.split("\n\n")[1].replace("\n", " "),
              "environment": {"python": platform.python_version(), "torch": torch.__version__,
                              "cpu_count": os.cpu_count(), "processor": platform.processor()},
              "mean_full_seconds": float(np.mean([e["full_seconds"] for e in events])),
              "mean_candidates_seconds": float(np.mean([e["candidates_seconds"] for e in events])),
              "mean_solve_layers_seconds": float(np.mean([e["solve_layers_seconds"] for e in events])),
              "events": events}
    (out / f"matching_speed_{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    weights = f"weights {checkpoint}" if checkpoint else "untrained weights"
    title = f"{config_path.name}, {weights}, {os.cpu_count()} CPU cores"
    plot(events, out / f"matching_speed_{label}.png", title)
    print(f"wrote {out / f'matching_speed_{label}.json'} and .png")


if __name__ == "__main__":
    main()
