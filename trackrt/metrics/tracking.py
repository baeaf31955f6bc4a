"""Track-to-particle matching and the tracking metrics of DESIGN §7 (efficiencies, fake and duplicate rates).

Conventions beyond §7, stated once here:
- a track's matched particle is its majority particle with noise (id 0) competing like a particle
  and ties going to the lower id; a tie means precision ≤ 0.5, so ties never change a match;
- noise-dominated valid tracks match no particle and count as fakes; tracks dominated by a
  non-target particle are left out of the fake rate (numerator and denominator);
- duplicates are counted among valid tracks matched to target particles: for each particle the
  best track (highest recall, then precision, then lowest track id) is the match, the others are
  duplicates. With disjoint tracks a particle cannot have two DM matches (each needs > 50 % of its
  hits), so `duplicate_rate` (DM) is 0 unless tracks share hits; `duplicate_rate_lhc`
  (precision > 0.75, no recall condition) is the informative one for split tracks;
- the TrackML score is computed on the valid tracks only, against the evaluated truth.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from trackrt.data.trackml import PIXEL_VOLUMES, particle_kinematics
from trackrt.metrics.majority import majority_particles, require_columns
from trackrt.metrics.trackml_score import score_event

MATCH_CRITERIA: tuple[str, ...] = ("dm", "perfect", "lhc")
VALID_SCORE = 0.5


@dataclasses.dataclass(frozen=True)
class Selection:
    """Target-particle selection and track validity cuts."""

    pt_min: float = 1.0
    eta_max: float = 4.0
    min_hits: int = 3
    min_track_hits: int = 3
    pixel_only: bool = False


@dataclasses.dataclass
class TrackingMetrics:
    """Overall metrics plus the per-track and per-particle tables they are computed from."""

    selection: Selection
    efficiency: float
    efficiency_perfect: float
    efficiency_lhc: float
    fake_rate: float
    duplicate_rate: float
    duplicate_rate_lhc: float
    trackml_score: float | None
    counts: dict[str, int]
    track_table: pd.DataFrame
    particle_table: pd.DataFrame

    def summary(self) -> dict[str, Any]:
        """Selection, rates and counts as plain JSON-ready values (tables left out)."""
        return {
            "selection": dataclasses.asdict(self.selection),
            "efficiency": self.efficiency,
            "efficiency_perfect": self.efficiency_perfect,
            "efficiency_lhc": self.efficiency_lhc,
            "fake_rate": self.fake_rate,
            "duplicate_rate": self.duplicate_rate,
            "duplicate_rate_lhc": self.duplicate_rate_lhc,
            "trackml_score": self.trackml_score,
            "counts": dict(self.counts),
        }


def evaluate_tracks(
    tracks: pd.DataFrame,
    truth: pd.DataFrame,
    particles: pd.DataFrame,
    pt_min: float = 1.0,
    eta_max: float = 4.0,
    min_hits: int = 3,
    track_scores: pd.DataFrame | None = None,
    hits: pd.DataFrame | None = None,
    min_track_hits: int = 3,
) -> TrackingMetrics:
    """Match `tracks[hit_id, track_id]` to truth and compute DESIGN §7 metrics.

    Targets: pT ≥ `pt_min`, |η| ≤ `eta_max`, ≥ `min_hits` truth hits. When `hits` (the event's full hit
    table) is given, truth is first restricted to the pixel volumes, so hit counts and recall are
    pixel-only. Valid tracks have ≥ `min_track_hits` hits and, if `track_scores[track_id, score]` is
    given, score ≥ 0.5. Track hits must be truth hits (of the pixel volumes when `hits` is given).
    """
    selection = Selection(pt_min, eta_max, min_hits, min_track_hits, pixel_only=hits is not None)
    truth = _evaluated_truth(truth, hits)
    particle_table = _particle_table(truth, particles, selection)
    track_table = _track_table(_assigned_hits(tracks, truth), particle_table, track_scores, selection)
    particle_table = _mark_matched_particles(particle_table, track_table)

    targets = particle_table["target"]
    n_targets = int(targets.sum())
    valid = track_table["valid"]
    considered = track_table["fake_considered"]
    counts = {
        "particles": len(particle_table),
        "target_particles": n_targets,
        "tracks": len(track_table),
        "valid_tracks": int(valid.sum()),
        "fake_considered_tracks": int(considered.sum()),
        "fake_tracks": int(track_table["fake"].sum()),
        "noise_dominated_tracks": int((valid & (track_table["particle_id"] == 0)).sum()),
    }
    for criterion in MATCH_CRITERIA:
        matched_targets = particle_table[f"matched_{criterion}"] & targets
        counts[f"matched_particles_{criterion}"] = int(matched_targets.sum())
        counts[f"matched_tracks_{criterion}"] = int((track_table[criterion] & track_table["target"]).sum())
        counts[f"duplicate_tracks_{criterion}"] = int(track_table[f"duplicate_{criterion}"].sum())
    return TrackingMetrics(
        selection=selection,
        efficiency=_ratio(counts["matched_particles_dm"], n_targets),
        efficiency_perfect=_ratio(counts["matched_particles_perfect"], n_targets),
        efficiency_lhc=_ratio(counts["matched_particles_lhc"], n_targets),
        fake_rate=_ratio(counts["fake_tracks"], counts["fake_considered_tracks"]),
        duplicate_rate=_ratio(counts["duplicate_tracks_dm"], counts["matched_tracks_dm"]),
        duplicate_rate_lhc=_ratio(counts["duplicate_tracks_lhc"], counts["matched_tracks_lhc"]),
        trackml_score=_valid_track_score(truth, track_table, tracks),
        counts=counts,
        track_table=track_table,
        particle_table=particle_table,
    )


def _ratio(numerator: int, denominator: int) -> float:
    """numerator / denominator, NaN when the denominator is 0."""
    return numerator / denominator if denominator else float("nan")


def _evaluated_truth(truth: pd.DataFrame, hits: pd.DataFrame | None) -> pd.DataFrame:
    """Truth rows used for evaluation: all, or those of pixel-volume hits when `hits` is given."""
    require_columns(truth, "truth", ("hit_id", "particle_id"))
    if truth["hit_id"].duplicated().any():
        raise ValueError(f"truth has {int(truth['hit_id'].duplicated().sum())} repeated hit ids")
    if "weight" in truth.columns:
        truth = truth.astype({"weight": np.float64})
    if hits is None:
        return truth
    require_columns(hits, "hits", ("hit_id", "volume_id"))
    unknown = ~truth["hit_id"].isin(hits["hit_id"])
    if unknown.any():
        raise ValueError(
            f"{int(unknown.sum())} truth hit ids are not in hits; pass the event's full hit table"
        )
    pixel_ids = hits.loc[hits["volume_id"].isin(PIXEL_VOLUMES), "hit_id"]
    return truth[truth["hit_id"].isin(pixel_ids)]


def _particle_table(truth: pd.DataFrame, particles: pd.DataFrame, selection: Selection) -> pd.DataFrame:
    """One row per particle: particle_id, nhits (evaluated truth hits), pt, eta, phi, weight, target."""
    require_columns(particles, "particles", ("particle_id", "px", "py", "pz"))
    kinematics = particle_kinematics(particles[["particle_id", "px", "py", "pz"]])
    table = kinematics[["particle_id", "pt", "eta", "phi"]].reset_index(drop=True)
    counts = truth.loc[truth["particle_id"] != 0, "particle_id"].value_counts()
    unknown = ~counts.index.isin(table["particle_id"])
    if unknown.any():
        raise ValueError(f"{int(unknown.sum())} truth particle ids are not in particles")
    table.insert(1, "nhits", table["particle_id"].map(counts).fillna(0).astype(np.int64))
    if "weight" in truth.columns:
        weights = truth.groupby("particle_id")["weight"].sum()
        table["weight"] = table["particle_id"].map(weights).fillna(0.0).astype(np.float64)
    table["target"] = (
        (table["pt"] >= selection.pt_min)
        & (table["eta"].abs() <= selection.eta_max)
        & (table["nhits"] >= selection.min_hits)
    )
    return table


def _assigned_hits(tracks: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Rows `[hit_id, track_id, particle_id(, weight)]` per assigned track hit; refuses malformed tracks."""
    require_columns(tracks, "tracks", ("hit_id", "track_id"))
    if not pd.api.types.is_integer_dtype(tracks["track_id"]):
        raise ValueError(f"tracks.track_id must be integers, not {tracks['track_id'].dtype}")
    assigned = tracks.loc[tracks["track_id"] != -1, ["hit_id", "track_id"]]
    repeated = assigned["hit_id"].duplicated(keep=False)
    if repeated.any():
        raise ValueError(
            f"{int(repeated.sum())} track rows share a hit id; a hit belongs to at most one track"
        )
    truth_columns = ["hit_id", "particle_id", *(["weight"] if "weight" in truth.columns else [])]
    merged = assigned.merge(truth[truth_columns], on="hit_id", how="left")
    unknown = merged["particle_id"].isna()
    if unknown.any():
        raise ValueError(
            f"{int(unknown.sum())} track hits are not in truth (or outside the pixel volumes, hits given)"
        )
    return merged.astype({"particle_id": np.int64})


