"""Per-stage latency of the runtime (`Tracker.reconstruct`) on CPU: ONNX Runtime vs the PyTorch reference
backend, side by side in one run, on simulated events at ⟨μ⟩ = 20 and ⟨μ⟩ = 200; writes
results/runtime_latency.{json,png}.

Models: the shipped checkpoints (`checkpoints/small-*`) when all four are present, else `small` preset
models with seeded random weights. Random weights make the thresholds meaningless, so for them each
⟨μ⟩ gets thresholds calibrated on its first event: the hit filter keeps as many hits as an ideal filter
would (hits of Pix1.0 target particles) and the seed cap is the number of target particles (≤ M); the
stages then see realistic sizes. Latency does not depend on what the weights learned.

Timed: every stage the chain records (`ReconstructionResult.timings_ms`) and the end-to-end total, per
event, after warm-up (`Tracker.warmup` plus one untimed pass over the events); backends interleaved
event by event. The runtime's own host work is input checks + features + seeding + post-processing +
time not attributed to a stage (φ sort, result tables); the helix fit is reported separately.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import dataclasses  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import trackrt  # noqa: E402
from trackrt.data.samples import make_sample, sample_config  # noqa: E402
from trackrt.data.simulate import EventSimulator, SimulationConfig  # noqa: E402
from trackrt.data.trackml import Event  # noqa: E402
from trackrt.demo_pipeline import HIT_FILTER_DIR, TRACKER_DIRS, VARIANTS  # noqa: E402
from trackrt.export.config import ExportOptions  # noqa: E402
from trackrt.export.exporter import export_artifact  # noqa: E402
from trackrt.model.config import preset  # noqa: E402
from trackrt.runtime import TIMING_STAGES, HitFilterStage, Tracker, TrackFindingStage  # noqa: E402
from trackrt.runtime.artifact import DECODER_GRAPH, ENCODER_GRAPH, HIT_FILTER_GRAPH  # noqa: E402
from trackrt.train.checkpoint import build_model, save_checkpoint  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("onnxruntime", "torch")
HOST_STAGES = ("checks", "features", "seeding", "post_processing", "unattributed")
PLOT_STAGES = (*TIMING_STAGES, "unattributed")
SELECTION = "Pix1.0"
HOST_TARGET = 0.10


def prepare_models(checkpoints: Path, scratch: Path, seed: int) -> tuple[dict[str, Path], str]:
    """Paths of the hit filter and one tracker per variant, and where they came from."""
    shipped = {"hit_filter": checkpoints / HIT_FILTER_DIR}
    shipped.update({v: checkpoints / TRACKER_DIRS[v] for v in VARIANTS})
    if all((path / "config.json").is_file() for path in shipped.values()):
        return shipped, f"shipped checkpoints ({checkpoints})"
    torch.manual_seed(seed)
    made = {}
    for name in ("hit_filter", *VARIANTS):
        kind = "hit_filter" if name == "hit_filter" else "tracker"
        overrides = {} if kind == "hit_filter" else {"variant": name}
        config = preset("small", kind, SELECTION, overrides)
        made[name] = save_checkpoint(scratch / "checkpoints" / name, build_model(config), config)
    return made, f"small preset, random weights (torch seed {seed}); shipped checkpoints not found"


def export_variants(models: dict[str, Path], scratch: Path) -> dict[str, Path]:
    """One artifact per decoder variant, each with the hit filter (LSCA as the ONNX Runtime function)."""
    artifacts = {}
    for variant in VARIANTS:
        out = scratch / "artifacts" / variant
        options = ExportOptions(lsca_mode="onnx")  # the fast ONNX Runtime CPU form (docs/export.md)
        export_artifact(models[variant], out, models["hit_filter"], options, force=True)
        artifacts[variant] = out
    return artifacts


def simulate(pileup: float, count: int, seed: int) -> list[Event]:
    """`count` simulated events at `pileup` (kept in memory; reading files is not what is timed)."""
    simulator = EventSimulator(SimulationConfig(pileup=pileup))
    return [simulator.simulate(event_id, seed) for event_id in range(1, count + 1)]


def ideal_sizes(event: Event) -> tuple[int, int]:
    """(hits of target particles, target particles) of an event at the Pix1.0 selection."""
    sample = make_sample(event, sample_config(SELECTION))
    return int(sample.hit_on_target.sum()), sample.num_targets


def calibrate(tracker: Tracker, event: Event) -> dict[str, Any]:
    """For random weights: filter threshold keeping the ideal filter's hit count, seed cap = targets."""
    keep, targets = ideal_sizes(event)
    scores = np.sort(tracker.reconstruct(event.hits).hits["filter_score"].to_numpy())[::-1]
    record: dict[str, Any] = {
        "hit_threshold": float(scores[min(keep, len(scores)) - 1]),
        "ideal_filtered_hits": keep,
        "target_particles": targets,
    }
    settings = tracker.artifact.tracker
    if settings.dynamic_queries:
        record["seed_threshold"] = 0.0
        record["max_queries"] = max(1, min(targets, settings.max_queries or targets))
    return record


