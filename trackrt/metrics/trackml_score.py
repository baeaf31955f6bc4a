"""The TrackML challenge score with the semantics of the official `trackml.score.score_event`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackrt.metrics.majority import majority_particles, require_columns


def score_event(truth: pd.DataFrame, submission: pd.DataFrame) -> float:
    """TrackML score of `submission[hit_id, track_id]` against `truth[hit_id, particle_id, weight]`.

    Each track's majority particle (noise included, ties to the lower id) counts when it holds more
    than half of the track's hits and the track holds more than half of the particle's truth hits;
    the score is the weight of those majority hits over the total truth weight (summed in float64).
    Truth hits missing from the submission, or with track_id −1, are single-hit tracks (as in the
    official code, where unassigned hits never group together).
    """
    require_columns(truth, "truth", ("hit_id", "particle_id", "weight"))
    require_columns(submission, "submission", ("hit_id", "track_id"))
    submission = _checked_submission(submission, truth)
    truth = truth[["hit_id", "particle_id", "weight"]].astype({"weight": np.float64})
    total_weight = float(truth["weight"].sum())
    if total_weight <= 0:
        raise ValueError("truth weights sum to zero; the TrackML score is undefined")
    event = truth.merge(submission[["hit_id", "track_id"]], on="hit_id", how="left", validate="one_to_one")
    unassigned = event["track_id"].isna() | (event["track_id"] == -1)
    track_id = event["track_id"].where(~unassigned, 0).to_numpy(np.int64, copy=True)
    first_free = min(int(track_id.min(initial=0)), -1) - 1
    track_id[unassigned.to_numpy()] = first_free - np.arange(int(unassigned.sum()))
    event["track_id"] = track_id

    tracks = majority_particles(event[["track_id", "particle_id", "weight"]])
    particle_nhits = truth["particle_id"].value_counts()
    purity_track = tracks["overlap"] / tracks["nhits"]
    purity_particle = tracks["overlap"] / tracks["particle_id"].map(particle_nhits)
    good = (purity_track > 0.5) & (purity_particle > 0.5)
    return float(tracks.loc[good, "overlap_weight"].sum() / total_weight)


def _checked_submission(submission: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Refuse repeated hit ids, hits unknown to truth and non-integer track ids."""
    if not pd.api.types.is_integer_dtype(submission["track_id"]):
        raise ValueError(f"submission.track_id must be integers, not {submission['track_id'].dtype}")
    repeated = submission["hit_id"].duplicated(keep=False)
    if repeated.any():
        raise ValueError(
            f"submission assigns {int(repeated.sum())} rows to hit ids that appear more than once"
        )
    unknown = ~submission["hit_id"].isin(truth["hit_id"])
    if unknown.any():
        raise ValueError(f"submission has {int(unknown.sum())} hit ids that are not in truth")
    return submission
