"""`trackrt demo`: the main job on embedded defaults, end to end on a CPU in a few minutes.

Simulate a few events at the pile-up the shipped `small` models were trained for, export each tracker
variant (with the hit filter) to ONNX, reconstruct the events with the ONNX Runtime tracker
(`trackrt.runtime.run_job`: submissions, metrics, timings), plot the metrics and write one summary.

Output layout under `out_dir`: `events/` (simulated TrackML CSV), `artifacts/<variant>/` (ONNX),
`runs/<variant>/` (submissions, metrics.json, run.json, plots/), `demo_summary.json`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import trackrt

# The decoders of the paper, plus dq-lsca with seed-centred windows (model overrides per name).
VARIANT_OVERRIDES: dict[str, dict[str, str]] = {
    "fq-ma": {"variant": "fq-ma"},
    "dq-ma": {"variant": "dq-ma"},
    "dq-lsca": {"variant": "dq-lsca", "lsca_centering": "strided"},
    "dq-lsca-seed": {"variant": "dq-lsca", "lsca_centering": "seed"},
}
VARIANTS: tuple[str, ...] = tuple(VARIANT_OVERRIDES)
HIT_FILTER_DIR = "small-hit-filter"
TRACKER_DIRS: dict[str, str] = {variant: f"small-{variant}" for variant in VARIANTS}
DEFAULT_PILEUP = 20.0
DEFAULT_SELECTION = "Pix1.0"
SUMMARY_FILE = "demo_summary.json"
MARKER_FILE = ".trackrt-demo"
OWNED_ENTRIES = ("events", "artifacts", "runs", SUMMARY_FILE)

Progress = Callable[[str], None]


class DemoError(RuntimeError):
    """The demo cannot run (missing checkpoints or detector, unusable output directory, failed export)."""


@dataclass(frozen=True)
class DemoConfig:
    """What `trackrt demo` does; `pileup=None` takes the ⟨μ⟩ recorded in the checkpoints (else 20)."""

    out_dir: Path
    checkpoints_dir: Path
    events: int = 5
    pileup: float | None = None
    seed: int = 0
    variants: tuple[str, ...] = VARIANTS
    threads: int | None = None
    detector: Path | None = None

    def __post_init__(self) -> None:
        if self.events < 1:
            raise DemoError(f"events: need at least 1 event, got {self.events}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise DemoError(f"variants: {unknown or 'none'} given; choose from {', '.join(VARIANTS)}")


@dataclass(frozen=True)
class ShippedModels:
    """The checkpoint directories the demo uses and what their configs record."""

    hit_filter: Path
    trackers: dict[str, Path]
    selection: str
    recorded_pileup: float | None


@dataclass
class VariantRun:
    """One decoder variant: its artifact, run directory, export time and the run's summary."""

    variant: str
    artifact_dir: Path
    run_dir: Path
    export_seconds: float
    summary: Any
    plots: list[Path] = field(default_factory=list)


@dataclass
class DemoResult:
    """Everything the demo produced, for the printed report and `demo_summary.json`."""

    config: DemoConfig
    models: ShippedModels
    pileup: float
    pileup_source: str
    pt_min: float
    events_dir: Path
    runs: list[VariantRun]
    elapsed_s: float = 0.0
    summary_path: Path | None = None

    @property
    def failed_events(self) -> int:
        return sum(run.summary.failed for run in self.runs)


def default_checkpoints_dir() -> Path:
    """`./checkpoints` when it exists, else `checkpoints/` beside the installed package (the repository)."""
    local = Path("checkpoints")
    if local.is_dir():
        return local
    return Path(trackrt.__file__).resolve().parents[1] / "checkpoints"


def _missing_message(directory: Path, missing: Sequence[Path]) -> str:
    lines = "\n".join(f"  {path}" for path in missing)
    where = f"{directory} lacks" if directory.is_dir() else f"{directory} does not exist; missing"
    return (
        f"trackrt demo runs the shipped small models, but {where}:\n{lines}\n"
        "Each is a checkpoint directory (config.json + model.safetensors) written by `trackrt train`. "
        "Train them (see the README) or pass --checkpoints DIR holding small-hit-filter/ and "
        "small-<variant>/ for the variants you run (--variant)."
    )


