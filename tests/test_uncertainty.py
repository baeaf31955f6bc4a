"""Event-bootstrap intervals and the paired comparison of two chains (`trackrt compare`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from test_metrics import hand_event, hand_tracks

from trackrt.metrics import combine_metrics, evaluate_tracks, write_metrics_json
from trackrt.metrics.cli import compare
from trackrt.metrics.report import metrics_report
from trackrt.metrics.uncertainty import (
    bootstrap_weights,
    counts_from_records,
    event_bootstrap,
    paired_difference,
    per_event_counts,
    point_rates,
)

COLUMNS = ["targets", "matched_dm", "matched_perfect", "fake", "fake_considered"]


def hand_metrics(event_ids=(1, 2)):
    """The hand event of test_metrics twice: once with its hand tracks, once reconstructed perfectly."""
    truth, particles, hit_ids = hand_event()
    tracks, scores = hand_tracks(hit_ids)
    hand = evaluate_tracks(tracks, truth, particles, pt_min=1.0, track_scores=scores)
    perfect_tracks = pd.DataFrame(
        [(h, pid) for pid, hits in hit_ids.items() if pid for h in hits], columns=["hit_id", "track_id"]
    )
    perfect = evaluate_tracks(perfect_tracks, truth, particles, pt_min=1.0)
    return combine_metrics([hand, perfect], list(event_ids)), hand, perfect


def counts_table(rows: dict[int, tuple[int, ...]]) -> pd.DataFrame:
    table = pd.DataFrame.from_dict(rows, orient="index", columns=COLUMNS)
    table.index.name = "event_id"
    return table


def test_per_event_counts_of_the_hand_events() -> None:
    combined, _, perfect = hand_metrics()
    counts = per_event_counts(combined)
    assert list(counts.index) == [1, 2]
    assert counts.loc[1].tolist() == [11, 5, 2, 5, 10]  # worked out in test_metrics
    assert counts.loc[2, "targets"] == 11 and counts.loc[2, "matched_dm"] == 11
    assert counts.loc[2, "fake"] == 0
    assert counts.loc[2, "fake_considered"] == perfect.counts["fake_considered_tracks"]
    rates = point_rates(counts)
    assert rates["efficiency"] == pytest.approx(combined.efficiency)
    assert rates["efficiency_perfect"] == pytest.approx(combined.efficiency_perfect)
    assert rates["fake_rate"] == pytest.approx(combined.fake_rate)
    assert rates["efficiency_minus_fake"] == pytest.approx(combined.efficiency - combined.fake_rate)


def test_per_event_counts_need_event_ids() -> None:
    combined = combine_metrics(list(hand_metrics()[1:]))
    with pytest.raises(ValueError, match="particle_table: no event_id"):
        per_event_counts(combined)


def test_bootstrap_weights_draw_each_resample_of_the_events() -> None:
    weights = bootstrap_weights(events=7, resamples=500, seed=3)
    assert weights.shape == (500, 7)
    assert (weights.sum(axis=1) == 7).all()
    assert np.array_equal(weights, bootstrap_weights(7, 500, seed=3))
    assert not np.array_equal(weights, bootstrap_weights(7, 500, seed=4))
    assert (weights == 0).any() and (weights > 1).any()  # drawn with replacement


def test_two_event_bootstrap_stays_between_the_events() -> None:
    counts = per_event_counts(hand_metrics()[0])
    result = event_bootstrap(counts, resamples=400, level=0.95, seed=1)
    low, high = result["intervals"]["efficiency"]
    # a resample holds event 1 twice (5/11), both (16/22) or event 2 twice (11/11)
    assert 5 / 11 - 1e-12 <= low <= 16 / 22 <= high <= 1 + 1e-12
    assert result["events"] == 2 and result["resamples"] == 400


def test_identical_events_give_a_zero_width_interval() -> None:
    counts = counts_table({e: (100, 90, 80, 3, 95) for e in range(10)})
    interval = event_bootstrap(counts, resamples=200)["intervals"]["efficiency"]
    assert interval == pytest.approx([0.9, 0.9])


def test_one_event_gives_no_interval() -> None:
    assert event_bootstrap(counts_table({1: (10, 9, 9, 0, 9)})) is None


def test_interval_width_matches_binomial_noise() -> None:
    rng = np.random.default_rng(0)
    n_events, per_event, p = 200, 100, 0.9
    matched = rng.binomial(per_event, p, size=n_events)
    counts = counts_table({e: (per_event, int(m), int(m), 1, 100) for e, m in enumerate(matched)})
    low, high = event_bootstrap(counts, resamples=2000, level=0.95, seed=0)["intervals"]["efficiency"]
    expected = 2 * 1.96 * np.sqrt(p * (1 - p) / (n_events * per_event))
    assert low < matched.sum() / (n_events * per_event) < high
    assert 0.75 * expected < high - low < 1.25 * expected


def test_paired_difference_of_a_chain_with_itself_is_zero() -> None:
    counts = per_event_counts(hand_metrics()[0])
    result = paired_difference(counts, counts.copy(), resamples=100)
    for row in result["rates"].values():
        assert row["difference"] == 0
        assert row["interval"] == [0.0, 0.0]
        assert row["share_above_zero"] == 0


def test_paired_difference_sees_a_small_gain_in_every_event() -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(80, 95, size=60)
    baseline = counts_table({e: (100, int(m), int(m), 2, 100) for e, m in enumerate(base)})
    candidate = counts_table({e: (100, int(m) + 1, int(m), 2, 100) for e, m in enumerate(base)})
    row = paired_difference(baseline, candidate, resamples=500)["rates"]["efficiency"]
    assert row["difference"] == pytest.approx(0.01)
    # pairing cancels the events' spread: every resample shows the same +1 per event
    assert row["interval"] == pytest.approx([0.01, 0.01])
    assert row["share_above_zero"] == 1
    unpaired = event_bootstrap(baseline)["intervals"]["efficiency"]
    assert unpaired[1] - unpaired[0] > 0.01  # the events alone spread wider than the gain


def test_paired_difference_refuses_other_events() -> None:
    a = counts_table({1: (10, 9, 9, 0, 9), 2: (10, 8, 8, 1, 9)})
    b = counts_table({1: (10, 9, 9, 0, 9), 3: (10, 8, 8, 1, 9)})
    with pytest.raises(ValueError, match="different events"):
        paired_difference(a, b)
    with pytest.raises(ValueError, match="at least 2"):
        paired_difference(a.iloc[:1], a.iloc[:1])
    with pytest.raises(ValueError, match="level"):
        paired_difference(a, a, level=1.0)


def test_report_carries_per_event_counts_and_intervals_only_with_event_ids() -> None:
    combined, hand, perfect = hand_metrics()
    report = metrics_report(combined)
    assert [row["event_id"] for row in report["per_event"]] == [1, 2]
    interval = report["event_bootstrap"]["intervals"]["efficiency"]
    assert interval[0] <= report["overall"]["efficiency"] <= interval[1]
    assert counts_from_records(report["per_event"], "x").equals(per_event_counts(combined))
    plain = metrics_report(combine_metrics([hand, perfect]))
    assert "per_event" not in plain and "event_bootstrap" not in plain


def test_counts_from_records_names_the_problem() -> None:
    with pytest.raises(ValueError, match=r"m\.json: per_event lacks column"):
        counts_from_records([{"event_id": 1, "targets": 3}], "m.json")
    row = dict(zip(["event_id", *COLUMNS], [1, 3, 2, 2, 0, 2], strict=True))
    with pytest.raises(ValueError, match="lists event 1 twice"):
        counts_from_records([row, row], "m.json")


def write_evaluate_json(path: Path, metrics) -> Path:
    """A metrics.json shaped like `trackrt evaluate`'s: one report per mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {"events": 2, "filter_and_tracking": metrics_report(metrics)}
    path.write_text(json.dumps(report))
    return path


