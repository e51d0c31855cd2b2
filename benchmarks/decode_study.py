"""Decoding on the CPU as a study decodes: the native path (C kernels, the default) against the
torch path (rlscale.models.fast with the kernels off), same run, on a study's pre-trained models
and held-out prompts. Three workloads, as the study runs them:

    eval     the GRPO trainer's held-out test loss: 0-shot prompts, one sample each, T 0.7,
             96 new tokens
    grpo     a GRPO rollout: 16 prompts x 8 samples, T 1.0, 96 new tokens
    5shot    the k-shot baseline: 5-shot prompts, greedy, 48 new tokens

Rows per call: rollout.auto_rows' choice (what the study uses). CPU seconds, one thread, the
paths alternating over rounds, the minimum per path.

    .venv/bin/python benchmarks/decode_study.py STUDY_DIR [--rungs 200k,600k] [--rounds 2]
"""
import argparse
import time

import torch

from rlscale.models import load_model, native
from rlscale.rollout import SamplingParams, generate
from rlscale.tasks import STOP_STRINGS, format_prompt, load_task


def workloads(study: str, n_eval: int, n_shot: int):
    task = load_task(f"{study}/task")
    test, shots = task.test, task.train[:5]
    zero = [format_prompt(p) for p in test[:n_eval]]
    stop = STOP_STRINGS  # as the trainer and evaluate() pass them (until session 40: none here)
    return {
        "eval": (zero, SamplingParams(max_new_tokens=96, temperature=0.7, stop_strings=stop)),
        # a prompt's G samples are consecutive copies (generate() shares their prompt cache)
        "grpo": ([p for p in zero[:16] for _ in range(8)],
                 SamplingParams(max_new_tokens=96, temperature=1.0, stop_strings=stop)),
        "5shot": ([format_prompt(p, shots) for p in test[:n_shot]],
                  SamplingParams(max_new_tokens=48, temperature=0.0, stop_strings=stop)),
    }


def parse_args(doc: str, rungs: str = "200k,600k", rounds: int = 2, eval_prompts: int = 400):
    """The arguments of a benchmark over a study's decoding workloads (this one's and
    stop_check.py's), one thread set."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("--rungs", default=rungs)
    ap.add_argument("--rounds", type=int, default=rounds)
    ap.add_argument("--eval-prompts", type=int, default=eval_prompts)
    ap.add_argument("--shot-prompts", type=int, default=200)
    torch.set_num_threads(1)
    return ap.parse_args()


def alternate(model, tok, loads: dict, sides: dict, rounds: int) -> tuple[dict, dict]:
    """(best, texts) per (workload, side): the least CPU seconds of generate() over the rounds
    and its texts. sides: name -> a function that switches to that side; they run in turn, the
    order reversed every other round (this benchmark's, stop_check.py's and kv_budget.py's)."""
    names = list(sides)
    best: dict = {}
    texts: dict = {}
    for r in range(rounds):
        for side in names if r % 2 == 0 else names[::-1]:
            sides[side]()
            for name, (prompts, ps) in loads.items():
                t = time.process_time()
                g = generate(model, tok, prompts, ps, seed=0)
                best[name, side] = min(best.get((name, side), 1e9), time.process_time() - t)
                texts[name, side] = g.texts
    return best, texts


def per_rung(a, sides: dict, restore):
    """(rung, workloads, best, texts) for each rung of the arguments `a`: `alternate` over the
    rung's pre-trained model, then `restore()` puts the default side back."""
    loads = workloads(a.study, a.eval_prompts, a.shot_prompts)
    for rung in a.rungs.split(","):
        model, tok = load_model(f"{a.study}/pretrain/{rung}/model")
        try:
            best, texts = alternate(model, tok, loads, sides, a.rounds)
        finally:
            restore()
        yield rung, loads, best, texts


def main() -> None:
    a = parse_args(__doc__)
    real = native.library

    def use(lib):
        def switch():
            native.library = lib
        return switch

    sides = {"native": use(real), "torch": use(lambda: None)}
    for rung, loads, best, _ in per_rung(a, sides, use(real)):
        for name, (prompts, _) in loads.items():
            nat, tor = best[name, "native"], best[name, "torch"]
            print(f"decode_study rung={rung} workload={name} rows={len(prompts)} "
                  f"native_s={nat:.2f} torch_s={tor:.2f} native_vs_torch={tor / nat:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
