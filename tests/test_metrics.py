"""Tracking metrics on a hand-built event whose every number is worked out by hand (DESIGN §7)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackrt.metrics import (
    binned_metrics,
    binomial_interval,
    combine_metrics,
    evaluate_tracks,
    plot_metrics,
    score_event,
    write_metrics_json,
)
from trackrt.metrics.majority import majority_particles
from trackrt.metrics.plots import plot_scan

# particle id -> (hits, pT [GeV], η); all targets at pT ≥ 1 GeV except 9 (pT), 13 (η) and 14 (hits)
PARTICLES = {
    1: (6, 2.0, 0.3),
    2: (8, 2.0, -1.0),
    3: (10, 5.0, 0.5),
    4: (5, 2.0, 1.2),
    5: (5, 2.0, 1.3),
    6: (6, 2.0, -2.0),
    7: (4, 2.0, 2.5),
    8: (4, 5.0, 0.1),
    9: (5, 0.5, 0.2),
    10: (4, 2.0, -0.5),
    11: (5, 2.0, 0.7),
    12: (4, 2.0, 3.0),
    13: (4, 2.0, 4.2),
    14: (2, 2.0, 0.0),
}
N_NOISE = 3


def hand_event() -> tuple[pd.DataFrame, pd.DataFrame, dict[int, list[int]]]:
    """Truth (one unit weight per particle hit), particles, and the hit ids of each particle (0 = noise)."""
    rows, hit_ids, next_id = [], {}, 1
    for particle_id, (n_hits, _, _) in {**PARTICLES, 0: (N_NOISE, 0, 0)}.items():
        hit_ids[particle_id] = list(range(next_id, next_id + n_hits))
        rows += [(h, particle_id, 0.0 if particle_id == 0 else 1.0) for h in hit_ids[particle_id]]
        next_id += n_hits
    truth = pd.DataFrame(rows, columns=["hit_id", "particle_id", "weight"])
    ids = list(PARTICLES)
    pt = np.array([PARTICLES[i][1] for i in ids])
    eta = np.array([PARTICLES[i][2] for i in ids])
    particles = pd.DataFrame(
        {"particle_id": ids, "px": pt, "py": np.zeros(len(ids)), "pz": pt * np.sinh(eta)}
    )
    return truth, particles, hit_ids


def hand_tracks(hit_ids: dict[int, list[int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Perfect, split, merged, noise-dominated, non-target, short and low-score tracks."""
    h = hit_ids
    tracks = {
        101: h[1],  # perfect
        102: h[2][:4],  # P2 split 4 / 4: recall 0.5 each, LHC matches, the second a duplicate
        103: h[2][4:],
        104: h[3][:6],  # P3 split 6 / 4: the 6 is DM, the 4 an LHC duplicate and a DM fake
        105: h[3][6:],
        106: h[4] + h[5],  # merged 5 + 5: tie -> P4, precision 0.5, fake
        107: h[6] + h[7][:2],  # merged 6 + 2: precision 0.75 -> DM but not LHC (> 0.75)
        108: h[0] + h[8][:1],  # noise-dominated: fake
        109: h[8][1:],  # P8: precision 1, recall 0.75 -> DM, LHC, not perfect
        110: h[9],  # non-target particle: left out of the fake rate
        111: h[10][:2],  # two hits: invalid
        112: h[11],  # classifier score 0.3: invalid
        113: h[12],  # classifier score exactly 0.5: valid, perfect
    }
    frame = pd.DataFrame(
        [(hit, track_id) for track_id, hits in tracks.items() for hit in hits], columns=["hit_id", "track_id"]
    )
    scores = pd.DataFrame({"track_id": list(tracks), "score": [0.9] * 11 + [0.3, 0.5]})
    return frame, scores


@pytest.fixture
def evaluated():
    truth, particles, hit_ids = hand_event()
    tracks, scores = hand_tracks(hit_ids)
    return evaluate_tracks(tracks, truth, particles, pt_min=1.0, track_scores=scores)


def test_efficiencies(evaluated) -> None:
    counts = evaluated.counts
    assert counts["target_particles"] == 11  # 1-8, 10, 11, 12
    assert counts["matched_particles_dm"] == 5  # 1, 3, 6, 8, 12
    assert counts["matched_particles_perfect"] == 2  # 1, 12
    assert counts["matched_particles_lhc"] == 5  # 1, 2, 3, 8, 12
    assert evaluated.efficiency == pytest.approx(5 / 11)
    assert evaluated.efficiency_perfect == pytest.approx(2 / 11)
    assert evaluated.efficiency_lhc == pytest.approx(5 / 11)
    matched = evaluated.particle_table.set_index("particle_id")["matched_dm"]
    assert sorted(matched[matched].index) == [1, 3, 6, 8, 9, 12]  # 9 matches but is no target


