"""Tracking metrics binned in particle pT or η, with Clopper–Pearson (68.3 %) intervals.

Efficiencies are binned by the target particle's truth pT/η. Track-based rates (fake, duplicate)
are binned by the track's majority particle, so noise-dominated tracks enter only the overall
numbers. The binned TrackML score is the weight collected by good valid tracks whose majority
particle lies in the bin, over the truth weight of the particles in the bin.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy.special import betaincinv

from trackrt.metrics.tracking import MATCH_CRITERIA, TrackingMetrics

CONFIDENCE = 0.6827
PT_EDGES_GEV: tuple[float, ...] = (0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0)
ETA_EDGES: tuple[float, ...] = tuple(np.round(np.linspace(-4.0, 4.0, 17), 6))
_EFFICIENCY_NAMES = {"dm": "efficiency", "perfect": "efficiency_perfect", "lhc": "efficiency_lhc"}


def default_edges(variable: Literal["pt", "eta"], metrics: TrackingMetrics) -> np.ndarray:
    """pT edges from the selection's pT threshold up to 100 GeV, or η edges every 0.5 in [−4, 4]."""
    if variable == "eta":
        limit = metrics.selection.eta_max
        return np.asarray([e for e in ETA_EDGES if abs(e) <= limit] or [-limit, limit])
    pt_min = metrics.selection.pt_min
    return np.asarray([pt_min, *[e for e in PT_EDGES_GEV if e > pt_min]])


def binomial_interval(passed: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clopper–Pearson central interval for passed/total; NaN where total is 0."""
    passed = np.asarray(passed, dtype=np.float64)
    total = np.asarray(total, dtype=np.float64)
    alpha = 1.0 - CONFIDENCE
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(passed > 0, betaincinv(passed, total - passed + 1, alpha / 2), 0.0)
        high = np.where(passed < total, betaincinv(passed + 1, total - passed, 1 - alpha / 2), 1.0)
    empty = total == 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def bin_index(values: pd.Series, edges: np.ndarray) -> np.ndarray:
    """Bin of each value (low ≤ x < high, last bin closed); −1 outside the edges or NaN."""
    x = values.to_numpy(np.float64)
    index = np.searchsorted(edges, x, side="right") - 1
    index[x == edges[-1]] = len(edges) - 2
    index[~((x >= edges[0]) & (x <= edges[-1]))] = -1
    return index


def binned_metrics(
    metrics: TrackingMetrics, variable: Literal["pt", "eta"], edges: Sequence[float] | None = None
) -> pd.DataFrame:
    """One row per bin of `variable` with counts, efficiencies, fake/duplicate rates and TrackML score."""
    if variable not in ("pt", "eta"):
        raise ValueError(f"variable must be 'pt' or 'eta', not {variable!r}")
    edges_array = default_edges(variable, metrics) if edges is None else np.asarray(edges, dtype=np.float64)
    if edges_array.ndim != 1 or len(edges_array) < 2 or np.any(np.diff(edges_array) <= 0):
        raise ValueError(f"bin edges must be at least two strictly increasing values, got {edges_array}")
    n_bins = len(edges_array) - 1
    particles = metrics.particle_table
    tracks = metrics.track_table

    def per_bin(frame: pd.DataFrame, column: str) -> np.ndarray:
        """Sum of `column` per bin of `variable` over the rows of `frame`."""
        index = bin_index(frame[variable], edges_array)
        inside = index >= 0
        sums = np.bincount(
            index[inside], weights=frame[column].to_numpy(np.float64)[inside], minlength=n_bins
        )
        return sums[:n_bins]

    targets = particles[particles["target"]]
    table = pd.DataFrame({"low": edges_array[:-1], "high": edges_array[1:]})
    table["target_particles"] = per_bin(targets, "target").astype(np.int64)
    for criterion in MATCH_CRITERIA:
        name = _EFFICIENCY_NAMES[criterion]
        matched = per_bin(targets, f"matched_{criterion}").astype(np.int64)
        table[f"matched_particles_{criterion}"] = matched
        table[name] = _safe_ratio(matched, table["target_particles"].to_numpy())
        table[f"{name}_low"], table[f"{name}_high"] = binomial_interval(matched, table["target_particles"])

    considered = tracks[tracks["fake_considered"]]
    table["fake_considered_tracks"] = per_bin(considered, "fake_considered").astype(np.int64)
    table["fake_tracks"] = per_bin(considered, "fake").astype(np.int64)
    table["fake_rate"] = _safe_ratio(
        table["fake_tracks"].to_numpy(), table["fake_considered_tracks"].to_numpy()
    )
    table["fake_rate_low"], table["fake_rate_high"] = binomial_interval(
        table["fake_tracks"], table["fake_considered_tracks"]
    )
    for criterion, name in (("dm", "duplicate_rate"), ("lhc", "duplicate_rate_lhc")):
        matched_tracks = tracks[tracks[criterion] & tracks["target"]]
        n_matched = per_bin(matched_tracks, criterion).astype(np.int64)
        n_duplicates = per_bin(matched_tracks, f"duplicate_{criterion}").astype(np.int64)
        table[f"matched_tracks_{criterion}"] = n_matched
        table[f"duplicate_tracks_{criterion}"] = n_duplicates
        table[name] = _safe_ratio(n_duplicates, n_matched)
    if "weight" in particles.columns and "overlap_weight" in tracks.columns:
        good = tracks[tracks["valid"] & (tracks["precision"] > 0.5) & (tracks["recall"] > 0.5)]
        table["trackml_score"] = _safe_ratio(per_bin(good, "overlap_weight"), per_bin(particles, "weight"))
    return table


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator with NaN where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out
