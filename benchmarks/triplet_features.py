"""How well the beamline-triplet χ² alone tells target hits from the rest, by vertex |z|, and its cost.

Computes `trackrt.data.triplets.triplet_helix_features` on each event's pixel hits and scores each hit
by −log(1 + χ²): the ROC area over all hits, the purity and the target-hit efficiency per vertex-|z| bin
at the cut that keeps 95 % of target hits, and the time per event (the numba kernel, one thread; its
first call, which compiles it or loads it from numba's cache, is timed apart). For the helix columns:
the ROC area of the support count, and per vertex-|z| bin the median spread (standard deviation) of η
over the target hits of one particle that have a triplet, seen from the origin and from the helix's z0.
Writes `benchmarks/results/triplet_features.{json,png}`.

    python benchmarks/triplet_features.py EVENTS [--max-events N] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import rankdata

from trackrt.configuration import from_dict, to_dict
from trackrt.data.samples import SampleConfig, make_sample
from trackrt.data.trackml import iter_events
from trackrt.data.triplets import CHI2_CAP, HELIX_ETA_SCALE, TripletConfig, triplet_helix_features
from trackrt.train.cli import apply_overrides

RESULTS = Path(__file__).resolve().parent / "results"
VZ_BINS = [0.0, 50.0, 100.0, 2000.0]


def roc_area(is_target: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U / (n₁ n₀), ties shared)."""
    ranks = rankdata(score)
    n1 = int(is_target.sum())
    n0 = len(is_target) - n1
    return float((ranks[is_target].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def eta_spread_by_vertex_z(hits: pd.DataFrame) -> list[dict]:
    """Median over target particles of the η spread of their hits with a triplet, per vertex-|z| bin."""
    hits = hits[hits["target"] & (hits["chi2"] < np.log1p(CHI2_CAP))]
    spread = hits.groupby(["event", "particle"]).agg(
        abs_vz=("abs_vz", "first"), eta=("eta", "std"), helix_eta=("helix_eta", "std"), hits=("eta", "size")
    )
    spread = spread[spread["hits"] >= 2]
    rows = []
    for lo, hi in itertools.pairwise(VZ_BINS):
        in_bin = spread[(spread["abs_vz"] >= lo) & (spread["abs_vz"] < hi)]
        rows.append({"abs_vz_mm": [lo, hi], "particles": len(in_bin),
                     "eta_from_origin": float(in_bin["eta"].median()),
                     "eta_from_helix_z0": float(in_bin["helix_eta"].median())})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--max-events", type=int, default=20)
    parser.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE",
                        help="TripletConfig field (YAML value), e.g. partners=16")
    parser.add_argument("--out", type=Path, default=RESULTS / "triplet_features.json")
    args = parser.parse_args()
    config = from_dict(TripletConfig, apply_overrides({}, tuple(args.assignments)), "triplets")

    start = time.perf_counter()
    triplet_helix_features(np.array([30.0, 70.0, 110.0]), np.zeros(3), np.zeros(3), config)
    first_call = time.perf_counter() - start
    chi2, target, vz, seconds, tables = [], [], [], [], []
    events = iter_events(args.events, parts=("hits", "particles", "truth"), pixel_only=True)
    for event in itertools.islice(events, args.max_events):
        sample = make_sample(event, SampleConfig())
        xyz = sample.hit_xyz.astype(np.float64)
        start = time.perf_counter()
        features = triplet_helix_features(xyz[:, 0], xyz[:, 1], xyz[:, 2], config)
        seconds.append(time.perf_counter() - start)
        chi2.append(features[:, 0])
        target.append(sample.hit_on_target)
        vertex_z = sample.particles.set_index("particle_id")["vz"]
        vz.append(np.abs(vertex_z.reindex(sample.hit_particle_id).fillna(0.0).to_numpy()))
        tables.append(pd.DataFrame({
            "event": sample.event_id, "particle": sample.hit_particle_id, "target": sample.hit_on_target,
            "abs_vz": vz[-1], "chi2": features[:, 0], "support": features[:, 4],
            "eta": np.arcsinh(xyz[:, 2] / np.hypot(xyz[:, 0], xyz[:, 1])),
            "helix_eta": HELIX_ETA_SCALE * features[:, 7],
        }))  # fmt: skip
    chi2_all, is_target, abs_vz = np.concatenate(chi2), np.concatenate(target), np.concatenate(vz)
    hits = pd.concat(tables, ignore_index=True)
    score = -chi2_all
    cut = float(np.quantile(score[is_target], 0.05))
    kept = score >= cut
    by_vz = []
    for lo, hi in itertools.pairwise(VZ_BINS):
        in_bin = is_target & (abs_vz >= lo) & (abs_vz < hi)
        by_vz.append({"abs_vz_mm": [lo, hi], "target_hits": int(in_bin.sum()),
                      "efficiency": float(kept[in_bin].mean()) if in_bin.any() else None})
    result = {
        "events": len(chi2),
        "hits": len(chi2_all),
        "target_hits": int(is_target.sum()),
        "triplet_config": to_dict(config),
        "roc_area": roc_area(is_target, score),
        "at_95_percent": {"log1p_chi2_cut": -cut, "purity": float(is_target[kept].mean()),
                          "kept_hits_per_event": float(kept.sum() / len(chi2)), "by_vertex_z": by_vz},
        "helix": {"support_roc_area": roc_area(is_target, hits["support"].to_numpy()),
                  "eta_spread_by_vertex_z": eta_spread_by_vertex_z(hits)},
        "ms_per_event": {"mean": 1e3 * float(np.mean(seconds)), "median": 1e3 * float(np.median(seconds))},
        "first_call_s": first_call,
        "hits_per_event": float(len(chi2_all) / len(chi2)),
        "host": platform.node(),
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = ("events", "roc_area", "at_95_percent", "helix", "ms_per_event")
    print(json.dumps({k: result[k] for k in summary}, indent=1))

    fig, (ax, spread_ax) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(0, np.log1p(50.0) + 0.05, 60)
    for mask, label in ((is_target, "target hits"), (~is_target, "other hits")):
        ax.hist(chi2_all[mask], bins=bins, density=True, histtype="step", label=label)
    ax.axvline(-cut, color="k", linestyle=":", label="95 % target-hit cut")
    ax.set(xlabel="triplet_chi2 = log(1 + χ²)", ylabel="density", yscale="log",
           title=f"beamline triplets, {len(chi2)} events: ROC area {result['roc_area']:.3f}")
    ax.legend()
    spread = result["helix"]["eta_spread_by_vertex_z"]
    centres = np.arange(len(spread))
    labels = {"eta_from_origin": "η from the origin", "eta_from_helix_z0": "η from the helix z0"}
    for key, label in labels.items():
        spread_ax.plot(centres, [row[key] for row in spread], "o-", label=label)
    spread_ax.set_xticks(centres, [f"{lo:g}–{hi:g}" for lo, hi in (row["abs_vz_mm"] for row in spread)])
    spread_ax.set(xlabel="vertex |z| [mm]", ylabel="median η spread over a particle's hits", yscale="log")
    spread_ax.legend()
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
