"""`trackrt compare`: is one chain better than another on the same events, beyond the events' noise?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pandas as pd

from trackrt.metrics.report import json_ready
from trackrt.metrics.uncertainty import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    counts_from_records,
    paired_difference,
)

METRICS_FILE = "metrics.json"


def load_per_event_counts(path: Path, mode: str) -> pd.DataFrame:
    """Per-event counts from a `trackrt evaluate` or `trackrt run` metrics.json (or its directory)."""
    if path.is_dir():
        path = path / METRICS_FILE
    try:
        report: dict[str, Any] = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise click.BadParameter(f"{path}: cannot read metrics JSON ({error})") from error
    if "overall" not in report:
        modes = [key for key, value in report.items() if isinstance(value, dict) and "overall" in value]
        if mode not in report:
            raise click.BadParameter(f"{path}: no mode {mode!r} (it has {', '.join(modes) or 'none'})")
        report = report[mode]
    if "per_event" not in report:
        raise click.BadParameter(
            f"{path}: no per_event counts (written by trackrt before per-event metrics; evaluate again)"
        )
    try:
        return counts_from_records(report["per_event"], str(path))
    except ValueError as error:
        raise click.BadParameter(str(error)) from error


@click.command()
@click.argument("baseline", type=click.Path(exists=True, path_type=Path))
@click.argument("candidate", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--mode",
    default="filter_and_tracking",
    show_default=True,
    help="Which part of an evaluate metrics.json (filter_and_tracking or tracking_only).",
)
@click.option("--resamples", type=click.IntRange(min=1), default=DEFAULT_RESAMPLES, show_default=True)
@click.option(
    "--level",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=DEFAULT_LEVEL,
    show_default=True,
    help="Confidence level of the intervals.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the comparison as JSON."
)
def compare(
    baseline: Path, candidate: Path, mode: str, resamples: int, level: float, seed: int, out: Path | None
) -> None:
    """CANDIDATE − BASELINE for DM and perfect efficiency, fake rate and DM − fake, with paired
    event-bootstrap intervals (both metrics.json must cover the same events)."""
    try:
        result = paired_difference(
            load_per_event_counts(baseline, mode),
            load_per_event_counts(candidate, mode),
            resamples=resamples,
            level=level,
            seed=seed,
        )
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    result = {"baseline": str(baseline), "candidate": str(candidate), "mode": mode, **result}
    click.echo(f"{result['events']} events, {resamples} resamples, {100 * level:g} % intervals ({mode})")
    header = f"{'rate':24s} {'baseline':>9s} {'candidate':>9s} {'difference':>10s}"
    click.echo(f"{header}   interval           P(>0)")
    for name, row in result["rates"].items():
        low, high = row["interval"] if row["interval"] else (float("nan"), float("nan"))
        share = row["share_above_zero"]
        click.echo(
            f"{name:24s} {100 * row['baseline']:8.2f}% {100 * row['candidate']:8.2f}% "
            f"{100 * row['difference']:+9.2f}   [{100 * low:+.2f}, {100 * high:+.2f}]"
            f"   {'-' if share is None else f'{share:.2f}'}"
        )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(json_ready(result), indent=2, allow_nan=False) + "\n")
        click.echo(f"wrote {out}")
