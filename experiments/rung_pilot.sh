#!/bin/bash
# rung_pilot.sh DIR RUNG LR TOKENS (session 12): pre-train RUNG on TOKENS at LR with the cpu
# preset's corpus on DIR/task, then greedy 0-shot on the 800 validation problems of DIR/val and
# 200 x 16 samples at T=1 there (the worked advantage). DIR/task and DIR/val as more_tokens.sh
# makes them (`rung_pilot.sh DIR init [SPEC]` makes them alone, for SPEC, default arith:ladder). Output: DIR/pre-RUNG-LR-TOKENS/,
# DIR/ev-RUNG-LR-TOKENS/{greedy,t1} (SEED=S: the pre-training seed, names end -sS; DF=F: the
# corpus's direct_frac, 0.7 unless set, names gain -dfF; LOSS_ON=answer: the loss on the answers
# only, names gain -loanswer; session 15; DFO=F: the stories' share answered bare, names gain -doF;
# session 17; EF=F: the first F of the steps drawn from levels 1-2 only, names gain -efF; session 18;
# BS=B: B rows per pre-training step, 8 unless set, names gain -bsB; session 24);
# summary: rung_pilot_summary.py DIR. A name already running is refused (exit 2; session 22)
set -euo pipefail
T=$1; R=${RLSCALE:-.venv/bin/rlscale}; export OMP_NUM_THREADS=1
if [ "$2" = init ]; then
  mkdir -p $T/val $T/task
  .venv/bin/python - "$T/val" "$T/task" "${3:-arith:ladder}" <<'PY'
import json, sys
from rlscale.tasks import load_task
val, task, spec = sys.argv[1:]
rows = lambda ps: "".join(json.dumps(  # noqa: E731
    {"question": p.question, "answer": p.solution, "level": p.level}) + "\n" for p in ps)
t = load_task(f"{spec},heldout=validation", seed=0, n_test=800, n_train=20000)
for d in (val, task):
    open(f"{d}/train.jsonl", "w").write(rows(t.train))
open(f"{val}/test.jsonl", "w").write(rows(t.test))
open(f"{task}/test.jsonl", "w").write(rows(load_task(spec, seed=0, n_test=800, n_train=20000).test))
PY
  exit 0; fi
RUNG=$2; LR=$3; TOK=$4; SEED=${SEED:-0}; N=$RUNG-$LR-$TOK${DF:+-df$DF}${LOSS_ON:+-lo$LOSS_ON}${DFO:+-do$DFO}${EF:+-ef$EF}${BS:+-bs$BS}
[ "$SEED" = 0 ] || N=$N-s$SEED
# one pilot per output name: a second one started on a running name (session 21's duplicated
# queue) exits here instead of writing into the same directory; the lock dies with the process
exec 9> $T/pre-$N.lock
flock -n 9 || { echo "$T/pre-$N: a pilot of this name is running; not started" >&2; exit 2; }
$R pretrain --rung micro:$RUNG --task $T/task --tokens $TOK --lr $LR --batch-size ${BS:-8} \
  --seq-len 512 --direct-frac ${DF:-0.7} --direct-style expr --slip-frac 0.1 --plain-frac 0.2 \
  --short-seq-len 128 --long-frac 0.3 --blank-join-frac 0.5 --numbers spaced --loss-on ${LOSS_ON:-all} --seed $SEED \
  --direct-frac-other ${DFO:-0} --easy-first ${EF:-0} --easy-max-level 2 \
  --checkpoint-every 200 --out $T/pre-$N > $T/pre-$N.log 2>&1
$R eval --model $T/pre-$N/model --task $T/val --shots 0 --samples 1 --temperature 0 \
  --n-problems 800 --max-new-tokens 96 --batch-size 512 --out $T/ev-$N/greedy > /dev/null 2>&1
$R eval --model $T/pre-$N/model --task $T/val --shots 0 --samples 16 --temperature 1.0 \
  --n-problems 200 --max-new-tokens 96 --batch-size 512 --out $T/ev-$N/t1 > /dev/null 2>&1
echo "done $N" >> $T/done.log
