"""Checkpoint(s) → an ONNX artifact directory (artifact.json + graphs), written atomically and checked."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from trackrt.export.config import (
    HIT_FILTER,
    NUM_HITS,
    NUM_QUERIES,
    TRACKER_ENCODER,
    ExportOptions,
    GraphSpec,
    TensorSpec,
)
from trackrt.export.graph_checks import DEFAULT_DOMAINS, GraphReport, GraphRole, check_graph, iter_nodes
from trackrt.export.graphs import hit_filter_graph, tracker_decoder_graph, tracker_encoder_graph
from trackrt.export.metadata import (
    ARTIFACT_JSON,
    ExportRecord,
    ModelRecord,
    file_sha256,
    graph_metadata,
    set_metadata_props,
    tool_versions,
)


class ExportError(RuntimeError):
    """The export cannot proceed or produced a graph that fails its checks; nothing was written."""

    def __init__(self, message: str, reports: list[GraphReport] | None = None) -> None:
        super().__init__(message)
        self.reports = reports or []


@dataclass
class LoadedModel:
    """A model restored from a checkpoint, with the record that goes into the artifact's metadata."""

    module: nn.Module
    record: ModelRecord


@dataclass
class ExportSummary:
    """What `export_artifact` wrote: the directory, each file and its checks."""

    directory: Path
    files: list[str] = field(default_factory=list)
    reports: list[GraphReport] = field(default_factory=list)
    artifact: dict[str, Any] = field(default_factory=dict)


def load_model(path: str | Path, expected_kind: str) -> LoadedModel:
    """Restore a checkpoint of `expected_kind` (`tracker` | `hit_filter`); errors become `ExportError`."""
    from trackrt.train.checkpoint import CheckpointError, load_checkpoint

    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: checkpoint not found")
    try:
        module, config = load_checkpoint(path)
    except CheckpointError as exc:
        raise ExportError(f"cannot load checkpoint: {exc}") from None
    if config.kind != expected_kind:
        hint = " (pass it with --filter-checkpoint)" if config.kind == "hit_filter" else ""
        raise ExportError(f"{path}: a {config.kind} checkpoint, expected a {expected_kind}{hint}")
    return LoadedModel(module.eval(), ModelRecord.from_config(config.kind, config.model, path.resolve()))


