"""Tracking metrics: track-to-particle matching, efficiencies, fake/duplicate rates, TrackML score.

`plot_metrics` is imported on first use, so that importing the metrics does not load matplotlib.
"""

from typing import Any

from trackrt.metrics.binning import binned_metrics, binomial_interval
from trackrt.metrics.report import metrics_report, write_metrics_json
from trackrt.metrics.tracking import Selection, TrackingMetrics, combine_metrics, evaluate_tracks
from trackrt.metrics.trackml_score import score_event

__all__ = [
    "Selection",
    "TrackingMetrics",
    "binned_metrics",
    "binomial_interval",
    "combine_metrics",
    "evaluate_tracks",
    "metrics_report",
    "plot_metrics",
    "score_event",
    "write_metrics_json",
]


def __getattr__(name: str) -> Any:
    """Lazy access to `plot_metrics` (matplotlib)."""
    if name == "plot_metrics":
        from trackrt.metrics.plots import plot_metrics

        return plot_metrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
