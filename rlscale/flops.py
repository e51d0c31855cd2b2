"""Compute accounting: FLOPs of RL steps in two conventions, pre-training FLOPs, and MFU.

N is always the non-embedding parameter count (rlscale.models.non_embedding_params). Tokens of
a GRPO step are counted per sequence: each of the B x G rollouts carries its prompt, and every
forward / backward pass over the step processes prompt + completion tokens of all B x G rows.

- `c_paper`: 6 * N * T_step, T_step = prompt + completion tokens of the step (the paper's
  convention: the whole step priced as training).
- `c_itemized`: each pass priced by what it does:
      generation      2 * N * T_gen            (prefill + decode, one forward per token)
      extra forwards  2 * N * T per pass       (old log-probs, reference log-probs)
      training        6 * N * T_train          (forward + backward, 2 + 4)
  plus the attention term (not in N because it grows with the context): per token at causal
  position p, the score and value products cost 2 * 2 * n_layer * d_attn * (p + 1) FLOPs forward
  (QK^T and A V; d_attn = n_heads * head_dim). It matters once the context is comparable to
  d_model (micro models with 500-token contexts). Summed over a sequence of L tokens this is
  4 * n_layer * d_attn * L (L + 1) / 2, and each pass multiplies it like its N term (x1 for a
  forward, x3 for training). The vocabulary projection is not counted, as N excludes it.
- `pretrain_flops`: 6 * N * D_pretrain.
- MFU = achieved model FLOPs per second / `matmul_peak_flops()`, the measured matmul peak of
  this machine (fp32 on CPU, bf16 on CUDA; measured once per process and device).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterable


def c_paper(n_params: int, tokens: int) -> float:
    """6 * N * T: the paper's FLOPs for processing T tokens (prompt + completion) in a step."""
    return 6.0 * n_params * tokens


def pretrain_flops(n_params: int, tokens: int) -> float:
    """6 * N * D_pretrain."""
    return 6.0 * n_params * tokens


def attention_forward_flops(n_layer: int, d_attn: int, seq_lens: Iterable[int]) -> float:
    """Forward FLOPs of causal attention scores + values over whole sequences of these lengths."""
    per_key = 4.0 * n_layer * d_attn  # 2 FLOPs per multiply-add, QK^T and AV
    return per_key * sum(L * (L + 1) / 2 for L in seq_lens)


def c_itemized(
    n_params: int,
    gen_tokens: int,
    train_tokens: int,
    extra_forwards: int = 0,
    attention_fwd: float = 0.0,
) -> float:
    """Itemized FLOPs of one GRPO step.

    gen_tokens: tokens that went through the model while sampling (prompt + completion);
    train_tokens: tokens of the training pass (the same rows, prompt + completion);
    extra_forwards: number of extra forward passes over the train tokens (old / reference
        log-probs; activation checkpointing's recompute);
    attention_fwd: `attention_forward_flops` of the step's sequences (0 to leave it out).
    """
    n_term = 2.0 * n_params * gen_tokens + 2.0 * n_params * train_tokens * extra_forwards
    n_term += 6.0 * n_params * train_tokens
    return n_term + attention_fwd * (1 + extra_forwards + 3)


@dataclass(frozen=True)
class ModelShape:
    """What the FLOP formulas need to know about a model."""

    n_params: int  # non-embedding
    n_layer: int
    d_attn: int  # n_heads * head_dim

    @classmethod
    def of(cls, model) -> "ModelShape":
        from rlscale.models import non_embedding_params

        cfg = model.config
        n_heads = getattr(cfg, "num_attention_heads", 0) or 0
        head_dim = getattr(cfg, "head_dim", None) or (cfg.hidden_size // max(n_heads, 1))
        return cls(non_embedding_params(model), int(cfg.num_hidden_layers), int(n_heads * head_dim))


_PEAK: dict[str, float] = {}


def matmul_peak_flops(device: str = "cpu", size: int | None = None, repeats: int = 3) -> float:
    """Measured matmul FLOP/s of this machine: fp32 on CPU, bf16 on CUDA; cached per device.

    The best of `repeats` timed square matmuls after a warm-up (2048^3 on CPU, 8192^3 on CUDA),
    using the thread count torch is set to, which is the one training runs with, and torch's
    fp32 matmul precision in force (under "medium" a CPU with bf16 products measures those).
    """
    import torch

    key = f"{device}:{size}:{torch.get_num_threads()}:{torch.get_float32_matmul_precision()}"
    if key in _PEAK:
        return _PEAK[key]
    cuda = str(device).startswith("cuda")
    n = size or (8192 if cuda else 2048)
    dtype = torch.bfloat16 if cuda else torch.float32
    gen = torch.Generator(device="cpu").manual_seed(0)  # leave the global RNG untouched
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.mm(a, b)
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
    _PEAK[key] = 2.0 * n**3 / best
    return _PEAK[key]


def mfu(flops: float, seconds: float, peak: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the machine's peak (0 when not timed)."""
    if seconds <= 0 or peak <= 0:
        return 0.0
    return flops / seconds / peak
