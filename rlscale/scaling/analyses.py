"""Analyses the seed documents ask for, as pure functions of data or of a fitted law.

    data_reuse(tau, step, loss)          final loss per reuse factor tau at equal total data, and
                                         the smallest tau where it degrades
    fixed_compute(law, sizes, budget)    predicted loss per size at one budget; the best size
    compute_to_target(law, sizes, L)     compute (or data) each size needs to reach loss L; the
                                         size that gets there with the least (optionally counting
                                         each size's pre-training compute too)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlscale.errors import UserError


@dataclass
class DataReuse:
    tau: list[float]
    final_loss: list[float]  # mean of the last `tail` points of each curve
    final_se: list[float]  # standard error of that mean
    baseline: float  # final loss at the smallest tau
    degrades_at: float | None  # smallest tau whose final loss exceeds the threshold
    threshold: float


def data_reuse(tau, step, loss, tail: int = 5, rel_tol: float = 0.02) -> DataReuse:
    """Final test loss against the reuse factor tau (every curve at the same total data).

    The final loss of a curve is the mean of its last `tail` points (single points are noisy).
    A tau degrades when its final loss exceeds the smallest tau's by more than rel_tol
    (relative) and by more than two combined standard errors.
    """
    tau, step, loss = (np.asarray(v, float) for v in (tau, step, loss))
    if not (len(tau) == len(step) == len(loss)) or len(tau) == 0:
        raise UserError("data_reuse: tau, step and loss must be non-empty and of equal length")
    taus = np.unique(tau)
    finals, ses = [], []
    for t in taus:
        m = tau == t
        last = loss[m][np.argsort(step[m])][-tail:]
        finals.append(float(last.mean()))
        ses.append(float(last.std(ddof=1) / np.sqrt(len(last))) if len(last) > 1 else 0.0)
    base, base_se = finals[0], ses[0]
    threshold = base * (1 + rel_tol)
    degrades = None
    for t, f, se in zip(taus, finals, ses):
        if f > threshold and f - base > 2 * np.hypot(se, base_se):
            degrades = float(t)
            break
    return DataReuse([float(t) for t in taus], finals, ses, base, degrades, threshold)


def fixed_compute(law, sizes, budget: float) -> dict:
    """Predicted loss of every size at the same budget (x = budget); the size with the lowest."""
    sizes = np.asarray(sizes, float)
    loss = np.array([float(law.predict(np.array([budget]), s)[0]) for s in sizes])
    best = int(np.argmin(loss))
    return {"budget": float(budget), "sizes": sizes.tolist(), "loss": loss.tolist(),
            "best_size": float(sizes[best]), "best_loss": float(loss[best])}


def compute_to_target(law, sizes, target: float, extra=None, lo: float = 1.0,
                      hi: float = 1e40) -> dict:
    """The x (compute or data) at which each size's predicted loss first reaches `target`.

    Bisection in log10 x on [lo, hi], assuming the prediction falls as x grows (true of every
    decreasing-loss law here); a size that never reaches the target gets inf. extra: per-size
    cost added before comparing sizes (e.g. pre-training compute 6 N D_pretrain).
    """
    sizes = np.asarray(sizes, float)
    need = np.full(len(sizes), np.inf)
    for i, s in enumerate(sizes):
        f = lambda lx: float(law.predict(np.array([10.0**lx]), s)[0]) - target  # noqa: E731
        a, b = np.log10(lo), np.log10(hi)
        if f(a) <= 0:
            need[i] = lo
            continue
        if f(b) > 0:
            continue  # never reaches the target
        for _ in range(100):
            mid = 0.5 * (a + b)
            a, b = (mid, b) if f(mid) > 0 else (a, mid)
        need[i] = 10.0**b
    total = need + (np.asarray(extra, float) if extra is not None else 0.0)
    best = int(np.argmin(total)) if np.any(np.isfinite(total)) else None
    return {"target": float(target), "sizes": sizes.tolist(), "x_needed": need.tolist(),
            "total": total.tolist(),
            "best_size": None if best is None else float(sizes[best]),
            "best_total": None if best is None else float(total[best])}
