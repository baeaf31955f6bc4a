"""Per-event input checks: each problem gives its error record, and the other events still run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trackrt.runtime import (
    CheckConfig,
    EventError,
    InputCheckError,
    ReconstructionResult,
    Tracker,
    check_hits,
)
from trackrt.runtime.synthetic import SyntheticModel, synthetic_event, write_synthetic_artifact

CONFIG = CheckConfig(max_r_mm=200.0, max_abs_z_mm=1600.0, max_hits=500)


@pytest.fixture(scope="module")
def hits() -> pd.DataFrame:
    return synthetic_event(num_particles=20, num_noise_hits=10, seed=2).hits


def _broken(hits: pd.DataFrame, problem: str) -> pd.DataFrame:
    """A copy of `hits` with one kind of problem on a few rows."""
    bad = hits.copy()
    if problem == "missing_columns":
        return bad.drop(columns=["z"])
    if problem == "empty_event":
        return bad.iloc[:0]
    if problem == "non_finite":
        bad.loc[[0, 5], "x"] = np.nan
        bad.loc[7, "z"] = np.inf
        return bad
    if problem == "duplicate_hit_ids":
        bad.loc[[1, 2, 3], "hit_id"] = bad.loc[0, "hit_id"]
        return bad
    if problem == "invalid_hit_ids":
        bad["hit_id"] = bad["hit_id"].astype(float)
        bad.loc[[4, 6], "hit_id"] = [np.nan, 2.5]
        return bad
    if problem == "outside_detector":
        bad.loc[[0, 1], "x"] = 250.0
        bad.loc[2, "z"] = -1700.0
        return bad
    if problem == "on_beam_axis":
        bad.loc[3, ["x", "y"]] = 0.0
        return bad
    if problem == "too_many_hits":
        extra = bad.sample(n=CONFIG.max_hits - len(bad) + 5, replace=True, random_state=0)
        extra = extra.assign(hit_id=np.arange(len(extra)) + 10_000)
        return pd.concat([bad, extra], ignore_index=True)
    raise ValueError(problem)


EXPECTED_BAD_ROWS = {
    "missing_columns": None,
    "empty_event": 0,
    "non_finite": 3,
    "duplicate_hit_ids": 4,
    "invalid_hit_ids": 2,
    "outside_detector": 3,
    "on_beam_axis": 1,
    "too_many_hits": 5,
}


@pytest.mark.parametrize("problem", sorted(EXPECTED_BAD_ROWS))
def test_each_check_gives_its_record(hits, problem):
    broken = _broken(hits, problem)
    errors = check_hits(broken, 42, CONFIG)
    assert [e.check for e in errors] == [problem]
    error = errors[0]
    assert error.event_id == 42 and error.stage == "input_check" and error.message
    expected = EXPECTED_BAD_ROWS[problem]
    if expected is None:
        assert "z" in error.message
    else:
        assert error.bad_rows == expected
    record = error.to_record()
    assert record == {
        "event_id": 42,
        "check": problem,
        "message": error.message,
        "bad_rows": error.bad_rows,
        "stage": "input_check",
    }


def test_clean_event_passes_and_problems_accumulate(hits):
    assert check_hits(hits, 1, CONFIG) == []
    both = _broken(_broken(hits, "non_finite"), "duplicate_hit_ids")
    assert [e.check for e in check_hits(both, 1, CONFIG)] == ["non_finite", "duplicate_hit_ids"]


def test_envelope_is_configurable(hits):
    tight = CheckConfig(max_r_mm=100.0, max_abs_z_mm=1600.0)
    errors = check_hits(hits, 3, tight)
    outer = int((np.hypot(hits.x, hits.y) > 100.0).sum())
    assert [(e.check, e.bad_rows) for e in errors] == [("outside_detector", outer)]


@pytest.fixture(scope="module")
def tracker(tmp_path_factory):
    directory = write_synthetic_artifact(tmp_path_factory.mktemp("checks"), SyntheticModel(max_hits=500))
    with Tracker.load(directory) as loaded:
        yield loaded


def test_artifact_limit_sets_max_hits(tracker, hits):
    assert tracker.chain.checks.max_hits == 500
    assert tracker.warmup(num_hits=800, repeats=1)["total"] > 0  # synthetic warm-up skips the checks
    with pytest.raises(InputCheckError, match="too_many_hits") as caught:
        tracker.reconstruct(_broken(hits, "too_many_hits"), event_id=9)
    assert caught.value.event_id == 9
    assert [e.check for e in caught.value.errors] == ["too_many_hits"]


def test_bad_events_fail_alone(tracker, hits):
    problems = sorted(EXPECTED_BAD_ROWS)
    events = [(100, hits)] + [(101 + i, _broken(hits, p)) for i, p in enumerate(problems)] + [(200, hits)]
    events.append((201, np.zeros((4, 2))))
    outcomes = list(tracker.reconstruct_many(events, workers=2))
    assert len(outcomes) == len(events)
    assert isinstance(outcomes[0], ReconstructionResult) and isinstance(outcomes[-2], ReconstructionResult)
    assert outcomes[0].event_id == 100 and outcomes[-2].event_id == 200
    for (event_id, _), problem, outcome in zip(events[1:-2], problems, outcomes[1:-2], strict=True):
        assert isinstance(outcome, list) and all(isinstance(e, EventError) for e in outcome)
        assert [(e.event_id, e.check) for e in outcome] == [(event_id, problem)]
    assert [e.check for e in outcomes[-1]] == ["invalid_input"]
