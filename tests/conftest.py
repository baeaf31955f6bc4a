"""Shared fixtures: where the TrackML reference files are, and a seeded generator."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def trackml_reference_dir() -> Path | None:
    """The shared TrackML reference files (`../shared/data/trackml` beside the checkout)."""
    candidates = [os.environ.get("TRACKRT_TRACKML_DIR"), REPO_ROOT.parent / "shared" / "data" / "trackml"]
    for c in candidates:
        if c and (Path(c) / "detectors.csv.gz").exists():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def trackml_dir() -> Path:
    path = trackml_reference_dir()
    if path is None:
        pytest.skip("TrackML reference files (../shared/data/trackml) are not present")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
