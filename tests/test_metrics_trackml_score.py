"""TrackML score on the real sample: truth scores 1, and degraded submissions match an independent count."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackrt.data.trackml import read_event
from trackrt.metrics import score_event


def reference_score(truth: pd.DataFrame, submission: pd.DataFrame) -> float:
    """The official rule written out with plain dictionaries (unassigned hits are single-hit tracks)."""
    particle_of = dict(zip(truth["hit_id"].tolist(), truth["particle_id"].tolist(), strict=True))
    weight_of = dict(zip(truth["hit_id"].tolist(), truth["weight"].tolist(), strict=True))
    particle_size = Counter(particle_of.values())
    track_of = dict(zip(submission["hit_id"].tolist(), submission["track_id"].tolist(), strict=True))
    members: dict[object, list[int]] = defaultdict(list)
    for hit in particle_of:
        track = track_of.get(hit, -1)
        members[("alone", hit) if track == -1 else track].append(hit)
    collected = 0.0
    for hits in members.values():
        per_particle = Counter(particle_of[h] for h in hits)
        top = max(per_particle.values())
        major = min(p for p, n in per_particle.items() if n == top)
        if 2 * top > len(hits) and 2 * top > particle_size[major]:
            collected += sum(weight_of[h] for h in hits if particle_of[h] == major)
    return collected / sum(weight_of.values())


@pytest.fixture(scope="module")
def truth(trackml_dir: Path) -> pd.DataFrame:
    return read_event(trackml_dir / "event000000001", parts=("truth",)).truth


def reassign(truth: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """Truth as tracks, with a random `fraction` of hits moved to a random existing track."""
    track_id = truth["particle_id"].to_numpy().copy()
    moved = rng.random(len(track_id)) < fraction
    track_id[moved] = rng.choice(np.unique(track_id), int(moved.sum()))
    return pd.DataFrame({"hit_id": truth["hit_id"], "track_id": track_id})


def test_truth_as_submission_scores_one(truth: pd.DataFrame, rng: np.random.Generator) -> None:
    submission = truth[["hit_id"]].assign(track_id=truth["particle_id"])
    assert score_event(truth, submission) == pytest.approx(1.0, abs=1e-6)
    labels = truth["particle_id"].unique()
    relabel = dict(zip(labels, rng.permutation(len(labels)) + 17, strict=True))
    shuffled = submission.assign(track_id=submission["track_id"].map(relabel)).sample(
        frac=1.0, random_state=5
    )
    assert score_event(truth, shuffled) == pytest.approx(1.0, abs=1e-6)


def test_truth_without_noise_hits_in_tracks_scores_one(truth: pd.DataFrame) -> None:
    real = truth[truth["particle_id"] != 0]
    submission = real[["hit_id"]].assign(track_id=real["particle_id"])
    assert score_event(truth, submission) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_randomly_reassigned_hits(truth: pd.DataFrame, rng: np.random.Generator, fraction: float) -> None:
    submission = reassign(truth, fraction, rng)
    expected = reference_score(truth, submission)
    assert 0.0 < expected < 1.0
    assert score_event(truth, submission) == pytest.approx(expected, rel=1e-9)


def test_scores_fall_as_more_hits_are_moved(truth: pd.DataFrame) -> None:
    scores = [
        score_event(truth, reassign(truth, f, np.random.default_rng(11))) for f in (0.02, 0.1, 0.3, 0.6)
    ]
    assert all(a > b for a, b in itertools.pairwise(scores))


def test_everything_in_one_track_scores_zero(truth: pd.DataFrame) -> None:
    submission = truth[["hit_id"]].assign(track_id=0)
    # the largest group (noise, 829 of 5527 hits) is far from a majority of the track
    assert reference_score(truth, submission) == 0.0
    assert score_event(truth, submission) == 0.0


def test_every_hit_its_own_track(truth: pd.DataFrame) -> None:
    submission = truth[["hit_id"]].assign(track_id=np.arange(len(truth)))
    # a single-hit track counts only for a single-hit particle, and those weigh 0 in TrackML
    single_hit = truth["particle_id"].map(truth["particle_id"].value_counts()) == 1
    expected = truth.loc[single_hit, "weight"].sum() / truth["weight"].sum()
    assert expected == 0.0
    assert score_event(truth, submission) == pytest.approx(expected)


def test_unassigned_hits_are_single_hit_tracks() -> None:
    truth = pd.DataFrame(
        {"hit_id": [1, 2, 3, 4], "particle_id": [5, 6, 6, 0], "weight": [1.0, 1.0, 1.0, 0.0]}
    )
    absent = pd.DataFrame({"hit_id": [2], "track_id": [3]})
    minus_one = pd.DataFrame({"hit_id": [1, 2, 3, 4], "track_id": [-1, 3, -1, -1]})
    # particle 5 (one hit) counts as its own track; particle 6 is split 1 / 1 and scores nothing
    for submission in (absent, minus_one):
        assert score_event(truth, submission) == pytest.approx(1 / 3)
        assert reference_score(truth, submission) == pytest.approx(1 / 3)


def test_half_of_a_particle_is_not_enough() -> None:
    truth = pd.DataFrame(
        {"hit_id": [1, 2, 3, 4, 5], "particle_id": [1, 1, 1, 1, 2], "weight": [0.25] * 4 + [0.0]}
    )
    assert score_event(truth, pd.DataFrame({"hit_id": [1, 2], "track_id": [0, 0]})) == 0.0
    assert score_event(truth, pd.DataFrame({"hit_id": [1, 2, 3, 5], "track_id": [0, 0, 0, 0]})) == 0.75
    assert score_event(truth, pd.DataFrame({"hit_id": [1, 2, 3, 5, 4], "track_id": [0, 0, 0, 0, 1]})) == 0.75


@pytest.mark.parametrize(
    ("submission", "message"),
    [
        (pd.DataFrame({"hit_id": [1, 1], "track_id": [0, 1]}), "more than once"),
        (pd.DataFrame({"hit_id": [1, 99], "track_id": [0, 1]}), "not in truth"),
        (pd.DataFrame({"hit_id": [1], "track": [0]}), "lacks required column"),
        (pd.DataFrame({"hit_id": [1], "track_id": [0.5]}), "must be integers"),
    ],
)
def test_bad_submissions_are_refused(submission: pd.DataFrame, message: str) -> None:
    truth = pd.DataFrame({"hit_id": [1, 2], "particle_id": [1, 1], "weight": [0.5, 0.5]})
    with pytest.raises(ValueError, match=message):
        score_event(truth, submission)
