#!/usr/bin/env bash
# fmnist end to end, every step real on this CPU (hours at full size; the shipped assets skip 1-3):
#  1. train the supernet, 2. collect fp and quantized accuracy data, 3. train the predictors,
#  4. compare the searchers (5 seeds) and verify each searcher's best front on the supernet.
# Every step is resumable: rerun the script after an interruption.
set -euo pipefail
OUT=${OUT:-runs/fmnist}
FULL=${FULL:-0}   # FULL=1 retrains and recollects into $OUT instead of using the shipped assets
if [ "$FULL" = 1 ]; then
  apqopt supernet train --out "$OUT/supernet"
  for k in 0 1; do OMP_NUM_THREADS=1 apqopt collect fp --n 2000 --out "$OUT/fp.jsonl" --supernet "$OUT/supernet/supernet.pt" --shard $k/2 & done; wait
  for k in 0 1; do OMP_NUM_THREADS=1 apqopt collect quant --n 800 --out "$OUT/quant.jsonl" --supernet "$OUT/supernet/supernet.pt" --shard $k/2 & done; wait
  for k in 0 1; do OMP_NUM_THREADS=1 apqopt collect quant --n 200 --seed 1 --out "$OUT/quant_heldout.jsonl" --supernet "$OUT/supernet/supernet.pt" --shard $k/2 & done; wait
  apqopt predictor train --fp "$OUT/fp.jsonl" --quant "$OUT/quant.jsonl" --heldout "$OUT/quant_heldout.jsonl" --out "$OUT/predictor" --variant wide
  PRED=(--predictor "$OUT/predictor/quant.pt")
else
  PRED=()
fi
apqopt compare --space fmnist --latency 0.5 --budget 1000 --seeds 0 1 2 3 4 \
  --searchers random evolution pymoo-nsga2 optuna-nsga2 optuna-tpe optuna-random "${PRED[@]}" \
  --storage "studies/fmnist.log" --out "studies/reports/fmnist" --tag fmnist --verify-top 3
