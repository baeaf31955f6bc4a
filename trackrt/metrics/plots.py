"""PNG plots of efficiency and fake rate versus particle pT and η (matplotlib, Agg canvas, no pyplot)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trackrt.metrics.binning import binned_metrics
from trackrt.metrics.tracking import TrackingMetrics

_AXIS_LABELS = {"pt": r"$p_\mathrm{T}$ [GeV]", "eta": r"$\eta$"}
_AXIS_OWNER = {"efficiency": "target particle", "fake rate": "majority particle"}
_EFFICIENCIES = (
    ("efficiency", "DM"),
    ("efficiency_lhc", "LHC (precision > 0.75)"),
    ("efficiency_perfect", "perfect"),
)


def plot_metrics(
    metrics: TrackingMetrics,
    directory: str | Path,
    pt_edges: Sequence[float] | None = None,
    eta_edges: Sequence[float] | None = None,
    label: str = "",
) -> list[Path]:
    """Write efficiency_vs_{pt,eta}.png and fake_rate_vs_{pt,eta}.png into `directory`; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    selection = metrics.selection
    title = (
        f"{label + ': ' if label else ''}pT ≥ {selection.pt_min:g} GeV, |η| ≤ {selection.eta_max:g}, "
        f"≥ {selection.min_hits} {'pixel ' if selection.pixel_only else ''}hits"
    )
    written = []
    for variable, edges in (("pt", pt_edges), ("eta", eta_edges)):
        table = binned_metrics(metrics, variable, edges)
        for kind, series in (("efficiency", _EFFICIENCIES), ("fake_rate", (("fake_rate", "fake rate"),))):
            path = directory / f"{kind}_vs_{variable}.png"
            _plot_rates(table, variable, series, kind.replace("_", " "), title, path)
            written.append(path)
    return written


def _plot_rates(
    table: pd.DataFrame, variable: str, series: Sequence[tuple[str, str]], ylabel: str, title: str, path: Path
) -> None:
    """One errorbar curve per (column, legend) in `series` against bin centres of `variable`."""
    figure = Figure(figsize=(6.4, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    axes: Axes = figure.add_subplot()
    centre = 0.5 * (table["low"] + table["high"]).to_numpy()
    half_width = 0.5 * (table["high"] - table["low"]).to_numpy()
    for column, legend in series:
        value = table[column].to_numpy()
        low_col, high_col = f"{column}_low", f"{column}_high"
        if low_col in table.columns:
            yerr = np.vstack([value - table[low_col].to_numpy(), table[high_col].to_numpy() - value])
        else:
            yerr = None
        axes.errorbar(
            centre, value, xerr=half_width, yerr=yerr, fmt="o", markersize=4, capsize=2, label=legend
        )
    if variable == "pt":
        axes.set_xscale("log")
    axes.set_xlabel(f"{_AXIS_OWNER[ylabel]} {_AXIS_LABELS[variable]}")
    axes.set_ylabel(ylabel)
    axes.set_ylim(bottom=0.0, top=1.05 if ylabel == "efficiency" else None)
    axes.grid(alpha=0.3)
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=120)


def plot_scan(
    path: str | Path,
    x: Sequence[float],
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    xlabel: str,
    title: str,
    reference: tuple[str, Sequence[float]] | None = None,
    invert_x: bool = False,
) -> Path:
    """DM efficiency (solid) and fake rate (dashed) per named curve against a scanned setting `x`.

    `reference` adds one more dotted black line (e.g. the hit filter's purity). Returns the PNG's path.
    """
    figure = Figure(figsize=(7, 4), layout="constrained")
    FigureCanvasAgg(figure)
    axes: Axes = figure.add_subplot()
    for name, (efficiency, fake_rate) in curves.items():
        (line,) = axes.plot(x, efficiency, marker="o", label=f"{name} DM eff")
        axes.plot(x, fake_rate, marker="x", ls="--", color=line.get_color(), label=f"{name} fake")
    if reference is not None:
        axes.plot(x, reference[1], color="k", ls=":", label=reference[0])
    axes.set_xlabel(xlabel)
    axes.set_ylim(0, 1)
    if invert_x:
        axes.invert_xaxis()
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7)
    axes.set_title(title, fontsize=9)
    figure.savefig(path, dpi=120)
    return Path(path)
