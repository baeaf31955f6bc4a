"""`trackrt run`: reconstruct a directory of TrackML events with an exported artifact.

Exit codes: 0 every event reconstructed; 1 at least one event failed (see errors.jsonl);
2 nothing ran (bad arguments, unreadable artifact, unavailable backend, no events).
"""

from __future__ import annotations

from pathlib import Path

import click

from trackrt.runtime.artifact import ArtifactError, load_artifact
from trackrt.runtime.backends import BACKENDS
from trackrt.runtime.backends.base import BackendUnavailable
from trackrt.runtime.checks import CheckConfig
from trackrt.runtime.engine_spec import PRECISIONS, EngineError, EngineLimits
from trackrt.runtime.job import ERRORS_FILE, RunConfig, RunSummary, run_job

EXIT_EVENTS_FAILED = 1
EXIT_SETUP_FAILED = 2


class SetupError(click.ClickException):
    """The run could not start; exit code 2 so that scripts can tell it from failed events."""

    exit_code = EXIT_SETUP_FAILED


def _print_summary(summary: RunSummary, out_dir: Path) -> None:
    click.echo(f"events: {summary.events} reconstructed: {summary.events - summary.failed} "
               f"failed: {summary.failed}  ({summary.elapsed_s:.1f} s, backend {summary.backend['backend']} "
               f"on {summary.backend['device']})")
    if summary.mean_timings_ms:
        stages = "  ".join(f"{k} {v:.1f}" for k, v in summary.mean_timings_ms.items() if v > 0)
        click.echo(f"mean per event [ms]: {stages}")
    metrics = summary.metrics
    if metrics is not None:
        sel = metrics.selection
        score = "n/a" if metrics.trackml_score is None else f"{metrics.trackml_score:.4f}"
        click.echo(
            f"metrics (pT >= {sel.pt_min:g} GeV, |eta| <= {sel.eta_max:g}, >= {sel.min_hits} hits"
            f"{', pixel only' if sel.pixel_only else ''}; {metrics.counts['target_particles']} targets):"
        )
        click.echo(
            f"  efficiency DM {metrics.efficiency:.4f}  perfect {metrics.efficiency_perfect:.4f}  "
            f"LHC {metrics.efficiency_lhc:.4f}"
        )
        click.echo(
            f"  fake rate {metrics.fake_rate:.4f}  duplicate rate {metrics.duplicate_rate:.4f} "
            f"(LHC {metrics.duplicate_rate_lhc:.4f})  TrackML score {score}"
        )
    if summary.failed:
        click.echo(f"{summary.failed} event(s) failed; see {out_dir / ERRORS_FILE}", err=True)


