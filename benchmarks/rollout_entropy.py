"""What reading the entropy metric in the sampler costs a GRPO rollout (session 36).

For each finished study's GRPO RUN: its pre-trained model samples one rollout as the run does
(B prompts of its task x G samples, its temperature, max new tokens and stop strings), with and
without `generate(entropy=True)`, in interleaved rounds; the min over rounds of each and their
ratio are printed. One thread, as a study worker. Run from the directory the runs' config.json
paths are relative to (a study's clone). Usage:
  .venv/bin/python benchmarks/rollout_entropy.py STUDY/runs/20k STUDY/runs/600k [--rounds 5]
"""
import argparse, json, sys, time
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from rlscale.grpo.config import TrainConfig
from rlscale.models import load_model
from rlscale.rollout import SamplingParams, generate
from rlscale.tasks import STOP_STRINGS, fewshot_exemplars, format_prompt, load_task

ap = argparse.ArgumentParser()
ap.add_argument("runs", nargs="+")
ap.add_argument("--rounds", type=int, default=5)
a = ap.parse_args()
torch.set_num_threads(1)

for run in map(Path, a.runs):
    cfg = TrainConfig(**TrainConfig.settings_of(json.loads((run / "config.json").read_text())))
    model, tok = load_model(cfg.model, "cpu", "fp32")
    task = load_task(cfg.task, seed=cfg.data_seed, n_test=16, n_train=cfg.batch_size)
    shots = fewshot_exemplars(task.train, cfg.fewshot, cfg.data_seed)
    prompts = [format_prompt(p, shots) for p in task.train[:cfg.batch_size]
               for _ in range(cfg.group_size)]
    params = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p, STOP_STRINGS)
    generate(model, tok, prompts, params, seed=0)  # warm-up
    best = {False: float("inf"), True: float("inf")}
    for r in range(a.rounds):
        for entropy in (False, True):
            t = time.perf_counter()
            generate(model, tok, prompts, params, seed=r, entropy=entropy)
            best[entropy] = min(best[entropy], time.perf_counter() - t)
    print(f"rollout_entropy run={run.name} rows={len(prompts)} plain={best[False]:.3f}s "
          f"with_entropy={best[True]:.3f}s ratio={best[True] / best[False]:.3f}", flush=True)
