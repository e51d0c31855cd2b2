#!/bin/bash
# rl_pilot.sh MODEL VAL LR OUT [EXTRA...] (session 12): 60 GRPO steps with the cpu preset's RL
# settings from MODEL on the validation task VAL (test loss 800 x 1 at T=0.7 at steps 0, 30, 60),
# extra `rlscale train` flags (e.g. --temperature 0.7) appended. OUT/metrics.jsonl has the curve.
set -euo pipefail
M=$1; V=$2; LR=$3; OUT=$4; shift 4; R=${RLSCALE:-.venv/bin/rlscale}; export OMP_NUM_THREADS=1
$R train --model $M --task $V --lr $LR --batch-size 16 --group-size 8 --max-new-tokens 96 \
  --steps 60 --heldout 800 --eval-samples 1 --eval-every 30 --reward custom_flexible \
  --out $OUT "$@" > $OUT.log 2>&1
