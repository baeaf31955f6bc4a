"""Evaluation: metrics plumbing on perfect tracks, pooling, filter threshold and counts, the CLI's outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from trackrt.cli import main
from trackrt.data.features import FeatureConfig
from trackrt.data.samples import make_sample, sample_config, tracker_targets
from trackrt.data.simulate import EventSimulator, SimulationConfig
from trackrt.data.trackml import write_event
from trackrt.metrics import combine_metrics
from trackrt.model.config import preset
from trackrt.train.checkpoint import build_model, save_checkpoint
from trackrt.train.evaluate import (
    evaluate_samples,
    event_metrics,
    predict_tracks,
    seed_statistics,
)
from trackrt.train.filter_metrics import FilterCounts, score_samples
from trackrt.train.losses import hit_filter_loss

SELECTION = sample_config("Pix1.0")


@pytest.fixture(scope="module")
def simulator(trackml_dir: Path) -> EventSimulator:
    return EventSimulator(SimulationConfig(pileup=3, hard_scatter=False, detector=str(trackml_dir)))


@pytest.fixture(scope="module")
def samples(simulator: EventSimulator) -> list:
    return [make_sample(simulator.simulate(event_id, 11), SELECTION) for event_id in (1, 2, 3)]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models run fastest single-threaded on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FixedFilter(torch.nn.Module):
    """A stand-in hit filter whose logit is a fixed function of the hit features."""

    def forward(self, hit_features: torch.Tensor) -> torch.Tensor:
        return 10.0 * hit_features[..., 0] + hit_features[..., 2]


def perfect_tracks(sample) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truth-filter hits and one track per target particle holding exactly its hits."""
    targets = tracker_targets(sample)
    return targets.hit_index, targets.hit_particle, np.ones(len(targets.particle_id), dtype=np.float32)


def test_perfect_tracks_give_full_efficiency(samples: list) -> None:
    for sample in samples:
        metrics = event_metrics(sample, *perfect_tracks(sample), SELECTION)
        assert metrics.counts["target_particles"] == sample.num_targets
        if sample.num_targets:
            assert metrics.efficiency == 1.0 and metrics.efficiency_perfect == 1.0
            assert metrics.fake_rate == 0.0
        assert metrics.selection.pixel_only


def test_dropped_hits_count_against_efficiency(samples: list) -> None:
    sample = next(s for s in samples if s.num_targets >= 2)
    hit_index, track_of_hit, scores = perfect_tracks(sample)
    lost = track_of_hit == 0
    metrics = event_metrics(sample, hit_index[~lost], track_of_hit[~lost], scores, SELECTION)
    assert metrics.counts["matched_particles_dm"] == sample.num_targets - 1
    # Low-scored tracks are not valid tracks.
    low = np.where(np.arange(len(scores)) == 1, 0.2, 1.0).astype(np.float32)
    metrics = event_metrics(sample, hit_index, track_of_hit, low, SELECTION)
    assert metrics.counts["valid_tracks"] == len(scores) - 1


def test_pooling_sums_counts(samples: list) -> None:
    per_event = [event_metrics(s, *perfect_tracks(s), SELECTION) for s in samples]
    ids = [s.event_id for s in samples]
    pooled = combine_metrics(per_event, ids)
    assert pooled.counts["target_particles"] == sum(s.num_targets for s in samples)
    assert pooled.efficiency == 1.0
    with_particles = sorted(s.event_id for s in samples if len(s.particles))
    assert sorted(pooled.particle_table["event_id"].unique()) == with_particles
    single = combine_metrics(per_event[:1], ids[:1])
    assert single.counts == per_event[0].counts and single.trackml_score == per_event[0].trackml_score
    assert combine_metrics([], []) is None


def test_filter_threshold_keeps_the_target_efficiency(samples: list) -> None:
    scores = score_samples(FixedFilter(), samples, torch.device("cpu"))
    threshold = scores.threshold_for_efficiency(0.99)
    assert scores.counts(threshold).efficiency >= 0.99
    assert scores.counts(np.nextafter(threshold, 1.0)).efficiency < 0.99
    assert scores.counts(0.0).efficiency == 1.0
    assert score_samples(FixedFilter(), [], torch.device("cpu")).threshold_for_efficiency(0.99) == 0.5


def test_filter_loss_matches_the_training_loss(samples: list) -> None:
    scores = score_samples(FixedFilter(), samples, torch.device("cpu"))
    expected = [
        float(
            hit_filter_loss(
                FixedFilter()(torch.from_numpy(s.features)[None])[0], torch.from_numpy(s.hit_on_target)
            )
        )
        for s in samples
        if s.num_hits
    ]
    assert scores.mean_loss() == pytest.approx(np.mean(expected), rel=1e-6)