def test_combine_metrics_sums_counts_and_recomputes_rates(evaluated) -> None:
    truth, particles, hit_ids = hand_event()
    perfect = pd.DataFrame(
        [(h, pid) for pid, hits in hit_ids.items() if pid for h in hits], columns=["hit_id", "track_id"]
    )
    second = evaluate_tracks(perfect, truth, particles, pt_min=1.0)
    combined = combine_metrics([evaluated, second])
    assert combined.counts["target_particles"] == 22
    assert combined.efficiency == pytest.approx((5 + 11) / 22)
    assert combined.fake_rate == pytest.approx(5 / (10 + second.counts["fake_considered_tracks"]))
    assert combined.trackml_score == pytest.approx((evaluated.trackml_score + second.trackml_score) / 2)
    assert len(combined.track_table) == len(evaluated.track_table) + len(second.track_table)
    assert combine_metrics([]) is None


def test_fake_rate_leaves_out_non_target_tracks(evaluated) -> None:
    counts = evaluated.counts
    assert counts["tracks"] == 13 and counts["valid_tracks"] == 11
    assert counts["fake_considered_tracks"] == 10  # valid tracks minus 110 (non-target particle)
    assert counts["fake_tracks"] == 5  # 102, 103, 105, 106, 108
    assert counts["noise_dominated_tracks"] == 1
    assert evaluated.fake_rate == pytest.approx(0.5)
    table = evaluated.track_table.set_index("track_id")
    assert sorted(table.index[table["fake"]]) == [102, 103, 105, 106, 108]
    assert not table.loc[110, "fake_considered"] and table.loc[110, "dm"]


def test_duplicates(evaluated) -> None:
    table = evaluated.track_table.set_index("track_id")
    assert evaluated.counts["matched_tracks_dm"] == 5 and evaluated.duplicate_rate == 0.0
    assert evaluated.counts["matched_tracks_lhc"] == 7  # 101, 102, 103, 104, 105, 109, 113
    assert sorted(table.index[table["duplicate_lhc"]]) == [103, 105]
    assert evaluated.duplicate_rate_lhc == pytest.approx(2 / 7)


def test_track_table_matching(evaluated) -> None:
    table = evaluated.track_table.set_index("track_id")
    assert table.loc[106, "particle_id"] == 4  # tie 5 / 5 goes to the lower id
    assert table.loc[106, "precision"] == 0.5 and not table.loc[106, "dm"]
    assert table.loc[107, ["precision", "recall"]].tolist() == [0.75, 1.0]
    assert table.loc[107, "dm"] and not table.loc[107, "lhc"] and not table.loc[107, "perfect"]
    assert table.loc[108, "particle_id"] == 0 and table.loc[108, "recall"] == 0.0
    assert table.loc[109, ["precision", "recall"]].tolist() == [1.0, 0.75]
    assert not table.loc[111, "valid"] and not table.loc[112, "valid"] and table.loc[113, "valid"]
    assert table.loc[104, "dm"] and not table.loc[104, "perfect"] and table.loc[104, "recall"] == 0.6


def test_trackml_score_of_valid_tracks(evaluated) -> None:
    # good tracks (> 50 % both ways): 101 (6), 104 (6), 107 (6 of P6), 109 (3), 110 (5), 113 (4)
    # out of 72 weighted (non-noise) hits
    assert evaluated.trackml_score == pytest.approx(30 / 72)


def test_selection_cuts() -> None:
    truth, particles, hit_ids = hand_event()
    tracks, scores = hand_tracks(hit_ids)
    loose = evaluate_tracks(
        tracks, truth, particles, pt_min=0.4, eta_max=5.0, min_hits=2, track_scores=scores
    )
    assert loose.counts["target_particles"] == 14
    assert loose.counts["fake_considered_tracks"] == 11
    no_scores = evaluate_tracks(tracks, truth, particles)
    assert no_scores.counts["valid_tracks"] == 12  # only the two-hit track is invalid
    strict = evaluate_tracks(tracks, truth, particles, track_scores=scores, min_track_hits=5)
    assert strict.counts["valid_tracks"] == 5  # 101, 104, 106, 107, 110 (112 has 5 hits but score 0.3)


