#!/usr/bin/env bash
# One GPU turn's measurements on a machine with one H100/H200, within about 8 minutes, every JSON
# under one folder:
#   1. the CUDA-marked tests (pytest -m gpu), as JUnit XML;
#   2. benchmarks/efficiency.py on the Beauty shape (d=64, L=100) and the ML-1M shape (d=128, L=200),
#      batch 2048, whole epochs, bf16 off and on;
#   3. benchmarks/search_overhead.py at 1 and 0.25 GPU per trial.
# Each step has its own time limit (90 + 4 x 70 + 110 s = 8 minutes at most), so one slow step
# cannot eat the others' time; summary.json
# records every step's exit status and seconds (124 = hit its limit).
#
#   benchmarks/gpu.sh [--out DIR] [--quick]
#
# --quick: the CPU mode run by the test suite between GPU turns: no CUDA tests, no bf16, no Ray
# search; efficiency.py on both shapes at 1% scale with tiny models, so the script's wiring and the
# benchmark's output keep working. MODELS (comma-separated, default glintru,sasrec) picks the models.
set -euo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
QUICK=0
OUT="benchmarks/results/gpu-$(date +%Y%m%d-%H%M%S)"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --out) OUT="$2"; shift ;;
    *) echo "usage: $0 [--out DIR] [--quick]" >&2; exit 2 ;;
  esac
  shift
done
MODELS="${MODELS:-glintru,sasrec}"
mkdir -p "$OUT"
SUMMARY="$OUT/steps.tsv"
: > "$SUMMARY"
FAILED=0

# step NAME LIMIT_S CMD...: run CMD with a time limit, its output in OUT/NAME.log, one summary row
step() {
  local name="$1" limit="$2"; shift 2
  local t0 rc
  t0=$(date +%s)
  echo "== $name (limit ${limit}s): $*" >&2
  set +e
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  set -e
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" >> "$SUMMARY"
  if [ "$rc" -ne 0 ]; then
    FAILED=1
    echo "   $name failed (exit $rc); last lines of $OUT/$name.log:" >&2
    tail -n 20 "$OUT/$name.log" >&2
  fi
}

skip() {  # skip NAME REASON: a summary row saying why a step did not run
  printf '%s\tskipped\t0\t%s\n' "$1" "$2" >> "$SUMMARY"
}

EFF=(benchmarks/efficiency.py --models "$MODELS" --out "$OUT" --cache "$OUT/data")
if [ "$QUICK" = 1 ]; then
  skip cuda-tests "--quick: no CUDA"
  # tiny sizes: 1% of each log, small models; the shapes' length distributions are kept
  for like in beauty ml-1m; do
    step "efficiency-$like" 150 "$PY" "${EFF[@]}" --like "$like" --scale 0.01 --device cpu --threads 1 \
      --hidden-size 16 --max-length 20 --batch-size 64 --repeats 1 --train-batches 2 --name "efficiency-$like"
  done
  skip efficiency-bf16 "--quick: bf16 autocast is measured on CUDA only"
  skip search-overhead "--quick: Ray trials on GPUs need CUDA"
else
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device; use --quick on a CPU')"
  "$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" > "$OUT/device.txt"
  step cuda-tests 90 "$PY" -m pytest -m gpu -q -p no:cacheprovider --junitxml "$OUT/cuda-tests.xml"
  for like in beauty ml-1m; do
    step "efficiency-$like" 70 "$PY" "${EFF[@]}" --like "$like" --device cuda --full-epoch --repeats 3 \
      --name "efficiency-$like"
    step "efficiency-$like-bf16" 70 "$PY" "${EFF[@]}" --like "$like" --device cuda --full-epoch --repeats 3 \
      --bf16 --name "efficiency-$like-bf16"
  done
  step search-overhead 110 "$PY" benchmarks/search_overhead.py --gpus-per-trial 1 0.25 --trials 4 --epochs 2 \
    --skip-sharing --out "$OUT"
fi

# summary.json: the steps, their exit status and seconds, and the JSON files written
"$PY" - "$OUT" "$QUICK" <<'EOF'
import json, sys
from pathlib import Path
out, quick = Path(sys.argv[1]), sys.argv[2] == "1"
steps = []
for line in (out / "steps.tsv").read_text().splitlines():
    name, rc, seconds, *why = line.split("\t")
    steps.append({"step": name, "exit": None if rc == "skipped" else int(rc), "seconds": int(seconds),
                  "skipped": why[0] if why else None})
files = sorted(str(p.relative_to(out)) for p in out.glob("*.json") if p.name != "summary.json")
(out / "summary.json").write_text(json.dumps({"quick": quick, "steps": steps, "json": files}, indent=2) + "\n")
print(json.dumps({"out": str(out), "steps": steps}, indent=1))
EOF
exit "$FAILED"
