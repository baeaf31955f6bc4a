"""Efficiency, fake and duplicate rate of tracker checkpoints against the duplicate-resolution IoU.

Each tracker runs once per event (PyTorch, CPU); the hit assignment is then repeated for every
`duplicate_iou` of the grid (1 = no duplicate resolution, the published model's behaviour). A tracker
with `passes` > 1 runs its later passes afresh for every value, since their hits depend on it. Hits are
the ideal (truth) filter's, or a learned filter's with `--filter`. Use validation events to choose a
value, then set it with `trackrt thresholds CHECKPOINT --set duplicate_iou=VALUE`. Writes
`benchmarks/results/duplicate_iou_scan.{json,png}`.

    python benchmarks/duplicate_iou_scan.py EVENTS CHECKPOINT... [--filter CHECKPOINT] [--max-events N]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from report import environment, write_report

from trackrt.data.samples import make_sample, sample_config
from trackrt.data.trackml import iter_events
from trackrt.metrics.plots import plot_scan
from trackrt.metrics.tracking import combine_metrics
from trackrt.train.checkpoint import load_checkpoint
from trackrt.train.dataset import HitSelection
from trackrt.train.evaluate import assign_in_passes, decode_event, event_metrics

RESULTS = Path(__file__).resolve().parent / "results"
GRID = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2)


def scan(tracker_path: Path, events: Path, filter_path: Path | None, max_events: int | None) -> dict:
    """Pooled DESIGN §7 metrics at every IoU of GRID for one tracker checkpoint."""
    tracker, info = load_checkpoint(tracker_path)
    config = info.model
    selection = sample_config(info.metadata.get("selection", "Pix1.0"), info.features)
    hits = HitSelection(cache=False)
    if filter_path is not None:
        hit_filter, filter_info = load_checkpoint(filter_path)
        threshold = config.chain_filter_threshold(filter_info.model.hit_threshold)
        hits = HitSelection(hit_filter, threshold, filter_info.features, cache=False)
    per_iou: dict[float, list] = {iou: [] for iou in GRID}
    event_ids = []
    for event in iter_events(events, parts=("hits", "particles", "truth"), pixel_only=True):
        if max_events is not None and len(event_ids) == max_events:
            break
        sample = make_sample(event, selection)
        targets = hits.targets(sample)
        first_pass = decode_event(tracker, config, targets.features, torch.device("cpu"))
        event_ids.append(sample.event_id)
        for iou in GRID:
            thresholds = (config.track_threshold, config.hit_threshold, config.min_hits, iou)
            track_of_hit, scores = assign_in_passes(
                tracker, config, targets.features, first_pass, thresholds, torch.device("cpu")
            )
            per_iou[iou].append(event_metrics(sample, targets.hit_index, track_of_hit, scores, selection))
    rows = []
    for iou in GRID:
        m = combine_metrics(per_iou[iou], event_ids)
        rows.append(
            {
                "duplicate_iou": iou,
                "efficiency": m.efficiency,
                "efficiency_perfect": m.efficiency_perfect,
                "fake_rate": m.fake_rate,
                "duplicate_rate_lhc": m.duplicate_rate_lhc,
                "tracks": m.counts["tracks"],
            }
        )
        print(
            f"{tracker_path} iou {iou:.1f}: DM {m.efficiency:.3f} perfect {m.efficiency_perfect:.3f} "
            f"fake {m.fake_rate:.3f} dup(LHC) {m.duplicate_rate_lhc:.3f}"
        )
    events_seen = len(event_ids)
    return {
        "checkpoint": str(tracker_path),
        "variant": config.variant,
        "passes": config.passes,
        "events": events_seen,
        "rows": rows,
    }


def plot(records: list[dict], path: Path) -> None:
    """DM efficiency and fake rate against the IoU, one line pair per checkpoint."""
    curves = {
        record["checkpoint"]: (
            [r["efficiency"] for r in record["rows"]],
            [r["fake_rate"] for r in record["rows"]],
        )
        for record in records
    }
    ious = [r["duplicate_iou"] for r in records[0]["rows"]]
    plot_scan(
        path,
        ious,
        curves,
        "duplicate_iou (1 = off)",
        "duplicate resolution: efficiency and fake rate",
        invert_x=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--filter", type=Path, default=None, help="Hit-filter checkpoint (default: truth).")
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "duplicate_iou_scan.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    records = [scan(path, args.events, args.filter, args.max_events) for path in args.checkpoints]
    report = {
        "benchmark": "duplicate-resolution IoU scan (PyTorch, CPU)",
        "events_dir": str(args.events),
        "hits": "learned filter" if args.filter else "ideal (truth) filter",
        "filter_checkpoint": str(args.filter) if args.filter else None,
        **environment(),
        "results": records,
    }
    write_report(report, args.out, lambda png: plot(records, png))


if __name__ == "__main__":
    main()