def test_compare_command_prints_and_writes_the_difference(tmp_path: Path) -> None:
    combined, _, perfect = hand_metrics()
    better = combine_metrics([perfect, perfect], [1, 2])
    baseline = write_evaluate_json(tmp_path / "a" / "metrics.json", combined)
    candidate = write_evaluate_json(tmp_path / "b" / "metrics.json", better)
    out = tmp_path / "cmp.json"
    result = CliRunner().invoke(
        compare, [str(baseline.parent), str(candidate), "--resamples", "200", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "2 events, 200 resamples, 95 % intervals (filter_and_tracking)" in result.output
    assert "efficiency_minus_fake" in result.output
    written = json.loads(out.read_text())
    assert written["rates"]["efficiency"]["difference"] == pytest.approx(1 - 16 / 22)
    assert written["rates"]["efficiency"]["share_above_zero"] == pytest.approx(
        np.mean(bootstrap_weights(2, 200, 0)[:, 0] > 0)
    )


def test_compare_command_reads_a_run_metrics_json_and_refuses_bad_input(tmp_path: Path) -> None:
    combined, hand, perfect = hand_metrics()
    run_json = write_metrics_json(combined, tmp_path / "run" / "metrics.json")
    same = CliRunner().invoke(compare, [str(run_json), str(run_json), "--resamples", "50"])
    assert same.exit_code == 0, same.output
    no_mode = CliRunner().invoke(
        compare, [str(write_evaluate_json(tmp_path / "e.json", combined)), str(run_json), "--mode", "x"]
    )
    assert no_mode.exit_code != 0 and "no mode 'x' (it has filter_and_tracking)" in no_mode.output
    old = write_metrics_json(combine_metrics([hand, perfect]), tmp_path / "old" / "metrics.json")
    stale = CliRunner().invoke(compare, [str(old), str(run_json)])
    assert stale.exit_code != 0 and "no per_event counts" in stale.output
    other = write_metrics_json(combine_metrics([hand, perfect], [1, 7]), tmp_path / "o" / "metrics.json")
    mismatch = CliRunner().invoke(compare, [str(run_json), str(other)])
    assert mismatch.exit_code != 0 and "different events" in mismatch.output
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    unreadable = CliRunner().invoke(compare, [str(broken), str(run_json)])
    assert unreadable.exit_code != 0 and "cannot read metrics JSON" in unreadable.output