def test_pixel_only_counts_pixel_hits() -> None:
    truth = pd.DataFrame({"hit_id": [1, 2, 3, 4, 5, 6, 7], "particle_id": [1, 1, 1, 1, 1, 2, 2]})
    hits = pd.DataFrame({"hit_id": [1, 2, 3, 4, 5, 6, 7], "volume_id": [8, 8, 9, 13, 14, 8, 7]})
    particles = pd.DataFrame({"particle_id": [1, 2], "px": [2.0, 2.0], "py": [0.0, 0.0], "pz": [0.0, 0.0]})
    tracks = pd.DataFrame({"hit_id": [1, 2, 3], "track_id": [0, 0, 0]})
    everywhere = evaluate_tracks(tracks, truth, particles)
    pixel = evaluate_tracks(tracks, truth, particles, hits=hits)
    assert everywhere.particle_table["nhits"].tolist() == [5, 2]
    assert pixel.particle_table["nhits"].tolist() == [3, 2]
    assert everywhere.efficiency == 1.0 and everywhere.track_table.loc[0, "recall"] == 0.6
    assert pixel.efficiency == 1.0 and pixel.counts["matched_particles_perfect"] == 1
    assert pixel.selection.pixel_only and not everywhere.selection.pixel_only
    with pytest.raises(ValueError, match="outside the pixel volumes"):
        evaluate_tracks(
            pd.DataFrame({"hit_id": [1, 2, 4], "track_id": [0, 0, 0]}), truth, particles, hits=hits
        )
    with pytest.raises(ValueError, match="full hit table"):
        evaluate_tracks(tracks, truth, particles, hits=hits.iloc[:5])


@pytest.mark.parametrize(
    ("tracks", "scores", "message"),
    [
        (pd.DataFrame({"hit_id": [1, 2, 2], "track_id": [0, 0, 1]}), None, "share a hit id"),
        (pd.DataFrame({"hit_id": [1, 2, 999], "track_id": [0, 0, 0]}), None, "not in truth"),
        (pd.DataFrame({"hit": [1], "track_id": [0]}), None, r"lacks required column\(s\) \['hit_id'\]"),
        (pd.DataFrame({"hit_id": [1, 2], "track_id": [0.0, 1.5]}), None, "must be integers"),
        (
            pd.DataFrame({"hit_id": [1], "track_id": [0]}),
            pd.DataFrame({"track_id": [0, 0], "score": [1.0, 0.2]}),
            "repeated track ids",
        ),
        (
            pd.DataFrame({"hit_id": [1, 2, 3], "track_id": [0, 0, 1]}),
            pd.DataFrame({"track_id": [0], "score": [1.0]}),
            "1 tracks have no score",
        ),
    ],
)
def test_bad_tracks_are_refused(tracks, scores, message) -> None:
    truth, particles, _ = hand_event()
    with pytest.raises(ValueError, match=message):
        evaluate_tracks(tracks, truth, particles, track_scores=scores)


def test_truth_particles_missing_from_particles_are_refused() -> None:
    truth, particles, hit_ids = hand_event()
    tracks, _ = hand_tracks(hit_ids)
    with pytest.raises(ValueError, match="1 truth particle ids are not in particles"):
        evaluate_tracks(tracks, truth, particles[particles["particle_id"] != 14])


def test_unassigned_hits_are_ignored() -> None:
    truth, particles, hit_ids = hand_event()
    tracks = pd.DataFrame({"hit_id": truth["hit_id"], "track_id": -1})
    tracks.loc[tracks["hit_id"].isin(hit_ids[1]), "track_id"] = 5
    metrics = evaluate_tracks(tracks, truth, particles)
    assert metrics.counts["tracks"] == 1 and metrics.counts["matched_particles_perfect"] == 1


def test_majority_ties_go_to_the_lower_particle_id() -> None:
    assigned = pd.DataFrame({"track_id": [7, 7, 7, 7, 8, 8, 8], "particle_id": [9, 3, 9, 3, 0, 4, 4]})
    table = majority_particles(assigned)
    assert table[["track_id", "nhits", "particle_id", "overlap"]].values.tolist() == [
        [7, 4, 3, 2],
        [8, 3, 4, 2],
    ]


