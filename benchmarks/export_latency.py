"""ONNX Runtime vs PyTorch eager latency on CPU of the exported graphs; writes results/export_latency.*.

Random weights (`small` preset, seeded): latency does not depend on training. Hit counts follow DESIGN §3:
⟨μ⟩ = 20 → 6k hits into the filter, 1.5k after it, ~110 seed queries; ⟨μ⟩ = 200 → 57k, 10k, ~1,100.
The dynamic-query cap M is the Pix1.0 reference value (2,000) and `fq-ma` has 2,000 learned queries, so
the decoders see realistic query counts. Timed per call, one thread for both runtimes, runs interleaved
(eager, ORT, eager, …) after warm-up; ratios use medians (the machines are shared and noisy). Host-side
seed selection (`select_seeds`) is timed alone and inside the `tracker/*` chains (encoder → seeds →
decoder), whose seed count comes from synthetic seed logits (random weights would select every hit).

A second part measures the alternative to host-side seed selection: one decoder graph that picks seeds
in-graph with TopK (K = M, static) and runs the decoder on M padded queries.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import nn  # noqa: E402

from trackrt.data.tracks import select_seeds  # noqa: E402
from trackrt.export.config import (  # noqa: E402
    HIT_FILTER,
    NUM_HITS,
    TRACKER_ENCODER,
    ExportOptions,
    GraphSpec,
    TensorSpec,
)
from trackrt.export.exporter import export_module, runtime_copies  # noqa: E402
from trackrt.export.graph_checks import check_topk  # noqa: E402
from trackrt.export.graphs import HitFilterGraph, TrackerEncoderGraph, tracker_decoder_graph  # noqa: E402
from trackrt.model.config import preset  # noqa: E402
from trackrt.plugins.lsca.onnx_function import FUNCTION_BLOCK as BLOCK  # noqa: E402
from trackrt.train.checkpoint import build_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = {  # DESIGN §3: pixel hits per event, hits after the filter, seeds (≈ target particles at Pix1.0)
    "mu20": {"filter_hits": 6_000, "tracker_hits": 1_500, "queries": 110},
    "mu200": {"filter_hits": 57_000, "tracker_hits": 10_000, "queries": 1_100},
}
MAX_QUERIES = 2_000  # Pix1.0 cap M (DESIGN §4)
VARIANTS = ("fq-ma", "dq-ma", "dq-lsca")
SEED_THRESHOLD = 0.1


def _session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _runnable(model: onnx.ModelProto) -> onnx.ModelProto:
    """The ONNX Runtime copy (LSCA function attached) when the graph has the custom node."""
    if any(n.domain == "trackrt" for n in model.graph.node):
        return runtime_copies(model)[0]
    return model


def _stats(milliseconds: list[float]) -> dict[str, float]:
    values = np.asarray(milliseconds)
    return {
        "mean_ms": float(values.mean()),
        "p50_ms": float(np.percentile(values, 50)),
        "p90_ms": float(np.percentile(values, 90)),
        "p99_ms": float(np.percentile(values, 99)),
        "runs": len(values),
        "throughput_per_s": float(1000.0 / values.mean()),
    }


def _interleaved(
    calls: dict[str, Callable[[], Any]], warmup: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Time each call `repeats` times, alternating between them, after `warmup` untimed rounds."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(1000.0 * (time.perf_counter() - start))
    return {name: _stats(values) for name, values in times.items()}


def _torch_call(module: nn.Module, *inputs: np.ndarray) -> Callable[[], Any]:
    tensors = [torch.from_numpy(x) for x in inputs]

    def call() -> Any:
        with torch.no_grad():
            return module(*tensors)

    return call


def _ort_call(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    return lambda: session.run(None, feeds)


def _seed_logits(num_hits: int, num_seeds: int, rng: np.random.Generator) -> np.ndarray:
    """Seed logits with exactly `num_seeds` hits above the seed threshold (random weights give ~all)."""
    logits = rng.uniform(-8.0, -4.0, num_hits).astype(np.float32)
    logits[rng.choice(num_hits, num_seeds, replace=False)] = rng.uniform(0.0, 4.0, num_seeds)
    return logits


class InGraphSeedDecoder(nn.Module):
    """The alternative: seeds chosen in the graph (threshold, TopK with K = M, ascending), M padded queries.

    Padded queries get index -1 in the third output; the decoder still computes all M of them.
    """

    def __init__(self, tracker: nn.Module, max_queries: int, threshold: float) -> None:
        super().__init__()
        self.tracker, self.max_queries = tracker, max_queries
        self.threshold_logit = float(np.log(threshold / (1.0 - threshold)))

    def forward(self, hit_embeddings: torch.Tensor, seed_logits: torch.Tensor):
        num_hits = seed_logits.shape[1]
        floor = torch.full_like(seed_logits, -1e9)
        scores = torch.where(seed_logits >= self.threshold_logit, seed_logits, floor)
        padded = torch.cat([scores, torch.full((1, self.max_queries), -2e9)], dim=1)
        values, indices = torch.topk(padded, self.max_queries, dim=1)
        valid = values > -1e8
        order_key = torch.where(valid, indices, indices + 2 * self.max_queries + num_hits)
        ordered, _ = torch.topk(-order_key, self.max_queries, dim=1)
        ordered = -ordered
        query_valid = ordered < num_hits
        final = self.tracker.decode(hit_embeddings, torch.where(query_valid, ordered, 0))[-1]
        return final["track_logits"], final["assignment_logits"], torch.where(query_valid, ordered, -1)


def _in_graph_spec(max_queries: int) -> GraphSpec:
    return GraphSpec(
        name="tracker_decoder_topk",
        inputs=(
            TensorSpec("hit_embeddings", "float32", ("batch", NUM_HITS, "embed_dim"), "encoder output"),
            TensorSpec("seed_logits", "float32", ("batch", NUM_HITS), "seed logits"),
        ),
        outputs=(
            TensorSpec("track_logits", "float32", ("batch", f"{max_queries}"), "padded"),
            TensorSpec("assignment_logits", "float32", ("batch", f"{max_queries}", NUM_HITS), "padded"),
            TensorSpec(
                "query_indices", "int64", ("batch", f"{max_queries}"), "seed hit per query, -1 = padding"
            ),
        ),
        dynamic_axes=(NUM_HITS,),
    )


def build_models(preset_name: str) -> dict[str, nn.Module]:
    """Seeded random-weight hit filter and one tracker per decoder variant."""
    torch.manual_seed(2026)
    models: dict[str, nn.Module] = {"hit_filter": build_model(preset(preset_name, "hit_filter")).eval()}
    for variant in VARIANTS:
        overrides = {"variant": variant, "max_queries": MAX_QUERIES, "num_queries": MAX_QUERIES}
        models[variant] = build_model(preset(preset_name, "tracker", overrides=overrides)).eval()
    return models


def export_graphs(models: dict[str, nn.Module], lsca_modes: tuple[str, ...]) -> dict[str, onnx.ModelProto]:
    """Hit filter and tracker encoder in each LSCA mode; each variant's decoder (both modes for dq-lsca)."""
    graphs = {}
    features = models["hit_filter"].config.features.num_features
    for mode in lsca_modes:
        options = ExportOptions(lsca_mode=mode)  # type: ignore[arg-type]
        example = (torch.randn(1, options.example_num_hits, features),)
        graphs[f"hit_filter/{mode}"] = export_module(
            HitFilterGraph(models["hit_filter"]), example, HIT_FILTER, options
        )
        encoder = TrackerEncoderGraph(models["dq-lsca"])
        graphs[f"tracker_encoder/{mode}"] = export_module(encoder, example, TRACKER_ENCODER, options)
        for variant in VARIANTS:
            if variant != "dq-lsca" and mode != lsca_modes[0]:
                continue
            module, inputs, spec = tracker_decoder_graph(models[variant], options)
            graphs[f"tracker_decoder/{variant}/{mode}"] = export_module(module, inputs, spec, options)
    return {name: _runnable(model) for name, model in graphs.items()}


