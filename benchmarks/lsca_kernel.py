"""Benchmark the LSCA op's backends side by side; writes results/lsca_kernel_{cpu,gpu}.{json,png}.

Timed: one call of `local_window_attention` (mask or block-mask construction included, since centres
change every event) on tensors already on the device; no host<->device copies, no CUDA graphs.
Warm-up calls first (FlexAttention's compilation and Triton's JIT happen there), then `--iters`
timed calls: CUDA events on GPU, perf_counter on CPU.  Peak memory is the increase over the inputs:
torch.cuda.max_memory_allocated on GPU; on CPU the process's peak RSS (VmHWM, reset through
/proc/self/clear_refs) with glibc's mmap threshold fixed so freed tensors leave RSS.  Each backend's
output is checked against the first backend that ran for the case (max abs difference in the JSON).

GPU (defaults): N = 10k, 20k, 60k; Q = N/9; w = 64, 128; H = 8, D = 32; fp16; triton, dense (masked
SDPA), flex, gathered; plus the encoder case Q = N, w = 512.  CPU (`--device cpu`): N = 2k, 5k, 10k in
fp32 with dense, gathered, blocked and `ort` (the ONNX Runtime function of plugin-mode files, one
thread; `ort-gathered` / `ort-blocked` time one of its two formulations).
"""

from __future__ import annotations

import os
import sys

if "--device" in sys.argv and "cpu" in sys.argv and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)  # large frees leave RSS, so RSS peaks mean something
    os.execv(sys.executable, [sys.executable, *sys.argv])

import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np
import torch
from matplotlib.figure import Figure

from trackrt.model.attention import local_window_attention, strided_centers

RESULTS = Path(__file__).resolve().parent / "results"
CPU_MEMORY_LIMIT = 4 << 30  # skip a CPU case whose estimated working set exceeds this (shared 2-core box)


@dataclass(frozen=True)
class Case:
    """One problem size: Q queries against N keys with window w (encoder: Q = N, centres = arange)."""

    kind: str
    num_queries: int
    num_keys: int
    window: int


