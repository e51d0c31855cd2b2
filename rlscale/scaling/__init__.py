"""Scaling-law fitting, prediction and validation (issue 4).

    from rlscale.scaling import fit
    law = fit("qwen2.5_base_holdout_testloss_by_step.csv", "loglinear_kn", x="C_flops")
    law.params_["K_max"], law.params_["N0"], law.result_.r2, law.result_.identified
    law.predict(x=[1e19], size=7.2e10)

Laws: LogLinearKN, LogLinearKNParam, GainPower, Chinchilla, Sigmoid (rlscale.scaling.laws).
Uncertainty: bootstrap(); protocols: intra / inter / loso; analyses: data_reuse,
fixed_compute, compute_to_target. The CLI is `rlscale fit` (rlscale.scaling.cli).
"""

from __future__ import annotations

import numpy as np

from rlscale.errors import UserError
from rlscale.scaling.analyses import compute_to_target, data_reuse, fixed_compute
from rlscale.scaling.bootstrap import Bootstrap, bootstrap
from rlscale.scaling.data import Points, load_points, select
from rlscale.scaling.fitting import FitResult, fit_law
from rlscale.scaling.laws import (LAWS, Chinchilla, GainPower, Law, LogLinearKN,
                                  LogLinearKNParam, Sigmoid, make_law)
from rlscale.scaling.metrics import errors, mare, r2
from rlscale.scaling.protocols import inter, intra, loso, refit_intercepts, run_protocol

__all__ = ["fit", "prepare", "Law", "LogLinearKN", "LogLinearKNParam", "GainPower", "Chinchilla",
           "Sigmoid", "LAWS", "make_law", "Points", "load_points", "select", "FitResult",
           "fit_law", "refit_intercepts", "bootstrap", "Bootstrap", "intra", "inter", "loso",
           "run_protocol", "errors", "mare", "r2", "data_reuse", "fixed_compute",
           "compute_to_target"]


def prepare(data, law: Law, warmup_clip: int = 0, first_steps: int | None = None,
            max_size: float | None = None, **load_kw) -> Points:
    """Points for `law` from a path or Points: selection applied, x <= 0 rows (a step-0
    baseline eval, which has spent no compute) dropped for laws in log X, and for gain_power a
    curve table reduced to one gain per curve (first loss - last loss)."""
    pts = data if isinstance(data, Points) else load_points(data, **load_kw)
    if law.needs_positive_x:
        pts = pts.subset(pts.x > 0)
        if len(pts) == 0:
            raise UserError(f"{pts.source or 'data'}: no rows with '{pts.x_name}' > 0")
    pts = select(pts, warmup_clip=warmup_clip, first_steps=first_steps, max_size=max_size)
    if isinstance(law, GainPower) and len(pts) > len(np.unique(pts.curve)):
        pts = gains(pts)
    return pts


def gains(pts: Points) -> Points:
    """One point per curve: y = first y - last y (the RL gain in test loss), x = size."""
    rank = pts.rank_in_curve()
    rows = []
    for c in np.unique(pts.curve):
        m = pts.curve == c
        first, last = np.argmin(np.where(m, rank, 1 << 30)), np.argmax(np.where(m, rank, -1))
        rows.append((pts.size[first], pts.y[first] - pts.y[last], c, pts.step[last]))
    size, y, curve, step = (np.array(v) for v in zip(*rows))
    return Points(size.astype(float), y.astype(float), size.astype(float), step.astype(float),
                  curve.astype(int), pts.curve_names, x_name="N",
                  y_name=f"gain in {pts.y_name}", source=pts.source)


def fit(data, law: str | Law = "loglinear_kn", *, objective: str | None = None,
        curve_weights: bool | None = None, warmup_clip: int = 0,
        first_steps: int | None = None, max_size: float | None = None, delta: float = 1e-3,
        **load_kw) -> Law:
    """Fit a law (name or instance) to a path (any input load_points reads) or Points.

    load_kw: x, y, size_col, step_col, curve_col, fmt, n_params, batch_size (see load_points).
    Returns the fitted law: params_ (named parameters) and result_ (FitResult: r2, loss, ...).
    """
    law = make_law(law) if isinstance(law, str) else law
    pts = prepare(data, law, warmup_clip, first_steps, max_size, **load_kw)
    return fit_law(law, pts, objective=objective, curve_weights=curve_weights, delta=delta)
