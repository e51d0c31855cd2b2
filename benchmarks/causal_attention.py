"""Causal attention alone, forward and backward: attention.c's kernel
(rlscale.models.native_train.causal_attention) against torch's SDPA (is_causal=True) in the same
run, on the pre-training shapes of the micro rungs. q, k, v are strided views of one fused
projection, as the decoder hands them over. One thread; the mean of 20 timed calls after 3.

    .venv/bin/python benchmarks/causal_attention.py
"""
import time

import torch
import torch.nn.functional as F

from rlscale.models import native_train

SHAPES = ((32, 128, 3, 32), (8, 512, 3, 32), (32, 128, 4, 16), (8, 512, 4, 16))  # B, S, H, hd


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                          v.transpose(1, 2), is_causal=True,
                                          scale=1.0).transpose(1, 2)


def timed(fn, qkv, H, g, n=20, warmup=3):
    fwd = bwd = 0.0
    for i in range(warmup + n):
        q, k, v = qkv.split([H, H, H], 2)
        t0 = time.perf_counter()
        o = fn(q, k, v)
        t1 = time.perf_counter()
        o.backward(g)
        t2 = time.perf_counter()
        if i >= warmup:
            fwd, bwd = fwd + t1 - t0, bwd + t2 - t1
    return fwd / n * 1e3, bwd / n * 1e3


def main() -> None:
    torch.set_num_threads(1)
    for B, S, H, hd in SHAPES:
        g = torch.Generator().manual_seed(0)
        qkv = (torch.randn(B, S, 3 * H, hd, generator=g) * 0.5).requires_grad_()
        grad = torch.randn(B, S, H, hd, generator=g)
        kf, kb = timed(native_train.causal_attention, qkv, H, grad)
        sf, sb = timed(sdpa, qkv, H, grad)
        print(f"causal_attention shape={B}x{S}x{H}x{hd} kernel_fwd_ms={kf:.2f} "
              f"kernel_bwd_ms={kb:.2f} sdpa_fwd_ms={sf:.2f} sdpa_bwd_ms={sb:.2f} "
              f"speedup={(sf + sb) / (kf + kb):.2f}", flush=True)


if __name__ == "__main__":
    main()