def test_binned_metrics(evaluated) -> None:
    by_pt = binned_metrics(evaluated, "pt", edges=[1.0, 3.0, 10.0])
    # pT 5 GeV: targets P3, P8 (both DM-matched); the other nine targets are at 2 GeV
    assert by_pt["target_particles"].tolist() == [9, 2]
    assert by_pt["matched_particles_dm"].tolist() == [3, 2]
    assert by_pt["efficiency"].tolist() == pytest.approx([3 / 9, 1.0])
    # tracks binned by majority particle: 108 is noise-dominated, so it is in no bin
    assert by_pt["fake_considered_tracks"].tolist() == [6, 3]
    assert by_pt["fake_tracks"].tolist() == [3, 1]
    assert by_pt["duplicate_rate_lhc"].tolist() == pytest.approx([1 / 4, 1 / 3])
    assert by_pt["trackml_score"].tolist() == pytest.approx([16 / 53, 9 / 14])
    by_eta = binned_metrics(evaluated, "eta")
    assert by_eta["low"].iloc[0] == -4.0 and by_eta["high"].iloc[-1] == 4.0 and len(by_eta) == 16
    assert by_eta["target_particles"].sum() == 11
    low, high = by_eta["efficiency_low"].to_numpy(), by_eta["efficiency_high"].to_numpy()
    filled = by_eta["target_particles"].to_numpy() > 0
    assert np.all(low[filled] <= by_eta["efficiency"].to_numpy()[filled])
    assert np.all(by_eta["efficiency"].to_numpy()[filled] <= high[filled])
    assert np.isnan(by_eta["efficiency"].to_numpy()[~filled]).all()
    with pytest.raises(ValueError, match="strictly increasing"):
        binned_metrics(evaluated, "pt", edges=[1.0, 1.0])


def test_clopper_pearson_interval() -> None:
    alpha = 1 - 0.6827
    low, high = binomial_interval(np.array([0, 10, 4]), np.array([10, 10, 0]))
    assert low[0] == 0.0 and high[0] == pytest.approx(1 - (alpha / 2) ** (1 / 10))
    assert high[1] == 1.0 and low[1] == pytest.approx((alpha / 2) ** (1 / 10))
    assert np.isnan(low[2]) and np.isnan(high[2])


def test_json_report(evaluated, tmp_path: Path) -> None:
    path = write_metrics_json(evaluated, tmp_path / "out" / "metrics.json", pt_edges=[1.0, 3.0, 10.0])
    report = json.loads(path.read_text())
    assert report["overall"]["efficiency"] == pytest.approx(5 / 11)
    assert report["overall"]["counts"]["fake_tracks"] == 5
    assert report["overall"]["selection"]["pt_min"] == 1.0
    assert [row["target_particles"] for row in report["binned"]["pt"]] == [9, 2]
    empty_bin = next(row for row in report["binned"]["eta"] if row["target_particles"] == 0)
    assert empty_bin["efficiency"] is None


def test_plots_are_written(evaluated, tmp_path: Path) -> None:
    paths = plot_metrics(evaluated, tmp_path, label="hand event")
    assert sorted(p.name for p in paths) == [
        "efficiency_vs_eta.png",
        "efficiency_vs_pt.png",
        "fake_rate_vs_eta.png",
        "fake_rate_vs_pt.png",
    ]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_scan_plot_draws_an_efficiency_and_a_fake_line_per_curve(tmp_path: Path) -> None:
    curves = {"a": ([0.5, 0.7, 0.8], [0.3, 0.2, 0.1]), "b": ([0.4, 0.5, 0.6], [0.2, 0.2, 0.2])}
    path = plot_scan(tmp_path / "scan.png", [0.99, 0.95, 0.9], curves, "x", "t", ("purity", [0.3, 0.5, 0.7]))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_fast_on_an_event_sized_input() -> None:
    rng = np.random.default_rng(3)
    n_hits, n_particles = 60_000, 12_000
    particle_id = rng.integers(1, n_particles + 1, n_hits)
    particle_id[rng.random(n_hits) < 0.1] = 0
    truth = pd.DataFrame(
        {"hit_id": np.arange(1, n_hits + 1), "particle_id": particle_id, "weight": rng.random(n_hits)}
    )
    particles = pd.DataFrame(
        {
            "particle_id": np.arange(1, n_particles + 1),
            **{c: rng.normal(0, 1, n_particles) for c in ("px", "py", "pz")},
        }
    )
    track_id = np.where(particle_id % 6 == 0, particle_id, -1)
    track_id[rng.random(n_hits) < 0.05] = -1
    tracks = pd.DataFrame({"hit_id": truth["hit_id"], "track_id": track_id})
    assert 1500 < tracks.loc[tracks["track_id"] >= 0, "track_id"].nunique() < 2500
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        evaluate_tracks(tracks, truth, particles, pt_min=0.6)
        best = min(best, time.perf_counter() - start)
    assert best < 1.0


def test_imports_without_torch() -> None:
    code = (
        "import sys, trackrt.data.trackml, trackrt.metrics; "
        "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_score_event_is_the_same_function(evaluated) -> None:
    truth, _, hit_ids = hand_event()
    tracks, _ = hand_tracks(hit_ids)
    assert score_event(truth, tracks) == pytest.approx((30 + 5) / 72)  # + P11's track, unscored here
