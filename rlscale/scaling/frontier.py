"""The compute-optimal split under a joint law (rlscale.scaling.joint): `frontier(fit, C)`
minimises L(N, D_pre, C_RL) over the sizes a plan may choose and the RL share s of the budget
(D_pre = (1 - s) C / (6 N), C_RL = s C), by a grid then a bounded refinement, and states where
the optimum leaves the fitted data. Pure: numpy and scipy only, no models.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from rlscale.errors import UserError
from rlscale.scaling.joint import JointFit, predict, tokens_seen


def _best_share(fit_params, form, n: float, budget: float,
                s_min: float = 0.0) -> tuple[float, float]:
    """(RL share, loss) minimising L at size n and total compute budget (share in
    [s_min, 0.999]; s_min > 0 where pre-training tokens are capped)."""
    def loss(s):
        d = (1.0 - s) * budget / (6.0 * n)
        return float(predict(form, fit_params, n, d, s * budget))

    s_min = min(max(s_min, 0.0), 0.999)
    grid = np.concatenate([[s_min], np.geomspace(max(s_min, 1e-5), 0.999, 80)])
    grid = np.unique(grid[grid >= s_min])
    vals = [loss(s) for s in grid]
    i = int(np.argmin(vals))
    lo, hi = grid[max(0, i - 1)], grid[min(len(grid) - 1, i + 1)]
    if hi > lo:
        r = minimize_scalar(loss, bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
        if r.fun < vals[i]:
            return float(r.x), float(r.fun)
    return float(grid[i]), float(vals[i])


def frontier(fit: JointFit, budget: float, sizes=None, d_max: float | None = None,
             within_seen: bool = False) -> dict:
    """The compute-optimal allocation of `budget` FLOPs under the fit: N, pre-training tokens,
    RL FLOPs, RL share, predicted loss and its interval there (`JointFit.interval`).
    d_max caps the pre-training tokens (the rest of the budget goes to RL); within_seen keeps
    each size at most at the tokens the fit saw there (RL past a measured checkpoint, where the
    law held best: docs/study.md, session 27) and drops sizes it never saw."""
    if not (isinstance(budget, (int, float)) and math.isfinite(budget) and budget > 0):
        raise UserError(f"--budget: {budget!r}: must be a positive number of FLOPs")
    best = None
    for n, cap in _candidates(fit, sizes, d_max, within_seen):
        s_min = 0.0 if cap is None else 1.0 - 6.0 * n * cap / float(budget)
        s, val = _best_share(fit.params, fit.form, n, float(budget), s_min)
        if best is None or val < best[2]:
            best = (n, s, val)
    if best is None:
        raise UserError("--within-seen: none of the sizes to plan for was in the fitted data")
    n, s, val = best
    d, c_rl = (1 - s) * budget / (6 * n), s * budget
    lo, hi = fit.interval(n, d, c_rl)
    lo, hi = (float("nan"), float("nan")) if lo is None else (lo, hi)
    outside = []  # where the optimum leaves the fitted data: an extrapolation, flagged
    if fit.n_range and not fit.n_range[0] <= n <= fit.n_range[1]:
        outside.append("N")
    if fit.d_range and not fit.d_range[0] / 1.001 <= d <= fit.d_range[1] * 1.001:
        outside.append("pretrain_tokens")
    if fit.t_max is not None and c_rl / (6 * n) > fit.t_max * 1.001:
        outside.append("rl_flops")
    seen = tokens_seen(fit, n)
    if seen is not None and d > seen * 1.001 and "pretrain_tokens" not in outside:
        outside.append("pretrain_tokens_at_N")
    return {"C_total": float(budget), "N": n, "pretrain_tokens": d, "rl_flops": c_rl,
            "rl_share": s, "predicted_test_loss": val, "interval": [lo, hi],
            "extrapolated": outside, "tokens_x_seen": None if seen is None else d / seen}


def _candidates(fit: JointFit, sizes, d_max: float | None, within_seen: bool):
    """(size, its pre-training token cap or None) for every size a plan may choose."""
    if within_seen and not fit.d_seen:
        raise UserError("--within-seen: this fit records no tokens per size (written before "
                        "they were kept): refit it (rlscale plan --points)")
    if sizes is None:
        sizes = fit.n_choices or ([m for m, _ in fit.d_seen] if within_seen else
                                  list(np.geomspace(*(fit.n_range or [1e5, 1e9]), 25)))
    for n in sizes:
        seen = tokens_seen(fit, n) if within_seen else None
        if within_seen and seen is None:
            continue  # a size the fit never saw
        caps = [c for c in (d_max, seen) if c is not None]
        yield float(n), (min(caps) if caps else None)
