"""A mixed task whose stories run 1-6 steps and whose expressions stay 1-4 (arith:ladder otherwise):
train 10000 + 10000, validation side 400 + 400 (heldout=validation), shuffled with seed 0."""
import json, random, sys
from rlscale.tasks import load_task
out = sys.argv[1]
S = "arith:ladder,style=words,max_terms=7"
E = "arith:ladder,style=expr"
rows = lambda ps: [json.dumps({"question": p.question, "answer": p.solution, "level": p.level}) for p in ps]
tr, te = [], []
for spec in (S, E):
    t = load_task(f"{spec},heldout=validation", seed=0, n_test=400, n_train=10000)
    tr += rows(t.train); te += rows(t.test)
r = random.Random(0); r.shuffle(tr); r.shuffle(te)
open(f"{out}/train.jsonl", "w").write("\n".join(tr) + "\n")
open(f"{out}/test.jsonl", "w").write("\n".join(te) + "\n")
print(len(tr), len(te))