def cases(sizes: list[int], windows: list[int], encoder_window: int, encoder_sizes: list[int]) -> list[Case]:
    out = [Case("decoder", n // 9, n, w) for w in windows for n in sizes]
    return out + [Case("encoder", n, n, encoder_window) for n in encoder_sizes]


def estimated_bytes(backend: str, case: Case, heads: int, head_dim: int, itemsize: int) -> int:
    """Rough working set of a backend (to skip cases the machine cannot hold; never reported as measured)."""
    q, n, w = case.num_queries, case.num_keys, case.window
    if backend == "dense":
        return heads * q * n * 8 + q * n
    if backend == "gathered":
        return 2 * heads * q * (w + 1) * head_dim * itemsize + heads * q * (w + 1) * 12
    if backend.startswith("ort"):  # fp32 inside; blocked: 64 queries against 64·N/Q + w keys
        blocked = backend == "ort-blocked" or (backend == "ort" and case.kind == "encoder")
        span = 64 * max(1, n // q) + w if blocked else 64 * (w + 1)
        return q // 64 * span * heads * (2 * head_dim * 4 + 64 * 8)
    if backend == "blocked":
        band = 64 + w
        return 2 * heads * q * band // 64 * head_dim * itemsize + min(heads * q * band * 12, 1 << 28)
    return 0


class Timer:
    """Per-call latency in ms and peak extra memory in bytes on one device."""

    def __init__(self, device: str) -> None:
        self.device = device

    def run(self, fn: Callable[[], torch.Tensor], warmup: int, iters: int) -> tuple[list[float], int | None]:
        for _ in range(warmup):
            fn()
        self._sync()
        baseline = self._reset_peak()
        times = []
        for _ in range(iters):
            if self.device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                start_s = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start_s) * 1e3)
        return times, self._peak(baseline)

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _reset_peak(self) -> int | None:
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated()
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return _proc_status_kib("VmRSS") * 1024
        except OSError:
            return None

    def _peak(self, baseline: int | None) -> int | None:
        if baseline is None:
            return None
        if self.device == "cuda":
            return torch.cuda.max_memory_allocated() - baseline
        return max(0, _proc_status_kib("VmHWM") * 1024 - baseline)


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def summarize(times: list[float]) -> dict[str, float]:
    array = np.asarray(times)
    return {"mean_ms": float(array.mean()), "p50_ms": float(np.percentile(array, 50)),
            "p90_ms": float(np.percentile(array, 90)), "p99_ms": float(np.percentile(array, 99)),
            "min_ms": float(array.min())}


ORT_FORMULATIONS = {  # the ORT function of plugin-mode files (CPU, fp32/fp16): the op or one formulation
    "ort": "LocalStridedCrossAttention",
    "ort-gathered": "LocalStridedCrossAttentionGathered",
    "ort-blocked": "LocalStridedCrossAttentionBlocked",
}


def ort_calls(backend: str, window: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
              centers: torch.Tensor) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """ONNX Runtime calls (1 intra-op thread) of the LSCA function on CPU tensors: one for timing (with
    ORT's memory arena, as deployed) and one without the arena, whose allocations show in peak RSS."""
    import onnx
    import onnxruntime as ort

    from trackrt.plugins.lsca.onnx_function import attach_lsca_function, make_lsca_model

    types = {torch.float32: onnx.TensorProto.FLOAT, torch.float16: onnx.TensorProto.FLOAT16}
    if q.device.type != "cpu" or q.dtype not in types:
        raise RuntimeError(f"{backend}: CPU fp32/fp16 tensors only")
    model = attach_lsca_function(make_lsca_model(types[q.dtype], window, 1, head_dim=q.shape[-1]))
    model.graph.node[0].op_type = ORT_FORMULATIONS[backend]
    feed = {"query": q.numpy(), "key": k.numpy(), "value": v.numpy(),
            "centers": centers.to(torch.int32).numpy(), "key_lengths": np.array([k.shape[2]], np.int32)}
    calls = []
    for arena in (True, False):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.enable_cpu_mem_arena = arena
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        calls.append(lambda session=session: torch.from_numpy(session.run(None, feed)[0]))
    return calls[0], calls[1]


def run_case(case: Case, backends: list[str], device: str, dtype: torch.dtype, heads: int, head_dim: int,
             warmup: int, iters: int) -> list[dict]:
    """Time every backend on one case; outputs are compared with the first backend that ran."""
    generator = torch.Generator(device=device).manual_seed(case.num_keys)
    q, k, v = (torch.randn(1, heads, size, head_dim, generator=generator, device=device).to(dtype)
               for size in (case.num_queries, case.num_keys, case.num_keys))
    if case.kind == "encoder":
        centers = torch.arange(case.num_keys, device=device)[None]
    else:
        centers = strided_centers(case.num_queries, case.num_keys, device=device)[None]
    timer, rows, first = Timer(device), [], None
    for backend in backends:
        row = {**asdict(case), "backend": backend}
        estimate = estimated_bytes(backend, case, heads, head_dim, q.element_size())
        if device == "cpu" and estimate > CPU_MEMORY_LIMIT:
            rows.append({**row, "status": f"skipped: estimated {estimate / 2**30:.1f} GiB working set"})
            continue

        def call(backend: str = backend) -> torch.Tensor:
            return local_window_attention(q, k, v, centers, case.window, True, backend=backend)

        memory_call = None
        try:
            if backend in ORT_FORMULATIONS:
                call, memory_call = ort_calls(backend, case.window, q, k, v, centers)
            with torch.no_grad():
                out = call()
                times, peak = timer.run(call, warmup, iters)
                if memory_call is not None:
                    peak = timer.run(memory_call, 1, 1)[1]
        except (torch.cuda.OutOfMemoryError, RuntimeError, ImportError) as exc:
            rows.append({**row, "status": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"})
            continue
        if first is None:
            first, difference = (backend, out.float()), 0.0
        else:
            difference = float((out.float() - first[1]).abs().max())
        rows.append({**row, "status": "ok", **summarize(times), "iters": iters,
                     "queries_per_s": case.num_queries / (np.mean(times) / 1e3), "peak_extra_bytes": peak,
                     "max_abs_diff_vs": first[0], "max_abs_diff": difference})
        print(f"{case.kind:8s} Q={case.num_queries:6d} N={case.num_keys:6d} w={case.window:4d} {backend:9s} "
              f"mean {rows[-1]['mean_ms']:9.3f} ms  p50 {rows[-1]['p50_ms']:9.3f}  peak "
              f"{(peak or 0) / 2**20:8.1f} MiB  diff {difference:.2e}", flush=True)
    return rows


def environment(device: str) -> dict[str, object]:
    info: dict[str, object] = {
        "device": device, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(),
        "cpu": _cpu_model(), "load_average_1min_at_start": os.getloadavg()[0],
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "cuda_graphs": False, "host_device_copies_timed": False,
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update({"gpu": props.name, "capability": f"{props.major}.{props.minor}",
                     "gpu_memory_bytes": props.total_memory, "cuda": torch.version.cuda})
        try:
            import triton

            info["triton"] = triton.__version__
        except ImportError:
            info["triton"] = None
    return info


PLOTTED = [("mean_ms", "mean latency [ms]", 1.0), ("peak_extra_bytes", "peak extra memory [MiB]", 2**-20)]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def plot(rows: list[dict], path: Path, title: str) -> None:
    """Mean latency (top) and peak extra memory (bottom) against N; one column per (kind, window)."""
    panels = sorted({(r["kind"], r["window"]) for r in rows})
    figure = Figure(figsize=(5 * len(panels), 8), constrained_layout=True)
    axes = figure.subplots(2, len(panels), squeeze=False)
    for column, (kind, window) in enumerate(panels):
        for row_index, (key, label, scale) in enumerate(PLOTTED):
            axis = axes[row_index][column]
            for backend in sorted({r["backend"] for r in rows}):
                points = sorted((r["num_keys"], r[key] * scale) for r in rows
                                if r["kind"] == kind and r["window"] == window and r["backend"] == backend
                                and r["status"] == "ok" and r.get(key))
                if points:
                    axis.plot(*zip(*points, strict=True), marker="o", label=backend)
            queries = "Q = N/9" if kind == "decoder" else "Q = N"
            axis.set(title=f"{kind}, w={window} ({queries})", xlabel="N (keys)", ylabel=label,
                     xscale="log", yscale="log")
            axis.grid(True, which="both", alpha=0.3)
            axis.legend()
    figure.suptitle(title)
    figure.savefig(path, dpi=110)


def int_list(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item]


@click.command()
@click.option("--device", type=click.Choice(["cuda", "cpu"]), default="cuda", show_default=True)
@click.option("--sizes", default=None, help="Comma-separated N (default: 10k,20k,60k GPU; 2k,5k,10k CPU).")
@click.option("--windows", default="64,128", show_default=True)
@click.option("--encoder-window", default=512, show_default=True)
@click.option("--encoder-sizes", default=None, help="N for the encoder case (default: the --sizes).")
@click.option("--backends", default=None,
              help="Default: triton,dense,flex,gathered on GPU; dense,gathered,blocked,ort on CPU.")
@click.option("--dtype", type=click.Choice(["float16", "bfloat16", "float32"]), default=None,
              help="Default: float16 on GPU, float32 on CPU.")
@click.option("--heads", default=8, show_default=True)
@click.option("--head-dim", default=32, show_default=True)
@click.option("--warmup", default=None, type=int, help="Default: 5 GPU, 2 CPU.")
@click.option("--iters", default=None, type=int, help="Default: 50 GPU, 10 CPU.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
def main(device: str, sizes: str | None, windows: str, encoder_window: int, encoder_sizes: str | None,
         backends: str | None, dtype: str | None, heads: int, head_dim: int, warmup: int | None,
         iters: int | None, out: Path) -> None:
    """Run the LSCA backend comparison and write JSON + PNG."""
    gpu = device == "cuda"
    if gpu and not torch.cuda.is_available():
        raise click.UsageError("no CUDA device: use --device cpu")
    size_list = int_list(sizes or ("10000,20000,60000" if gpu else "2000,5000,10000"))
    default_backends = "triton,dense,flex,gathered" if gpu else "dense,gathered,blocked,ort"
    backend_list = (backends or default_backends).split(",")
    torch_dtype = getattr(torch, dtype or ("float16" if gpu else "float32"))
    warmup = warmup if warmup is not None else (5 if gpu else 2)
    iters = iters if iters is not None else (50 if gpu else 10)
    info = environment(device)
    rows: list[dict] = []
    encoder_list = int_list(encoder_sizes) if encoder_sizes else size_list
    settings = {"dtype": str(torch_dtype).removeprefix("torch."), "heads": heads, "head_dim": head_dim,
                "wrap": True, "warmup": warmup, "iters": iters, "backends": backend_list}
    for case in cases(size_list, int_list(windows), encoder_window, encoder_list):
        rows += run_case(case, backend_list, device, torch_dtype, heads, head_dim, warmup, iters)
        write_results(out, "gpu" if gpu else "cpu", settings, info, rows)


def write_results(out: Path, label: str, settings: dict, info: dict, rows: list[dict]) -> None:
    """Write the JSON and PNG of the cases run so far (after each case: a cut-off run keeps its figures)."""
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "lsca_kernel", "label": label.upper(),
        "timed": __doc__.split("\n\n")[1].replace("\n", " "),
        "settings": settings,
        "environment": {**info, "load_average_1min_at_end": os.getloadavg()[0]}, "results": rows,
    }
    (out / f"lsca_kernel_{label}.json").write_text(json.dumps(result, indent=2) + "\n")
    hardware = info.get("gpu") or info["cpu"]
    title = (f"LSCA backends on {label.upper()} ({hardware}, {settings['dtype']}, "
             f"H={settings['heads']}, D={settings['head_dim']})")
    plot(rows, out / f"lsca_kernel_{label}.png", title)
    print(f"wrote {out / f'lsca_kernel_{label}.json'} and .png", flush=True)


if __name__ == "__main__":
    main()
