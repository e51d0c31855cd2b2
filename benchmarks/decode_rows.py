"""Decoding time vs rows per generate() call on the CPU (docs/benchmarks.md, "Rows per decoding
call"): the task's held-out prompts, 0-shot (96 new tokens at T 0.7) or 5-shot (48 greedy
tokens), CPU seconds, one thread. Rows 0 = rollout.auto_rows' choice.

    .venv/bin/python benchmarks/decode_rows.py STUDY_DIR RUNG [--shots 0|5] [--rows 0,800,128,64,32]
"""
import argparse
import json
import time

import torch

from rlscale.models import load_model
from rlscale.problem import Problem
from rlscale.rollout import SamplingParams, generate
from rlscale.tasks import format_prompt

ap = argparse.ArgumentParser()
ap.add_argument("study")
ap.add_argument("rung")
ap.add_argument("--shots", type=int, default=0)
ap.add_argument("--rows", default="0,800,256,128,64,32")
a = ap.parse_args()
torch.set_num_threads(1)
model, tok = load_model(f"{a.study}/pretrain/{a.rung}/model")
read = lambda f, n: [json.loads(l) for l in open(f"{a.study}/task/{f}")][:n]  # noqa: E731
ex = [Problem(question=r["question"], answer=r["answer"]) for r in read("train.jsonl", a.shots)]
rows = read("test.jsonl", 400 if a.shots else 800)
prompts = [format_prompt(Problem(question=r["question"], answer=r["answer"]), ex) for r in rows]
ps = SamplingParams(max_new_tokens=48, temperature=0.0) if a.shots else \
    SamplingParams(max_new_tokens=96, temperature=0.7)
for bs in (int(x) for x in a.rows.split(",")):
    t = time.process_time()
    generate(model, tok, prompts, ps, seed=0, batch_size=bs or None)
    print(f"decode_rows rung={a.rung} shots={a.shots} prompts={len(prompts)} "
          f"rows={bs or 'auto'} cpu_s={time.process_time() - t:.2f}", flush=True)