def _dynamic_shapes(spec: GraphSpec) -> tuple[dict[int, torch.export.Dim], ...]:
    dims = {NUM_HITS: torch.export.Dim(NUM_HITS, min=1), NUM_QUERIES: torch.export.Dim(NUM_QUERIES, min=1)}
    return tuple(
        {index: dims[axis] for index, axis in enumerate(t.axes) if axis in spec.dynamic_axes}
        for t in spec.inputs
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the dynamo exporter's progress logging and warnings (torchvision ops absent, etc.)."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def export_module(
    module: nn.Module, example_inputs: tuple[torch.Tensor, ...], spec: GraphSpec, options: ExportOptions
) -> onnx.ModelProto:
    """Trace `module` with the dynamo exporter into an ONNX model with the spec's names and dynamic axes."""
    from trackrt.model.attention import lsca_export_mode

    with _quiet_exporter(), lsca_export_mode(options.lsca_mode), torch.no_grad():
        program = torch.onnx.export(
            module.eval(),
            example_inputs,
            dynamo=True,
            dynamic_shapes=_dynamic_shapes(spec),
            input_names=spec.input_names,
            output_names=spec.output_names,
            opset_version=options.opset,
            external_data=False,
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    model.graph.name = spec.name
    return model


def has_custom_nodes(model: onnx.ModelProto) -> bool:
    """True when the graph holds nodes outside the default ONNX domain (the LSCA node)."""
    return any(node.domain not in DEFAULT_DOMAINS for node in iter_nodes(model.graph))


def runtime_copies(model: onnx.ModelProto) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(ONNX Runtime copy with the LSCA model-local function, TensorRT copy with the bare node).

    Both get LSCA's optional `key_lengths` input made explicit: the plugin and the function take five.
    """
    from trackrt.plugins.lsca.onnx_function import attach_lsca_function, complete_key_lengths

    bare = onnx.ModelProto()
    bare.CopyFrom(model)
    return attach_lsca_function(model), complete_key_lengths(bare)


@dataclass
class _GraphJob:
    spec: GraphSpec
    model_name: str
    build: Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]


def _save(model: onnx.ModelProto, path: Path) -> None:
    onnx.save_model(model, str(path), save_as_external_data=False)


def _write_graph(
    job: _GraphJob, record: ExportRecord, options: ExportOptions, directory: Path
) -> list[tuple[Path, onnx.ModelProto, GraphRole]]:
    """Export one graph and write its file(s); returns (path, model, role) per written file."""
    module, inputs = job.build()
    try:
        model = export_module(module, inputs, job.spec, options)
    except Exception as exc:  # the dynamo exporter raises many types; name the graph and keep the cause
        raise ExportError(f"{job.spec.name}: the ONNX exporter failed: {type(exc).__name__}: {exc}") from exc
    set_metadata_props(model, graph_metadata(record, job.model_name, job.spec.name))
    if not has_custom_nodes(model):
        path = directory / job.spec.filename
        _save(model, path)
        return [(path, model, "both")]
    trt_path, ort_path = directory / job.spec.tensorrt_filename, directory / job.spec.filename
    ort_model, trt_model = runtime_copies(model)
    _save(trt_model, trt_path)
    _save(ort_model, ort_path)
    return [(ort_path, ort_model, "onnxruntime"), (trt_path, trt_model, "tensorrt")]


def _shape_of(value: onnx.ValueInfoProto) -> list[int | str]:
    """Concrete sizes for static axes, the axis name for dynamic ones."""
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _tensor_entries(specs: tuple[TensorSpec, ...], values: Any) -> list[dict[str, Any]]:
    by_name = {v.name: v for v in values}
    return [
        {"name": t.name, "dtype": t.dtype, "shape": _shape_of(by_name[t.name]), "meaning": t.meaning}
        for t in specs
    ]


def _graph_entry(
    spec: GraphSpec, model_name: str, written: list[tuple[Path, onnx.ModelProto, GraphRole]]
) -> dict[str, Any]:
    """The artifact.json entry of one graph: files, hashes, named inputs and outputs with shapes."""
    model = written[0][1]
    return {
        "model": model_name,
        "file": spec.filename,
        "tensorrt_file": spec.tensorrt_filename if len(written) > 1 else spec.filename,
        "inputs": _tensor_entries(spec.inputs, model.graph.input),
        "outputs": _tensor_entries(spec.outputs, model.graph.output),
        "dynamic_axes": list(spec.dynamic_axes),
        "sha256": {path.name: file_sha256(path) for path, _, _ in written},
    }


def _jobs(tracker: LoadedModel, hit_filter: LoadedModel | None, options: ExportOptions) -> list[_GraphJob]:
    jobs = []
    if hit_filter is not None:
        jobs.append(_GraphJob(HIT_FILTER, "hit_filter", lambda: hit_filter_graph(hit_filter.module, options)))
    jobs.append(_GraphJob(TRACKER_ENCODER, "tracker", lambda: tracker_encoder_graph(tracker.module, options)))
    decoder_module, decoder_inputs, decoder_spec = tracker_decoder_graph(tracker.module, options)
    jobs.append(_GraphJob(decoder_spec, "tracker", lambda: (decoder_module, decoder_inputs)))
    return jobs


def _check_destination(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a directory")
    if out_dir.exists() and not force:
        raise ExportError(f"{out_dir}: already exists; pass --force to replace it")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_directory(staging: Path, out_dir: Path) -> None:
    """Move `staging` to `out_dir`; an existing `out_dir` is swapped out first and removed after."""
    backup = None
    if out_dir.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.replace(out_dir, backup / out_dir.name)
    os.replace(staging, out_dir)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def export_artifact(
    checkpoint: str | Path,
    out_dir: str | Path,
    filter_checkpoint: str | Path | None = None,
    options: ExportOptions | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ExportSummary:
    """Export the tracker (and optionally the hit filter) to `out_dir` per docs/contracts.md.

    Everything is written into a temporary sibling directory and moved into place only when every graph
    passed its checks, so a failure leaves no partial files behind.
    """
    options = options or ExportOptions()
    out_dir = Path(out_dir)
    _check_destination(out_dir, force)
    tracker = load_model(checkpoint, "tracker")
    hit_filter = load_model(filter_checkpoint, "hit_filter") if filter_checkpoint is not None else None
    models = {"tracker": tracker.record}
    if hit_filter is not None:
        models["hit_filter"] = filter_record_behind(tracker.record, hit_filter.record)
    record = ExportRecord(
        lsca_mode=options.lsca_mode, opset=options.opset, models=models, versions=tool_versions()
    )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    staging.chmod(0o777 & ~_current_umask())
    summary = ExportSummary(directory=out_dir)
    try:
        for job in _jobs(tracker, hit_filter, options):
            if progress is not None:
                progress(f"exporting {job.spec.name} ({options.lsca_mode} LSCA, opset {options.opset})")
            written = _write_graph(job, record, options, staging)
            for path, model, role in written:
                summary.reports.append(check_graph(model, role, job.spec, name=path.name))
                summary.files.append(path.name)
            record.graphs[job.spec.name] = _graph_entry(job.spec, job.model_name, written)
        failed = [r for r in summary.reports if not r.passed]
        if failed:
            names = ", ".join(f"{r.graph} ({', '.join(f.name for f in r.failures())})" for r in failed)
            raise ExportError(f"exported graphs fail their checks: {names}", summary.reports)
        summary.artifact = record.to_json()
        summary.artifact["seed_selection"] = _seed_selection_entry(tracker.record)
        summary.artifact["traced_with"] = {
            "num_hits": options.example_num_hits,
            "num_queries": options.example_num_queries,
        }
        (staging / ARTIFACT_JSON).write_text(json.dumps(summary.artifact, indent=2, sort_keys=True) + "\n")
        summary.files.append(ARTIFACT_JSON)
        _replace_directory(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def filter_record_behind(tracker: ModelRecord, hit_filter: ModelRecord) -> ModelRecord:
    """The filter record the chain runs: with the tracker's `filter_threshold`, if set, as its threshold."""
    threshold = tracker.config.get("filter_threshold")
    if threshold is None:
        return hit_filter
    return replace(hit_filter, config={**hit_filter.config, "hit_threshold": threshold})


def _seed_selection_entry(tracker: ModelRecord) -> dict[str, Any]:
    """Where seeds are chosen between the encoder and decoder graphs (docs/export.md explains why)."""
    if tracker.config["variant"] == "fq-ma":
        return {"where": "none", "reason": "fq-ma uses learned queries"}
    return {
        "where": "host",
        "function": "trackrt.data.tracks.select_seeds",
        "threshold": tracker.config["seed_threshold"],
        "max_queries": tracker.config["max_queries"],
    }