def function_bytes(num_hits: int, window: int, dim: int, heads: int) -> int:
    """Memory of the ORT LSCA function's blocked sliding window (fp32): K/V blocks and scores.

    Blocks of `BLOCK` queries each gather BLOCK + w keys; the scores are [H, N, BLOCK + w].
    """
    span = BLOCK + window
    return 2 * -(-num_hits // BLOCK) * span * dim * 4 + heads * num_hits * span * 4


def time_components(models, graphs, sizes, threads, warmup, repeats, memory_limit) -> list[dict[str, Any]]:
    """Filter, encoder, decoder per variant: ONNX Runtime vs eager, side by side."""
    rng = np.random.default_rng(7)
    rows = []
    sessions = {name: _session(model, threads) for name, model in graphs.items()}
    features = models["hit_filter"].config.features.num_features
    modes = sorted({name.rsplit("/", 1)[1] for name in graphs})
    for size_name, size in sizes.items():
        filter_x = rng.standard_normal((1, size["filter_hits"], features)).astype(np.float32)
        tracker_x = rng.standard_normal((1, size["tracker_hits"], features)).astype(np.float32)
        with torch.no_grad():
            embeddings = models["dq-lsca"].encode(torch.from_numpy(tracker_x))[0].numpy()
        seeds = _seed_logits(size["tracker_hits"], size["queries"], rng)
        queries = select_seeds(seeds, SEED_THRESHOLD, MAX_QUERIES)[None]
        jobs: list[tuple[str, str, nn.Module, tuple, str, dict]] = []
        for mode in modes:
            window = models["hit_filter"].config.encoder.window
            dim = models["hit_filter"].config.encoder.dim
            heads = models["hit_filter"].config.encoder.num_heads
            needed = function_bytes(size["filter_hits"], window, dim, heads)
            if mode == "plugin" and needed > memory_limit:
                reason = f"the ORT LSCA function needs {needed / 2**30:.1f} GiB for the sliding window"
                rows.append(
                    {"size": size_name, "component": "hit_filter", "lsca_mode": mode, "skipped": reason}
                )
            else:
                jobs.append(
                    (
                        "hit_filter",
                        mode,
                        HitFilterGraph(models["hit_filter"]),
                        (filter_x,),
                        f"hit_filter/{mode}",
                        {"hit_features": filter_x},
                    )
                )
            jobs.append(
                (
                    "tracker_encoder",
                    mode,
                    TrackerEncoderGraph(models["dq-lsca"]),
                    (tracker_x,),
                    f"tracker_encoder/{mode}",
                    {"hit_features": tracker_x},
                )
            )
        for variant in VARIANTS:
            for mode in modes:
                key = f"tracker_decoder/{variant}/{mode}"
                if key not in sessions:
                    continue
                module, _, spec = tracker_decoder_graph(models[variant], ExportOptions())
                inputs = (embeddings, queries) if variant != "fq-ma" else (embeddings,)
                feeds = dict(zip(spec.input_names, inputs, strict=True))
                jobs.append((f"tracker_decoder/{variant}", mode, module, inputs, key, feeds))
        for component, mode, module, inputs, key, feeds in jobs:
            timed = _interleaved(
                {"torch_eager": _torch_call(module, *inputs), "onnxruntime": _ort_call(sessions[key], feeds)},
                warmup,
                repeats,
            )
            speedup = timed["torch_eager"]["p50_ms"] / timed["onnxruntime"]["p50_ms"]
            rows.append(
                {
                    "size": size_name,
                    "component": component,
                    "lsca_mode": mode,
                    **size,
                    "num_queries": int(queries.shape[1])
                    if "dq-" in component
                    else (MAX_QUERIES if "fq-ma" in component else None),
                    "torch_eager": timed["torch_eager"],
                    "onnxruntime": timed["onnxruntime"],
                    "speedup_ort_over_eager": speedup,
                }
            )
            _echo(size_name, component, mode, timed, speedup)
        seed_ms = _interleaved(
            {"select_seeds": lambda s=seeds: select_seeds(s, SEED_THRESHOLD, MAX_QUERIES)}, warmup, repeats
        )["select_seeds"]
        rows.append({"size": size_name, "component": "select_seeds (numpy, host)", "numpy": seed_ms, **size})
        for variant in VARIANTS:
            for mode in modes:
                decoder_key = f"tracker_decoder/{variant}/{mode}"
                if decoder_key not in sessions:  # masked-attention decoders have no LSCA: one graph for both
                    decoder_key = next(k for k in sessions if k.startswith(f"tracker_decoder/{variant}/"))
                calls = _tracker_chains(
                    models[variant],
                    sessions[f"tracker_encoder/{mode}"],
                    sessions[decoder_key],
                    tracker_x,
                    seeds,
                )
                timed = _interleaved(calls, warmup, repeats)
                speedup = timed["torch_eager"]["p50_ms"] / timed["onnxruntime"]["p50_ms"]
                rows.append(
                    {
                        "size": size_name,
                        "component": f"tracker/{variant}",
                        "lsca_mode": mode,
                        **size,
                        "torch_eager": timed["torch_eager"],
                        "onnxruntime": timed["onnxruntime"],
                        "speedup_ort_over_eager": speedup,
                    }
                )
                _echo(size_name, f"tracker/{variant}", mode, timed, speedup)
    return rows


def _echo(size_name: str, label: str, mode: str, timed: dict[str, dict[str, float]], speedup: float) -> None:
    eager, onnxruntime = timed["torch_eager"]["p50_ms"], timed["onnxruntime"]["p50_ms"]
    click.echo(
        f"{size_name:6} {label:26} {mode:6} eager {eager:9.1f} ms  ORT {onnxruntime:9.1f} ms  ×{speedup:.2f}"
    )


def _tracker_chains(
    tracker: nn.Module,
    encoder: ort.InferenceSession,
    decoder: ort.InferenceSession,
    hit_features: np.ndarray,
    seed_logits: np.ndarray,
) -> dict[str, Callable[[], Any]]:
    """Encoder → host seed selection → decoder, in eager PyTorch and in ONNX Runtime.

    Seeds come from `seed_logits` (a realistic count) rather than the random-weight encoder's output.
    """
    dynamic = tracker.config.dynamic_queries

    def eager() -> Any:
        with torch.no_grad():
            embeddings, _ = tracker.encode(torch.from_numpy(hit_features))
            queries = None
            if dynamic:
                queries = torch.from_numpy(select_seeds(seed_logits, SEED_THRESHOLD, MAX_QUERIES)[None])
            return tracker.decode(embeddings, queries)[-1]

    def onnxruntime() -> Any:
        embeddings, _ = encoder.run(None, {"hit_features": hit_features})
        feeds = {"hit_embeddings": embeddings}
        if dynamic:
            feeds["query_indices"] = select_seeds(seed_logits, SEED_THRESHOLD, MAX_QUERIES)[None]
        return decoder.run(None, feeds)

    return {"torch_eager": eager, "onnxruntime": onnxruntime}


def seed_selection_experiment(models, sizes, threads, warmup, repeats) -> dict[str, Any]:
    """Host-side seeds (encoder → select_seeds → decoder on Q) vs in-graph TopK on M padded queries."""
    rng = np.random.default_rng(11)
    tracker = models["dq-lsca"]
    options = ExportOptions(lsca_mode="plugin")
    example = (
        torch.randn(1, options.example_num_hits, tracker.config.encoder.dim),
        torch.randn(1, options.example_num_hits),
    )
    in_graph = {}
    checks = {}
    for max_queries in (MAX_QUERIES, 4_000):
        module = InGraphSeedDecoder(tracker, max_queries, SEED_THRESHOLD)
        model = export_module(module, example, _in_graph_spec(max_queries), options)
        result = check_topk(model)
        checks[str(max_queries)] = {"passed": result.passed, "detail": result.detail}
        in_graph[max_queries] = _runnable(model)
    session_in_graph = _session(in_graph[MAX_QUERIES], threads)
    module, inputs, spec = tracker_decoder_graph(tracker, options)
    session_host = _session(_runnable(export_module(module, inputs, spec, options)), threads)
    rows = []
    for size_name, size in sizes.items():
        embeddings = rng.standard_normal((1, size["tracker_hits"], tracker.config.encoder.dim)).astype(
            np.float32
        )
        seeds = _seed_logits(size["tracker_hits"], size["queries"], rng)

        def host(seeds=seeds, embeddings=embeddings):
            queries = select_seeds(seeds, SEED_THRESHOLD, MAX_QUERIES)[None]
            return session_host.run(None, {"hit_embeddings": embeddings, "query_indices": queries})

        def graph(seeds=seeds, embeddings=embeddings):
            return session_in_graph.run(None, {"hit_embeddings": embeddings, "seed_logits": seeds[None]})

        timed = _interleaved({"host_select_seeds": host, "in_graph_topk": graph}, warmup, repeats)
        chosen_host = select_seeds(seeds, SEED_THRESHOLD, MAX_QUERIES)
        in_graph_indices = graph()[2][0]
        rows.append(
            {
                "size": size_name,
                **size,
                **timed,
                "same_seeds": bool(np.array_equal(in_graph_indices[in_graph_indices >= 0], chosen_host)),
                "ratio_in_graph_over_host": timed["in_graph_topk"]["p50_ms"]
                / timed["host_select_seeds"]["p50_ms"],
            }
        )
        click.echo(
            f"{size_name:6} seeds: host {timed['host_select_seeds']['p50_ms']:8.1f} ms, in-graph TopK "
            f"{timed['in_graph_topk']['p50_ms']:8.1f} ms (M = {MAX_QUERIES} padded queries)"
        )
    return {
        "max_queries": MAX_QUERIES,
        "tensorrt_topk_check": checks,
        "runs": rows,
        "note": "in-graph padded queries change LSCA centres (stride N/M instead of N/Q) and take part in "
        "query self-attention, so its tracks differ from the contract's unless the model masks them",
    }


def plot(result: dict[str, Any], path: Path) -> None:
    """Bars: mean latency per component, eager vs ORT, per size; second row: seed-selection alternatives."""
    figure = Figure(figsize=(13, 8), layout="constrained")
    axes = figure.subplots(2, len(result["sizes"]), squeeze=False)
    for column, size_name in enumerate(result["sizes"]):
        rows = [r for r in result["components"] if r["size"] == size_name and "onnxruntime" in r]
        labels = [f"{r['component'].replace('tracker_', '')}\n({r['lsca_mode']})" for r in rows]
        x = np.arange(len(rows))
        ax = axes[0, column]
        ax.bar(x - 0.2, [r["torch_eager"]["p50_ms"] for r in rows], 0.4, label="PyTorch eager")
        ax.bar(x + 0.2, [r["onnxruntime"]["p50_ms"] for r in rows], 0.4, label="ONNX Runtime")
        for i, r in enumerate(rows):
            ax.annotate(
                f"×{r['speedup_ort_over_eager']:.2f}",
                (i, max(r["torch_eager"]["p50_ms"], r["onnxruntime"]["p50_ms"])),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.set_xticks(x, labels, rotation=60, fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("median latency per call [ms]")
        ax.set_title(
            f"{size_name}: {result['sizes'][size_name]['filter_hits']} hits → "
            f"{result['sizes'][size_name]['tracker_hits']} after filter"
        )
        ax.legend(fontsize=7)
        seed_row = next(r for r in result["seed_selection"]["runs"] if r["size"] == size_name)
        ax = axes[1, column]
        names = ["host_select_seeds", "in_graph_topk"]
        ax.bar(names, [seed_row[n]["p50_ms"] for n in names], color=["tab:green", "tab:red"])
        ax.set_ylabel("median: seeds + decoder [ms]")
        ax.set_title(
            f"dq-lsca seeds: {seed_row['queries']} valid of M = {result['seed_selection']['max_queries']}"
        )
    figure.suptitle(
        f"trackrt export latency, CPU ({result['machine']['processor'] or platform.machine()}), "
        f"{result['threads']} thread(s), {result['preset']} preset, random weights"
    )
    figure.savefig(path, dpi=110)


@click.command()
@click.option("--preset", "preset_name", default="small", show_default=True)
@click.option("--sizes", default="mu20,mu200", show_default=True, help="Comma-separated keys of SIZES.")
@click.option("--repeats", default=5, show_default=True)
@click.option("--warmup", default=1, show_default=True)
@click.option("--threads", default=1, show_default=True, help="Intra-op threads for both runtimes.")
@click.option("--lsca-modes", default="plugin,onnx", show_default=True)
@click.option(
    "--memory-limit-gib",
    default=2.0,
    show_default=True,
    help="Skip ORT runs whose LSCA function would need more memory than this.",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
def main(
    preset_name: str,
    sizes: str,
    repeats: int,
    warmup: int,
    threads: int,
    lsca_modes: str,
    memory_limit_gib: float,
    out: Path,
) -> None:
    """Measure and write export_latency.json and export_latency.png."""
    torch.set_num_threads(threads)
    chosen = {name: SIZES[name] for name in sizes.split(",")}
    models = build_models(preset_name)
    start = time.perf_counter()
    graphs = export_graphs(models, tuple(lsca_modes.split(",")))
    click.echo(f"exported {len(graphs)} graphs in {time.perf_counter() - start:.0f} s")
    result = {
        "preset": preset_name,
        "weights": "random (seeded); latency does not depend on training",
        "threads": threads,
        "repeats": repeats,
        "warmup": warmup,
        "sizes": chosen,
        "max_queries": MAX_QUERIES,
        "machine": {
            "processor": platform.processor(),
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
        },
        "components": time_components(
            models, graphs, chosen, threads, warmup, repeats, memory_limit_gib * 2**30
        ),
        "seed_selection": seed_selection_experiment(models, chosen, threads, warmup, repeats),
    }
    result["machine"]["load_average_after"] = os.getloadavg()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".json") as handle:
        json.dump(result, handle, indent=2)
    os.replace(handle.name, out / "export_latency.json")
    plot(result, out / "export_latency.png")
    click.echo(f"wrote {out / 'export_latency.json'} and {out / 'export_latency.png'}")


if __name__ == "__main__":
    main()
