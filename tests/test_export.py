"""ONNX export of tiny checkpoints: files per the contract, graph checks, metadata, parity with PyTorch.

Each artifact is exported once per module (the dynamo exporter takes seconds per graph); parity is
checked at hit and query counts other than the ones the graphs were traced with.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from trackrt.export.cli import export as export_command
from trackrt.export.cli import validate as validate_command
from trackrt.export.config import ExportOptions, decoder_spec
from trackrt.export.exporter import export_artifact, export_module, filter_record_behind
from trackrt.export.graph_checks import check_graph, iter_nodes
from trackrt.export.graphs import tracker_decoder_graph
from trackrt.export.metadata import ModelRecord, checkpoint_sha256, read_artifact_json, read_metadata_props
from trackrt.model.config import preset
from trackrt.train.checkpoint import build_model, load_checkpoint, save_checkpoint

# (num_hits, num_queries) pairs, all different from ExportOptions' trace sizes (613 hits, 41 queries).
PARITY_SIZES = ((257, 5), (1500, 96))
ATOL = 1e-4


def _save(path: Path, kind: str, seed: int, **overrides) -> Path:
    torch.manual_seed(seed)
    config = preset("tiny", kind, overrides=overrides or None)
    return save_checkpoint(path, build_model(config), config)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    paths = {
        variant: _save(root / variant, "tracker", i, variant=variant)
        for i, variant in enumerate(("fq-ma", "dq-ma", "dq-lsca"))
    }
    # The filter reads its own features, beamline triplets and their helix columns included, as a
    # shipped filter may; the trackers' are its first columns.
    features = {"triplets": {}, "triplet_helix": True}
    paths["hit_filter"] = _save(root / "hit_filter", "hit_filter", 7, features=features)
    return paths


@pytest.fixture(scope="module")
def plugin_artifact(checkpoints, tmp_path_factory) -> Path:
    """dq-lsca + hit filter with LSCA nodes, exported through the CLI over an existing directory."""
    out = tmp_path_factory.mktemp("artifacts") / "plugin"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier export")
    result = CliRunner().invoke(
        export_command,
        [
            str(checkpoints["dq-lsca"]),
            "--out",
            str(out),
            "--filter-checkpoint",
            str(checkpoints["hit_filter"]),
            "--lsca",
            "plugin",
            "--force",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def onnx_artifact(checkpoints, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("artifacts") / "onnx"
    export_artifact(checkpoints["dq-lsca"], out, options=ExportOptions(lsca_mode="onnx"))
    return out


@pytest.fixture(scope="module", params=["fq-ma", "dq-ma"])
def masked_decoder(request, checkpoints, tmp_path_factory) -> tuple[str, Path]:
    """Only the decoder graph of the masked-attention variants (their encoder is dq-lsca's)."""
    tracker, _ = load_checkpoint(checkpoints[request.param])
    module, inputs, spec = tracker_decoder_graph(tracker, ExportOptions())
    path = tmp_path_factory.mktemp(request.param) / spec.filename
    onnx.save(export_module(module, inputs, spec, ExportOptions()), str(path))
    return request.param, path


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _assert_parity(artifact: Path, tracker_path: Path, filter_path: Path | None) -> None:
    tracker, _ = load_checkpoint(tracker_path)
    rng = np.random.default_rng(3)
    encoder, decoder = (
        _session(artifact / "tracker_encoder.onnx"),
        _session(artifact / "tracker_decoder.onnx"),
    )
    dynamic = tracker.config.dynamic_queries
    for num_hits, num_queries in PARITY_SIZES:
        x = rng.standard_normal((1, num_hits, tracker.config.features.num_features)).astype(np.float32)
        queries = np.sort(rng.choice(num_hits, num_queries, replace=False))[None] if dynamic else None
        with torch.no_grad():
            embeddings, seeds = tracker.encode(torch.from_numpy(x))
            final = tracker.decode(embeddings, None if queries is None else torch.from_numpy(queries))[-1]
        onnx_embeddings, onnx_seeds = encoder.run(None, {"hit_features": x})
        np.testing.assert_allclose(onnx_embeddings, embeddings.numpy(), atol=ATOL, rtol=1e-3)
        np.testing.assert_allclose(onnx_seeds, seeds.numpy(), atol=ATOL, rtol=1e-3)
        feeds = {"hit_embeddings": embeddings.numpy()}
        if dynamic:
            feeds["query_indices"] = queries
        track_logits, assignment_logits = decoder.run(None, feeds)
        expected_queries = num_queries if dynamic else tracker.config.num_queries
        assert assignment_logits.shape == (1, expected_queries, num_hits)
        np.testing.assert_allclose(track_logits, final["track_logits"].numpy(), atol=ATOL, rtol=1e-3)
        np.testing.assert_allclose(
            assignment_logits, final["assignment_logits"].numpy(), atol=ATOL, rtol=1e-3
        )
        if filter_path is not None:
            hit_filter, _ = load_checkpoint(filter_path)
            width = hit_filter.config.features.num_features
            x_filter = rng.standard_normal((1, num_hits, width)).astype(np.float32)
            with torch.no_grad():
                expected = hit_filter(torch.from_numpy(x_filter)).numpy()
            np.testing.assert_allclose(
                _session(artifact / "hit_filter.onnx").run(None, {"hit_features": x_filter})[0],
                expected,
                atol=ATOL,
                rtol=1e-3,
            )


def test_plugin_artifact_has_the_contract_files_and_replaced_the_old_directory(plugin_artifact):
    names = sorted(p.name for p in plugin_artifact.iterdir())
    assert names == [
        "artifact.json",
        "hit_filter.onnx",
        "hit_filter.trt.onnx",
        "tracker_decoder.onnx",
        "tracker_decoder.trt.onnx",
        "tracker_encoder.onnx",
        "tracker_encoder.trt.onnx",
    ]
    assert not any(p.name.startswith(".plugin") for p in plugin_artifact.parent.iterdir())


def test_every_graph_passes_its_checks(plugin_artifact, onnx_artifact):
    for directory in (plugin_artifact, onnx_artifact):
        for path in directory.glob("*.onnx"):
            role = (
                "tensorrt"
                if path.name.endswith(".trt.onnx")
                else (
                    "onnxruntime"
                    if (directory / path.name.replace(".onnx", ".trt.onnx")).exists()
                    else "both"
                )
            )
            report = check_graph(path, role)
            assert report.passed, (path, report.failures())


def test_graphs_have_named_dynamic_inputs_and_outputs(plugin_artifact):
    model = onnx.load(str(plugin_artifact / "tracker_decoder.onnx"))
    dims = {
        v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.input, *model.graph.output]
    }
    assert dims == {
        "hit_embeddings": [1, "num_hits", 32],
        "query_indices": [1, "num_queries"],
        "track_logits": [1, "num_queries"],
        "assignment_logits": [1, "num_queries", "num_hits"],
    }
    assert model.graph.input[1].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert next(o.version for o in model.opset_import if o.domain == "") >= 18
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)