def _track_table(
    assigned: pd.DataFrame,
    particle_table: pd.DataFrame,
    track_scores: pd.DataFrame | None,
    selection: Selection,
) -> pd.DataFrame:
    """One row per track: size, majority particle, precision, recall, validity and match flags."""
    table = majority_particles(assigned.drop(columns="hit_id"))
    by_particle = particle_table.set_index("particle_id")
    table["particle_nhits"] = table["particle_id"].map(by_particle["nhits"]).fillna(0).astype(np.int64)
    for column in ("pt", "eta", "target"):
        table[column] = table["particle_id"].map(by_particle[column])
    table["target"] = table["target"].fillna(False).astype(bool)
    table["precision"] = table["overlap"] / table["nhits"]
    noise = table["particle_id"] == 0
    table["recall"] = (table["overlap"] / table["particle_nhits"].where(~noise)).fillna(0.0)
    table["score"] = _track_score(table["track_id"], track_scores)
    table["valid"] = (table["nhits"] >= selection.min_track_hits) & (table["score"] >= VALID_SCORE)
    real = table["valid"] & ~noise
    table["dm"] = real & (table["precision"] > 0.5) & (table["recall"] > 0.5)
    table["perfect"] = real & (table["precision"] == 1.0) & (table["recall"] == 1.0)
    table["lhc"] = real & (table["precision"] > 0.75)
    table["fake_considered"] = table["valid"] & (noise | table["target"])
    table["fake"] = table["fake_considered"] & ~table["dm"]
    ranked = table.sort_values(["recall", "precision", "track_id"], ascending=[False, False, True])
    for criterion in MATCH_CRITERIA:
        matched = ranked[ranked[criterion] & ranked["target"]]
        duplicate = matched["particle_id"].duplicated(keep="first")
        table[f"duplicate_{criterion}"] = False
        table.loc[duplicate.index[duplicate.to_numpy()], f"duplicate_{criterion}"] = True
    return table