@click.command("run")
@click.argument("artifact_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("events", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (submissions, track parameters, timings.jsonl, errors.jsonl).")
@click.option("--backend", type=click.Choice(["auto", *BACKENDS]), default="auto", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Events reconstructed at once (threads sharing one set of sessions).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads per graph [default: cores / workers].")
@click.option("--format", "parameter_format", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True, help="File format of the fitted track parameters.")
@click.option("--pt-min", type=float, default=1.0, show_default=True, help="Target pT for the metrics [GeV].")
@click.option("--all-volumes", is_flag=True, help="Reconstruct every hit, not only pixel volumes 7, 8, 9.")
@click.option("--max-r", type=float, default=CheckConfig.max_r_mm, show_default=True,
              help="Hits beyond this radius [mm] fail the event's input check.")
@click.option("--max-abs-z", type=float, default=CheckConfig.max_abs_z_mm, show_default=True,
              help="Hits beyond this |z| [mm] fail the event's input check.")
@click.option("--max-hits", type=click.IntRange(min=1), default=None,
              help="Most hits per event [default: the artifact's limit, if any].")
@click.option("--field", "field_t", type=float, default=2.0, show_default=True,
              help="Solenoid field for the helix fit [T].")
@click.option("--tracker-checkpoint", type=click.Path(exists=True, path_type=Path), default=None,
              help="Tracker checkpoint for --backend torch (default: the one recorded in artifact.json).")
@click.option("--filter-checkpoint", type=click.Path(exists=True, path_type=Path), default=None,
              help="Hit-filter checkpoint for --backend torch.")
@click.option("--engine-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="TensorRT engines (default ARTIFACT_DIR/engines, from `trackrt build-engines`).")
@click.option("--warmup/--no-warmup", default=True, show_default=True, help="Warm up before the first event.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def run(
    artifact_dir: Path,
    events: Path,
    out_dir: Path,
    backend: str,
    device: str,
    workers: int,
    threads: int | None,
    parameter_format: str,
    pt_min: float,
    all_volumes: bool,
    max_r: float,
    max_abs_z: float,
    max_hits: int | None,
    field_t: float,
    tracker_checkpoint: Path | None,
    filter_checkpoint: Path | None,
    engine_dir: Path | None,
    warmup: bool,
    progress: bool,
) -> None:
    """Reconstruct every event in EVENTS (a TrackML directory) with the artifact in ARTIFACT_DIR.

    Writes eventNNNNNNNNN-submission.csv (event_id, hit_id, track_id; -1 = no track) and
    eventNNNNNNNNN-tracks.csv|parquet (helix parameters) per event, timings.jsonl, errors.jsonl,
    run.json and, when the events have truth, metrics.json. Exit code 0: all events ran;
    1: some events failed (errors.jsonl); 2: nothing could run.
    """
    checkpoints = {}
    if tracker_checkpoint is not None:
        checkpoints["tracker"] = str(tracker_checkpoint)
    if filter_checkpoint is not None:
        checkpoints["hit_filter"] = str(filter_checkpoint)
    try:
        config = RunConfig(
            artifact_dir=artifact_dir,
            events_dir=events,
            out_dir=out_dir,
            backend=backend,
            device=device,
            workers=workers,
            threads=threads,
            parameter_format=parameter_format,  # type: ignore[arg-type]
            pixel_only=not all_volumes,
            pt_min=pt_min,
            field_t=field_t,
            checks=CheckConfig(max_r_mm=max_r, max_abs_z_mm=max_abs_z, max_hits=max_hits),
            warmup=warmup,
            checkpoints=checkpoints,
            engine_dir=engine_dir,
        )
        summary = run_job(config, progress=progress)
    except (ArtifactError, BackendUnavailable, FileNotFoundError, NotADirectoryError, ValueError) as exc:
        raise SetupError(str(exc)) from exc
    _print_summary(summary, out_dir)
    if not summary.ok:
        raise SystemExit(EXIT_EVENTS_FAILED)


@click.command("build-engines")
@click.argument("artifact_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="fp16 on TensorRT 10.x sets the builder flag; TensorRT 11 takes the ONNX types.")
@click.option("--engine-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to write the engines [default: ARTIFACT_DIR/engines].")
@click.option("--max-hits", type=click.IntRange(min=1), default=EngineLimits.max_hits, show_default=True,
              help="Most hits per event (hit filter input).")
@click.option("--opt-hits", type=click.IntRange(min=1), default=EngineLimits.opt_hits, show_default=True)
@click.option("--max-kept-hits", type=click.IntRange(min=1), default=EngineLimits.max_kept_hits,
              show_default=True, help="Most hits the filter keeps (tracker input).")
@click.option("--opt-kept-hits", type=click.IntRange(min=1), default=EngineLimits.opt_kept_hits,
              show_default=True)
@click.option("--max-queries", type=click.IntRange(min=1), default=EngineLimits.max_queries,
              show_default=True, help="Most seed queries per event (decoder input).")
@click.option("--opt-queries", type=click.IntRange(min=1), default=EngineLimits.opt_queries,
              show_default=True)
@click.option("--plugin", type=click.Choice(["aot", "jit"]), default="aot", show_default=True,
              help="LSCA plugin implementation: aot runs without Python, jit needs torch and Triton.")
@click.option("--version-compatible", is_flag=True, help="Engines that later TensorRT versions can run.")
@click.option("--hardware-compatibility", type=click.Choice(["AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"]),
              default=None, help="Engines that run on other GPUs of this level.")
def build_engines_command(artifact_dir: Path, precision: str, engine_dir: Path | None, max_hits: int,
                          opt_hits: int, max_kept_hits: int, opt_kept_hits: int, max_queries: int,
                          opt_queries: int, plugin: str, version_compatible: bool,
                          hardware_compatibility: str | None) -> None:
    """Build TensorRT engines (with the LSCA plugin) for the graphs of ARTIFACT_DIR.

    Needs the full TensorRT (>= 10.9, or 11.x) and a CUDA GPU; each engine gets a JSON sidecar that
    `trackrt run --backend tensorrt` checks before use.
    """
    from trackrt.runtime.engine_builder import EngineBuildOptions, build_engines

    try:
        limits = EngineLimits(max_hits=max_hits, opt_hits=min(opt_hits, max_hits),
                              max_kept_hits=max_kept_hits, opt_kept_hits=min(opt_kept_hits, max_kept_hits),
                              max_queries=max_queries, opt_queries=min(opt_queries, max_queries))
        options = EngineBuildOptions(precision=precision, limits=limits, plugin_aot=plugin == "aot",
                                     version_compatible=version_compatible,
                                     hardware_compatibility_level=hardware_compatibility)
        build_engines(load_artifact(artifact_dir), options, engine_dir, log=click.echo)
    except (ArtifactError, EngineError) as exc:
        raise SetupError(str(exc)) from exc