def test_tensorrt_file_keeps_the_bare_node_and_the_onnxruntime_file_has_the_function(plugin_artifact):
    for graph in ("hit_filter", "tracker_encoder", "tracker_decoder"):
        bare = onnx.load(str(plugin_artifact / f"{graph}.trt.onnx"))
        runnable = onnx.load(str(plugin_artifact / f"{graph}.onnx"))
        lsca = [n for n in iter_nodes(bare.graph) if n.domain == "trackrt"]
        assert lsca and {n.op_type for n in lsca} == {"LocalStridedCrossAttention"}
        assert len(bare.functions) == 0
        assert {(f.domain, f.name) for f in runnable.functions} == {
            ("trackrt", "LocalStridedCrossAttention"),
            ("trackrt", "LocalStridedCrossAttentionBlocked"),
            ("trackrt", "LocalStridedCrossAttentionGathered"),
        }
        assert {a.name for a in lsca[0].attribute} == {"window", "wrap", "scale"}
        assert all(len(n.input) == 5 for n in lsca)  # query, key, value, centers, key_lengths
    decoder = onnx.load(str(plugin_artifact / "tracker_decoder.trt.onnx"))
    windows = {
        a.i for n in decoder.graph.node if n.domain == "trackrt" for a in n.attribute if a.name == "window"
    }
    assert windows == {16}  # the tiny preset's LSCA window; the encoder's nodes carry its own window


