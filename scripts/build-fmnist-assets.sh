#!/usr/bin/env bash
# Rebuild the shipped Fashion-MNIST assets end to end: supernet -> fp, quantized and held-out
# datasets -> fp and quantization-aware predictors. Every step resumes where it stopped, so after a
# kill (or a session limit) rerun the same command. Shards run in parallel, one core each; their
# progress bars go to OUT/logs/ (tail -f OUT/logs/*.log). Wall times land in OUT/build-times.tsv.
#
#   scripts/build-fmnist-assets.sh [OUT]          # default OUT: runs/fmnist-assets
#
# Settings (environment): SHARDS (default: cores), N_FP=2000, N_QUANT=800, N_COST=966, N_HELDOUT=200,
# EVAL_IMAGES=5000, MEMBERS=5; TRAIN_IMAGES=N trains on the first N images only (smoke runs);
# SUPERNET=FILE skips training and measures on those weights (e.g. more data for the shipped ones).
# The shipped assets are this script's output copied into apqopt/assets/fmnist/.
set -euo pipefail

out=${1:-runs/fmnist-assets}
shards=${SHARDS:-$(nproc)}
mkdir -p "$out/logs"
weights=${SUPERNET:-$out/supernet/supernet.pt}

step() {  # name command...: run, append its wall time
    local name=$1 start=$SECONDS
    shift
    echo "== $name"
    "$@"
    printf '%s\t%s s\n' "$name" $((SECONDS - start)) | tee -a "$out/build-times.tsv"
}

collect() {  # kind n file [more collect options]: all shards in parallel, fail if any fails
    local kind=$1 n=$2 file=$3 pids=() k
    shift 3
    for ((k = 0; k < shards; k++)); do
        OMP_NUM_THREADS=1 apqopt collect "$kind" --n "$n" --out "$out/$file" --shard "$k/$shards" \
            --supernet "$weights" --eval-images "${EVAL_IMAGES:-5000}" "$@" \
            >"$out/logs/${file%.jsonl}.shard$k.log" 2>&1 &
        pids+=($!)
    done
    for k in "${pids[@]}"; do wait "$k"; done
    apqopt dataset "$out/$file"
}

[[ -n ${SUPERNET:-} ]] || step supernet apqopt supernet train --out "$out/supernet" ${TRAIN_IMAGES:+--train-images "$TRAIN_IMAGES"}
step fp collect fp "${N_FP:-2000}" fp.jsonl
step quant collect quant "${N_QUANT:-800}" quant.jsonl
step quant_cost collect quant "${N_COST:-966}" quant_cost.jsonl --draw cost  # where searches go (#32)
step heldout collect quant "${N_HELDOUT:-200}" quant_heldout.jsonl --seed 1
step predictor apqopt predictor train --fp "$out/fp.jsonl" --quant "$out/quant.jsonl" "$out/quant_cost.jsonl" \
    --heldout "$out/quant_heldout.jsonl" --out "$out/predictor" --variant branch --members "${MEMBERS:-5}" --quiet
echo "done: $out (wall times in $out/build-times.tsv)"
