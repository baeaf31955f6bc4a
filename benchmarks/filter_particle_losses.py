"""Which target particles the hit filter loses: the lost fraction by hit count, |η|, pT and vertex |z|.

A target particle is lost at the filter when it keeps at most half of its hits (no track can then
match it by double majority; `trackrt.metrics.target_losses`). The filter runs at its own threshold
(or `--threshold`) on each event (PyTorch, CPU). Writes
`benchmarks/results/filter_particle_losses.{json,png}`.

    python benchmarks/filter_particle_losses.py EVENTS --filter CKPT [--threshold P] [--max-events N]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from trackrt.data.samples import make_sample, sample_config
from trackrt.data.trackml import iter_events
from trackrt.metrics.binning import binomial_interval
from trackrt.metrics.target_losses import target_loss_stages
from trackrt.train.checkpoint import load_checkpoint
from trackrt.train.dataset import HitSelection

RESULTS = Path(__file__).resolve().parent / "results"
GROUPS = {
    "nhits": [2.5, 3.5, 4.5, 5.5, 6.5, 8.5, 12.5, 30.5],
    "abs_eta": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0],
    "pt": [1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 100.0],
    "abs_vz": [0.0, 25.0, 50.0, 75.0, 100.0, 150.0, 200.0, 2000.0],
    "vertex_r": [0.0, 0.1, 10.0, 30.0, 50.0, 75.0, 100.0, 1000.0],
}


def particle_table(args: argparse.Namespace) -> tuple[pd.DataFrame, float]:
    """One row per target particle of every event: hit count, kept hits, |η|, pT, production vertex |z|
    and transverse radius (secondaries are made away from the beam line), and whether it is lost."""
    hit_filter, info = load_checkpoint(args.filter)
    threshold = info.model.hit_threshold if args.threshold is None else args.threshold
    selection = sample_config(args.selection, info.features)
    hits = HitSelection(hit_filter, threshold, info.features, cache=False)
    tables = []
    events = iter_events(args.events, parts=("hits", "particles", "truth"), pixel_only=True)
    for event in itertools.islice(events, args.max_events):
        sample = make_sample(event, selection)
        kept = hits.kept(sample)
        assert kept is not None
        table = target_loss_stages(sample.hit_particle_id, sample.target_particle_id, kept, np.zeros(0))
        particles = sample.particles.set_index("particle_id").loc[table["particle_id"]]
        table["abs_eta"] = np.abs(particles["eta"].to_numpy())
        table["pt"] = particles["pt"].to_numpy()
        table["abs_vz"] = np.abs(particles["vz"].to_numpy())
        table["vertex_r"] = np.hypot(particles["vx"].to_numpy(), particles["vy"].to_numpy())
        table["event_id"] = sample.event_id
        tables.append(table)
    if not tables:
        raise SystemExit(f"{args.events}: no events")
    table = pd.concat(tables, ignore_index=True)
    table["lost"] = table["stage"] == "filter"  # the rest are "tracks": none was given
    return table, float(threshold)


def lost_fractions(table: pd.DataFrame, column: str, edges: list[float]) -> list[dict]:
    """Lost fraction with its binomial interval per bin of `column`."""
    groups = table.groupby(pd.cut(table[column], edges, include_lowest=True), observed=False)["lost"]
    total, lost = groups.size().to_numpy(), groups.sum().to_numpy()
    low, high = binomial_interval(lost, total)
    return [
        {"low": lo, "high": hi, "particles": int(n), "lost": int(k),
         "fraction": k / n if n else None, "fraction_low": float(a), "fraction_high": float(b)}
        for lo, hi, n, k, a, b in zip(edges[:-1], edges[1:], total, lost, low, high, strict=True)
    ]  # fmt: skip


def plot(result: dict, path: Path) -> None:
    """Lost fraction against each grouping variable, with binomial intervals."""
    labels = {
        "nhits": "pixel hits of the particle", "abs_eta": "|η|", "pt": "pT [GeV]",
        "abs_vz": "vertex |z| [mm]", "vertex_r": "vertex radius [mm]",
    }  # fmt: skip
    figure, axes = plt.subplots(1, len(GROUPS), figsize=(4.2 * len(GROUPS), 3.6), constrained_layout=True)
    for axis, (column, rows) in zip(axes, result["groups"].items(), strict=True):
        rows = [r for r in rows if r["particles"]]
        values = np.array([r["fraction"] for r in rows])
        errors = [values - [r["fraction_low"] for r in rows], [r["fraction_high"] for r in rows] - values]
        axis.errorbar(np.arange(len(rows)), values, yerr=errors, fmt="o")
        axis.set_xticks(np.arange(len(rows)), [f"{r['low']:g}–{r['high']:g}" for r in rows], rotation=45)
        axis.set_xlabel(labels[column])
        axis.set_ylabel("lost at the filter")
    figure.suptitle(f"target particles the hit filter loses ({result['lost']} of {result['particles']})")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--filter", type=Path, required=True, help="Hit-filter checkpoint.")
    parser.add_argument("--threshold", type=float, default=None, help="Probability (default: the filter's).")
    parser.add_argument("--selection", default="Pix1.0", choices=("Pix1.0", "Pix0.6"))
    parser.add_argument("--max-events", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "filter_particle_losses.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table, threshold = particle_table(args)
    result = {
        "benchmark": "target particles lost at the hit filter (PyTorch, CPU)",
        "events_dir": str(args.events),
        "filter_checkpoint": str(args.filter),
        "threshold": threshold,
        "selection": args.selection,
        "machine": {"platform": platform.platform()},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "events": int(table["event_id"].nunique()),
        "particles": len(table),
        "lost": int(table["lost"].sum()),
        "lost_with_no_kept_hit": int((table["lost"] & (table["kept_hits"] == 0)).sum()),
        "groups": {column: lost_fractions(table, column, edges) for column, edges in GROUPS.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out.with_suffix(".png"))
    print(f"{result['lost']} of {result['particles']} target particles lost at threshold {threshold:.4f}")
    for column, rows in result["groups"].items():
        print(column, " ".join(f"{r['low']}-{r['high']}: {r['fraction'] or 0:.3f}" for r in rows))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
