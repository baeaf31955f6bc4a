"""Per-track majority particle: the particle sharing most hits with a track (ties to the lower id)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd


def require_columns(frame: pd.DataFrame, name: str, columns: Iterable[str]) -> None:
    """Raise ValueError naming `name` and the columns it lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks required column(s) {missing}; it has {list(frame.columns)}")


def majority_particles(assigned: pd.DataFrame) -> pd.DataFrame:
    """Majority particle of each track from rows `[track_id, particle_id(, weight)]`, one per hit.

    Returns one row per track, sorted by track_id: `track_id`, `nhits` (track size), `particle_id`
    (majority; noise, id 0, competes like any particle; ties go to the lower id), `overlap` (hits
    of that particle on the track) and, when `weight` is given, `overlap_weight` (their weight sum).
    """
    aggregations = {"overlap": ("particle_id", "size")}
    if "weight" in assigned.columns:
        aggregations["overlap_weight"] = ("weight", "sum")
    pairs = assigned.groupby(["track_id", "particle_id"], sort=False).agg(**aggregations).reset_index()
    pairs = pairs.sort_values(["track_id", "overlap", "particle_id"], ascending=[True, False, True])
    majority = pairs.drop_duplicates("track_id", keep="first").set_index("track_id")
    majority.insert(0, "nhits", assigned.groupby("track_id").size())
    return majority.reset_index()
