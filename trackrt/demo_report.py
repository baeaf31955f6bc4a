"""The demo's printed report: one plain-text table per decoder variant, then where the outputs are."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trackrt.demo_pipeline import SUMMARY_FILE, DemoResult

METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("DM eff", "efficiency"),
    ("perfect", "efficiency_perfect"),
    ("fake", "fake_rate"),
    ("dup", "duplicate_rate"),
)
LATENCY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("features", "features"),
    ("filter", "hit_filter"),
    ("encoder", "encoder"),
    ("seeding", "seeding"),
    ("decoder", "decoder"),
    ("post", "post_processing"),
)


def _percent(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{100.0 * value:.1f}%"


def _score(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _ms(value: float) -> str:
    return f"{value:.1f}"


def table_rows(result: DemoResult) -> list[list[str]]:
    """Header plus one row per variant: metrics, then mean latency per stage (ms), `other` and total."""
    header = ["decoder", *(h for h, _ in METRIC_COLUMNS), "TrackML", "|"]
    header += [*(h for h, _ in LATENCY_COLUMNS), "other", "total ms"]
    rows = [header]
    for run in result.runs:
        metrics, timings = run.summary.metrics, run.summary.mean_timings_ms
        row = [run.variant]
        if metrics is None:
            row += ["n/a"] * (len(METRIC_COLUMNS) + 1)
        else:
            row += [_percent(getattr(metrics, key)) for _, key in METRIC_COLUMNS]
            row.append(_score(metrics.trackml_score))
        row.append("|")
        if timings:
            shown = [timings.get(key, 0.0) for _, key in LATENCY_COLUMNS]
            other = timings["total"] - sum(shown)
            row += [*(_ms(v) for v in shown), _ms(other), _ms(timings["total"])]
        else:
            row += ["n/a"] * (len(LATENCY_COLUMNS) + 2)
        rows.append(row)
    return rows


def format_table(rows: list[list[str]]) -> str:
    """Columns right-aligned to their widest cell (the first left-aligned), two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            row[0].ljust(widths[0]),
            *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _selection_line(result: DemoResult) -> str:
    metrics = next((run.summary.metrics for run in result.runs if run.summary.metrics is not None), None)
    targets = "" if metrics is None else f", {metrics.counts['target_particles']} target particles"
    sel = None if metrics is None else metrics.selection
    cuts = (
        f"pT >= {result.pt_min:g} GeV"
        if sel is None
        else (f"pT >= {sel.pt_min:g} GeV, |eta| <= {sel.eta_max:g}, >= {sel.min_hits} pixel hits")
    )
    return (
        f"{result.config.events} simulated event(s) at <mu> = {result.pileup:g} ({result.pileup_source}), "
        f"seed {result.config.seed}; targets: {cuts}{targets}"
    )


def _backend_line(result: DemoResult) -> str:
    backend: dict[str, Any] = result.runs[0].summary.backend if result.runs else {}
    threads = backend.get("threads") or "default"
    name, device = backend.get("backend", "?"), backend.get("device", "?")
    return (
        f"latency: mean per event after warm-up, {name} on {device} ({threads} threads); "
        "'other' = input checks, helix fit, sorting and bookkeeping"
    )


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def format_report(result: DemoResult) -> str:
    """The whole printed report: context, the table, failures if any, and where every output is."""
    out = result.config.out_dir
    lines = [_selection_line(result), "", format_table(table_rows(result)), "", _backend_line(result)]
    for run in result.runs:
        if run.summary.failed:
            errors = run.run_dir / "errors.jsonl"
            lines.append(f"{run.variant}: {run.summary.failed} event(s) failed, see {errors}")
    names = [run.variant for run in result.runs]
    variants = names[0] if len(names) == 1 else "{" + ",".join(names) + "}"
    runs = f"{_relative(out / 'runs', Path.cwd())}/{variants}"
    lines += [
        "",
        f"summary      {_relative(out / SUMMARY_FILE, Path.cwd())}",
        f"plots        {runs}/plots/{{efficiency,fake_rate}}_vs_{{pt,eta}}.png",
        f"submissions  {runs}/eventNNNNNNNNN-submission.csv (+ -tracks.csv helix parameters)",
        f"metrics      {runs}/metrics.json (binned in pT and eta), run.json, timings.jsonl",
        f"ONNX         {_relative(out / 'artifacts', Path.cwd())}/{variants}/",
        f"events       {_relative(result.events_dir, Path.cwd())}/",
        f"done in {result.elapsed_s:.0f} s",
    ]
    return "\n".join(lines)
