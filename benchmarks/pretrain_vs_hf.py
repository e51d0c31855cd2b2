"""Pre-training throughput: rlscale's loop vs a plain transformers training loop, same run.

Both sides train the same micro rung (same initial weights, same packed batches from the task's
corpus, AdamW with the same hyper-parameters, grad clip 1.0, fp32 on the CPU):

    hf       model(input_ids, labels) -> loss (transformers' causal-LM loss), loss.backward(),
             clip, torch.optim.AdamW (default implementation), step
    rlscale  rlscale.pretrain_loop.Loop.step: the loop `rlscale pretrain` runs (the compact
             forward of rlscale.models.fast, fused AdamW, loss on the logits)
    rlscale_hf_forward  the same loop with transformers' forward (what the compact forward adds)
    rlscale_sdpa  the same loop with attention on torch's SDPA (is_causal) instead of the causal
             kernel of rlscale/models/attention.c: printed as attention_kernel_speedup
    rlscale_torch_loss  the same loop with the loss by torch (F.cross_entropy per token,
             weighted and summed) instead of the fused one of native_train.cross_entropy:
             printed as fused_loss_speedup
    rlscale_bf16  rlscale's loop with its forward under bf16 autocast (--bf16 only): what the
             CPU's bf16 matrix units (AMX) buy a whole step; printed as a ratio to rlscale
    rlscale_bf16_products, hf_bf16  (--bf16 only) rlscale's loop at matmul_precision "bf16" (the
             products' inputs and outputs in bf16, the rest fp32 on the fused kernels) and its
             like-for-like peer, the plain transformers loop under bf16 autocast: printed as
             bf16_products_vs_rlscale (over the fp32 loop) and bf16_products_vs_hf_bf16
    hf_medium, rlscale_medium  hf and rlscale with torch's fp32 matmul precision "medium" (matmul
             inputs rounded to bf16, fp32 sums: the `matmul_precision` of rlscale pretrain):
             printed as medium_speedup (hf_medium over rlscale_medium, the like-for-like peer),
             bf16_matmul_speedup (rlscale over rlscale_medium) and rlscale_medium_mfu against
             the matmul peak measured under the same precision

The sides alternate over rounds (so drifts of a shared machine hit both), with warm-up steps
first; the median step time of each side gives tokens/s and MFU = model FLOPs per second over
the measured matmul peak (rlscale.flops.matmul_peak_flops, same thread count). Model FLOPs per
step: 6 N T (N non-embedding) + 6 h V T (the LM head) + 3 x the causal attention forward.

    .venv/bin/python benchmarks/pretrain_vs_hf.py [--rungs 200k,1m] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time


def build(rung: str, batch: int, seq: int, seed: int = 0):
    from rlscale.models import build_micro, non_embedding_params
    from rlscale.corpus import Corpus, corpus_tokenizer
    from rlscale.pretrain import PretrainConfig
    from rlscale.tasks import load_task

    cfg = PretrainConfig(rung=f"micro:{rung}", task="arith", batch_size=batch, seq_len=seq,
                         tokens=batch * seq * 1000, slip_frac=0.3, lr=3e-3)
    task = load_task(cfg.task, seed=0, n_test=1, n_train=2000)
    tok = corpus_tokenizer(task.train, cfg.vocab_size)
    corpus = Corpus(task.train, tok, cfg)
    model = build_micro(cfg.rung, tok, seed=seed).train()
    return cfg, corpus, model, non_embedding_params(model)


def hf_labels_side(model, cfg):
    """transformers' own loss path: model(input_ids, labels=...) shifts and averages."""
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95),
                            weight_decay=cfg.weight_decay)

    def step(batch):
        x, y, _ = batch
        full = torch.cat([x, y[:, -1:]], 1)  # seq + 1 tokens; HF predicts full[1:] from full[:-1]
        out = model(input_ids=full[:, :-1], labels=full[:, :-1].clone(), use_cache=False)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return out.loss.item()

    return step


def rlscale_side(model, cfg, corpus, fast=None, bf16=False):
    from rlscale.pretrain_loop import Loop

    class _Bar:
        def update(self, n):
            pass

        def set_postfix(self, **kw):
            pass

    loop = Loop(cfg, corpus, model, "cpu", _Bar(), fast=fast, bf16=bf16)
    return lambda step: loop.step(step, cfg.lr)


def within(context, step):
    """A step run inside a fresh `context()` each time (a precision scope, autocast)."""
    def run(i):
        with context():
            return step(i)

    return run


def at_medium(step):
    """A step under torch's fp32 matmul precision "medium" (restored after)."""
    from rlscale.pretrain_loop import matmul_precision

    return within(lambda: matmul_precision("medium"), step)


def under_autocast(step):
    """A step under bf16 autocast on the CPU."""
    import torch

    return within(lambda: torch.autocast("cpu", dtype=torch.bfloat16), step)


def swapped(step, module, name: str, value):
    """A step run with module.name set to value (restored after, whatever happens)."""
    def run(i):
        real = getattr(module, name)
        setattr(module, name, value)
        try:
            return step(i)
        finally:
            setattr(module, name, real)

    return run


def on_sdpa(step):
    """A step of rlscale's loop with the native causal attention off (SDPA's kernel instead)."""
    from rlscale.models import native_train

    return swapped(step, native_train, "attention_usable", lambda q, k, v: False)


def on_torch_loss(step):
    """A step of rlscale's loop with the loss by torch's cross entropy (its log-softmax, the
    gather and their backward) instead of the fused kernel."""
    import torch.nn.functional as F

    from rlscale.models import native_train

    def torch_loss(logits, targets, weights):
        return (F.cross_entropy(logits, targets, reduction="none") * weights).sum()

    return swapped(step, native_train, "cross_entropy", torch_loss)


