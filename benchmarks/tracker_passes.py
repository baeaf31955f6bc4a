"""Iterative track finding: the chain after each tracker pass, paired intervals, and each pass's cost.

For every tracker checkpoint the hit filter runs at the tracker's own point, then the tracker runs up to
`--max-passes` passes per event (PyTorch, CPU; each pass on the filtered hits no earlier track took). A
pass never changes the tracks before it, so one run gives the chain after 1, 2, ... passes; each is
paired with the one before and with one pass (event bootstrap, `trackrt.metrics.uncertainty`). With
`--timing-events N` the tracker is then exported (LSCA as standard ops) and run by the runtime on
ONNX Runtime with 1, 2, ... passes on the same sessions, interleaved event by event after warm-up, so
the cost of the extra passes is measured side by side. Writes `benchmarks/results/tracker_passes.{json,png}`.

    python benchmarks/tracker_passes.py EVENTS TRACKER... --filter CKPT [--max-passes 3] [--timing-events 20]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from report import environment, write_report

from trackrt.data.samples import make_sample, sample_config
from trackrt.data.trackml import iter_events
from trackrt.data.tracks import find_tracks_in_passes
from trackrt.metrics.tracking import TrackingMetrics, combine_metrics
from trackrt.metrics.uncertainty import paired_difference, per_event_counts, point_rates
from trackrt.model.config import TrackerConfig
from trackrt.train.checkpoint import load_checkpoint
from trackrt.train.dataset import HitSelection
from trackrt.train.evaluate import event_metrics, predict_pass

RESULTS = Path(__file__).resolve().parent / "results"
CPU = torch.device("cpu")


def chain_after_each_pass(
    tracker_path: Path, filter_path: Path, events: Path, max_passes: int, max_events: int | None
) -> list[TrackingMetrics]:
    """Pooled chain metrics after 1..`max_passes` passes (index k − 1), from one run per event."""
    tracker, info = load_checkpoint(tracker_path)
    config = dataclasses.replace(info.model, passes=max_passes)
    selection = sample_config(info.metadata.get("selection", "Pix1.0"), info.features)
    hit_filter, filter_info = load_checkpoint(filter_path)
    threshold = config.chain_filter_threshold(filter_info.model.hit_threshold)
    hits = HitSelection(hit_filter, threshold, filter_info.features, cache=False)
    per_pass: list[list[TrackingMetrics]] = [[] for _ in range(max_passes)]
    event_ids = []
    for event in itertools.islice(iter_events(events, ("hits", "particles", "truth"), True), max_events):
        sample = make_sample(event, selection)
        targets = hits.targets(sample)
        track_of_hit, scores, tracks_so_far = passes_of_event(tracker, config, targets.features)
        for k, count in enumerate(tracks_so_far):
            after = np.where(track_of_hit < count, track_of_hit, -1)
            per_pass[k].append(event_metrics(sample, targets.hit_index, after, scores[:count], selection))
        event_ids.append(sample.event_id)
    if not event_ids:
        raise SystemExit(f"{events}: no events")
    return [combine_metrics(metrics, event_ids) for metrics in per_pass]


def passes_of_event(
    tracker: torch.nn.Module, config: TrackerConfig, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`config.passes` passes on one event's hits: tracks, scores and the track count after each pass."""
    tracks_per_pass: list[int] = []

    def find_tracks(subset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prediction = predict_pass(tracker, config, features[subset], CPU)
        tracks_per_pass.append(len(prediction.track_scores))
        return prediction.track_of_hit, prediction.track_scores

    track_of_hit, scores = find_tracks_in_passes(len(features), config.passes, find_tracks)
    padded = tracks_per_pass + [0] * (config.passes - len(tracks_per_pass))
    return track_of_hit, scores, np.cumsum(padded)


def pass_rows(metrics: list[TrackingMetrics]) -> list[dict[str, Any]]:
    """Rates after each pass, with paired differences to the pass before and to one pass."""
    counts = [per_event_counts(m) for m in metrics]
    rows = []
    for k, table in enumerate(counts):
        row: dict[str, Any] = {"passes": k + 1, **point_rates(table), "tracks": metrics[k].counts["tracks"]}
        if k > 0:
            row["vs_previous"] = paired_difference(counts[k - 1], table)["rates"]
            row["vs_one_pass"] = paired_difference(counts[0], table)["rates"]
        rows.append(row)
    return rows


def runtime_cost(
    tracker_path: Path, filter_path: Path, events: Path, max_passes: int, count: int, threads: int
) -> list[dict[str, Any]]:
    """Mean stage times (ms) with 1..`max_passes` passes on ONNX Runtime, same sessions, interleaved."""
    from trackrt.export.config import ExportOptions
    from trackrt.export.exporter import export_artifact
    from trackrt.runtime import Tracker
    from trackrt.runtime.artifact import DECODER_GRAPH, ENCODER_GRAPH
    from trackrt.runtime.chain import TrackFindingStage

    hits = [e.hits for e in itertools.islice(iter_events(events, ("hits",), True), count)]
    with tempfile.TemporaryDirectory() as scratch:
        artifact = Path(scratch) / "artifact"
        export_artifact(tracker_path, artifact, filter_path, ExportOptions(lsca_mode="onnx"), force=True)
        with Tracker.load(artifact, backend="onnxruntime", threads=threads) as base:
            runners = (base.backend.runner(ENCODER_GRAPH), base.backend.runner(DECODER_GRAPH))
            trackers = {}
            for k in range(1, max_passes + 1):
                stage = TrackFindingStage(*runners, dataclasses.replace(base.artifact.tracker, passes=k))
                trackers[k] = base.with_stage("tracker", stage)
            for tracker in trackers.values():
                tracker.warmup(num_hits=1000, repeats=1)
                for event_hits in hits:
                    tracker.reconstruct(event_hits)
            records: dict[int, list[dict[str, float]]] = {k: [] for k in trackers}
            for i, event_hits in enumerate(hits):
                for k in list(trackers)[i % max_passes :] + list(trackers)[: i % max_passes]:
                    result = trackers[k].reconstruct(event_hits)
                    records[k].append({**result.timings_ms, "tracks": result.num_tracks})
    rows = []
    for k, timed in records.items():
        means = {key: float(np.mean([r[key] for r in timed])) for key in timed[0]}
        rows.append({"passes": k, "events": len(timed), **means})
    return rows


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """DM efficiency and fake rate against the number of passes, one line pair per tracker."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(figure)
    efficiency, fake = figure.subplots(1, 2)
    for record in results:
        passes = [r["passes"] for r in record["chain"]]
        label = Path(record["checkpoint"]).name
        efficiency.plot(passes, [100 * r["efficiency"] for r in record["chain"]], marker="o", label=label)
        fake.plot(passes, [100 * r["fake_rate"] for r in record["chain"]], marker="o", label=label)
    for axes, title in ((efficiency, "DM efficiency (%)"), (fake, "fake rate (%)")):
        axes.set_xlabel("tracker passes")
        axes.set_title(title)
        axes.grid(alpha=0.3)
    efficiency.legend(fontsize=7)
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("trackers", type=Path, nargs="+")
    parser.add_argument("--filter", type=Path, required=True, help="Hit-filter checkpoint.")
    parser.add_argument("--max-passes", type=int, default=3)
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--timing-events", type=int, default=0, help="Events timed on ONNX Runtime (0: none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "tracker_passes.json")
    args = parser.parse_args()
    if args.max_passes < 1:
        parser.error(f"--max-passes: must be >= 1, got {args.max_passes}")
    torch.set_num_threads(args.threads)
    results = []
    for path in args.trackers:
        metrics = chain_after_each_pass(path, args.filter, args.events, args.max_passes, args.max_events)
        record: dict[str, Any] = {"checkpoint": str(path), "chain": pass_rows(metrics)}
        for row in record["chain"]:
            print(
                f"{path} passes {row['passes']}: DM {row['efficiency']:.4f} fake {row['fake_rate']:.4f} "
                f"DM-fake {row['efficiency_minus_fake']:.4f}"
            )
        if args.timing_events > 0:
            record["runtime_ms"] = runtime_cost(
                path, args.filter, args.events, args.max_passes, args.timing_events, args.threads
            )
            for row in record["runtime_ms"]:
                print(
                    f"{path} passes {row['passes']}: total {row['total']:.1f} ms "
                    f"(encoder {row['encoder']:.1f}, decoder {row['decoder']:.1f})"
                )
        results.append(record)
    report = {
        "benchmark": "tracker passes: chain after each pass (PyTorch, CPU), runtime cost (ONNX Runtime, CPU)",
        "events_dir": str(args.events),
        "filter_checkpoint": str(args.filter),
        "max_passes": args.max_passes,
        "intervals": "paired event bootstrap, 2000 resamples, 95 %",
        **environment(threads=args.threads),
        "results": results,
    }
    write_report(report, args.out, lambda png: plot(results, png))


if __name__ == "__main__":
    main()
