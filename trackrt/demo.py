"""`trackrt demo`: simulate a few events, export the shipped small models, reconstruct, report."""

from __future__ import annotations

from pathlib import Path

import click

from trackrt.demo_pipeline import VARIANTS


class DemoSetupError(click.ClickException):
    """The demo could not run (missing checkpoints or detector, failed export); exit code 2."""

    exit_code = 2


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("trackrt-demo"),
    show_default=True,
    help="Output directory (replaced if it holds an earlier demo).",
)
@click.option(
    "--events", type=click.IntRange(min=1), default=5, show_default=True, help="Events to simulate."
)
@click.option(
    "--pileup",
    type=click.FloatRange(min=0.0),
    default=None,
    help="Mean pile-up <mu> [default: as recorded in the checkpoints, else 20].",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Simulation seed.")
@click.option(
    "--checkpoints",
    "checkpoints_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory holding small-hit-filter/ and small-<variant>/ "
    "[default: ./checkpoints, else the repository's checkpoints/].",
)
@click.option(
    "--variant",
    "variants",
    type=click.Choice(VARIANTS),
    multiple=True,
    help="Decoder variant to run; repeat for several [default: all four].",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="ONNX Runtime intra-op threads [default: all cores].",
)
@click.option(
    "--detector",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="detectors.csv(.gz) or its directory [default: $TRACKRT_TRACKML_DIR or the shared one].",
)
def demo(
    out_dir: Path,
    events: int,
    pileup: float | None,
    seed: int,
    checkpoints_dir: Path | None,
    variants: tuple[str, ...],
    threads: int | None,
    detector: Path | None,
) -> None:
    """Run the main job on embedded defaults: simulate, export, reconstruct, print metrics and latency.

    Exit code 0: every event of every variant reconstructed; 1: some events failed (see each run's
    errors.jsonl); 2: nothing could run (missing checkpoints or detector, failed export).
    """
    from trackrt.demo_pipeline import DemoConfig, DemoError, default_checkpoints_dir, run_demo
    from trackrt.demo_report import format_report

    try:
        config = DemoConfig(
            out_dir=out_dir,
            checkpoints_dir=checkpoints_dir if checkpoints_dir is not None else default_checkpoints_dir(),
            events=events,
            pileup=pileup,
            seed=seed,
            variants=variants or VARIANTS,
            threads=threads,
            detector=detector,
        )
        result = run_demo(config, progress=lambda message: click.echo(message, err=True))
    except DemoError as exc:
        raise DemoSetupError(str(exc)) from None
    click.echo(format_report(result))
    if result.failed_events:
        raise SystemExit(1)
