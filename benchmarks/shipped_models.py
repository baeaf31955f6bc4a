"""Physics metrics, CPU latency and peak memory of the shipped `small` models on held-out events.

For each decoder variant: export tracker + hit filter to ONNX (LSCA as standard ops, the ONNX Runtime
CPU form), then reconstruct every event of EVENTS with `trackrt run`'s job on ONNX Runtime in a fresh
torch-free process, so that its peak resident memory is the runtime's own. Writes
`benchmarks/results/shipped_models.{json,png}`.

    python benchmarks/shipped_models.py EVENTS [--checkpoints checkpoints] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = ("fq-ma", "dq-ma", "dq-lsca", "dq-lsca-seed")  # checkpoints/small-<variant>; absent ones skipped


def export(checkpoints: Path, variant: str, out: Path) -> None:
    """Export one variant with the shipped hit filter (runs in this process: it needs torch)."""
    from trackrt.export.config import ExportOptions
    from trackrt.export.exporter import export_artifact

    tracker, hit_filter = checkpoints / f"small-{variant}", checkpoints / "small-hit-filter"
    export_artifact(tracker, out, hit_filter, ExportOptions(lsca_mode="onnx"), force=True)


def run_child(artifact: Path, events: Path, out: Path, threads: int) -> dict:
    """The runtime job in this (child) process with torch blocked; metrics, timings and peak RSS."""
    sys.modules["torch"] = None  # the deployed runtime must not need it
    from trackrt.runtime.job import RunConfig, run_job

    config = RunConfig(artifact_dir=artifact, events_dir=events, out_dir=out, backend="onnxruntime",
                       threads=threads)
    summary = run_job(config, progress=False)
    metrics = summary.metrics.summary() if summary.metrics is not None else None
    return {
        "events": summary.events,
        "failed": summary.failed,
        "mean_timings_ms": summary.mean_timings_ms,
        "metrics": metrics,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "elapsed_s": summary.elapsed_s,
    }


def plot(records: list[dict], path: Path) -> None:
    """Efficiency / fake rate and mean latency per stage, one group per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = [r["variant"] for r in records]
    for offset, key in ((-0.2, "efficiency"), (0.0, "efficiency_perfect"), (0.2, "fake_rate")):
        values = [r["metrics"][key] for r in records]
        left.bar([i + offset for i in range(len(names))], values, 0.2, label=key)
    left.set_xticks(range(len(names)), names)
    left.set_ylim(0, 1)
    left.set_title("held-out events: DM / perfect efficiency, fake rate")
    left.legend(fontsize=8)
    stages = [s for s in records[0]["mean_timings_ms"] if s != "total"]
    bottom = [0.0] * len(records)
    for stage in stages:
        values = [r["mean_timings_ms"].get(stage, 0.0) for r in records]
        right.bar(names, values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_ylabel("mean ms per event (ONNX Runtime, CPU)")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", nargs=3, metavar=("ARTIFACT", "OUT", "JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        artifact, out, result = (Path(p) for p in args.child)
        result.write_text(json.dumps(run_child(artifact, args.events, out, args.threads)))
        return

    records = []
    with tempfile.TemporaryDirectory() as scratch:
        for variant in (v for v in VARIANTS if (args.checkpoints / f"small-{v}").is_dir()):
            artifact, out, result = (Path(scratch) / f"{variant}-{p}" for p in ("artifact", "run", "json"))
            started = time.perf_counter()
            export(args.checkpoints, variant, artifact)
            export_s = time.perf_counter() - started
            subprocess.run(
                [sys.executable, __file__, str(args.events), "--threads", str(args.threads),
                 "--child", str(artifact), str(out), str(result)],
                check=True,
            )
            record = {"variant": variant, "export_s": export_s, **json.loads(result.read_text())}
            records.append(record)
            m = record["metrics"]
            print(f"{variant:12s} DM {m['efficiency']:.3f} perfect {m['efficiency_perfect']:.3f} "
                  f"fake {m['fake_rate']:.3f} dup(LHC) {m['duplicate_rate_lhc']:.3f} "
                  f"total {record['mean_timings_ms']['total']:.0f} ms peak {record['peak_rss_mb']:.0f} MB")
    import onnxruntime

    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "shipped small models on held-out simulated events, ONNX Runtime on CPU",
        "events_dir": str(args.events),
        "threads": args.threads,
        "lsca_mode": "onnx",
        "timing": "mean per event after one warm-up event, `trackrt run` stage timings",
        "peak_memory": "peak RSS of the torch-free runtime process (ru_maxrss)",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average": os.getloadavg()},
        "versions": {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__},
        "results": records,
    }
    (RESULTS / "shipped_models.json").write_text(json.dumps(report, indent=2))
    plot(records, RESULTS / "shipped_models.png")
    print(f"wrote {RESULTS / 'shipped_models.json'} and .png")


if __name__ == "__main__":
    main()
