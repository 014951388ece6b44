#!/usr/bin/env bash
# The published head-to-head (docs/search.md): fmnist at budgets 1,000 and 5,000 (5 seeds, each run's front
# measured on the shipped supernet, 3 candidates per run), and apq-mbv2 at APQ's setting (50,000 distinct
# networks, latency <= 9 ms and <= 12.8 ms, a randomly initialised predictor of APQ's shape: cost and search
# behaviour only). Writes benchmarks/results/compare_*/ and the studies under $OUT (default /tmp/h2h).
# Resumable per part: a part whose compare.json exists is skipped. Run the parts in parallel, one core each:
#   PART=fmnist-1000 OMP_NUM_THREADS=1 bash scripts/head-to-head.sh & PART=fmnist-5000 OMP_NUM_THREADS=1 bash ...
# PREDICTOR=FILE searches the fmnist parts with that predictor instead of the shipped one: the published
# fmnist-1000/-5000 tables used the one shipped before the rebuilds (git show a07bf03:apqopt/assets/fmnist/
# predictor/quant.pt and quant.pt.json, both into one folder).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/h2h}
mkdir -p "$OUT"
part() { [ -z "${PART:-}" ] || [ "$PART" = "$1" ]; }
run() {  # name, then compare arguments
  local name=$1; shift
  if [ -f "benchmarks/results/$name/compare.json" ]; then echo "$name: done"; return; fi
  rm -f "$OUT/$name.log"
  if [[ -n ${PREDICTOR:-} && $name == compare_fmnist_* ]]; then set -- "$@" --predictor "$PREDICTOR"; fi
  ( time apqopt compare "$@" --storage "$OUT/$name.log" --out "benchmarks/results/$name" --tag "$name" --quiet ) \
    > "$OUT/$name.stdout" 2> "$OUT/$name.stderr"
  echo "$name: $(tail -3 "$OUT/$name.stderr" | tr '\n' ' ')"
}
ALL="random evolution pymoo-nsga2 optuna-nsga2 optuna-random optuna-random-raw"
if part fmnist-1000; then
  # shellcheck disable=SC2086
  run compare_fmnist_1000 --space fmnist --latency 0.5 --budget 1000 --seeds 0 1 2 3 4 --verify-top 3 \
    --searchers $ALL optuna-tpe
fi
if part fmnist-1000-test; then  # the same comparison, each pick measured on the 10,000 test images (#32)
  # shellcheck disable=SC2086
  run compare_fmnist_1000_test --space fmnist --latency 0.5 --budget 1000 --seeds 0 1 2 3 4 --verify-top 3 \
    --verify-images test --searchers $ALL optuna-tpe
fi
if part fmnist-1000-rebuilt; then  # the same on test, searched with the predictor shipped since its rebuild
  # (800 uniform + 966 cost-drawn networks, 2026-12-07): what its searches find, not only how it rescores
  # shellcheck disable=SC2086
  run compare_fmnist_1000_test_rebuilt --space fmnist --latency 0.5 --budget 1000 --seeds 0 1 2 3 4 \
    --verify-top 3 --verify-images test --searchers $ALL optuna-tpe
fi
if part fmnist-5000; then  # optuna-tpe left out: multivariate TPE grows to seconds per trial past ~2,000 trials
  # shellcheck disable=SC2086
  run compare_fmnist_5000 --space fmnist --latency 0.5 --budget 5000 --seeds 0 1 2 3 4 --verify-top 3 --searchers $ALL
fi
if part fmnist-5000-test; then  # the 5,000 comparison's five searchers in one run, picks measured on test (#32)
  run compare_fmnist_5000_test --space fmnist --latency 0.5 --budget 5000 --seeds 0 1 2 3 4 --verify-top 3 \
    --verify-images test --searchers random evolution pymoo-nsga2 optuna-nsga2 optuna-random-raw
fi
if part apq-mbv2; then  # Optuna's samplers left out: ~16 ms per trial is 13 min per 50,000-trial run
  python - "$OUT" <<'PY'
import sys
from pathlib import Path
from apqopt.predictor import AccuracyPredictor
AccuracyPredictor("apq-mbv2", "branch", seed=0).init_weights().save(Path(sys.argv[1]) / "apq-random-init.pt")
PY
  for lat in 9 12.8; do
    run "compare_apq-mbv2_${lat}ms" --space apq-mbv2 --latency "$lat" --budget 50000 --seeds 0 1 2 3 4 \
      --predictor "$OUT/apq-random-init.pt" --searchers random evolution pymoo-nsga2
  done
fi