def _read_config(path: Path, kind: str, variant: str | None = None) -> Any:
    """The checkpoint's config, checked to be a `kind` (and of `variant`); errors name the directory."""
    from trackrt.train.checkpoint import CheckpointError, read_checkpoint_config

    try:
        config = read_checkpoint_config(path)
    except CheckpointError as exc:
        raise DemoError(f"cannot read the shipped checkpoint: {exc}") from None
    if config.kind != kind:
        raise DemoError(f"{path}: a {config.kind} checkpoint, expected a {kind}")
    if variant is not None and demo_variant(config.model) != variant:
        raise DemoError(f"{path}: a {demo_variant(config.model)} tracker, expected {variant}")
    return config


def demo_variant(model: Any) -> str:
    """The demo's name for a tracker config: its decoder variant, `dq-lsca-seed` for seed-centred LSCA."""
    if model.variant == "dq-lsca" and model.lsca_centering == "seed":
        return "dq-lsca-seed"
    return str(model.variant)


def _recorded_pileup(metadata: dict[str, Any]) -> float | None:
    value = metadata.get("pileup")
    return None if value is None else float(value)


def locate_models(directory: Path, variants: Sequence[str]) -> ShippedModels:
    """The hit filter and one tracker per variant under `directory`; DemoError naming every missing one."""
    filter_dir = directory / HIT_FILTER_DIR
    tracker_dirs = {variant: directory / TRACKER_DIRS[variant] for variant in variants}
    missing = [p for p in (filter_dir, *tracker_dirs.values()) if not (p / "config.json").is_file()]
    if missing:
        raise DemoError(_missing_message(directory, missing))
    filter_config = _read_config(filter_dir, "hit_filter")
    tracker_configs = [_read_config(path, "tracker", v) for v, path in tracker_dirs.items()]
    recorded = [_recorded_pileup(c.metadata) for c in (filter_config, *tracker_configs)]
    known = [value for value in recorded if value is not None]
    return ShippedModels(
        hit_filter=filter_dir,
        trackers=tracker_dirs,
        selection=str(filter_config.metadata.get("selection", DEFAULT_SELECTION)),
        recorded_pileup=known[0] if known else None,
    )