def test_lsca_onnx_mode_has_standard_ops_only(onnx_artifact):
    assert not list(onnx_artifact.glob("*.trt.onnx"))
    for path in onnx_artifact.glob("*.onnx"):
        model = onnx.load(str(path))
        assert all(n.domain in ("", "ai.onnx") for n in iter_nodes(model.graph)) and not model.functions


def test_metadata_in_every_file_and_in_artifact_json(plugin_artifact, checkpoints):
    artifact = read_artifact_json(plugin_artifact)
    tracker = artifact["models"]["tracker"]
    assert tracker["checkpoint_sha256"] == checkpoint_sha256(checkpoints["dq-lsca"])
    assert tracker["thresholds"]["max_queries"] == 64 and tracker["windows"]["lsca_window"] == 16
    assert artifact["seed_selection"]["where"] == "host" and artifact["lsca_mode"] == "plugin"
    for path in plugin_artifact.glob("*.onnx"):
        meta = read_metadata_props(path)
        model = "hit_filter" if path.name.startswith("hit_filter") else "tracker"
        record = artifact["models"][model]
        assert meta["checkpoint_sha256"] == record["checkpoint_sha256"]
        assert meta["model_config"] == record["config"] and meta["features"] == record["features"]
        assert meta["thresholds"] == record["thresholds"] and meta["windows"] == record["windows"]
        assert meta["version"] == artifact["trackrt_version"] and meta["lsca_mode"] == "plugin"
    decoder = artifact["graphs"]["tracker_decoder"]
    assert [t["name"] for t in decoder["inputs"]] == ["hit_embeddings", "query_indices"]
    assert decoder["outputs"][1]["shape"] == [1, "num_queries", "num_hits"]
    assert set(decoder["sha256"]) == {"tracker_decoder.onnx", "tracker_decoder.trt.onnx"}


def test_plugin_mode_parity_at_other_sizes(plugin_artifact, checkpoints):
    _assert_parity(plugin_artifact, checkpoints["dq-lsca"], checkpoints["hit_filter"])


def test_onnx_mode_parity_at_other_sizes(onnx_artifact, checkpoints):
    """The hit filter is the same encoder code as the tracker's, so the tracker alone covers this mode."""
    _assert_parity(onnx_artifact, checkpoints["dq-lsca"], None)


def test_masked_attention_decoders_export_check_and_match(masked_decoder, checkpoints):
    variant, path = masked_decoder
    spec = decoder_spec(variant)
    report = check_graph(path, "both", spec)
    assert report.passed, report.failures()
    tracker, _ = load_checkpoint(checkpoints[variant])
    session = _session(path)
    rng = np.random.default_rng(4)
    for num_hits, num_queries in PARITY_SIZES:
        embeddings = rng.standard_normal((1, num_hits, tracker.config.encoder.dim)).astype(np.float32)
        feeds = {"hit_embeddings": embeddings}
        queries = None
        if variant == "dq-ma":
            queries = np.sort(rng.choice(num_hits, num_queries, replace=False))[None]
            feeds["query_indices"] = queries
        with torch.no_grad():
            final = tracker.decode(
                torch.from_numpy(embeddings), None if queries is None else torch.from_numpy(queries)
            )
        track_logits, assignment_logits = session.run(None, feeds)
        expected_queries = num_queries if variant == "dq-ma" else tracker.config.num_queries
        assert assignment_logits.shape == (1, expected_queries, num_hits)
        np.testing.assert_allclose(track_logits, final[-1]["track_logits"].numpy(), atol=ATOL, rtol=1e-3)
        np.testing.assert_allclose(
            assignment_logits, final[-1]["assignment_logits"].numpy(), atol=ATOL, rtol=1e-3
        )


