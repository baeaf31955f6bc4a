"""The TensorRT backend around TensorRT: profiles, builder settings per version, sidecars, errors.

Building and running engines needs TensorRT and a GPU (`tensorrt`-marked tests at the end); the logic
that decides what to build and whether a stored engine still fits runs here on a CPU.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from trackrt.cli import main as trackrt_main
from trackrt.runtime import BackendUnavailable, Tracker, load_artifact
from trackrt.runtime.backends.tensorrt import TrtGraphRunner
from trackrt.runtime.engine_spec import (
    BuildSettings,
    EngineError,
    EngineLimits,
    build_settings,
    check_shape_in_profile,
    engine_paths,
    engine_sidecar,
    graph_profiles,
    read_sidecar,
    sidecar_problems,
    sidecar_profile,
    tensorrt_graph_file,
)
from trackrt.runtime.synthetic import SyntheticModel, write_synthetic_artifact

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return load_artifact(write_synthetic_artifact(tmp_path_factory.mktemp("artifact")))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_hits": 0}, "max_hits must be an int >= 1"),
        ({"opt_kept_hits": 50_000}, "opt_kept_hits \\(50000\\) exceeds max_kept_hits"),
        ({"max_hits": 30_000, "opt_hits": 20_000}, "max_kept_hits \\(40000\\) exceeds max_hits"),
        ({"max_queries": 2.5}, "max_queries must be an int"),
    ],
)
def test_engine_limits_are_checked(changes, message):
    with pytest.raises(EngineError, match=message):
        EngineLimits(**changes)


def test_profiles_follow_the_graph_contract(artifact):
    limits = EngineLimits(max_hits=9000, opt_hits=6000, max_kept_hits=3000, opt_kept_hits=1200,
                          max_queries=5000, opt_queries=150)
    profiles = graph_profiles(artifact, limits)
    width = artifact.tracker.features.num_features
    assert profiles["hit_filter"] == {"hit_features": ((1, 1, width), (1, 6000, width), (1, 9000, width))}
    assert profiles["tracker_encoder"]["hit_features"] == ((1, 1, width), (1, 1200, width), (1, 3000, width))
    embed = profiles["tracker_decoder"]["hit_embeddings"]
    assert embed[0][:2] == (1, 1) and embed[2][:2] == (1, 3000) and embed[0][2] == embed[2][2] > 0
    # queries: no more than the tracker's max_queries (2,000 in the synthetic artifact) or the kept hits
    assert artifact.tracker.max_queries == 2000
    assert profiles["tracker_decoder"]["query_indices"] == ((1, 1), (1, 150), (1, 2000))


def test_profiles_without_filter_and_for_learned_queries(tmp_path):
    spec = SyntheticModel(variant="fq-ma", with_hit_filter=False)
    artifact = load_artifact(write_synthetic_artifact(tmp_path, spec))
    profiles = graph_profiles(artifact, EngineLimits())
    assert set(profiles) == {"tracker_encoder", "tracker_decoder"}
    # without a filter the tracker sees every hit, and fq-ma has no query_indices input
    assert profiles["tracker_encoder"]["hit_features"][2][1] == EngineLimits().max_hits
    assert set(profiles["tracker_decoder"]) == {"hit_embeddings"}


@pytest.mark.parametrize(
    ("version", "precision", "onnx_float", "expected"),
    [
        ("10.9.0.34", "fp32", "fp32", BuildSettings(strongly_typed=True, fp16_flag=False)),
        ("10.13.0.35", "fp16", "fp32", BuildSettings(strongly_typed=False, fp16_flag=True)),
        ("10.13.0.35", "fp16", "fp16", BuildSettings(strongly_typed=True, fp16_flag=False)),
        ("11.4.0.106", "fp32", "fp32", BuildSettings(strongly_typed=True, fp16_flag=False)),
        ("11.4.0.106", "fp16", "fp16", BuildSettings(strongly_typed=True, fp16_flag=False)),
    ],
)
def test_build_settings_per_tensorrt_version(version, precision, onnx_float, expected):
    assert build_settings(version, precision, onnx_float) == expected


@pytest.mark.parametrize(
    ("version", "precision", "onnx_float", "message"),
    [
        ("11.4.0.106", "fp16", "fp32", "strongly typed networks only.*graphs are fp32"),
        ("10.8.0.43", "fp32", "fp32", "needs >= 10.9"),
        ("10.13.0.35", "int8", "fp32", "precision: 'int8'"),
        ("10.13.0.35", "fp32", "fp16", "cannot build fp32 engines from fp16 graphs"),
        ("ten", "fp32", "fp32", "cannot read a TensorRT version"),
    ],
)
def test_build_settings_refusals(version, precision, onnx_float, message):
    with pytest.raises(EngineError, match=message):
        build_settings(version, precision, onnx_float)


def _write_sidecar(artifact, graph: str, engine_dir: Path, **extra) -> dict:
    profile = graph_profiles(artifact, EngineLimits())[graph]
    record = engine_sidecar(graph, tensorrt_graph_file(artifact, graph), "fp32",
                            BuildSettings(True, False), profile, "10.13.0.35", "sm_90", None, "0.0", **extra)
    engine_paths(engine_dir, graph)[1].write_text(json.dumps(record))
    return record


def test_sidecar_round_trip_and_what_makes_an_engine_stale(tmp_path):
    directory = write_synthetic_artifact(tmp_path / "artifact")
    artifact = load_artifact(directory)
    record = _write_sidecar(artifact, "tracker_encoder", tmp_path)
    read = read_sidecar(engine_paths(tmp_path, "tracker_encoder")[1])
    assert read == json.loads(json.dumps(record))
    assert sidecar_profile(read) == graph_profiles(artifact, EngineLimits())["tracker_encoder"]
    onnx_file = tensorrt_graph_file(artifact, "tracker_encoder")
    assert sidecar_problems(read, onnx_file, "10.13.0.35", "sm_90") == []
    assert sidecar_problems(read, onnx_file, "10.13.0.35", None) == []  # capability unknown: TensorRT checks
    assert sidecar_problems(read, onnx_file, "10.14.1.48", "sm_90") == [
        "it was built with TensorRT 10.13.0.35, this is 10.14.1.48"
    ]
    assert "compute capability sm_90, this one is sm_80" in sidecar_problems(read, onnx_file, "10.13.0.35",
                                                                            "sm_80")[0]
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    assert "re-exported" in sidecar_problems(read, onnx_file, "10.13.0.35", "sm_90")[0]


def test_portable_engines_tolerate_other_versions_and_gpus(tmp_path, artifact):
    record = _write_sidecar(artifact, "hit_filter", tmp_path, version_compatible=True,
                            hardware_compatibility_level="AMPERE_PLUS")
    onnx_file = tensorrt_graph_file(artifact, "hit_filter")
    assert sidecar_problems(record, onnx_file, "10.15.1.29", "sm_80") == []
    assert sidecar_problems(record, onnx_file, "11.4.0.106", "sm_80") == [
        "it was built with TensorRT 10.13.0.35, this is 11.4.0.106"
    ]


def test_unreadable_sidecars_name_the_file(tmp_path):
    missing = tmp_path / "hit_filter.engine.json"
    with pytest.raises(EngineError, match=f"{missing}: missing; build the engines with `trackrt build"):
        read_sidecar(missing)
    missing.write_text("{not json")
    with pytest.raises(EngineError, match="cannot read"):
        read_sidecar(missing)
    missing.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(EngineError, match="format is 'something-else', expected 'trackrt-tensorrt-engine'"):
        read_sidecar(missing)


def test_shapes_outside_the_profile_are_refused_with_names():
    profile = ((1, 1, 8), (1, 600, 8), (1, 1000, 8))
    check_shape_in_profile("hit_filter", "hit_features", (1, 1000, 8), profile)
    with pytest.raises(ValueError, match="graph hit_filter: input hit_features axis 1 is 1001, outside the "
                                         "engine's profile \\[1, 1000\\]"):
        check_shape_in_profile("hit_filter", "hit_features", (1, 1001, 8), profile)
    with pytest.raises(ValueError, match="rank 2"):
        check_shape_in_profile("hit_filter", "hit_features", (1, 10), profile)


class _View:
    """Stands in for a polygraphy DeviceView: `numpy()` returns the host copy."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def numpy(self) -> np.ndarray:
        return self.array


