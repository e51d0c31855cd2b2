#!/bin/bash
# more_tokens.sh STUDY TOKENS OUT [TASK [RUNG ...]]: are a study's 20k and 60k rungs
# data-limited? Pre-train each on TOKENS (the cpu preset's corpus and schedule otherwise), then 60
# GRPO steps with the study's settings, from these models and from the study's own; every
# evaluation on the validation side (docs/study.md, session 10: STUDY a finished cpu study,
# TOKENS 9000000). With TASK (an arith spec, e.g. a harder one) the models pre-train and RL on
# that task instead, and the study's models are not run. Rungs in parallel.
# Summary: .venv/bin/python experiments/more_tokens_summary.py OUT
set -euo pipefail
STUDY=$1; TOKENS=$2; T=$3; SPEC=${4:-}; shift $(( $# < 4 ? $# : 4 )); RUNGS=${*:-20k 60k}
R=${RLSCALE:-.venv/bin/rlscale}; V=$T/val; P=$T/task; mkdir -p $V $P; export OMP_NUM_THREADS=1
.venv/bin/python - "$V" "$P" "${SPEC:-arith:ladder}" <<'PY'
import json, sys
from rlscale.tasks import load_task
val, task, spec = sys.argv[1:]
rows = lambda ps: "".join(json.dumps(  # noqa: E731
    {"question": p.question, "answer": p.solution, "level": p.level}) + "\n" for p in ps)
t = load_task(f"{spec},heldout=validation", seed=0, n_test=800, n_train=20000)
for d in (val, task):  # the train split: RL prompts and the pre-training corpus
    open(f"{d}/train.jsonl", "w").write(rows(t.train))
open(f"{val}/test.jsonl", "w").write(rows(t.test))
open(f"{task}/test.jsonl", "w").write(rows(load_task(spec, seed=0, n_test=800, n_train=20000).test))
PY
if [ -z "$SPEC" ] && ! cmp -s $P/train.jsonl $STUDY/task/train.jsonl; then
  echo "$STUDY/task: not the arith:ladder train split of seed 0" >&2; exit 2; fi
pre() { $R pretrain --rung micro:$1 --task $P --tokens $TOKENS --lr 0.01 --batch-size 8 \
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
  [ -n "$SPEC" ] && return
  ev $STUDY/pretrain/$1/model $T/ev-$1-study-base; rl $STUDY/pretrain/$1/model $T/rl-$1-study
  ev $T/rl-$1-study/policy $T/ev-$1-study-rl
}
for r in $RUNGS; do chain $r & done; wait
