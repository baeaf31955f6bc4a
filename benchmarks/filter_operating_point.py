"""Chain efficiency and fake rate against the hit filter's operating point (its probability threshold).

The filter runs once per event (PyTorch, CPU); for each threshold the trackers then run on the hits it
keeps, with their own decision thresholds, and the DESIGN §7 metrics are pooled over the events
(counted on all pixel hits, so hits the filter drops count against the chain). Thresholds are given as
probabilities (`--thresholds`) or as target-hit efficiencies (`--efficiencies`), which are turned into
thresholds on the scanned events themselves: choose on validation events, then confirm the chosen
probability on held-out events with `--thresholds` and set it with
`trackrt thresholds FILTER --set hit_threshold=P` (or, for one tracker only,
`trackrt thresholds TRACKER --set filter_threshold=P`). The scan adds the filter's own threshold
("shipped") and any tracker's `filter_threshold`.
Writes `benchmarks/results/filter_operating_point.{json,png}`.

    python benchmarks/filter_operating_point.py EVENTS --filter CKPT TRACKER... [--efficiencies E...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from report import environment, write_report

from trackrt.data.samples import make_sample, sample_config, tracker_targets
from trackrt.data.trackml import iter_events
from trackrt.data.tracks import sigmoid
from trackrt.metrics.plots import plot_scan
from trackrt.metrics.tracking import combine_metrics
from trackrt.train.checkpoint import load_checkpoint
from trackrt.train.evaluate import event_metrics, predict_tracks
from trackrt.train.filter_metrics import FilterCounts, score_samples

RESULTS = Path(__file__).resolve().parent / "results"
EFFICIENCIES = (0.995, 0.99, 0.985, 0.98, 0.97, 0.95, 0.92, 0.9)


def load_events(events: Path, tracker_paths: list[Path], max_events: int | None) -> tuple[list, list]:
    """The trackers (model, config, selection) and, per event, one sample per tracker's features."""
    trackers = []
    for path in tracker_paths:
        model, info = load_checkpoint(path)
        selection = sample_config(info.metadata.get("selection", "Pix1.0"), info.features)
        trackers.append((model, info.model, selection))
    per_event = []
    for event in iter_events(events, parts=("hits", "particles", "truth"), pixel_only=True):
        if max_events is not None and len(per_event) == max_events:
            break
        per_event.append([make_sample(event, selection) for _, _, selection in trackers])
    if not per_event:
        raise SystemExit(f"{events}: no events")
    return trackers, per_event


def scan(args: argparse.Namespace) -> dict:
    """Filter counts and pooled tracker metrics at every threshold of the scan."""
    hit_filter, filter_info = load_checkpoint(args.filter)
    trackers, per_event = load_events(args.events, args.trackers, args.max_events)
    first_samples = [samples[0] for samples in per_event]
    scores = score_samples(hit_filter, first_samples, torch.device("cpu"), filter_info.features)
    if args.thresholds:
        points = [(None, float(t)) for t in args.thresholds]
    else:
        points = [(e, scores.threshold_for_efficiency(e)) for e in args.efficiencies]
    shipped = {float(filter_info.model.hit_threshold): "shipped"}
    for _, config, _ in trackers:
        if config.filter_threshold is not None:
            shipped.setdefault(float(config.filter_threshold), "tracker filter_threshold")
    points.extend((label, threshold) for threshold, label in shipped.items())
    rows = []
    for label, threshold in points:
        counts: FilterCounts = scores.counts(threshold)
        row = {"target_efficiency": label, "threshold": threshold, "filter": counts.summary(), "trackers": {}}
        for index, (model, config, selection) in enumerate(trackers):
            metrics = []
            for samples, logits in zip(per_event, scores.logits, strict=True):
                sample = samples[index]
                targets = tracker_targets(sample, sigmoid(logits) >= threshold)
                tracks = predict_tracks(model, config, targets.features, torch.device("cpu"))
                metrics.append(event_metrics(sample, targets.hit_index, *tracks, selection))
            pooled = combine_metrics(metrics, [s[index].event_id for s in per_event])
            name = str(args.trackers[index])
            row["trackers"][name] = {
                "efficiency": pooled.efficiency,
                "efficiency_perfect": pooled.efficiency_perfect,
                "fake_rate": pooled.fake_rate,
                "duplicate_rate_lhc": pooled.duplicate_rate_lhc,
            }
            print(
                f"threshold {threshold:.4f} (filter eff {counts.efficiency:.3f}, purity {counts.purity:.3f}, "
                f"{counts.kept_hits / len(per_event):.0f} hits/event) {name}: DM {pooled.efficiency:.3f} "
                f"perfect {pooled.efficiency_perfect:.3f} fake {pooled.fake_rate:.3f}"
            )
        rows.append(row)
    return {"events": len(per_event), "rows": rows}


def plot(result: dict, path: Path) -> None:
    """DM efficiency and fake rate of each tracker against the filter's target-hit efficiency."""
    rows = sorted(result["rows"], key=lambda r: r["filter"]["efficiency"])
    curves = {
        Path(name).name: (
            [r["trackers"][name]["efficiency"] for r in rows],
            [r["trackers"][name]["fake_rate"] for r in rows],
        )
        for name in rows[0]["trackers"]
    }
    plot_scan(
        path,
        [r["filter"]["efficiency"] for r in rows],
        curves,
        "hit-filter target-hit efficiency",
        "chain metrics vs the hit filter's operating point",
        reference=("filter purity", [r["filter"]["purity"] for r in rows]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("trackers", type=Path, nargs="+")
    parser.add_argument("--filter", type=Path, required=True, help="Hit-filter checkpoint.")
    parser.add_argument("--efficiencies", type=float, nargs="+", default=list(EFFICIENCIES))
    parser.add_argument("--thresholds", type=float, nargs="+", default=None, help="Probabilities (override).")
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "filter_operating_point.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = scan(args)
    report = {
        "benchmark": "hit-filter operating point scan (PyTorch, CPU)",
        "events_dir": str(args.events),
        "filter_checkpoint": str(args.filter),
        "thresholds_from": "--thresholds" if args.thresholds else "target efficiencies on these events",
        **environment(),
        **result,
    }
    write_report(report, args.out, lambda png: plot(result, png))


if __name__ == "__main__":
    main()