class _FakeRunner:
    """Records feeds and answers like polygraphy's TrtRunner.infer(copy_outputs_to_host=False)."""

    def __init__(self):
        self.feeds: list[dict] = []

    def infer(self, feeds, copy_outputs_to_host):
        assert copy_outputs_to_host is False
        self.feeds.append(feeds)
        n = feeds["hit_features"].shape[1]
        return {"seed_logits": _View(np.arange(n, dtype=np.float32)[None]),
                "hit_embeddings": _View(np.ones((1, n, 4), np.float32))}


def test_graph_runner_checks_profiles_before_running_and_returns_host_copies():
    fake = _FakeRunner()
    profile = {"hit_features": ((1, 1, 8), (1, 50, 8), (1, 100, 8))}
    outputs = ("hit_embeddings", "seed_logits")
    runner = TrtGraphRunner("tracker_encoder", fake, ("hit_features",), outputs, profile)
    features = np.asfortranarray(np.zeros((1, 30, 8), np.float32))
    outputs = runner.run({"hit_features": features})
    assert list(outputs) == ["hit_embeddings", "seed_logits"]
    np.testing.assert_array_equal(outputs["seed_logits"], np.arange(30, dtype=np.float32)[None])
    assert fake.feeds[0]["hit_features"].flags.c_contiguous
    with pytest.raises(ValueError, match="axis 1 is 101"):
        runner.run({"hit_features": np.zeros((1, 101, 8), np.float32)})
    assert len(fake.feeds) == 1  # refused before the engine ran
    with pytest.raises(ValueError, match="do not match"):
        runner.run({"features": features})


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message given without TensorRT")
def test_without_tensorrt_the_backend_says_how_to_install_it(artifact):
    with pytest.raises(BackendUnavailable, match="pip install 'trackrt\\[tensorrt\\]'"):
        Tracker.load(artifact.directory, backend="tensorrt", device="cuda")
    with pytest.raises(BackendUnavailable, match="runs on the current CUDA device"):
        Tracker.load(artifact.directory, backend="tensorrt", device="cpu")
    result = CliRunner().invoke(trackrt_main, ["build-engines", str(artifact.directory)])
    assert result.exit_code == 2
    assert "needs TensorRT >= 10.9 and polygraphy" in result.output


