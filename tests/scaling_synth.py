"""Synthetic scaling data from known parameters (shared by the test_scaling_* files)."""

import numpy as np

from rlscale.scaling import Points

TRUE = {"K_max": 0.15, "N0": 2e9}
SIZES = np.array([1e8, 3e8, 1e9, 3e9, 1e10])


def loglinear_points(seed=0, noise=0.01, n=20, sizes=SIZES, kmax=TRUE["K_max"], n0=TRUE["N0"]):
    """L = 10^(E(N) - k(N) log10 D) * (1 + noise * eps), E(N) from a smooth made-up curve."""
    rng = np.random.default_rng(seed)
    x, y, size, step, curve = [], [], [], [], []
    for c, s in enumerate(sizes):
        steps = np.arange(1, n + 1)
        d = 512.0 * steps
        k = kmax / (1 + n0 / s)
        e = 0.02 + 0.06 * np.log10(s / 1e9) + k * 3.0
        lt = 10 ** (e - k * np.log10(d))
        x += list(d)
        y += list(lt * (1 + noise * rng.standard_normal(n)))
        size += [s] * n
        step += list(steps)
        curve += [c] * n
    return Points(np.array(x), np.array(y), np.array(size, float), np.array(step, float),
                  np.array(curve), [f"{s:g}" for s in sizes], x_name="D", y_name="test_loss",
                  source="synthetic")


def true_intercepts(sizes=SIZES, kmax=TRUE["K_max"], n0=TRUE["N0"]):
    k = kmax / (1 + n0 / np.asarray(sizes))
    return 0.02 + 0.06 * np.log10(np.asarray(sizes) / 1e9) + k * 3.0
