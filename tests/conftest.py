"""Shared test fixtures.

`synth`: synthetic scaling data from known parameters (the test_scaling_* files):
    synth.points(seed, noise, n, sizes, kmax, n0) -> Points whose truth is synth.TRUE and
    synth.true_intercepts(sizes).
"""

from types import SimpleNamespace

import numpy as np
import pytest

from rlscale.scaling.data import Points

TRUE = {"K_max": 0.15, "N0": 2e9}
SIZES = np.array([1e8, 3e8, 1e9, 3e9, 1e10])


def _intercepts(sizes=SIZES, kmax=TRUE["K_max"], n0=TRUE["N0"]):
    """E(N) of the synthetic data: of the parametric form, e0 + e1 log10(N/1e9) + k(N) x0."""
    k = kmax / (1 + n0 / np.asarray(sizes, float))
    return 0.02 + 0.06 * np.log10(np.asarray(sizes, float) / 1e9) + k * 3.0


def _points(seed=0, noise=0.01, n=20, sizes=SIZES, kmax=TRUE["K_max"], n0=TRUE["N0"]):
    """L = 10^(E(N) - k(N) log10 D) * (1 + noise * eps), one curve of n steps per size."""
    rng = np.random.default_rng(seed)
    x, y, size, step, curve = [], [], [], [], []
    for c, (s, e) in enumerate(zip(sizes, _intercepts(sizes, kmax, n0))):
        steps = np.arange(1, n + 1)
        d = 512.0 * steps
        k = kmax / (1 + n0 / s)
        x += list(d)
        y += list(10 ** (e - k * np.log10(d)) * (1 + noise * rng.standard_normal(n)))
        size += [s] * n
        step += list(steps)
        curve += [c] * n
    return Points(np.array(x), np.array(y), np.array(size, float), np.array(step, float),
                  np.array(curve), [f"{s:g}" for s in sizes], x_name="D", y_name="test_loss",
                  source="synthetic")


@pytest.fixture
def synth():
    return SimpleNamespace(points=_points, TRUE=TRUE, SIZES=SIZES, true_intercepts=_intercepts)