def with_thresholds(tracker: Tracker, calibration: dict[str, Any]) -> Tracker:
    """`tracker` with the calibrated filter threshold and seed cap (same sessions, stages replaced)."""
    artifact, backend = tracker.artifact, tracker.backend
    hit_filter = dataclasses.replace(artifact.hit_filter, hit_threshold=calibration["hit_threshold"])
    seeding = {key: calibration[key] for key in ("seed_threshold", "max_queries") if key in calibration}
    finder = dataclasses.replace(artifact.tracker, **seeding)
    tuned = tracker.with_stage("hit_filter", HitFilterStage(backend.runner(HIT_FILTER_GRAPH), hit_filter))
    stage = TrackFindingStage(backend.runner(ENCODER_GRAPH), backend.runner(DECODER_GRAPH), finder)
    return tuned.with_stage("tracker", stage)


def open_trackers(artifact: Path, threads: int) -> dict[str, Tracker]:
    return {name: Tracker.load(artifact, backend=name, threads=threads) for name in BACKENDS}


def time_events(
    trackers: dict[str, Tracker], events: list[Event], repeats: int
) -> dict[str, list[dict[str, float]]]:
    """Per backend, one record per timed reconstruction (stage timings, total, sizes); interleaved."""
    for tracker in trackers.values():
        tracker.warmup(num_hits=1000, repeats=1)
        for event in events:
            tracker.reconstruct(event.hits, event.event_id)
    records: dict[str, list[dict[str, float]]] = {name: [] for name in trackers}
    for _ in range(repeats):
        for event in events:
            for name, tracker in trackers.items():
                result = tracker.reconstruct(event.hits, event.event_id)
                timings = dict(result.timings_ms)
                timings["unattributed"] = timings["total"] - sum(timings.get(s, 0.0) for s in TIMING_STAGES)
                sizes = {
                    "num_hits": len(event.hits),
                    "num_filtered_hits": result.num_filtered_hits,
                    "num_queries": result.num_queries,
                    "num_tracks": result.num_tracks,
                }
                records[name].append({**timings, **sizes})
    return records


def summarise(records: list[dict[str, float]]) -> dict[str, Any]:
    """Mean/p50/p90/p99 per stage and end to end, throughput, sizes and the host-work fraction."""

    def stats(values: np.ndarray) -> dict[str, float]:
        return {
            "mean": float(values.mean()),
            "p50": float(np.percentile(values, 50)),
            "p90": float(np.percentile(values, 90)),
            "p99": float(np.percentile(values, 99)),
        }

    column = {key: np.array([r.get(key, 0.0) for r in records]) for key in (*PLOT_STAGES, "total")}
    total = column["total"].mean()
    host = {stage: float(column[stage].mean() / total) for stage in HOST_STAGES}
    return {
        "samples": len(records),
        "sizes": {
            key: float(np.mean([r[key] for r in records]))
            for key in ("num_hits", "num_filtered_hits", "num_queries", "num_tracks")
        },
        "stages_ms": {stage: stats(column[stage]) for stage in PLOT_STAGES},
        "total_ms": stats(column["total"]),
        "throughput_events_per_s": float(1000.0 / total),
        "host_fraction": float(sum(host.values())),
        "host_fraction_by_stage": host,
        "host_fraction_below_target": bool(sum(host.values()) < HOST_TARGET),
        "track_parameters_fraction": float(column["track_parameters"].mean() / total),
    }


