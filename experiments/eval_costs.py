"""What each evaluation of a finished study costs, per rung (session 47): the k-shot baseline one
shot count at a time, then the after-RL evals of `study_evals.eval_specs` (greedy, pass@k, the
transfer families, each generating its own task), on the pre-trained model, one thread as a
study worker runs. Times, not results: the outputs go to a scratch directory.

    python experiments/eval_costs.py STUDY [--rungs 600k,200k] [--out NEW_DIR]

Session 47 on run W's models (the AMD kind, nothing else running): 0..5 shots on 800 problems
took 3.0, 7.1, 9.2, 13.2, 17.3, 20.4 s at 600k and 2.6, 4.7, 6.8, 9.6, 13.1, 14.5 s at 200k, so
the 1..4-shot prompts were 2/3 of a baseline job; a transfer eval spent most of its time
generating its task (transfer_expr_numbers: 1.7 of 2.5 s) before `arith._zipf_cum`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", help="a finished study directory (its pretrain/ and task/)")
    ap.add_argument("--rungs", default="600k,200k,60k,20k")
    ap.add_argument("--preset", default="cpu-words-10m")
    ap.add_argument("--out", default=None, help="a new directory (an existing eval resumes: "
                    "nothing to time); default: a fresh temporary one")
    args = ap.parse_args(argv)

    import tempfile

    import torch

    from rlscale.evaluate import EvalConfig, evaluate
    from rlscale.models import load_model
    from rlscale.study_evals import eval_specs
    from rlscale.study_presets import PRESETS

    torch.set_num_threads(1)
    study, preset = Path(args.study), PRESETS[args.preset]
    scratch = Path(args.out or tempfile.mkdtemp(prefix="eval_costs."))
    for tag in args.rungs.split(","):
        model, tok = load_model(str(study / "pretrain" / tag / "model"))
        out, res = scratch / tag, {}
        specs = [dict(sub=f"shot{k}", task=str(study / "task"), shots=(k,),
                      n_problems=preset.kshot_problems, max_new_tokens=preset.max_new_tokens,
                      seed=preset.seed, temperature=0.0, samples=1) for k in range(6)]
        for e in specs + eval_specs(preset, study, after=True):
            kw = {k: v for k, v in e.items() if k != "sub"}
            cfg = EvalConfig(model="-", out=str(out / e["sub"]),
                             **{**kw, "shots": tuple(kw["shots"])})
            t = time.perf_counter()
            evaluate(cfg, model, tok)
            res[e["sub"]] = round(time.perf_counter() - t, 2)
        print(tag, json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
