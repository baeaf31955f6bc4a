"""Event-bootstrap intervals for the pooled tracking rates, alone and between two chains.

Targets and tracks of one event are not independent (a busy event loses several), so the
intervals resample whole events with replacement and recompute the pooled rates each time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from trackrt.metrics.tracking import TrackingMetrics

RATES: dict[str, tuple[str, str]] = {
    "efficiency": ("matched_dm", "targets"),
    "efficiency_perfect": ("matched_perfect", "targets"),
    "fake_rate": ("fake", "fake_considered"),
}
COUNT_COLUMNS = ("targets", "matched_dm", "matched_perfect", "fake", "fake_considered")
DEFAULT_RESAMPLES = 2000
DEFAULT_LEVEL = 0.95


def has_event_ids(metrics: TrackingMetrics) -> bool:
    """Whether both tables say which event each row came from (`combine_metrics` with event ids)."""
    return "event_id" in metrics.particle_table.columns and "event_id" in metrics.track_table.columns


def per_event_counts(metrics: TrackingMetrics) -> pd.DataFrame:
    """Targets, DM / perfect matches, fake and fake-considered tracks per event (index `event_id`)."""
    particles, tracks = metrics.particle_table, metrics.track_table
    for name, table in (("particle_table", particles), ("track_table", tracks)):
        if "event_id" not in table.columns:
            raise ValueError(f"{name}: no event_id column (combine the events with their event_ids)")
    targets = particles["target"].astype(bool)
    by_particle = pd.DataFrame(
        {
            "event_id": particles["event_id"],
            "targets": targets.astype(int),
            "matched_dm": (particles["matched_dm"].astype(bool) & targets).astype(int),
            "matched_perfect": (particles["matched_perfect"].astype(bool) & targets).astype(int),
        }
    ).groupby("event_id").sum()
    by_track = pd.DataFrame(
        {
            "event_id": tracks["event_id"],
            "fake": tracks["fake"].astype(int),
            "fake_considered": tracks["fake_considered"].astype(int),
        }
    ).groupby("event_id").sum()
    counts = by_particle.join(by_track, how="outer").fillna(0).astype(int)
    counts.index.name = "event_id"
    return counts[list(COUNT_COLUMNS)]


def bootstrap_weights(events: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, events) counts of how often each event is drawn in each resample."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, events, size=(resamples, events))
    flat = (draws + events * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * events).reshape(resamples, events)


def resampled_rates(counts: pd.DataFrame, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each pooled rate, and DM efficiency − fake rate, in every resample (NaN where undefined)."""
    rates: dict[str, np.ndarray] = {}
    for name, (numerator, denominator) in RATES.items():
        num = weights @ counts[numerator].to_numpy(dtype=float)
        den = weights @ counts[denominator].to_numpy(dtype=float)
        rates[name] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    rates["efficiency_minus_fake"] = rates["efficiency"] - rates["fake_rate"]
    return rates


def point_rates(counts: pd.DataFrame) -> dict[str, float]:
    """The pooled rates of all events (the point estimates the intervals surround)."""
    rates = resampled_rates(counts, np.ones((1, len(counts))))
    return {name: float(values[0]) for name, values in rates.items()}


def event_bootstrap(
    counts: pd.DataFrame,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, Any] | None:
    """Percentile intervals of the pooled rates over events drawn with replacement (None below 2 events).

    `counts`: one row per event, as `per_event_counts` gives.
    """
    _check(resamples, level)
    if len(counts) < 2:
        return None
    rates = resampled_rates(counts, bootstrap_weights(len(counts), resamples, seed))
    return {
        "events": len(counts),
        "resamples": resamples,
        "level": level,
        "seed": seed,
        "intervals": {name: _interval(values, level) for name, values in rates.items()},
    }


def paired_difference(
    baseline: pd.DataFrame,
    candidate: pd.DataFrame,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """Candidate − baseline for each rate on the same events, with a paired event-bootstrap interval.

    Both per-event count tables (`per_event_counts`) must cover the same event ids; each resample draws
    the same events for both, so what the two chains share (the events' difficulty) cancels out.
    """
    _check(resamples, level)
    a = baseline
    if set(a.index) != set(candidate.index):
        unshared = sorted(set(a.index) ^ set(candidate.index))[:5]
        raise ValueError(f"paired_difference: the two metrics cover different events (e.g. {unshared})")
    if len(a) < 2:
        raise ValueError(f"paired_difference: {len(a)} event(s); at least 2 are needed")
    b = candidate.loc[a.index]
    weights = bootstrap_weights(len(a), resamples, seed)
    ra, rb = resampled_rates(a, weights), resampled_rates(b, weights)
    pa, pb = point_rates(a), point_rates(b)
    out: dict[str, Any] = {"events": len(a), "resamples": resamples, "level": level, "seed": seed}
    out["rates"] = {}
    for name in ra:
        diff = rb[name] - ra[name]
        finite = diff[np.isfinite(diff)]
        out["rates"][name] = {
            "baseline": pa[name],
            "candidate": pb[name],
            "difference": pb[name] - pa[name],
            "interval": _interval(diff, level),
            "share_above_zero": float(np.mean(finite > 0)) if len(finite) else None,
        }
    return out


def counts_from_records(records: list[dict[str, Any]], source: str) -> pd.DataFrame:
    """The per-event count table back from its JSON records (`metrics.json`'s `per_event`)."""
    if not records:
        raise ValueError(f"{source}: per_event is empty")
    table = pd.DataFrame.from_records(records)
    missing = [c for c in ("event_id", *COUNT_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(f"{source}: per_event lacks column(s) {', '.join(missing)}")
    duplicated = table["event_id"][table["event_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"{source}: per_event lists event {duplicated.iloc[0]} twice")
    return table.set_index("event_id")[list(COUNT_COLUMNS)].astype(int)


def _interval(values: np.ndarray, level: float) -> list[float] | None:
    """Central percentile interval of the finite values (None when there are none)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def _check(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples: {resamples}; must be at least 1")
    if not 0 < level < 1:
        raise ValueError(f"level: {level}; must lie strictly between 0 and 1")