@pytest.fixture(scope="module")
def simulated_events(trackml_dir, tmp_path_factory) -> Path:
    """Two small simulated events (sizes other than the trace's 613 hits)."""
    from trackrt.data.simulate import SimulationConfig, simulate_event
    from trackrt.data.trackml import write_event

    events = tmp_path_factory.mktemp("events")
    for event_id, pileup in ((1, 1.0), (2, 3.0)):
        write_event(
            events, simulate_event(SimulationConfig(pileup=pileup, detector=str(trackml_dir)), event_id, 5)
        )
    return events


def test_validate_cli_on_simulated_events(plugin_artifact, simulated_events, tmp_path):
    report = tmp_path / "validation.json"
    result = CliRunner().invoke(
        validate_command, [str(plugin_artifact), "--events", str(simulated_events), "--json", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert "✓ tracker_decoder.assignment_logits" in result.output and "PASSED" in result.output
    data = json.loads(report.read_text())
    assert data["passed"] and len(data["events"]) == 2 and data["traced_with"]["num_hits"] == 613
    sizes = {e["num_hits"] for e in data["events"]}
    assert 613 not in sizes and len(sizes) == 2
    assert all(
        e["tracks_identical"] and e["metrics"]["torch"] == e["metrics"]["onnxruntime"] for e in data["events"]
    )


def test_runtime_on_the_artifact_builds_the_same_tracks_as_pytorch(plugin_artifact, simulated_events):
    """The deployed runtime (ONNX Runtime backend) and the checkpoints in PyTorch give the same tracks."""
    from trackrt.data.features import phi_sort_order
    from trackrt.data.trackml import iter_events
    from trackrt.export.validate import Pipeline, load_torch_chain
    from trackrt.runtime import Tracker

    artifact = read_artifact_json(plugin_artifact)
    pipeline, torch_chain = Pipeline(artifact), load_torch_chain(artifact, None, None)
    with Tracker.load(plugin_artifact, backend="onnxruntime", device="cpu", threads=1) as tracker:
        for event in iter_events(simulated_events, parts=("hits",), pixel_only=True):
            hits = event.hits.iloc[phi_sort_order(event.hits)].reset_index(drop=True)
            reference = pipeline.run(torch_chain, hits)
            kept_ids = hits["hit_id"].to_numpy()[reference.kept]
            expected = _partition(kept_ids, reference.track_of_hit)
            result = tracker.reconstruct(event.hits, event_id=event.event_id)
            tracks = result.tracks
            assert _partition(tracks["hit_id"].to_numpy(), tracks["track_id"].to_numpy()) == expected
            assert result.num_queries == len(reference.query_indices)


def _partition(hit_ids: np.ndarray, track_ids: np.ndarray) -> set[frozenset[int]]:
    """Tracks as sets of hit ids (independent of track numbering)."""
    groups: dict[int, set[int]] = {}
    for hit, track in zip(hit_ids.tolist(), track_ids.tolist(), strict=True):
        if track >= 0:
            groups.setdefault(track, set()).add(hit)
    return {frozenset(g) for g in groups.values()}


def test_the_filter_runs_at_the_trackers_filter_threshold_when_it_sets_one(checkpoints):
    tracker_config = preset("tiny", "tracker")
    filter_config = preset("tiny", "hit_filter")
    hit_filter = ModelRecord.from_config("hit_filter", filter_config, checkpoints["hit_filter"])
    tracker = ModelRecord.from_config("tracker", tracker_config, checkpoints["dq-lsca"])
    assert filter_record_behind(tracker, hit_filter) is hit_filter
    tuned = ModelRecord.from_config(
        "tracker", preset("tiny", "tracker", overrides={"filter_threshold": 0.3}), checkpoints["dq-lsca"]
    )
    behind = filter_record_behind(tuned, hit_filter)
    assert behind.thresholds == {"hit_threshold": 0.3} and hit_filter.thresholds == {"hit_threshold": 0.5}
    assert behind.checkpoint_sha256 == hit_filter.checkpoint_sha256
    assert tuned.thresholds["filter_threshold"] == 0.3
