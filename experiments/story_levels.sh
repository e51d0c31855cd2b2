#!/bin/bash
# story_levels.sh OUT RUNG LR (OUT/task from `mixed_task.py OUT "arith:ladder,style=words,max_terms=7" "arith:ladder,style=expr"`): pre-train RUNG on the story-levels task (9M tokens, the cpu-long corpus), then
# greedy 0-shot on the 800 validation problems and 200 x 16 samples at T=1 (worked advantage)
export OMP_NUM_THREADS=1
T=$1; shift; R=${RLSCALE:-.venv/bin/rlscale}
$R pretrain --rung micro:$1 --task $T/task --tokens 9000000 --lr $2 --batch-size 8 \
  --seq-len 512 --direct-frac 0.7 --direct-style expr --slip-frac 0.1 --plain-frac 0.2 \
  --short-seq-len 128 --long-frac 0.3 --blank-join-frac 0.5 --numbers spaced --seed 0 \
  --checkpoint-every 200 --out $T/pre-$1 > $T/pre-$1.log 2>&1
$R eval --model $T/pre-$1/model --task $T/task --shots 0 --samples 1 --temperature 0 \
  --n-problems 800 --max-new-tokens 128 --batch-size 400 --out $T/ev-$1/greedy > /dev/null 2>&1
$R eval --model $T/pre-$1/model --task $T/task --shots 0 --samples 16 --temperature 1.0 \
  --n-problems 200 --max-new-tokens 128 --batch-size 512 --out $T/ev-$1/t1 > /dev/null 2>&1
echo done $1 >> $T/done.log
