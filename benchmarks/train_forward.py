"""GRPO training forward + backward: rlscale's compact forward, with and without length buckets,
against transformers' forward (the peer), on a batch shaped like the cpu study's.

The batch: 16 prompts x 8 completions, prompts of 20-32 tokens, completion lengths drawn from
the 600k rung's at step 60 of the cpu study (mean ~50 of at most 96: ragged) unless --lengths
uniform. Token ids are random: the cost does not depend on them. Times are the min over rounds
of CPU time on one thread (robust to a shared machine). Activation checkpointing (session 18):
each path also runs with it (transformers' own for hf), and a second line per rung gives the
bytes each keeps for its backward (a saved-tensors hook counts them) and checkpointing's time
cost. whole_logits (session 32): the compact forward with its [B, C, V] logits assembled and
scored whole, as before the buckets were scored as they come; --entropy scores the entropies
too, as the GRPO trainer does (a metric, outside autograd). Usage:
  .venv/bin/python benchmarks/train_forward.py [--rungs 60k,200k,600k] [--rounds 3] [--entropy]
"""
import argparse, random, sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import torch
from rlscale.grpo import logprobs as L
from rlscale.grpo.logprobs import batch_for_logprobs, sequence_logprobs
from rlscale.models import (build_micro, fast, fast_train, micro_tokenizer, non_embedding_params,
                            set_activation_checkpointing)

ap = argparse.ArgumentParser()
ap.add_argument("--rungs", default="60k,200k,600k")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--entropy", action="store_true",
                help="also the entropies (outside autograd), as the GRPO trainer asks")
ap.add_argument("--lengths", choices=["study", "uniform"], default="study",
                help="study: a mixture like the cpu study's completions (most 20-60 tokens, "
                     "some clipped at 96); uniform: 1..96")
a = ap.parse_args()
torch.set_num_threads(1)
r = random.Random(0)
tok = micro_tokenizer(corpus=[f"Question: {i} + {i + 1} = {2 * i + 1}\n#### {2 * i + 1}"
                              for i in range(300)])
V = len(tok)


def length() -> int:
    if a.lengths == "uniform":
        return r.randint(1, 96)
    return 96 if r.random() < 0.05 else max(1, min(95, int(r.gauss(48, 16))))


prompts = [[r.randrange(2, V) for _ in range(r.randint(20, 32))] for _ in range(16)]
prompt_ids = [p for p in prompts for _ in range(8)]
comps = [[r.randrange(2, V) for _ in range(length())] for _ in prompt_ids]
batch = batch_for_logprobs(prompt_ids, comps, tok.pad_token_id)
real_supports, real_buckets = fast.supports, fast_train.length_buckets
PATHS = {"hf": (lambda m: False, real_buckets),
         "one_bucket": (real_supports, lambda n, k: real_buckets(n, 1)),
         "buckets": (real_supports, real_buckets),
         "whole_logits": (real_supports, real_buckets)}
tokens = sum(map(len, comps))
print(f"batch: {len(comps)} rows, completion tokens {tokens} (padded to "
      f"{len(comps) * max(map(len, comps))}), lengths {a.lengths}")


def fwd_bwd(m, name: str, ckpt: bool) -> tuple[float, int]:
    """(CPU seconds, bytes saved for the backward) of one forward + backward on a path."""
    sup, buckets = PATHS[name]
    fast.supports, fast_train.length_buckets = sup, buckets
    set_activation_checkpointing(m, ckpt and name == "hf")
    m.train(ckpt)  # transformers checkpoints in training mode only (the rungs have no dropout)
    m.zero_grad()
    saved = []
    t = time.process_time()
    with torch.autograd.graph.saved_tensors_hooks(
            lambda x: saved.append(x.numel() * x.element_size()) or x, lambda x: x):
        if name == "whole_logits":  # the [B, C, V] logits of the compact forward, whole
            ids, attn, pos, cmask = batch
            lp = L._whole_logprobs(m, ids, attn, pos, cmask.shape[1], ids[:, -cmask.shape[1]:],
                                   1.0, a.entropy, False, ckpt, False)[0] * cmask
        else:
            out = sequence_logprobs(m, *batch, checkpoint=ckpt, return_entropy=a.entropy,
                                    entropy_grad=False)
            lp = out[0] if a.entropy else out
    lp.sum().backward()
    secs = time.process_time() - t
    set_activation_checkpointing(m, False)
    fast.supports, fast_train.length_buckets = real_supports, real_buckets
    return secs, sum(saved)


for rung in a.rungs.split(","):
    m = build_micro(rung, tok, seed=0)
    best, kept = {}, {}
    for _ in range(a.rounds):
        for name in PATHS:
            for ckpt in (False, True):
                secs, b = fwd_bwd(m, name, ckpt)
                key = name + ("_ckpt" if ckpt else "")
                best[key], kept[key] = min(best.get(key, 1e9), secs), b
    h, one, b = best["hf"], best["one_bucket"], best["buckets"]
    print(f"train_forward rung={rung} N={non_embedding_params(m)} fwd+bwd: hf={h:.3f}s "
          f"one_bucket={one:.3f}s buckets={b:.3f}s buckets_vs_one={one / b:.2f} "
          f"buckets_vs_hf={h / b:.2f} whole_logits={best['whole_logits']:.3f}s "
          f"buckets_vs_whole_logits={best['whole_logits'] / b:.2f}"
          f"{' (with entropies)' if a.entropy else ''}")
    mb = {k: v / 2**20 for k, v in kept.items()}
    print(f"train_memory rung={rung} saved_MiB: hf={mb['hf']:.1f} hf_ckpt={mb['hf_ckpt']:.1f} "
          f"buckets={mb['buckets']:.1f} buckets_ckpt={mb['buckets_ckpt']:.1f} "
          f"ckpt_saves={mb['buckets'] / mb['buckets_ckpt']:.1f}x "
          f"buckets_ckpt_vs_hf_ckpt={mb['hf_ckpt'] / mb['buckets_ckpt']:.2f}; time "
          f"buckets_ckpt={best['buckets_ckpt']:.3f}s ckpt_cost={best['buckets_ckpt'] / b:.2f}x "
          f"hf_ckpt_cost={best['hf_ckpt'] / h:.2f}x", flush=True)
