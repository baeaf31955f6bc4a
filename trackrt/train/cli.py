"""`trackrt train` and `trackrt evaluate`: thin wrappers over the training loop and the evaluation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from trackrt.configuration import ConfigError, from_dict


def apply_overrides(data: dict[str, Any], assignments: tuple[str, ...]) -> dict[str, Any]:
    """Apply `dotted.key=value` assignments (values parsed as YAML) to a nested config dict."""
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. tracker.epochs=3")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a mapping")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_train_config(path: str | Path, assignments: tuple[str, ...] = (), out_dir: str | None = None) -> Any:
    """Read a training YAML, apply `--set` overrides and `--out`, and build the typed `TrainConfig`."""
    from trackrt.train.config import TrainConfig

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    data = apply_overrides(data, assignments)
    if out_dir is not None:
        data["out_dir"] = out_dir
    try:
        return from_dict(TrainConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--resume", is_flag=True, help="Continue from each stage's last checkpoint in the output directory."
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set tracker.model.overrides.variant=fq-ma (repeatable).",
)
@click.option("--out", "out_dir", default=None, help="Output directory (overrides out_dir in the config).")
def train(config: Path, resume: bool, assignments: tuple[str, ...], out_dir: str | None) -> None:
    """Train the hit filter and/or tracker described by CONFIG (YAML).

    SIGTERM or Ctrl-C ends a stage after its current step with its last checkpoint saved (exit status
    128 + the signal's number); `--resume` continues from there.
    """
    from trackrt.train.interrupt import StopRequested
    from trackrt.train.loop import train as run_training

    try:
        train_config = load_train_config(config, assignments, out_dir)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        finals = run_training(train_config, resume=resume)
    except StopRequested as stop:
        click.echo(str(stop), err=True)
        sys.exit(stop.exit_code)
    for stage, path in finals.items():
        click.echo(f"{stage}: {path}")
        summary = _stage_summary(path.parent / "metrics.jsonl", path)
        if summary:
            click.echo(f"  {summary}")


def _stage_summary(log_path: Path, checkpoint: Path) -> str:
    """One line with the stage's last validation (tracker) or its threshold calibration (hit filter)."""
    from trackrt.train.checkpoint import read_checkpoint_config
    from trackrt.train.records import read_metrics_log

    calibration = read_checkpoint_config(checkpoint).metadata.get("calibration")
    if calibration:
        return (
            f"threshold {calibration['threshold']:.4g}: target-hit efficiency "
            f"{_percent(calibration['efficiency'])}, purity {_percent(calibration['purity'])}"
        )
    validations = [r for r in read_metrics_log(log_path) if r["type"] == "val"] if log_path.exists() else []
    if not validations or "tracking_only.efficiency" not in validations[-1]:
        return ""
    last = validations[-1]
    return (
        f"validation at step {last['step']}: DM efficiency {_percent(last['tracking_only.efficiency'])}, "
        f"fake rate {_percent(last['tracking_only.fake_rate'])}"
    )


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--events",
    "events_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory of TrackML events (hits, particles, truth).",
)
@click.option(
    "--filter",
    "filter_checkpoint",
    default=None,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Hit-filter checkpoint; adds filter efficiency/purity and filter+tracking metrics.",
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where metrics.json and the plots go (default: CHECKPOINT-evaluation beside it).",
)
@click.option(
    "--selection",
    type=click.Choice(["Pix1.0", "Pix0.6"]),
    default=None,
    help="Target selection (default: the one the tracker was trained for).",
)
@click.option(
    "--max-events", type=click.IntRange(min=1), default=None, help="Evaluate at most this many events."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto")
def evaluate(
    checkpoint: Path,
    events_dir: Path,
    filter_checkpoint: Path | None,
    out_dir: Path | None,
    selection: str | None,
    max_events: int | None,
    device: str,
) -> None:
    """Evaluate a tracker CHECKPOINT on events: metrics JSON (overall + binned) and efficiency/fake plots."""
    from trackrt.train.checkpoint import CheckpointError
    from trackrt.train.evaluate import evaluate_directory

    try:
        path = evaluate_directory(
            checkpoint,
            events_dir,
            filter_checkpoint=filter_checkpoint,
            out_dir=out_dir,
            selection=selection,
            max_events=max_events,
            device=device,
        )
    except (CheckpointError, ConfigError, ValueError, FileNotFoundError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    report = json.loads(path.read_text())
    for mode in ("tracking_only", "filter_and_tracking"):
        if mode in report:
            overall = report[mode]["overall"]
            bootstrap = report[mode].get("event_bootstrap") or {}
            efficiency = _percent(overall["efficiency"]) + _interval(bootstrap, "efficiency")
            fake_rate = _percent(overall["fake_rate"]) + _interval(bootstrap, "fake_rate")
            click.echo(f"{mode}: DM efficiency {efficiency}, fake rate {fake_rate}")
            if "target_losses" in report[mode]:
                shares = dict(report[mode]["target_losses"]["fractions"])
                found = _percent(shares.pop("found"))
                lost = ", ".join(f"{stage} {_percent(share)}" for stage, share in shares.items())
                click.echo(f"  target particles lost at: {lost}; found {found}")
    if "hit_filter" in report:
        hf = report["hit_filter"]
        click.echo(f"hit filter: efficiency {_percent(hf['efficiency'])}, purity {_percent(hf['purity'])}")
    click.echo(f"metrics: {path}")


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="New value of a decision threshold, e.g. --set duplicate_iou=0.5 (repeatable).",
)
def thresholds(checkpoint: Path, assignments: tuple[str, ...]) -> None:
    """Show a CHECKPOINT's decision thresholds, or rewrite them with --set (the weights stay as they are)."""
    from trackrt.train.checkpoint import CheckpointError, read_checkpoint_config, set_thresholds

    try:
        values = apply_overrides({}, assignments)
        info = set_thresholds(checkpoint, values) if values else read_checkpoint_config(checkpoint)
    except (CheckpointError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    for key, value in info.thresholds.items():
        click.echo(f"{key}: {value}")


@click.command()
@click.argument("checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--layers", type=click.IntRange(min=1), help="Encoder layers after growing.")
@click.option("--feature", "feature_changes", multiple=True, metavar="KEY=VALUE",
              help="Feature-config change that adds features (YAML value), e.g. 'triplets={}'; repeatable.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Its directory.")
def grow(checkpoint: Path, layers: int | None, feature_changes: tuple[str, ...], out: Path) -> None:
    """Copy CHECKPOINT deepened (identity encoder layers appended) and/or reading more input features
    (zero weights), with the same outputs, to fine-tune the grown model."""
    from trackrt.train.checkpoint import CheckpointError, read_checkpoint_config
    from trackrt.train.grow import grow_checkpoint

    try:
        changes = apply_overrides({}, feature_changes)
        path = grow_checkpoint(checkpoint, out, layers, changes)
        info = read_checkpoint_config(path)
    except (CheckpointError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    layers_now, width = info.model.encoder.num_layers, info.features.num_features
    click.echo(f"{path}: {layers_now} encoder layers, {width} features")
    click.echo(f"train it with --set STAGE.init_from={path} and the same model overrides: "
               f"encoder.num_layers={layers_now}"
               + "".join(f", features.{key}={value}" for key, value in changes.items()))


@click.command()
@click.argument("checkpoints", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Its directory.")
def average(checkpoints: tuple[Path, ...], out: Path) -> None:
    """Write one checkpoint whose weights are the mean of CHECKPOINTS' (same model; the first one's
    thresholds and metadata)."""
    from trackrt.train.average import average_checkpoints
    from trackrt.train.checkpoint import CheckpointError

    try:
        path = average_checkpoints(list(checkpoints), out)
    except CheckpointError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{path}: mean of {len(checkpoints)} checkpoints' weights")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def _interval(bootstrap: dict[str, Any], rate: str) -> str:
    """' (95 % interval a–b %)' of a rate's event-bootstrap interval, or nothing without one."""
    bounds = bootstrap.get("intervals", {}).get(rate)
    if not bounds:
        return ""
    return f" ({100 * bootstrap['level']:g} % interval {100 * bounds[0]:.2f}–{100 * bounds[1]:.2f} %)"