def prepare_output(out_dir: Path) -> None:
    """Create `out_dir`, or clear the demo's own entries of an earlier demo run; refuse other directories."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DemoError(f"{out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / MARKER_FILE).is_file():
        raise DemoError(f"{out_dir}: not empty and not an earlier demo output; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER_FILE).write_text("written by `trackrt demo`; replaced on its next run\n")
    for name in OWNED_ENTRIES:
        entry = out_dir / name
        if entry.is_dir():
            shutil.rmtree(entry)
        elif entry.exists():
            entry.unlink()


def _detector_path(detector: Path | None) -> Path:
    """The detector description the simulator will read; DemoError with the way to provide one."""
    from trackrt.data.geometry import DetectorFormatError, find_detector_file
    from trackrt.data.simulate import DETECTOR_ENV, default_detector_path

    try:
        return find_detector_file(detector if detector is not None else default_detector_path())
    except DetectorFormatError as exc:
        raise DemoError(
            f"the event simulator needs the TrackML detector description (detectors.csv.gz): {exc}. "
            f"Set ${DETECTOR_ENV} to its directory or pass --detector."
        ) from None


def simulate(config: DemoConfig, pileup: float, events_dir: Path) -> Path:
    """Simulate `config.events` events at `pileup` into `events_dir` (TrackML CSV)."""
    from trackrt.data.simulate import SimulationConfig, simulate_events

    detector = _detector_path(config.detector)
    simulation = SimulationConfig(pileup=pileup, detector=str(detector))
    simulate_events(simulation, events_dir, config.events, config.seed, progress=False)
    return events_dir


def export_variant(models: ShippedModels, variant: str, artifact_dir: Path) -> float:
    """Export the variant's tracker with the hit filter to `artifact_dir`; returns the seconds it took.

    LSCA is lowered to standard ops: that is the fast form for ONNX Runtime on a CPU (docs/export.md);
    the plugin form is what TensorRT takes.
    """
    from trackrt.export.config import ExportOptions
    from trackrt.export.exporter import ExportError, export_artifact

    start = time.perf_counter()
    try:
        export_artifact(
            models.trackers[variant],
            artifact_dir,
            models.hit_filter,
            ExportOptions(lsca_mode="onnx"),
            force=True,
        )
    except ExportError as exc:
        raise DemoError(f"export of {variant} failed: {exc}") from None
    return time.perf_counter() - start


def run_variant(
    config: DemoConfig, artifact_dir: Path, events_dir: Path, run_dir: Path, pt_min: float
) -> Any:
    """`trackrt run` on ONNX Runtime for one artifact; returns its `RunSummary`."""
    from trackrt.runtime.artifact import ArtifactError
    from trackrt.runtime.backends.base import BackendUnavailable
    from trackrt.runtime.job import RunConfig, run_job

    run_config = RunConfig(
        artifact_dir=artifact_dir,
        events_dir=events_dir,
        out_dir=run_dir,
        backend="onnxruntime",
        threads=config.threads,
        pt_min=pt_min,
    )
    try:
        return run_job(run_config, progress=False)
    except (ArtifactError, BackendUnavailable) as exc:
        raise DemoError(f"cannot run {artifact_dir}: {exc}") from None


def _pileup(config: DemoConfig, models: ShippedModels) -> tuple[float, str]:
    if config.pileup is not None:
        return config.pileup, "--pileup"
    if models.recorded_pileup is not None:
        return models.recorded_pileup, "checkpoint metadata"
    return DEFAULT_PILEUP, "default, not recorded in the checkpoints"


def run_demo(config: DemoConfig, progress: Progress | None = None) -> DemoResult:
    """Simulate, export, reconstruct and evaluate every variant; writes `demo_summary.json`."""
    from trackrt.data.samples import SELECTION_PT_MIN
    from trackrt.metrics.plots import plot_metrics

    say = progress or (lambda message: None)
    started = time.perf_counter()
    models = locate_models(config.checkpoints_dir, config.variants)
    pileup, source = _pileup(config, models)
    if models.selection not in SELECTION_PT_MIN:
        raise DemoError(f"{models.hit_filter}: unknown selection {models.selection!r} in its metadata")
    _detector_path(config.detector)
    prepare_output(config.out_dir)
    say(f"simulating {config.events} event(s) at <mu> = {pileup:g} ({source}), seed {config.seed}")
    events_dir = simulate(config, pileup, config.out_dir / "events")
    result = DemoResult(
        config=config,
        models=models,
        pileup=pileup,
        pileup_source=source,
        pt_min=SELECTION_PT_MIN[models.selection],
        events_dir=events_dir,
        runs=[],
    )
    for variant in config.variants:
        artifact_dir = config.out_dir / "artifacts" / variant
        run_dir = config.out_dir / "runs" / variant
        say(f"{variant}: exporting {models.trackers[variant]} + {models.hit_filter} to ONNX")
        seconds = export_variant(models, variant, artifact_dir)
        say(f"{variant}: reconstructing with ONNX Runtime")
        summary = run_variant(config, artifact_dir, events_dir, run_dir, result.pt_min)
        run = VariantRun(variant, artifact_dir, run_dir, seconds, summary)
        if summary.metrics is not None:
            label = f"{variant}, <mu> = {pileup:g}"
            run.plots = plot_metrics(summary.metrics, run_dir / "plots", label=label)
        result.runs.append(run)
    result.elapsed_s = time.perf_counter() - started
    result.summary_path = write_summary(result, config.out_dir / SUMMARY_FILE)
    return result


def _plain(value: Any) -> Any:
    """JSON values: paths as strings, numpy scalars unwrapped, NaN/inf as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _versions() -> dict[str, str]:
    import numpy
    import onnxruntime

    versions = {
        "trackrt": trackrt.__version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    return versions


def _variant_record(run: VariantRun) -> dict[str, Any]:
    summary = run.summary
    return {
        "artifact": run.artifact_dir,
        "run_dir": run.run_dir,
        "export_seconds": run.export_seconds,
        "events": summary.events,
        "failed_events": summary.failed,
        "run_seconds": summary.elapsed_s,
        "backend": summary.backend,
        "metrics": summary.metrics.summary() if summary.metrics is not None else None,
        "mean_timings_ms": summary.mean_timings_ms,
        "metrics_json": run.run_dir / "metrics.json" if summary.metrics is not None else None,
        "run_json": run.run_dir / "run.json",
        "plots": run.plots,
        "submissions": sorted(run.run_dir.glob("event*-submission.csv")),
    }


def write_summary(result: DemoResult, path: Path) -> Path:
    """`demo_summary.json`: inputs, machine, versions and, per variant, metrics, timings and files."""
    config = result.config
    record = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "events": config.events,
        "pileup": result.pileup,
        "pileup_source": result.pileup_source,
        "seed": config.seed,
        "selection": result.models.selection,
        "pt_min": result.pt_min,
        "events_dir": result.events_dir,
        "checkpoints": {"hit_filter": result.models.hit_filter, **result.models.trackers},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": _versions(),
        "variants": {run.variant: _variant_record(run) for run in result.runs},
        "elapsed_s": result.elapsed_s,
    }
    path.write_text(json.dumps(_plain(record), indent=2, allow_nan=False) + "\n")
    return path
