"""Click commands of the data stage: `trackrt simulate` and `trackrt sim-report`."""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd


@click.command()
@click.option("--events", "n_events", type=click.IntRange(min=0), required=True, help="Number of events.")
@click.option(
    "--pileup", type=click.FloatRange(min=0.0), default=200.0, show_default=True, help="Mean pile-up ⟨μ⟩."
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Master seed.")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output directory."
)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes.")
@click.option(
    "--first-event", type=click.IntRange(min=0), default=1, show_default=True, help="Id of the first event."
)
@click.option(
    "--hard-scatter/--no-hard-scatter", default=True, show_default=True, help="Add a tt̄-like hard scatter."
)
@click.option("--field", type=click.Choice(["uniform", "solenoid"]), default="solenoid", show_default=True)
@click.option(
    "--detector",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="detectors.csv(.gz) or its directory [default: $TRACKRT_TRACKML_DIR or the shared TrackML dir].",
)
@click.option(
    "--vertex-sigma-z",
    type=click.FloatRange(min=0.0, min_open=True),
    default=50.0,
    show_default=True,
    help="Gaussian spread of the vertices along the beam [mm]; wider than 50 widens a training set's tails.",
)
@click.option("--cells/--no-cells", default=False, show_default=True, help="Also write the cells part.")
@click.option("--compress/--no-compress", default=True, show_default=True, help="Write .csv.gz files.")
def simulate(
    n_events: int,
    pileup: float,
    seed: int,
    out: Path,
    workers: int,
    first_event: int,
    hard_scatter: bool,
    field: str,
    detector: Path | None,
    vertex_sigma_z: float,
    cells: bool,
    compress: bool,
) -> None:
    """Simulate TrackML-like pixel events (hits, particles, truth) into OUT."""
    from trackrt.data.simulate import SimulationConfig, simulate_events

    config = SimulationConfig(
        pileup=pileup,
        hard_scatter=hard_scatter,
        field=field,  # type: ignore[arg-type]
        detector=None if detector is None else str(detector),
        vertex_sigma_z=vertex_sigma_z,
        cells=cells,
    )
    written = simulate_events(
        config, out, n_events, seed, first_event=first_event, workers=workers, compress=compress
    )
    click.echo(f"wrote {n_events} events ({len(written)} files) to {out}")


@click.command("sim-report")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--reference",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Directory of real TrackML events to compare with [default: the shared TrackML dir if present].",
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Write JSON + PNGs here."
)
def sim_report(directory: Path, reference: Path | None, out: Path | None) -> None:
    """Compare simulated events in DIRECTORY with the TrackML figures; exit code 1 if a target fails."""
    from trackrt.data.realism import write_report
    from trackrt.data.simulate import default_detector_path

    if reference is None and any(default_detector_path().glob("event*-hits.csv*")):
        reference = default_detector_path()
    table, shares = write_report(directory, reference, out)
    with pd.option_context(
        "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format
    ):
        click.echo(table.to_string(index=False))
        click.echo("")
        click.echo(shares.to_string(index=False))
    if out is not None:
        click.echo(f"\nwrote {Path(out) / 'realism.json'} and plots")
    if (table["pass"] == "FAIL").any():
        raise SystemExit(1)
