"""`trackrt export` and `trackrt validate`: thin click wrappers over the exporter and the validator."""

from __future__ import annotations

from pathlib import Path

import click

from trackrt.export.config import DEFAULT_OPSET, MIN_OPSET


def _check_opset(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value < MIN_OPSET:
        raise click.BadParameter(f"opset {value} is below {MIN_OPSET}, the lowest this export supports")
    return value


@click.command()
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Artifact directory to create (artifact.json + ONNX graphs).",
)
@click.option(
    "--filter-checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Hit-filter checkpoint; adds hit_filter.onnx to the artifact.",
)
@click.option(
    "--lsca",
    "lsca_mode",
    type=click.Choice(["plugin", "onnx"]),
    default="plugin",
    show_default=True,
    help="plugin: trackrt::LocalStridedCrossAttention nodes (+ .trt.onnx copies); onnx: standard ops.",
)
@click.option(
    "--opset",
    type=int,
    default=DEFAULT_OPSET,
    show_default=True,
    callback=_check_opset,
    help=f"ONNX opset (≥ {MIN_OPSET}).",
)
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--verbose", is_flag=True, help="Print every check's detail, not only failures.")
def export(
    checkpoint: Path,
    out_dir: Path,
    filter_checkpoint: Path | None,
    lsca_mode: str,
    opset: int,
    force: bool,
    verbose: bool,
) -> None:
    """Export a tracker CHECKPOINT (and a hit filter) to checked ONNX graphs for ONNX Runtime and TensorRT."""
    from trackrt.export.config import ExportOptions
    from trackrt.export.exporter import ExportError, export_artifact
    from trackrt.export.graph_checks import echo_reports

    options = ExportOptions(lsca_mode=lsca_mode, opset=opset)  # type: ignore[arg-type]
    try:
        summary = export_artifact(
            checkpoint,
            out_dir,
            filter_checkpoint,
            options,
            force=force,
            progress=lambda message: click.echo(message, err=True),
        )
    except ExportError as exc:
        if exc.reports:
            echo_reports(exc.reports, verbose)
        raise click.ClickException(str(exc)) from None
    echo_reports(summary.reports, verbose)
    click.echo(f"wrote {summary.directory}: {', '.join(summary.files)}")


@click.command()
@click.argument("artifact_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--events",
    "events_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory of TrackML events (hits, and truth + particles for metrics).",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Tracker checkpoint to compare with (default: the one recorded in artifact.json).",
)
@click.option(
    "--filter-checkpoint",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Hit-filter checkpoint (default: the one recorded in artifact.json).",
)
@click.option("--max-events", type=int, default=None, help="Validate at most this many events.")
@click.option("--atol", type=float, default=None, help="Absolute tolerance on logits (default per output).")
@click.option("--rtol", type=float, default=None, help="Relative tolerance on logits (default per output).")
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the comparison as JSON.",
)
def validate(
    artifact_dir: Path,
    events_dir: Path,
    checkpoint: Path | None,
    filter_checkpoint: Path | None,
    max_events: int | None,
    atol: float | None,
    rtol: float | None,
    json_path: Path | None,
) -> None:
    """Run ARTIFACT_DIR in ONNX Runtime and its checkpoints in PyTorch on events; compare outputs, tracks."""
    from trackrt.export.validate import Tolerances, ValidationError, echo_validation, validate_artifact

    try:
        result = validate_artifact(
            artifact_dir,
            events_dir,
            checkpoint=checkpoint,
            filter_checkpoint=filter_checkpoint,
            max_events=max_events,
            tolerances=Tolerances.with_overrides(atol, rtol),
        )
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    echo_validation(result)
    if json_path is not None:
        result.write_json(json_path)
    if not result.passed:
        raise click.ClickException("ONNX Runtime and PyTorch disagree beyond tolerance (see above)")