def test_filter_counts_arithmetic() -> None:
    counts = FilterCounts()
    counts.add(np.array([True, True, False, False]), np.array([True, False, True, False]))
    counts.add(np.array([True]), np.array([True]))
    assert (counts.hits, counts.kept_hits, counts.target_hits, counts.kept_target_hits) == (5, 3, 3, 2)
    assert counts.efficiency == pytest.approx(2 / 3) and counts.purity == pytest.approx(2 / 3)
    assert np.isnan(FilterCounts().efficiency)


@pytest.mark.parametrize("variant", ["fq-ma", "dq-ma", "dq-lsca"])
def test_predict_tracks_shapes_and_no_seeds(samples: list, variant: str) -> None:
    torch.manual_seed(0)
    config = preset("tiny", "tracker", overrides={"variant": variant})
    tracker = build_model(config).eval()
    features = tracker_targets(samples[0]).features
    track_of_hit, scores = predict_tracks(tracker, config, features, torch.device("cpu"))
    assert track_of_hit.shape == (len(features),) and track_of_hit.dtype == np.int64
    assert track_of_hit.max(initial=-1) < len(scores)
    empty = predict_tracks(tracker, config, features[:0], torch.device("cpu"))
    assert empty[0].shape == (0,) and empty[1].shape == (0,)
    if variant != "fq-ma":
        no_seeds = preset("tiny", "tracker", overrides={"variant": variant, "seed_threshold": 1.0})
        track_of_hit, scores = predict_tracks(tracker, no_seeds, features, torch.device("cpu"))
        assert len(scores) == 0 and np.all(track_of_hit == -1)


