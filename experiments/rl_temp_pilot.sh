#!/bin/bash
# rl_temp_pilot.sh MODEL VAL OUT TEMP (session 29, pilot 86): the default's GRPO run (cpu-words'
# RL settings for the 20k rung: lr 4e-4, batch 16 x group 8, 120 steps, custom_flexible, test loss
# on VAL's 800 problems x 1 at T=0.7 at steps 0/60/120, RL seed 0) from MODEL on the validation
# task VAL (`rung_pilot.sh DIR init SPEC` makes it) with rollouts at TEMP, then greedy 0-shot on
# VAL's 800 problems of the trained policy (OUT-greedy) and of MODEL (OUT-base-greedy).
# Summary: rl_temp_summary.py OUT [OUT ...].
set -euo pipefail
M=$1; V=$2; O=$3; T=$4; R=${RLSCALE:-.venv/bin/rlscale}; export OMP_NUM_THREADS=1
$R train --model $M --task $V --lr 4e-4 --batch-size 16 --group-size 8 --mini-batch-size 16 \
  --max-new-tokens 96 --steps 120 --heldout 800 --eval-samples 1 --eval-every 60 \
  --eval-temperature 0.7 --reward custom_flexible --temperature $T --seed 0 \
  --checkpoint-every 120 --out $O > $O.log 2>&1
for m in "$O/policy $O-greedy" "$M $O-base-greedy"; do set -- $m
  $R eval --model $1 --task $V --shots 0 --samples 1 --temperature 0 --n-problems 800 \
    --max-new-tokens 96 --batch-size 512 --out $2 > /dev/null 2>&1; done