def _track_score(track_ids: pd.Series, track_scores: pd.DataFrame | None) -> pd.Series:
    """Classifier score per track (1.0 when no scores are given); refuses tracks without a score."""
    if track_scores is None:
        return pd.Series(1.0, index=track_ids.index)
    require_columns(track_scores, "track_scores", ("track_id", "score"))
    if track_scores["track_id"].duplicated().any():
        raise ValueError("track_scores has repeated track ids")
    scores = track_ids.map(track_scores.set_index("track_id")["score"])
    if scores.isna().any():
        raise ValueError(f"{int(scores.isna().sum())} tracks have no score in track_scores")
    return scores.astype(np.float64)


def _mark_matched_particles(particle_table: pd.DataFrame, track_table: pd.DataFrame) -> pd.DataFrame:
    """Add `matched_<criterion>` and `n_tracks_<criterion>` (valid tracks matching it) per particle."""
    table = particle_table.copy()
    for criterion in MATCH_CRITERIA:
        per_particle = track_table.loc[track_table[criterion], "particle_id"].value_counts()
        table[f"n_tracks_{criterion}"] = table["particle_id"].map(per_particle).fillna(0).astype(np.int64)
        table[f"matched_{criterion}"] = table[f"n_tracks_{criterion}"] > 0
    return table


def _valid_track_score(truth: pd.DataFrame, track_table: pd.DataFrame, tracks: pd.DataFrame) -> float | None:
    """TrackML score of the valid tracks against the evaluated truth; None without truth weights."""
    if "weight" not in truth.columns or float(truth["weight"].sum()) <= 0:
        return None
    valid_ids = track_table.loc[track_table["valid"], "track_id"]
    submission = tracks.loc[tracks["track_id"].isin(valid_ids), ["hit_id", "track_id"]]
    return score_event(truth, submission)


def combine_metrics(
    per_event: Sequence[TrackingMetrics], event_ids: Sequence[int] | None = None
) -> TrackingMetrics | None:
    """One `TrackingMetrics` for several events (None for none): counts summed, rates recomputed.

    Tables are stacked, with an `event_id` column when `event_ids` are given. The TrackML score is the
    mean of the per-event scores (the challenge's convention).
    """
    if not per_event:
        return None
    if event_ids is not None and len(event_ids) != len(per_event):
        raise ValueError(f"event_ids: {len(event_ids)} ids for {len(per_event)} events")
    counts: dict[str, int] = {}
    for metrics in per_event:
        for key, value in metrics.counts.items():
            counts[key] = counts.get(key, 0) + int(value)

    def ratio(numerator: str, denominator: str) -> float:
        return counts[numerator] / counts[denominator] if counts[denominator] else math.nan

    def stacked(table: str) -> pd.DataFrame:
        tables = [getattr(m, table) for m in per_event]
        if event_ids is not None:
            tables = [frame.assign(event_id=e) for frame, e in zip(tables, event_ids, strict=True)]
        return pd.concat(tables, ignore_index=True)

    scores = [m.trackml_score for m in per_event if m.trackml_score is not None]
    return dataclasses.replace(
        per_event[0],
        efficiency=ratio("matched_particles_dm", "target_particles"),
        efficiency_perfect=ratio("matched_particles_perfect", "target_particles"),
        efficiency_lhc=ratio("matched_particles_lhc", "target_particles"),
        fake_rate=ratio("fake_tracks", "fake_considered_tracks"),
        duplicate_rate=ratio("duplicate_tracks_dm", "matched_tracks_dm"),
        duplicate_rate_lhc=ratio("duplicate_tracks_lhc", "matched_tracks_lhc"),
        trackml_score=float(np.mean(scores)) if scores else None,
        counts=counts,
        track_table=stacked("track_table"),
        particle_table=stacked("particle_table"),
    )