class PerfectSeeds(torch.nn.Module):
    """A tracker stand-in whose seed head fires exactly on the given (first) hits."""

    def __init__(self, first_hits: np.ndarray) -> None:
        super().__init__()
        self.first_hits = torch.from_numpy(first_hits)

    def encode(self, hit_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = torch.full(hit_features.shape[:2], -20.0)
        logits[0, self.first_hits] = 20.0
        return hit_features, logits


def test_seed_statistics(samples: list) -> None:
    sample = next(s for s in samples if s.num_targets >= 2)
    first_hits = tracker_targets(sample).first_hit
    config = preset("tiny", "tracker", overrides={"variant": "dq-ma"})
    stats = seed_statistics(PerfectSeeds(first_hits), config, [sample], torch.device("cpu"))
    assert stats == {"seed_efficiency": 1.0, "queries_per_event": len(first_hits)}
    capped = preset("tiny", "tracker", overrides={"variant": "dq-ma", "max_queries": 1})
    stats = seed_statistics(PerfectSeeds(first_hits), capped, [sample], torch.device("cpu"))
    assert stats["seed_efficiency"] == pytest.approx(1 / len(first_hits))
    learned = preset("tiny", "tracker", overrides={"variant": "fq-ma"})
    assert seed_statistics(PerfectSeeds(first_hits), learned, [sample], torch.device("cpu")) == {}


def test_evaluate_samples_reports_filter_and_both_modes(samples: list) -> None:
    torch.manual_seed(0)
    config = preset("tiny", "tracker")
    evaluation = evaluate_samples(
        samples, build_model(config), config, SELECTION, torch.device("cpu"), FixedFilter(), 0.5
    )
    assert set(evaluation.tracking) == {"tracking_only", "filter_and_tracking"}
    expected = score_samples(FixedFilter(), samples, torch.device("cpu")).counts(0.5)
    assert evaluation.filter_counts == expected
    assert evaluation.event_ids == [s.event_id for s in samples] and evaluation.filter_threshold == 0.5
    for mode, metrics in evaluation.tracking.items():
        losses = evaluation.target_losses[mode]
        assert len(losses) == metrics.counts["target_particles"]
        assert (losses["stage"] == "found").sum() == metrics.counts["matched_particles_dm"]
        for sample in samples:
            rows = losses[losses["event_id"] == sample.event_id].set_index("particle_id")
            truth = sample.particles.set_index("particle_id").loc[rows.index]
            columns = ["pt", "eta", "vx", "vy", "vz"]
            np.testing.assert_allclose(rows[columns], truth[columns])
            assert (rows["pt"] >= SELECTION.pt_min).all()
    assert (evaluation.target_losses["tracking_only"]["stage"] != "filter").all()  # the truth filter


def test_target_losses_follow_the_seeds(samples: list) -> None:
    """Perfect seeds with every query rejected: all target particles are lost at the valid stage."""
    sample = next(s for s in samples if s.num_targets >= 2)
    config = preset("tiny", "tracker", overrides={"variant": "dq-ma", "track_threshold": 1.0})
    tracker = build_model(config).eval()
    encode, seeds = tracker.encode, PerfectSeeds(tracker_targets(sample).first_hit)
    tracker.encode = lambda x: (encode(x)[0], seeds.encode(x)[1])
    evaluation = evaluate_samples([sample], tracker, config, SELECTION, torch.device("cpu"))
    stages = evaluation.target_losses["tracking_only"]["stage"]
    assert len(stages) == sample.num_targets and (stages == "valid").all()


def test_a_filter_with_its_own_features_selects_on_them(samples: list) -> None:
    """The learned filter sees features from its own config, not the tracker's (they may differ)."""
    filter_features = FeatureConfig(r_scale=100.0, xy_scale=100.0)
    config = preset("tiny", "tracker")
    torch.manual_seed(0)
    evaluation = evaluate_samples(
        samples, build_model(config), config, SELECTION, torch.device("cpu"), FixedFilter(), 0.5,
        filter_features=filter_features,
    )  # fmt: skip
    expected = FilterCounts()
    for sample in samples:
        logits = FixedFilter()(torch.from_numpy(sample.features_for(filter_features)))
        expected.add(sample.hit_on_target, logits.numpy() >= 0)
    assert evaluation.filter_counts == expected
    assert evaluation.filter_counts != score_samples(FixedFilter(), samples, torch.device("cpu")).counts(0.5)


def test_evaluate_cli_writes_metrics_and_plots(simulator: EventSimulator, tmp_path: Path) -> None:
    for event_id in (4, 5):
        write_event(tmp_path / "events", simulator.simulate(event_id, 11))
    torch.manual_seed(0)
    tracker_config = preset("tiny", "tracker")
    filter_config = preset("tiny", "hit_filter", overrides={"hit_threshold": 0.4})
    save_checkpoint(
        tmp_path / "tracker", build_model(tracker_config), tracker_config, metadata={"selection": "Pix1.0"}
    )
    save_checkpoint(tmp_path / "filter", build_model(filter_config), filter_config)
    runner = CliRunner()

    def evaluate(out: str):
        arguments = ["evaluate", str(tmp_path / "tracker"), "--events", str(tmp_path / "events")]
        options = ["--filter", str(tmp_path / "filter"), "--out", str(tmp_path / out), "--device", "cpu"]
        result = runner.invoke(main, arguments + options)
        assert result.exit_code == 0, result.output
        return result

    result = evaluate("out")
    assert "tracking_only: DM efficiency" in result.output and "hit filter: efficiency" in result.output
    assert "target particles lost at: filter" in result.output
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    low, high = report["filter_and_tracking"]["event_bootstrap"]["intervals"]["efficiency"]
    assert f"(95 % interval {100 * low:.2f}–{100 * high:.2f} %)" in result.output
    assert [row["event_id"] for row in report["tracking_only"]["per_event"]] == [4, 5]
    assert report["events"] == 2 and report["selection"] == "Pix1.0"
    assert report["hit_filter"]["threshold"] == 0.4
    for mode in ("tracking_only", "filter_and_tracking"):
        assert {"overall", "binned"} <= set(report[mode])
        assert report[mode]["binned"]["pt"] and report[mode]["binned"]["eta"]
        stages = report[mode]["target_losses"]["stages"]
        assert list(stages) == ["filter", "seed", "valid", "tracks", "found"]
        assert sum(stages.values()) == report[mode]["overall"]["counts"]["target_particles"]
        by_radius = report[mode]["target_losses"]["by_vertex_radius"]
        assert sum(row["particles"] for row in by_radius) == sum(stages.values())
        assert by_radius[0]["low"] == 0.0 and by_radius[-1]["high"] is None
        for plot in report[mode]["plots"]:
            assert (tmp_path / "out" / plot).stat().st_size > 0
    assert len(report["tracking_only"]["plots"]) == 4
    table = pd.read_parquet(tmp_path / "out" / report["target_losses_table"])
    for mode in ("tracking_only", "filter_and_tracking"):
        rows = table[table["mode"] == mode]
        assert len(rows) == report[mode]["overall"]["counts"]["target_particles"]
        assert rows["stage"].value_counts().to_dict() == {
            stage: n for stage, n in report[mode]["target_losses"]["stages"].items() if n
        }
    assert {"event_id", "particle_id", "nhits", "kept_hits", "pt", "eta", "vz"} <= set(table.columns)

    tuned = runner.invoke(main, ["thresholds", str(tmp_path / "tracker"), "--set", "filter_threshold=0.3"])
    assert tuned.exit_code == 0, tuned.output
    evaluate("tuned")
    assert json.loads((tmp_path / "tuned" / "metrics.json").read_text())["hit_filter"]["threshold"] == 0.3

    wrong = runner.invoke(main, ["evaluate", str(tmp_path / "filter"), "--events", str(tmp_path / "events")])
    assert wrong.exit_code != 0 and "not a tracker" in wrong.output
