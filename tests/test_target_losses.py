"""Where the chain loses target particles: one hand-built event per stage, fixed queries, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from trackrt.metrics.target_losses import (
    STAGES,
    stage_counts,
    stage_counts_by_vertex_radius,
    target_loss_stages,
)

#                      p1: half kept   p2: unseeded  p3: invalid  p4: no DM  p5: found  noise  p9: non-target
HIT_PARTICLE = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 0, 9, 9, 9])
KEPT = np.array([1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=bool)
TARGETS = np.array([5, 4, 3, 2, 1])  # any order


def test_each_target_gets_the_first_stage_it_fails() -> None:
    table = target_loss_stages(
        HIT_PARTICLE, TARGETS, KEPT, found_particle_id=np.array([5, 9]),
        query_hits=np.array([0, 8, 10, 17]), valid_query_hits=np.array([0, 10, 17]),
    )  # fmt: skip
    assert table["particle_id"].tolist() == [1, 2, 3, 4, 5]
    assert table["stage"].tolist() == ["filter", "seed", "valid", "tracks", "found"]
    assert table["nhits"].tolist() == [4, 3, 3, 3, 3] and table["kept_hits"].tolist() == [2, 3, 3, 3, 3]
    assert stage_counts(table) == dict.fromkeys(STAGES, 1)


def test_fixed_queries_skip_the_seed_and_valid_stages() -> None:
    table = target_loss_stages(HIT_PARTICLE, TARGETS, KEPT, found_particle_id=np.array([5]))
    assert table["stage"].tolist() == ["filter", "tracks", "tracks", "tracks", "found"]
    assert stage_counts(table) == {"filter": 1, "seed": 0, "valid": 0, "tracks": 3, "found": 1}


def test_a_found_particle_counts_as_found_whatever_seeded_it() -> None:
    elsewhere = np.array([17])
    table = target_loss_stages(HIT_PARTICLE, [2], KEPT, [2], query_hits=elsewhere, valid_query_hits=elsewhere)
    assert table["stage"].tolist() == ["found"]


def test_no_targets_and_mismatched_shapes() -> None:
    empty = target_loss_stages(HIT_PARTICLE, [], KEPT, found_particle_id=[])
    assert len(empty) == 0 and stage_counts(empty) == dict.fromkeys(STAGES, 0)
    with pytest.raises(ValueError, match="kept: expected shape"):
        target_loss_stages(HIT_PARTICLE, TARGETS, KEPT[:-1], found_particle_id=[])


def test_stage_counts_by_vertex_radius() -> None:
    table = target_loss_stages(
        HIT_PARTICLE, TARGETS, KEPT, found_particle_id=np.array([5, 9]),
        query_hits=np.array([0, 8, 10, 17]), valid_query_hits=np.array([0, 10, 17]),
    )  # fmt: skip
    # p1, p2 made at the beam line (p1 exactly at 0), p3 at 5 mm, p4 at 60 mm, p5 at 300 mm
    table = table.assign(vx=[0.0, 0.01, 3.0, 0.0, 300.0], vy=[0.0, 0.0, 4.0, -60.0, 0.0])
    rows = stage_counts_by_vertex_radius(table)
    assert [(row["low"], row["high"], row["particles"]) for row in rows] == [
        (0.0, 1.0, 2), (1.0, 10.0, 1), (10.0, 50.0, 0), (50.0, 100.0, 1), (100.0, None, 1),
    ]  # fmt: skip
    assert rows[0]["stages"] == {"filter": 1, "seed": 1, "valid": 0, "tracks": 0, "found": 0}
    assert rows[1]["stages"]["valid"] == 1 and rows[3]["stages"]["tracks"] == 1
    assert rows[4]["stages"]["found"] == 1
    assert stage_counts_by_vertex_radius(table.drop(columns=["vx"])) == []
