#!/bin/bash
# more_tokens.sh STUDY TOKENS OUT: are a study's 20k and 60k rungs data-limited? Pre-train each
# on TOKENS (the cpu preset's corpus and schedule otherwise), then 60 GRPO steps with the study's
# settings, from these models and from the study's own; every evaluation on the validation side
# (docs/study.md, session 10: STUDY a finished cpu study, TOKENS 9000000). Two rungs in parallel.
# Summary: .venv/bin/python experiments/more_tokens_summary.py OUT
set -euo pipefail
STUDY=$1; TOKENS=$2; T=$3; R=${RLSCALE:-.venv/bin/rlscale}
V=$T/val; mkdir -p $V; export OMP_NUM_THREADS=1
cp $STUDY/task/train.jsonl $V/train.jsonl  # RL prompts: the study's train split
.venv/bin/python - "$V" <<'PY'
import json, sys
from rlscale.tasks import load_task
t = load_task("arith:ladder,heldout=validation", seed=0, n_test=800, n_train=20000)
open(f"{sys.argv[1]}/test.jsonl", "w").write("".join(json.dumps(
    {"question": p.question, "answer": p.solution, "level": p.level}) + "\n" for p in t.test))
PY
pre() { $R pretrain --rung micro:$1 --task $STUDY/task --tokens $TOKENS --lr 0.01 --batch-size 8 \
  --seq-len 512 --direct-frac 0.7 --direct-style expr --slip-frac 0.1 --plain-frac 0.2 \
  --short-seq-len 128 --long-frac 0.3 --blank-join-frac 0.5 --numbers spaced --seed 0 \
  --checkpoint-every 200 --out $T/pre-$1 > $T/pre-$1.log 2>&1; }
rl() { $R train --model $1 --task $V --lr 2e-4 --batch-size 16 --group-size 8 --mini-batch-size 16 \
  --max-new-tokens 96 --steps 60 --eval-every 30 --heldout 800 --eval-samples 1 \
  --eval-temperature 0.7 --temperature 1.0 --reward custom_flexible --seed 0 --data-seed 0 \
  --checkpoint-every 15 --out $2 > $2.log 2>&1; }
ev() {
  $R eval --model $1 --task $V --shots 0 --samples 1 --temperature 0 --n-problems 800 \
    --max-new-tokens 96 --out $2/greedy > /dev/null 2>&1
  $R eval --model $1 --task $V --shots 0 --samples 4 --temperature 0.7 --n-problems 800 \
    --max-new-tokens 96 --out $2/t07 > /dev/null 2>&1
  $R eval --model $1 --task $V --shots 0 --samples 16 --temperature 1.0 --n-problems 200 \
    --max-new-tokens 96 --out $2/t1 > /dev/null 2>&1
}
chain() {
  pre $1; ev $T/pre-$1/model $T/ev-$1-more-base; rl $T/pre-$1/model $T/rl-$1-more
  ev $T/rl-$1-more/policy $T/ev-$1-more-rl
  ev $STUDY/pretrain/$1/model $T/ev-$1-study-base; rl $STUDY/pretrain/$1/model $T/rl-$1-study
  ev $T/rl-$1-study/policy $T/ev-$1-study-rl
}
chain 20k & chain 60k & wait
