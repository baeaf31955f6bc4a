"""Realism report: event statistics of simulated events beside the DESIGN §3 TrackML figures and a real event.

`event_statistics(event)` measures one event; `realism_table(...)` sets the per-event means beside
the reference figures and checks the ⟨μ⟩ = 200 targets; `write_report(...)` prints, saves JSON and plots.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from trackrt.data.trackml import PIXEL_VOLUMES, Event, decode_particle_id, iter_events

# Measured on real TrackML events (DESIGN §3, "best figures"), else quoted ones.
DESIGN_FIGURES: dict[str, float] = {
    "pixel_hits": 52_100,
    "particles": 10_800,
    "pix1.0_particles": 1_100,
    "pix0.6_particles": 2_600,
    "hits_per_particle": 6.3,
    "layers_per_particle": 4.5,
    "double_hit_fraction": 0.29,
    "hit_share_pix1.0": 0.117,
    "hit_share_pix0.6": 0.33,
    "particle_share_pt_ge_1": 0.111,
    "particle_share_pt_ge_0.6": 0.263,
    "pt_median": 0.360,
}
DESIGN_PT_QUANTILES: dict[float, float] = {
    0.10: 0.145,
    0.25: 0.216,
    0.50: 0.360,
    0.75: 0.624,
    0.90: 1.07,
    0.99: 2.73,
}
_ENDCAP_SHARES = (0.048, 0.047, 0.046, 0.040, 0.034, 0.028, 0.024)  # inner disk to outer, each side
DESIGN_LAYER_SHARES: dict[str, float] = {
    "8-2": 0.140,
    "8-4": 0.118,
    "8-6": 0.106,
    "8-8": 0.098,
    **{f"7-{layer}": share for layer, share in zip(range(14, 0, -2), _ENDCAP_SHARES, strict=True)},
    **{f"9-{layer}": share for layer, share in zip(range(2, 16, 2), _ENDCAP_SHARES, strict=True)},
}
# (low, high) acceptance windows at <mu> = 200.
TARGETS: dict[str, tuple[float, float]] = {
    "pixel_hits": (50_000, 65_000),
    "pix1.0_particles": (800, 1_400),
    "hits_per_particle": (5.0, 7.0),
    "double_hit_fraction": (0.20, 0.35),
}


@dataclass(frozen=True)
class EventStatistics:
    """Scalar statistics of one event plus its per-layer hit shares and per-particle distributions."""

    event_id: int
    scalars: dict[str, float]
    layer_shares: dict[str, float]
    particle_pt: np.ndarray
    hits_per_particle: np.ndarray


def _pixel_truth(event: Event) -> pd.DataFrame:
    if event.truth is None or event.particles is None:
        raise ValueError(f"event {event.event_id}: the realism report needs truth and particles")
    hits = event.hits[["hit_id", "volume_id", "layer_id"]]
    merged = hits.merge(
        event.truth[["hit_id", "particle_id"]], on="hit_id", how="left", validate="one_to_one"
    )
    return merged[merged["volume_id"].isin(PIXEL_VOLUMES)]


def event_statistics(event: Event) -> EventStatistics:
    """Pixel hit counts, reconstructable particles, hits and layers per particle, shares, for one event."""
    pixel = _pixel_truth(event)
    particles = event.particles
    signal = pixel[pixel["particle_id"] != 0]
    hits_of = signal.groupby("particle_id").size()
    layers_of = signal.drop_duplicates(["particle_id", "volume_id", "layer_id"]).groupby("particle_id").size()
    pt = np.hypot(particles["px"], particles["py"]).to_numpy(np.float64)
    eta = np.arcsinh(particles["pz"].to_numpy(np.float64) / pt)
    n_hits = particles["particle_id"].map(hits_of).fillna(0).to_numpy()
    scalars: dict[str, float] = {
        "pixel_hits": float(len(pixel)),
        "particles": float(len(particles)),
        "vertices": float(decode_particle_id(particles["particle_id"])["vertex"].nunique()),
        "noise_fraction": float((pixel["particle_id"] == 0).mean()),
        "hits_per_particle": float(hits_of.mean()),
        "layers_per_particle": float(layers_of.mean()),
        "double_hit_fraction": float(1.0 - layers_of.sum() / hits_of.sum()),
        "particle_share_pt_ge_1": float((pt >= 1.0).mean()),
        "particle_share_pt_ge_0.6": float((pt >= 0.6).mean()),
        "pt_median": float(np.median(pt)),
    }
    for label, pt_min in (("pix1.0", 1.0), ("pix0.6", 0.6)):
        target = (pt >= pt_min) & (np.abs(eta) <= 4.0) & (n_hits >= 3)
        target_ids = particles["particle_id"].to_numpy()[target]
        scalars[f"{label}_particles"] = float(target.sum())
        scalars[f"hit_share_{label}"] = float(pixel["particle_id"].isin(target_ids).mean())
    layer_counts = pixel.groupby(["volume_id", "layer_id"]).size()
    shares = {f"{v}-{la}": float(n / len(pixel)) for (v, la), n in layer_counts.items()}
    return EventStatistics(event.event_id, scalars, shares, pt, hits_of.to_numpy())


def _mean_table(stats: list[EventStatistics]) -> pd.DataFrame:
    return pd.DataFrame([s.scalars for s in stats], index=[s.event_id for s in stats])


def realism_table(simulated: list[EventStatistics], reference: list[EventStatistics]) -> pd.DataFrame:
    """One row per statistic: simulated mean, min, max, DESIGN figure, real sample event, target, pass."""
    sim = _mean_table(simulated)
    ref = _mean_table(reference) if reference else None
    rows = []
    for name in sim.columns:
        low_high = TARGETS.get(name)
        values = sim[name]
        passed = None if low_high is None else bool(values.between(*low_high).all())
        rows.append(
            {
                "statistic": name,
                "simulated": values.mean(),
                "sim_min": values.min(),
                "sim_max": values.max(),
                "design": DESIGN_FIGURES.get(name, np.nan),
                "real_sample": ref[name].mean() if ref is not None else np.nan,
                "target": "" if low_high is None else f"{low_high[0]:g}-{low_high[1]:g}",
                "pass": "" if passed is None else ("PASS" if passed else "FAIL"),
            }
        )
    return pd.DataFrame(rows)


def layer_share_table(simulated: list[EventStatistics], reference: list[EventStatistics]) -> pd.DataFrame:
    """Pixel-hit share per volume-layer: simulated mean, DESIGN measured figure, real sample event."""
    sim = pd.DataFrame([s.layer_shares for s in simulated]).mean()
    ref = pd.DataFrame([s.layer_shares for s in reference]).mean() if reference else pd.Series(dtype=float)
    keys = sorted(DESIGN_LAYER_SHARES, key=lambda k: tuple(int(p) for p in k.split("-")))
    return pd.DataFrame(
        {
            "layer": keys,
            "simulated": [sim.get(k, 0.0) for k in keys],
            "design": [DESIGN_LAYER_SHARES[k] for k in keys],
            "real_sample": [ref.get(k, np.nan) for k in keys],
        }
    )


def collect_statistics(directory: str | Path, limit: int | None = None) -> list[EventStatistics]:
    """Statistics of the events in a directory (all, or the first `limit`)."""
    stats = []
    for event in iter_events(directory, parts=("hits", "particles", "truth")):
        stats.append(event_statistics(event))
        if limit is not None and len(stats) >= limit:
            break
    if not stats:
        raise FileNotFoundError(f"{directory}: no TrackML events found")
    return stats


def plot_report(simulated: list[EventStatistics], reference: list[EventStatistics], out: Path) -> list[Path]:
    """PNG plots: pT spectrum, hits per particle, layer shares (simulated vs real references)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    sim_pt = np.concatenate([s.particle_pt for s in simulated])
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    bins = np.logspace(-1.2, 1.5, 60)
    ax.hist(sim_pt, bins=bins, density=True, histtype="step", label="simulated")
    if reference:
        ax.hist(
            np.concatenate([s.particle_pt for s in reference]),
            bins=bins,
            density=True,
            histtype="step",
            label="real sample event",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    for q, value in DESIGN_PT_QUANTILES.items():
        ax.axvline(value, color="grey", lw=0.6, ls=":")
        ax.text(value, ax.get_ylim()[1] * 0.5, f"{q:.0%}", fontsize=6, rotation=90, color="grey")
    ax.set_xlabel("particle pT [GeV] (dotted: measured TrackML quantiles)")
    ax.set_ylabel("density")
    ax.legend()
    paths.append(_save(fig, out / "pt_spectrum.png"))

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    edges = np.arange(0.5, 25.5, 1.0)
    ax.hist(
        np.concatenate([s.hits_per_particle for s in simulated]),
        bins=edges,
        density=True,
        histtype="step",
        label="simulated",
    )
    if reference:
        ax.hist(
            np.concatenate([s.hits_per_particle for s in reference]),
            bins=edges,
            density=True,
            histtype="step",
            label="real sample event",
        )
    ax.set_xlabel("pixel hits per particle (particles with ≥ 1 pixel hit)")
    ax.set_ylabel("fraction")
    ax.legend()
    paths.append(_save(fig, out / "hits_per_particle.png"))

    shares = layer_share_table(simulated, reference)
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    x = np.arange(len(shares))
    ax.bar(x - 0.27, shares["simulated"], width=0.27, label="simulated")
    ax.bar(x, shares["design"], width=0.27, label="real TrackML (DESIGN §3)")
    ax.bar(x + 0.27, shares["real_sample"].fillna(0.0), width=0.27, label="real sample event")
    ax.set_xticks(x, shares["layer"], rotation=60, fontsize=7)
    ax.set_ylabel("share of pixel hits")
    ax.set_xlabel("volume-layer")
    ax.legend()
    paths.append(_save(fig, out / "layer_shares.png"))
    return paths


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_report(
    simulated_dir: str | Path, reference_dir: str | Path | None, out: str | Path | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute the realism tables; with `out`, also write realism.json and the PNG plots there."""
    simulated = collect_statistics(simulated_dir)
    reference = collect_statistics(reference_dir) if reference_dir is not None else []
    table = realism_table(simulated, reference)
    shares = layer_share_table(simulated, reference)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        document = {
            "simulated_dir": str(simulated_dir),
            "reference_dir": None if reference_dir is None else str(reference_dir),
            "events": [s.event_id for s in simulated],
            "per_event": {str(s.event_id): s.scalars for s in simulated},
            "table": json.loads(table.to_json(orient="records")),
            "layer_shares": json.loads(shares.to_json(orient="records")),
            "all_targets_pass": bool((table["pass"] != "FAIL").all()),
        }
        (out / "realism.json").write_text(json.dumps(document, indent=2))
        plot_report(simulated, reference, out)
    return table, shares
