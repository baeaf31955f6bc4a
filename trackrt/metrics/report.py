"""Tracking metrics as JSON: overall summary plus tables binned in pT and η."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trackrt.metrics.binning import binned_metrics
from trackrt.metrics.tracking import TrackingMetrics
from trackrt.metrics.uncertainty import event_bootstrap, has_event_ids, per_event_counts


def metrics_report(
    metrics: TrackingMetrics,
    pt_edges: Sequence[float] | None = None,
    eta_edges: Sequence[float] | None = None,
) -> dict[str, Any]:
    """JSON-ready dict: `overall` (rates, counts, selection) and `binned` {pt, eta} lists of bin rows.

    With events told apart (an `event_id` column), also `per_event` counts and `event_bootstrap`
    intervals of the pooled rates.
    """
    binned = {
        "pt": _records(binned_metrics(metrics, "pt", pt_edges)),
        "eta": _records(binned_metrics(metrics, "eta", eta_edges)),
    }
    report: dict[str, Any] = {"overall": metrics.summary(), "binned": binned}
    if has_event_ids(metrics):
        counts = per_event_counts(metrics)
        report["per_event"] = _records(counts.reset_index())
        report["event_bootstrap"] = event_bootstrap(counts)
    return json_ready(report)


def write_metrics_json(
    metrics: TrackingMetrics,
    path: str | Path,
    pt_edges: Sequence[float] | None = None,
    eta_edges: Sequence[float] | None = None,
) -> Path:
    """Write `metrics_report` to `path` (NaN rates, e.g. no targets in a bin, become null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    report = metrics_report(metrics, pt_edges, eta_edges)
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    return path


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as dicts of plain Python values."""
    return [{k: _plain(v) for k, v in row.items()} for row in table.to_dict(orient="records")]


def json_ready(value: Any) -> Any:
    """Recursively turn numpy scalars into Python values and NaN/inf into None."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return _plain(value)


def _plain(value: Any) -> Any:
    """One scalar as a JSON value."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
