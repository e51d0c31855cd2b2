"""Branches vs separate runs: one wsd run with budgets D/2 and D against cosine runs of D/2 and D
(same rung, lr, data order); validation loss on held-out-question documents and held-out test
loss. docs/study.md (allocation) records a run.

    .venv/bin/python benchmarks/wsd_vs_cosine.py OUT_DIR [D]
"""
import json, sys, torch
from rlscale.corpus import Corpus, corpus_tokenizer
from rlscale.pretrain import PretrainConfig, pretrain
from rlscale.tasks import load_task
from rlscale.models import load_model
from rlscale.evaluate import heldout_test_loss
torch.set_num_threads(1)
OUT = sys.argv[1]
TASK = "arith:min_terms=2,max_terms=3,max_value=20,style=expr"
D = int(float(sys.argv[2])) if len(sys.argv) > 2 else 600_000
base = dict(rung="micro:20k", task=TASK, lr=1.2e-2, batch_size=32, seq_len=128, slip_frac=0.3,
            n_problems=4000, checkpoint_every=50, log_every=10)
runs = {"wsd": pretrain(PretrainConfig(**base, tokens=D, schedule="wsd", budgets=str(D // 2)), f"{OUT}/wsd", resume=True)}
for d in (D // 2, D):
    runs[f"cos{d}"] = pretrain(PretrainConfig(**base, tokens=d), f"{OUT}/cos{d}", resume=True)
task = load_task(TASK, seed=0, n_test=200, n_train=4000)
res = {}
def score(model_dir):
    model, tok = load_model(model_dir)
    cfg = PretrainConfig(**base, tokens=D)
    val = Corpus(task.test, tok, cfg)
    with torch.no_grad():
        nll = []
        for s in range(8):
            x, y, m = val.batch(10_000 + s)
            logits = model(input_ids=x).logits
            nll.append(torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()).item())
    t = heldout_test_loss(model, tok, task.test, samples=4, temperature=0.7, max_new_tokens=48)
    return {"val_loss": sum(nll) / len(nll), "test_loss": t["test_loss"], "se": t.get("se")}
for b in runs["wsd"]["branches"]:
    res[f"wsd_branch_{b['tokens']}"] = {**score(b["model_dir"]), "train_loss": b["final_loss"]}
for d in (D // 2, D):
    r = runs[f"cos{d}"]
    res[f"cosine_{r['tokens']}"] = {**score(r["model_dir"]), "train_loss": r["final_loss"]}
print(json.dumps(res, indent=1))
json.dump(res, open(f"{OUT}/result.json", "w"), indent=1)
