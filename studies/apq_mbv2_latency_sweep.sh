#!/usr/bin/env bash
# APQ's experiments on the ImageNet-scale space (apq-mbv2), BitFusion table shipped with apqopt:
#  - latency constraint sweep (APQ Table 2 / Fig. 5): evolution 100 x 500 under 6.5 ... 12 ms;
#  - an energy-constrained run.
# Needs APQ's released quantization-aware predictor (acc_quant.pt, not shipped: it is APQ's file;
# apqopt has no ImageNet data to train its own): APQ_CHECKPOINT=/path/to/acc_quant.pt bash studies/apq_mbv2_latency_sweep.sh
set -euo pipefail
: "${APQ_CHECKPOINT:?set APQ_CHECKPOINT to the acc_quant.pt released with APQ}"
for L in 6.5 8 9 10 12; do
  apqopt search --space apq-mbv2 --apq-checkpoint "$APQ_CHECKPOINT" --searcher evolution --budget 50000 \
    --latency "$L" --storage studies/apq-mbv2.log --study "evolution-lat$L"
done
apqopt search --space apq-mbv2 --apq-checkpoint "$APQ_CHECKPOINT" --searcher evolution --budget 50000 \
  --energy 10 --objectives energy --storage studies/apq-mbv2.log --study evolution-energy10
