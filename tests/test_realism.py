"""The realism report on a tiny simulated directory and the real sample event."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from trackrt.data.cli import sim_report
from trackrt.data.realism import TARGETS, collect_statistics, event_statistics, realism_table, write_report
from trackrt.data.simulate import SimulationConfig, simulate_events
from trackrt.data.trackml import read_event


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, trackml_dir):
    out = tmp_path_factory.mktemp("tiny")
    simulate_events(SimulationConfig(pileup=8.0, detector=str(trackml_dir)), out, 2, seed=3, progress=False)
    return out


def test_statistics_of_real_sample_event(trackml_dir):
    stats = event_statistics(read_event(trackml_dir / "event000000001"))
    # The reduced real event: 2,783 pixel hits, 6.3 hits and 4.5 layers per particle, 29 % double hits.
    assert stats.scalars["pixel_hits"] == 2783
    assert stats.scalars["hits_per_particle"] == pytest.approx(6.29, abs=0.01)
    assert stats.scalars["layers_per_particle"] == pytest.approx(4.46, abs=0.01)
    assert stats.scalars["double_hit_fraction"] == pytest.approx(0.291, abs=0.001)
    assert sum(stats.layer_shares.values()) == pytest.approx(1.0)


def test_table_flags_targets(tiny_dir, trackml_dir):
    simulated = collect_statistics(tiny_dir)
    table = realism_table(simulated, collect_statistics(trackml_dir)).set_index("statistic")
    assert set(TARGETS) <= set(table.index)
    # At <mu> = 8 the event is far too small for the <mu> = 200 hit-count target.
    assert table.loc["pixel_hits", "pass"] == "FAIL"
    assert table.loc["double_hit_fraction", "pass"] == "PASS"
    assert table.loc["hits_per_particle", "real_sample"] == pytest.approx(6.29, abs=0.01)


def test_write_report_json_and_plots(tiny_dir, trackml_dir, tmp_path):
    write_report(tiny_dir, trackml_dir, tmp_path)
    document = json.loads((tmp_path / "realism.json").read_text())
    assert document["events"] == [1, 2]
    assert document["all_targets_pass"] is False
    assert len(document["layer_shares"]) == 18
    for name in ("pt_spectrum.png", "hits_per_particle.png", "layer_shares.png"):
        assert (tmp_path / name).stat().st_size > 5000


def test_cli_sim_report_exit_code(tiny_dir, trackml_dir, tmp_path):
    result = CliRunner().invoke(
        sim_report, [str(tiny_dir), "--reference", str(trackml_dir), "--out", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "double_hit_fraction" in result.output and "FAIL" in result.output


@pytest.mark.slow
def test_two_pileup_200_events_meet_all_targets(tmp_path, trackml_dir):
    simulate_events(
        SimulationConfig(pileup=200.0, detector=str(trackml_dir)), tmp_path, 2, seed=7, progress=False
    )
    table = realism_table(collect_statistics(tmp_path), [])
    assert (table.loc[table["pass"] != "", "pass"] == "PASS").all(), table.to_string()
