"""Rollout + training-forward speed: rlscale's paths vs transformers' forward.

GRPO-shaped batch: 4 prompts x 8 samples, 64 new tokens (EOS suppressed), temperature 1, on
micro rungs 1m and 6m. Paths: hf (transformers' forward), torch (rlscale's compact forward, native
kernels off), native (the compact forward with rlscale.models.native's C kernels, the default on
the CPU). Interleaved rounds; min over rounds. Usage:
  .venv/bin/python benchmarks/rollout_paths.py [--threads 1] [--rounds 4] [--ragged]
"""
import argparse, random, sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import torch
from rlscale.models import build_micro, fast, micro_tokenizer, native, non_embedding_params
from rlscale.grpo.logprobs import batch_for_logprobs, sequence_logprobs
from rlscale.rollout import SamplingParams, generate

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--rounds", type=int, default=4)
ap.add_argument("--rungs", default="1m,6m")
ap.add_argument("--ragged", action="store_true",
                help="score completions cut to lengths 1..64 (GRPO's are ragged: the training "
                     "forward computes each length bucket only as long as its longest row)")
a = ap.parse_args()
torch.set_num_threads(a.threads)
r = random.Random(0)
texts = [f"Question: Ann has {x} cards and finds {y} more. How many cards?\nAnswer: {x} + {y} = {x+y}\n#### {x+y}"
         for x, y in ((r.randint(0, 99), r.randint(0, 99)) for _ in range(500))]
tok = micro_tokenizer(corpus=texts)
prompts = [t.split("Answer:")[0] + "Answer:" for t in texts[:4] for _ in range(8)]
ps = SamplingParams(max_new_tokens=64, temperature=1.0, suppress_eos=True)
real_supports, real_library = fast.supports, native.library
PATHS = ("hf", "torch", "native")
def use(path):
    fast.supports = real_supports if path != "hf" else (lambda m: False)
    native.library = real_library if path == "native" else (lambda: None)
for rung in a.rungs.split(","):
    m = build_micro(rung, tok, seed=0)
    g = generate(m, tok, prompts, ps, seed=0)
    comps = g.completion_ids
    if a.ragged:
        comps = [c[:random.Random(i).randint(1, len(c))] for i, c in enumerate(comps)]
    batch = batch_for_logprobs(g.prompt_ids, comps, tok.pad_token_id)
    def rollout(): generate(m, tok, prompts, ps, seed=0)
    def train():
        m.zero_grad(); sequence_logprobs(m, *batch).sum().backward()
    best = {}
    for _ in range(a.rounds):
        for path in PATHS:
            use(path)
            for what, f in (("rollout", rollout), ("logprob fwd+bwd", train)):
                clock = time.process_time if a.threads == 1 else time.perf_counter  # CPU time: robust to a shared machine
                t = clock(); f(); dt = clock() - t
                best[(what, path)] = min(best.get((what, path), 1e9), dt)
    use("native")
    for what in ("rollout", "logprob fwd+bwd"):
        h, t, n = (best[(what, p)] for p in PATHS)
        print(f"rollout_bench rung={rung} N={non_embedding_params(m)} {what}: hf={h:.3f}s "
              f"torch={t:.3f}s native={n:.3f}s speedup_vs_hf={h / n:.2f} "
              f"native_vs_torch={t / n:.2f} threads={a.threads} ragged={a.ragged}")