def model_flops(model, n_params: int, batch: int, seq: int) -> float:
    from rlscale.flops import attention_forward_flops

    c = model.config
    d_attn = c.num_attention_heads * (getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)
    tokens = batch * seq
    attn = attention_forward_flops(c.num_hidden_layers, d_attn, [seq] * batch)
    return 6.0 * (n_params + c.hidden_size * c.vocab_size) * tokens + 3.0 * attn


def bench(rung: str, batch: int, seq: int, rounds: int, steps: int, warmup: int, peak: tuple,
          bf16: bool = False):
    import copy
    import dataclasses

    cfg, corpus, model, n = build(rung, batch, seq)
    sides = {"hf": None, "rlscale": None, "rlscale_hf_forward": None, "rlscale_sdpa": None,
             "rlscale_torch_loss": None, "hf_medium": None, "rlscale_medium": None}
    if bf16:
        sides.update(rlscale_bf16=None, rlscale_bf16_products=None, hf_bf16=None)
    models = {k: copy.deepcopy(model) for k in sides}
    sides["hf"] = hf_labels_side(models["hf"], cfg)
    sides["rlscale"] = rlscale_side(models["rlscale"], cfg, corpus)
    sides["rlscale_hf_forward"] = rlscale_side(models["rlscale_hf_forward"], cfg, corpus, False)
    sides["rlscale_sdpa"] = on_sdpa(rlscale_side(models["rlscale_sdpa"], cfg, corpus))
    sides["rlscale_torch_loss"] = on_torch_loss(rlscale_side(models["rlscale_torch_loss"], cfg,
                                                             corpus))
    sides["hf_medium"] = at_medium(hf_labels_side(models["hf_medium"], cfg))
    sides["rlscale_medium"] = rlscale_side(models["rlscale_medium"],  # the loop scopes it
                                           dataclasses.replace(cfg, matmul_precision="medium"),
                                           corpus)
    if bf16:
        sides["rlscale_bf16"] = rlscale_side(models["rlscale_bf16"], cfg, corpus, bf16=True)
        sides["rlscale_bf16_products"] = rlscale_side(
            models["rlscale_bf16_products"], dataclasses.replace(cfg, matmul_precision="bf16"),
            corpus)
        sides["hf_bf16"] = under_autocast(hf_labels_side(models["hf_bf16"], cfg))
    times: dict[str, list[float]] = {k: [] for k in sides}
    order = list(sides)
    for r in range(rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            fn = sides[name]
            # both sides build their batch inside the timed step (a loop must make its data)
            arg = (lambda i: corpus.batch(i)) if name.startswith("hf") else (lambda i: i)
            for i in range(warmup):
                fn(arg(i))
            for i in range(warmup, warmup + steps):
                t0 = time.perf_counter()
                fn(arg(i))
                times[name].append(time.perf_counter() - t0)
    flops = model_flops(model, n, batch, seq)
    med = {k: statistics.median(v) for k, v in times.items()}
    tps = {k: batch * seq / v for k, v in med.items()}
    mfu = {k: flops / v / (peak[1] if k.endswith("medium") else peak[0])
           for k, v in med.items()}
    print(f"pretrain_vs_hf rung={rung} N={n} batch={batch}x{seq} "
          f"hf_tokens_per_s={tps['hf']:.0f} rlscale_tokens_per_s={tps['rlscale']:.0f} "
          f"speedup={med['hf'] / med['rlscale']:.2f} hf_mfu={mfu['hf']:.3f} "
          f"rlscale_mfu={mfu['rlscale']:.3f} "
          f"rlscale_hf_forward_speedup={med['hf'] / med['rlscale_hf_forward']:.2f} "
          f"attention_kernel_speedup={med['rlscale_sdpa'] / med['rlscale']:.2f} "
          f"fused_loss_speedup={med['rlscale_torch_loss'] / med['rlscale']:.2f} "
          f"medium_speedup={med['hf_medium'] / med['rlscale_medium']:.2f} "
          f"bf16_matmul_speedup={med['rlscale'] / med['rlscale_medium']:.2f} "
          f"rlscale_medium_mfu={mfu['rlscale_medium']:.3f}"
          + (f" bf16_vs_rlscale={med['rlscale'] / med['rlscale_bf16']:.2f} "
             f"bf16_products_vs_rlscale={med['rlscale'] / med['rlscale_bf16_products']:.2f} "
             f"bf16_products_vs_hf_bf16={med['hf_bf16'] / med['rlscale_bf16_products']:.2f}"
             if bf16 else ""),
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rungs", default="200k,1m")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per side and round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--bf16", action="store_true",
                    help="add rlscale's loop under bf16 autocast and at matmul_precision bf16, "
                    "and the transformers loop under bf16 autocast (ratios)")
    args = ap.parse_args()
    import torch

    from rlscale.flops import matmul_peak_flops

    from rlscale.pretrain_loop import matmul_precision

    torch.set_num_threads(args.threads)
    with matmul_precision("medium"):
        medium = matmul_peak_flops("cpu")
    peak = (matmul_peak_flops("cpu"), medium)
    print(f"# torch {torch.__version__}, {args.threads} threads, fp32 matmul peak "
          f"{peak[0] / 1e9:.1f} GFLOP/s (2048^3), under precision medium {medium / 1e9:.1f}",
          flush=True)
    for rung in args.rungs.split(","):
        bench(rung.strip(), args.batch, args.seq, args.rounds, args.steps, args.warmup, peak,
              args.bf16)


if __name__ == "__main__":
    main()
