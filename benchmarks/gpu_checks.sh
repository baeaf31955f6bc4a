#!/usr/bin/env bash
# The GPU checks of a lent machine, in one go (about 9 minutes): the `gpu` tests, the LSCA backend benchmark
# and the tracker's training speed of configs/pix1.0.yaml at <mu> = 200 along as many steps as fit in
# TRAIN_S seconds (truth-filtered hits, no validation): the Hungarian matching of an untrained tracker is
# far slower than a trained one's, so the trend tells whether the step time falls as the model learns.
# (The filter stage was timed on an H200 at 0.36 s per step.) Everything lands in $OUT (default
# /tmp/gpu-checks); each step has its own time limit, so a slow or failing step leaves the others' results.
#   TRACKRT_TRACKML_DIR=... bash benchmarks/gpu_checks.sh
set -u -o pipefail
OUT=${OUT:-/tmp/gpu-checks}
WORK=${WORK:-/tmp/gpu-checks-work}
PY=${PYTHON:-python3}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch, triton, onnxruntime, numba, sys; print(sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.version.cuda, 'triton', triton.__version__, 'onnxruntime', onnxruntime.__version__,
onnxruntime.get_available_providers(), 'numba', numba.__version__)"
  date -u
  timeout "${TEST_S:-170}" $PY -m pytest -m gpu -p no:cacheprovider -q -rA \
    tests/test_lsca_triton.py tests/test_runtime.py tests/test_attention.py
  echo "pytest exit: $?"
  date -u
} > "$OUT/gpu_tests.log" 2>&1

timeout "${BENCH_S:-150}" $PY benchmarks/lsca_kernel.py --iters 20 --warmup 3 --encoder-sizes 20000,60000 \
  --out "$OUT" > "$OUT/lsca_kernel.log" 2>&1
echo "lsca_kernel exit: $?" >> "$OUT/lsca_kernel.log"

{
  date -u
  $PY -m trackrt.cli simulate --events 8 --pileup 200 --seed 1 --workers 16 --no-compress --out "$WORK/train"
  date -u
  EVENTS=(--set hit_filter=null --set data.val_dir=null --set data.train_dir="$WORK/train"
          --set data.cache_dir="$WORK/cache" --set tracker.hits=truth)
  timeout "${TRAIN_S:-240}" $PY -m trackrt.cli train configs/pix1.0.yaml "${EVENTS[@]}" --out "$WORK/run" \
    --set progress_bar=false --set tracker.max_steps="${STEPS:-2000}" --set tracker.log_interval=5 \
    --set tracker.checkpoint_interval=100000
  echo "train exit: $? (124: stopped by its time limit, as planned)"
  cp "$WORK/run/tracker/metrics.jsonl" "$OUT/pix1.0-tracker-metrics.jsonl"
  $PY benchmarks/training_throughput.py configs/pix1.0.yaml "${EVENTS[@]}" --from-run "$WORK/run" \
    --label pix1.0-tracker-trend --out "$OUT"
  echo "training_throughput exit: $?"
  date -u
} > "$OUT/training_throughput.log" 2>&1
ls -la "$OUT"
