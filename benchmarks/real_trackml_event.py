"""The shipped chains on the real TrackML reference event: simulator-trained models on real data.

`trackrt evaluate` of each shipped tracker (with the shipped hit filter at the tracker's filter point) on
the TrackML directory (`$TRACKRT_TRACKML_DIR`, else `../shared/data/trackml`): one real tt̄ + ⟨μ⟩ = 200
event reduced to ~5 % of its particles with their complete tracks, plus every noise hit. Efficiencies
carry Clopper–Pearson intervals (the metrics' 68 % level); with ~50 target particles they are wide, so
the event checks the transfer from the simulator to real data, it does not measure the chain.
Writes results/real_trackml_event.{json,png}.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import numpy as np
from matplotlib.figure import Figure
from report import environment, write_report

from trackrt.data.simulate import default_detector_path
from trackrt.metrics.binning import CONFIDENCE, binomial_interval
from trackrt.train.evaluate import evaluate_directory

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
TRACKERS = ("fq-ma", "dq-ma", "dq-lsca", "dq-lsca-seed")
MODES = ("tracking_only", "filter_and_tracking")


def efficiency_with_interval(passed: int, total: int) -> dict[str, float | int | None]:
    """passed/total with its Clopper–Pearson interval (None when total is 0)."""
    low, high = binomial_interval(np.array([passed]), np.array([total]))
    value = passed / total if total else None
    return {"passed": passed, "total": total, "value": value,
            "low": float(low[0]) if total else None, "high": float(high[0]) if total else None}


def summarise(metrics: dict) -> dict:
    """Per mode: DM and perfect efficiency with intervals, fakes, losses by stage; and the filter's counts."""
    out: dict = {"hit_filter": metrics.get("hit_filter")}
    for mode in MODES:
        overall = metrics[mode]["overall"]
        counts = overall["counts"]
        targets = counts["target_particles"]
        out[mode] = {
            "dm_efficiency": efficiency_with_interval(counts["matched_particles_dm"], targets),
            "perfect_efficiency": efficiency_with_interval(counts["matched_particles_perfect"], targets),
            "fake_tracks": counts["fake_tracks"],
            "fake_considered_tracks": counts["fake_considered_tracks"],
            "fake_rate": overall["fake_rate"],
            "duplicate_rate_lhc": overall["duplicate_rate_lhc"],
            "lost_at": metrics[mode]["target_losses"]["stages"],
        }
    return out


def plot(results: dict[str, dict], path: Path) -> None:
    figure = Figure(figsize=(8, 4), layout="constrained")
    axis = figure.subplots()
    x = np.arange(len(results))
    for offset, mode in ((-0.18, "tracking_only"), (0.18, "filter_and_tracking")):
        values = [results[name][mode]["dm_efficiency"] for name in results]
        centre = np.array([100 * v["value"] for v in values])
        errors = np.array([[100 * (v["value"] - v["low"]), 100 * (v["high"] - v["value"])] for v in values]).T
        axis.bar(x + offset, centre, width=0.36, yerr=errors, capsize=3, label=mode.replace("_", " "))
    axis.set_xticks(x, list(results))
    axis.set(ylabel="DM efficiency (%)", ylim=(0, 118),
             title=f"real TrackML event (reduced), {int(100 * CONFIDENCE)} % Clopper–Pearson intervals")
    axis.legend(loc="upper center", ncols=2)
    axis.grid(True, axis="y", alpha=0.3)
    figure.savefig(path, dpi=110)


@click.command()
@click.option("--events", "events_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="TrackML event directory (default: $TRACKRT_TRACKML_DIR or ../shared).")
@click.option("--filter", "filter_checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=REPO / "checkpoints" / "small-hit-filter", show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
def main(events_dir: Path | None, filter_checkpoint: Path, out: Path) -> None:
    """Evaluate the shipped chains on the real TrackML reference event."""
    events_dir = events_dir or default_detector_path()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in TRACKERS:
            checkpoint = REPO / "checkpoints" / f"small-{name}"
            metrics_path = evaluate_directory(checkpoint, events_dir, filter_checkpoint,
                                              Path(scratch) / name, device="cpu", progress=False)
            results[name] = summarise(json.loads(metrics_path.read_text()))
            chain = results[name]["filter_and_tracking"]
            print(f"{name}: tracking only {results[name]['tracking_only']['dm_efficiency']['value']:.3f}, "
                  f"chain {chain['dm_efficiency']['value']:.3f} "
                  f"({chain['fake_tracks']} fake of {chain['fake_considered_tracks']})", flush=True)
    report = {"benchmark": "shipped chains on the real TrackML reference event",
              "events_dir": str(events_dir), "filter_checkpoint": str(filter_checkpoint),
              "trackers": [f"checkpoints/small-{t}" for t in TRACKERS],
              "timed": __doc__.split("\n\n")[1].replace("\n", " "), "interval_level": CONFIDENCE,
              **environment(), "results": results}
    write_report(report, out / "real_trackml_event.json", lambda png: plot(results, png))


if __name__ == "__main__":
    main()
