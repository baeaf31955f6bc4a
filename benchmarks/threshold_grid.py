"""DM efficiency and fake rate of one tracker over a grid of its decision thresholds.

The grid spans `seed_threshold`, `track_threshold`, `hit_threshold` and `duplicate_iou`; the tracker
runs once per event and seed threshold (PyTorch, CPU), the hit assignment once per remaining setting
(with the tracker's later `passes` run afresh for each, since their hits depend on it),
and the DESIGN §7 metrics are pooled over the events. Hits are the ideal (truth) filter's, or a
learned filter's at its own threshold with `--filter`. Use validation events, then set a chosen point
with `trackrt thresholds CHECKPOINT --set KEY=VALUE`. Writes `benchmarks/results/threshold_grid.{json,png}`.

    python benchmarks/threshold_grid.py EVENTS CHECKPOINT [--filter CHECKPOINT] [--seed 0.05 0.1 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from report import environment, write_report

from trackrt.data.samples import make_sample, sample_config
from trackrt.data.trackml import iter_events
from trackrt.metrics.tracking import combine_metrics
from trackrt.train.checkpoint import load_checkpoint
from trackrt.train.dataset import HitSelection
from trackrt.train.evaluate import assign_in_passes, decode_event, event_metrics

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ("seed_threshold", "track_threshold", "hit_threshold", "duplicate_iou")


def grid_metrics(args: argparse.Namespace) -> tuple[dict, list[dict]]:
    """The checkpoint's own thresholds and the pooled metrics at every point of the grid."""
    tracker, info = load_checkpoint(args.checkpoint)
    config = info.model
    selection = sample_config(info.metadata.get("selection", "Pix1.0"), info.features)
    hits = HitSelection(cache=False)
    if args.filter is not None:
        hit_filter, filter_info = load_checkpoint(args.filter)
        threshold = config.chain_filter_threshold(filter_info.model.hit_threshold)
        hits = HitSelection(hit_filter, threshold, filter_info.features, cache=False)
    events = []
    for event in iter_events(args.events, parts=("hits", "particles", "truth"), pixel_only=True):
        if args.max_events is not None and len(events) == args.max_events:
            break
        sample = make_sample(event, selection)
        events.append((sample, hits.targets(sample)))
    if not events:
        raise SystemExit(f"{args.events}: no events")
    event_ids = [sample.event_id for sample, _ in events]
    rows = []
    for seed_threshold in args.seed:
        seeded = dataclasses.replace(config, seed_threshold=seed_threshold)
        with torch.no_grad():
            decoded = [decode_event(tracker, seeded, t.features, torch.device("cpu")) for _, t in events]
        for track, hit, iou in itertools.product(args.track, args.hit, args.iou):
            per_event = []
            for (sample, targets), d in zip(events, decoded, strict=True):
                thresholds = (track, hit, config.min_hits, iou)
                track_of_hit, scores = assign_in_passes(
                    tracker, seeded, targets.features, d, thresholds, torch.device("cpu")
                )
                per_event.append(event_metrics(sample, targets.hit_index, track_of_hit, scores, selection))
            m = combine_metrics(per_event, event_ids)
            setting = dict(zip(KEYS, (seed_threshold, track, hit, iou), strict=True))
            rows.append({**setting, "efficiency": m.efficiency, "fake_rate": m.fake_rate,
                         "efficiency_perfect": m.efficiency_perfect})  # fmt: skip
    own = {key: getattr(config, key) for key in KEYS}
    return own, rows


def plot(rows: list[dict], own: dict, path: Path) -> None:
    """Fake rate against DM efficiency, one point per setting; the checkpoint's own setting ringed."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter([r["efficiency"] for r in rows], [r["fake_rate"] for r in rows], s=10, label="grid")
    mine = [r for r in rows if all(r[key] == own[key] for key in KEYS)]
    if mine:
        axes.scatter([mine[0]["efficiency"]], [mine[0]["fake_rate"]], s=80, facecolors="none",
                     edgecolors="r", label="checkpoint's thresholds")  # fmt: skip
    axes.set_xlabel("DM efficiency")
    axes.set_ylabel("fake rate")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    axes.set_title("decision-threshold grid", fontsize=9)
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--filter", type=Path, default=None, help="Hit-filter checkpoint (default: truth).")
    parser.add_argument("--seed", type=float, nargs="+", default=[0.03, 0.05, 0.1, 0.2])
    parser.add_argument("--track", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6])
    parser.add_argument("--hit", type=float, nargs="+", default=[0.4, 0.5, 0.6])
    parser.add_argument("--iou", type=float, nargs="+", default=[0.3, 0.4, 0.5])
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "threshold_grid.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    own, rows = grid_metrics(args)
    best = max(rows, key=lambda r: r["efficiency"] - r["fake_rate"])
    for name, value in (("DM efficiency", "efficiency"), ("fake rate", "fake_rate")):
        values = [r[value] for r in rows]
        print(f"{name}: {min(values):.4f} .. {max(values):.4f} over {len(rows)} settings")
    print("best DM - fake:", {key: best[key] for key in (*KEYS, "efficiency", "fake_rate")})
    report = {
        "benchmark": "decision-threshold grid (PyTorch, CPU)",
        "events_dir": str(args.events),
        "checkpoint": str(args.checkpoint),
        "hits": "learned filter" if args.filter else "ideal (truth) filter",
        "filter_checkpoint": str(args.filter) if args.filter else None,
        "checkpoint_thresholds": own,
        "best_efficiency_minus_fake": best,
        **environment(),
        "rows": rows,
    }
    write_report(report, args.out, lambda png: plot(rows, own, png))


if __name__ == "__main__":
    main()