def test_auto_falls_back_when_tensorrt_cannot_run(artifact):
    with Tracker.load(artifact.directory, backend="auto", device="cpu") as tracker:
        assert tracker.backend.name == "onnxruntime"


def _fake_tensorrt(calls: list) -> tuple[types.ModuleType, types.ModuleType]:
    """A `tensorrt` package whose `tensorrt.plugin` records the plugin definitions it is given."""
    trt = types.ModuleType("tensorrt")
    trtp = types.ModuleType("tensorrt.plugin")
    for name in ("TensorDesc", "Tensor", "AutoTuneCombination", "KernelLaunchParams", "SymExprs"):
        setattr(trtp, name, type(name, (), {}))

    def decorator(kind):
        def declare(plugin_id):
            def wrap(function):
                calls.append((kind, plugin_id))
                return function
            return wrap
        return declare

    for kind in ("register", "autotune", "aot_impl", "impl"):
        setattr(trtp, kind, decorator(kind))
    trt.plugin = trtp
    return trt, trtp


def test_importing_the_backend_registers_the_lsca_plugin(monkeypatch):
    import trackrt.plugins.lsca.tensorrt_plugin as plugin_module
    import trackrt.runtime.backends.tensorrt as backend_module

    calls: list = []
    trt, trtp = _fake_tensorrt(calls)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(plugin_module, "_registered", [])
    try:
        reloaded = importlib.reload(backend_module)
        assert reloaded.LSCA_PLUGIN_PROBLEM is None
        plugin_id = "trackrt::LocalStridedCrossAttention"
        assert calls == [("register", plugin_id), ("autotune", plugin_id), ("aot_impl", plugin_id),
                         ("impl", plugin_id)]
        plugin_module.register_lsca_plugin()
        assert len(calls) == 4  # once per process
    finally:
        monkeypatch.undo()
        importlib.reload(backend_module)


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the state without TensorRT")
def test_without_tensorrt_the_plugin_problem_is_recorded():
    import trackrt.runtime.backends.tensorrt as backend_module

    assert "plugin API is not available" in backend_module.LSCA_PLUGIN_PROBLEM


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engines_of_the_shipped_chain_match_onnxruntime(precision, tmp_path, trackml_dir):
    """Export the shipped chain with LSCA plugin nodes, build engines, reload them, compare with ORT."""
    pytest.importorskip("torch")
    from trackrt.data.simulate import SimulationConfig, simulate_event
    from trackrt.export.config import ExportOptions
    from trackrt.export.exporter import export_artifact
    from trackrt.metrics import evaluate_tracks
    from trackrt.runtime.engine_builder import EngineBuildOptions, build_engines

    checkpoints = Path(__file__).resolve().parents[1] / "checkpoints"
    directory = tmp_path / "artifact"
    export_artifact(checkpoints / "small-dq-lsca-seed", directory, options=ExportOptions(lsca_mode="plugin"),
                    filter_checkpoint=checkpoints / "small-hit-filter")
    limits = EngineLimits(max_hits=20_000, opt_hits=6_000, max_kept_hits=6_000, opt_kept_hits=1_300,
                          max_queries=1_000, opt_queries=150)
    try:
        build_engines(load_artifact(directory), EngineBuildOptions(precision=precision, limits=limits))
    except EngineError as exc:
        pytest.skip(f"this TensorRT cannot build {precision} engines from these graphs: {exc}")
    event = simulate_event(SimulationConfig(pileup=20.0, detector=str(trackml_dir)), 1, 3)
    results = {}
    for backend, device in (("tensorrt", "cuda"), ("onnxruntime", "cpu")):
        with Tracker.load(directory, backend=backend, device=device) as tracker:
            result = tracker.reconstruct(event.hits, event_id=1)
        results[backend] = evaluate_tracks(result.tracks, event.truth, event.particles,
                                           track_scores=result.track_scores, hits=event.hits)
    tolerance = 0.005 if precision == "fp32" else 0.01  # a hit at a threshold may flip between kernels
    assert abs(results["tensorrt"].efficiency - results["onnxruntime"].efficiency) <= tolerance
    assert abs(results["tensorrt"].fake_rate - results["onnxruntime"].fake_rate) <= tolerance
