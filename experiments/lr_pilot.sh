#!/bin/bash
# lr_pilot.sh TASK RUNG LR OUT (session 11): cpu-long's pre-training of RUNG (9M tokens) at LR on
# TASK (a study's materialised task directory), then greedy 0-shot on the 800 validation problems
# of VAL (default: a directory holding the arith:ladder validation side as test.jsonl, e.g.
# experiments/more_tokens.sh's OUT/val). The rule (docs/study.md, Session 11): per rung, the lr
# with the lower mean of the last 20 logged training losses (OUT/loss.jsonl).
set -euo pipefail
TASK=$1; RUNG=$2; LR=$3; OUT=$4; VAL=${VAL:?set VAL to a validation task directory}
R=${RLSCALE:-.venv/bin/rlscale}; export OMP_NUM_THREADS=1
$R pretrain --rung micro:$RUNG --task $TASK --tokens 9000000 --lr $LR --batch-size 8 \
  --seq-len 512 --direct-frac 0.7 --direct-style expr --slip-frac 0.1 --plain-frac 0.2 \
  --short-seq-len 128 --long-frac 0.3 --blank-join-frac 0.5 --numbers spaced --seed 0 \
  --checkpoint-every 200 --out $OUT > $OUT.log 2>&1
$R eval --model $OUT/model --task $VAL --shots 0 --samples 1 --temperature 0 --n-problems 800 \
  --max-new-tokens 96 --out $OUT-greedy > /dev/null 2>&1
.venv/bin/python -c "import json, sys; L = [json.loads(x) for x in open('$OUT/loss.jsonl')]; print('$RUNG $LR last-20 loss %.4f' % (sum(x['loss'] for x in L[-20:]) / 20))"
