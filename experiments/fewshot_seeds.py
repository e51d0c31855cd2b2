"""Is a rung's few-shot collapse set by its initialisation or by its data order? (session 35)

One rung of a finished study is pre-trained again with the study's own job parameters and task
(its train split), its initialisation seed and its batch-order seed set apart (PretrainConfig's
`seed` and `data_seed`; a study gives both its own seed), then evaluated as the study's baseline
is (greedy, the study's held-out problems, exemplars drawn with the study's eval seed) at 0, 1
and 5 shots. Prints one line per run: the 0-shot accuracy and the 1- and 5-shot ratios to it.
One thread; run two cells side by side on two cores. `--tokens` (session 37) trains on another
budget; `fewshot_split.py OUT/eval` then reads the copy of the question's start per shot count.

    .venv/bin/python experiments/fewshot_seeds.py STUDY RUNG INIT DATA OUT [--tokens T]
"""
import argparse
import json

import torch

from rlscale.evaluate import EvalConfig, evaluate
from rlscale.pretrain import PretrainConfig, pretrain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("rung", help="e.g. 20k")
    ap.add_argument("init", type=int, help="the initialisation seed")
    ap.add_argument("data", type=int, help="the batch-order seed")
    ap.add_argument("out")
    ap.add_argument("--tokens", type=int, default=None,
                    help="pre-training tokens (default: the study's own budget)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = json.load(open(f"{a.study}/pretrain/{a.rung}/pretrain.json"))["config"]
    cfg.update(seed=a.init, data_seed=a.data, task=f"{a.study}/task")
    if a.tokens:  # the same recipe on another budget (its schedule stretched to it)
        cfg.update(tokens=a.tokens)
    s = pretrain(PretrainConfig(**cfg), f"{a.out}/pretrain", progress=False)
    base = json.load(open(f"{a.study}/baseline/{a.rung}/config.json"))
    ev = evaluate(EvalConfig(**{**base, "shots": (0, 1, 5), "model": f"{a.out}/pretrain/model",
                                "task": f"{a.study}/task", "out": f"{a.out}/eval",
                                "device": "cpu", "progress": False}))
    check = ev["primary_check"]
    acc = {k: ev["results"][str(k)]["checks"][check]["accuracy"] for k in (0, 1, 5)}
    ratio = {k: acc[k] / acc[0] if acc[0] else float("nan") for k in (1, 5)}
    print(a.rung, "init", a.init, "data", a.data, f"final_loss {s['final_loss']:.4f}",
          f"0-shot {acc[0]:.4f} 1-shot/0 {ratio[1]:.3f} 5-shot/0 {ratio[5]:.3f}", flush=True)


if __name__ == "__main__":
    main()