def measure_variant(
    artifact: Path, events: list[Event], random_weights: bool, options: dict[str, int]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Both backends on one artifact: summary per backend and the calibration (random weights only).

    Sessions live only inside this call, so one variant's ONNX Runtime arenas are gone before the next.
    """
    trackers = open_trackers(artifact, options["threads"])
    calibration = None
    try:
        if random_weights:
            calibration = calibrate(trackers["onnxruntime"], events[0])
            trackers = {name: with_thresholds(t, calibration) for name, t in trackers.items()}
        records = time_events(trackers, events, options["repeats"])
    finally:
        for tracker in trackers.values():
            tracker.close()
    return {name: summarise(found) for name, found in records.items()}, calibration


def run_pileup(
    pileup: float, artifacts: dict[str, Path], random_weights: bool, options: dict[str, int]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All variants and backends at one pile-up; returns result rows and the calibration used."""
    events = simulate(pileup, options["events"], options["seed"])
    rows, calibration = [], {}
    for variant, artifact in artifacts.items():
        summaries, calibration[variant] = measure_variant(artifact, events, random_weights, options)
        gc.collect()
        for name, summary in summaries.items():
            rows.append({"pileup": pileup, "variant": variant, "backend": name, **summary})
            click.echo(
                f"mu={pileup:g} {variant:7s} {name:11s} total {summary['total_ms']['mean']:8.1f} ms  "
                f"host {100 * summary['host_fraction']:.1f} %",
                err=True,
            )
    return rows, calibration


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """torch / ONNX Runtime mean latency per pile-up and variant (end to end and per model stage)."""
    by_key = {(r["pileup"], r["variant"], r["backend"]): r for r in rows}
    out = []
    for pileup, variant in sorted({(r["pileup"], r["variant"]) for r in rows}):
        ort, ref = by_key[(pileup, variant, "onnxruntime")], by_key[(pileup, variant, "torch")]
        entry: dict[str, Any] = {"pileup": pileup, "variant": variant}
        entry["total"] = ref["total_ms"]["mean"] / ort["total_ms"]["mean"]
        for stage in ("hit_filter", "encoder", "decoder"):
            entry[stage] = ref["stages_ms"][stage]["mean"] / ort["stages_ms"][stage]["mean"]
        out.append(entry)
    return out


def _stacked_panel(axes: Any, rows: list[dict[str, Any]], stages: tuple[str, ...], title: str) -> None:
    """Bars per (variant, backend), stacked by stage mean; the stacked sum is written on top."""
    colours = {stage: f"C{i}" for i, stage in enumerate(PLOT_STAGES)}
    labels, positions = [], []
    for v, variant in enumerate(VARIANTS):
        for b, backend in enumerate(BACKENDS):
            row = next(r for r in rows if (r["variant"], r["backend"]) == (variant, backend))
            x, bottom = v * 3 + b, 0.0
            for stage in stages:
                height = max(row["stages_ms"][stage]["mean"], 0.0)
                label = stage if (v, b) == (0, 0) else None
                axes.bar(x, height, bottom=bottom, color=colours[stage], label=label, width=0.8)
                bottom += height
            axes.text(x, bottom, f"{bottom:.0f}", ha="center", va="bottom", fontsize=7)
            labels.append(f"{variant}\n{'ORT' if backend == 'onnxruntime' else 'torch'}")
            positions.append(x)
    axes.set_xticks(positions, labels, fontsize=7)
    axes.set_ylabel("mean latency per event [ms]")
    axes.set_title(title, fontsize=9)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Per pile-up: all stages stacked (top) and the same without the hit filter (bottom)."""
    pileups = sorted({r["pileup"] for r in rows})
    figure = Figure(figsize=(5.0 * len(pileups) + 1.6, 8.0), layout="constrained")
    grid = figure.subplots(2, len(pileups), squeeze=False)
    without_filter = tuple(stage for stage in PLOT_STAGES if stage != "hit_filter")
    for index, pileup in enumerate(pileups):
        selected = [r for r in rows if r["pileup"] == pileup]
        hits = selected[0]["sizes"]
        head = f"<mu> = {pileup:g}: {hits['num_hits']:.0f} hits, {hits['num_filtered_hits']:.0f} kept"
        _stacked_panel(grid[0][index], selected, PLOT_STAGES, f"{head}\nend to end")
        _stacked_panel(grid[1][index], selected, without_filter, f"<mu> = {pileup:g}: without the hit filter")
    handles, labels = grid[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=8)
    figure.suptitle("trackrt runtime on CPU, 1 thread: ONNX Runtime (ORT) vs PyTorch reference", fontsize=10)
    figure.savefig(path, dpi=110)


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()}


def versions() -> dict[str, str]:
    return {
        "trackrt": trackrt.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }


@click.command()
@click.option("--pileups", default="20,200", show_default=True, help="Comma-separated ⟨μ⟩ values.")
@click.option("--events", default=2, show_default=True, help="Simulated events per pile-up.")
@click.option(
    "--repeats", default="5,2", show_default=True, help="Timed passes over the events, per pile-up."
)
@click.option("--threads", default=1, show_default=True, help="Intra-op threads (both backends).")
@click.option("--seed", default=2026, show_default=True)
@click.option(
    "--checkpoints", type=click.Path(path_type=Path), default=REPO / "checkpoints", show_default=True
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
def main(
    pileups: str, events: int, repeats: str, threads: int, seed: int, checkpoints: Path, out: Path
) -> None:
    """Time the runtime per stage on both backends at each pile-up; write JSON + PNG."""
    mus = [float(mu) for mu in pileups.split(",")]
    passes = [int(r) for r in repeats.split(",")]
    if len(passes) != len(mus):
        raise click.BadParameter("give one repeat count per pile-up", param_hint="--repeats")
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    rows, calibration, peak_rss = [], {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        models, source = prepare_models(checkpoints, Path(scratch), seed)
        random_weights = source.startswith("small preset")
        artifacts = export_variants(models, Path(scratch))
        for mu, count in zip(mus, passes, strict=True):
            options = {"events": events, "repeats": count, "threads": threads, "seed": seed}
            found, calibration[f"{mu:g}"] = run_pileup(mu, artifacts, random_weights, options)
            rows += found
            peak_rss[f"{mu:g}"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    document = {
        "benchmark": "runtime per-stage latency on CPU, ONNX Runtime vs PyTorch reference",
        "models": source,
        "model_sizes": {"hit_filter": "small", "tracker": "small", "selection": SELECTION},
        "calibrated_thresholds": calibration if random_weights else None,
        "events_per_pileup": events,
        "repeats_per_pileup": dict(zip(map(str, mus), passes, strict=True)),
        "threads": threads,
        "timing": "time.perf_counter around each stage (chain timings); warm-up: Tracker.warmup + one "
        "untimed pass; percentiles over all timed reconstructions at a pile-up; events held in memory",
        "comparison": "backends interleaved event by event within a variant (compare those); variants run "
        "one after another, and all three artifacts hold the same hit-filter graph, so its spread across "
        "variants shows the machine's load drift",
        "host_stages": list(HOST_STAGES),
        "host_target_fraction": HOST_TARGET,
        "machine": machine(),
        "versions": versions(),
        "load_average_1min_before_after": [load_before, os.getloadavg()[0]],
        "process_peak_rss_mb_after_pileup": peak_rss,
        "elapsed_s": time.perf_counter() - started,
        "results": rows,
        "torch_over_onnxruntime": ratios(rows),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtime_latency.json").write_text(json.dumps(document, indent=2) + "\n")
    plot(rows, out / "runtime_latency.png")
    for row in rows:
        click.echo(
            f"mu={row['pileup']:g} {row['variant']:7s} {row['backend']:11s} "
            f"mean {row['total_ms']['mean']:8.1f} p50 {row['total_ms']['p50']:8.1f} "
            f"p99 {row['total_ms']['p99']:8.1f} ms  {row['throughput_events_per_s']:6.2f} ev/s  "
            f"host {100 * row['host_fraction']:.1f} %"
        )


if __name__ == "__main__":
    main()
