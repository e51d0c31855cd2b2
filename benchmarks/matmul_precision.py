"""fp32 matmuls at torch's precision "highest" against "medium" (bf16 inputs, fp32 sums where the
CPU has bf16 products) and against bf16 tensors (bf16 inputs and output: pre-training's
matmul_precision "bf16"), same run, at the 600k rung's pre-training shapes (32 x 128 tokens,
hidden 96, MLP 320): GFLOP/s and the largest error relative to an fp64 product.

    .venv/bin/python benchmarks/matmul_precision.py [--threads 1]
"""
import argparse
import time

import torch

from rlscale.pretrain_loop import matmul_precision

SHAPES = ((4096, 96, 320), (4096, 320, 96), (96, 4096, 320))  # M, K, N: forward, down, weight grad


def run(m: int, k: int, n: int, dtype=torch.float32, reps: int = 50) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
    ref = a.double() @ b.double()  # of the fp32 inputs: bf16's error counts its rounding
    a, b = a.to(dtype), b.to(dtype)
    for _ in range(5):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        c = a @ b
    s = (time.perf_counter() - t0) / reps
    return 2 * m * k * n / s / 1e9, ((c.double() - ref).abs().max() / ref.abs().max()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    torch.set_num_threads(ap.parse_args().threads)
    for m, k, n in SHAPES:
        out = {}
        for p in ("highest", "medium"):
            with matmul_precision(p):
                out[p] = run(m, k, n)
        out["bf16"] = run(m, k, n, torch.bfloat16)
        print(f"matmul_precision shape={m}x{k}x{n} highest_gflops={out['highest'][0]:.1f} "
              f"medium_gflops={out['medium'][0]:.1f} speedup={out['medium'][0] / out['highest'][0]:.2f} "
              f"highest_relerr={out['highest'][1]:.1e} medium_relerr={out['medium'][1]:.1e} "
              f"bf16_gflops={out['bf16'][0]:.1f} bf16_speedup={out['bf16'][0] / out['highest'][0]:.2f} "
              f"bf16_relerr={out['bf16'][1]:.1e}", flush=True)


if __name__ == "__main__":
    main()
