"""Scaling-law fitting, prediction and validation (issue 4).

    from rlscale.scaling import fit
    law = fit("qwen2.5_base_holdout_testloss_by_step.csv", "loglinear_kn", x="C_flops")
    law.params_["K_max"], law.params_["N0"], law.result_.r2, law.result_.identified
    law.predict(x=[1e19], size=7.2e10)

Laws: LogLinearKN, LogLinearKNParam, GainPower, Chinchilla, Sigmoid (rlscale.scaling.laws).
Uncertainty: bootstrap(), intervals; protocols: intra / inter / loso (protocols), extrapolate
and loso_extrapolate (extrapolate), compute_half (compute_half); analyses: data_reuse,
fixed_compute, compute_to_target. The CLIs are `rlscale fit` (rlscale.scaling.cli) and
`rlscale predict` (rlscale.scaling.predict).
"""

from __future__ import annotations

import numpy as np

from rlscale.errors import UserError
from rlscale.scaling.analyses import compute_to_target, data_reuse, fixed_compute
from rlscale.scaling.bootstrap import Bootstrap, bootstrap
from rlscale.scaling.compute_half import compute_half
from rlscale.scaling.data import Points, load_points, select
from rlscale.scaling.fitting import FitResult, fit_law
from rlscale.scaling.extrapolation import extrapolate, loso_extrapolate
from rlscale.scaling.laws import (LAWS, Chinchilla, GainPower, Law, LogLinearKN,
                                  LogLinearKNParam, LogLinearKNParamQ, Sigmoid, make_law)
from rlscale.scaling.metrics import errors, mare, r2
from rlscale.scaling.protocols import inter, intra, loso, refit_intercepts, run_protocol

__all__ = ["fit", "prepare", "Law", "LogLinearKN", "LogLinearKNParam", "GainPower", "Chinchilla",
           "Sigmoid", "LAWS", "make_law", "Points", "load_points", "select", "FitResult",
           "fit_law", "refit_intercepts", "bootstrap", "Bootstrap", "intra", "inter", "loso",
           "run_protocol", "errors", "mare", "r2", "data_reuse", "fixed_compute",
           "compute_to_target", "extrapolate", "loso_extrapolate", "compute_half",
           "LogLinearKNParamQ", "check_points"]


def prepare(data, law: Law, warmup_clip: int = 0, first_steps: int | None = None,
            max_size: float | None = None, **load_kw) -> Points:
    """Points for `law` from a path or Points: selection applied, x <= 0 rows (a step-0
    baseline eval, which has spent no compute) dropped for laws in log X, and for gain_power a
    curve table reduced to one gain per curve (first loss - last loss)."""
    pts = data if isinstance(data, Points) else load_points(data, **load_kw)
    check_points(pts, law)
    if law.needs_positive_x:
        pts = pts.subset(pts.x > 0)
    pts = select(pts, warmup_clip=warmup_clip, first_steps=first_steps, max_size=max_size)
    if isinstance(law, GainPower) and len(pts) > len(np.unique(pts.curve)):
        pts = gains(pts)
    return pts


def check_points(pts: Points, law: Law) -> None:
    """Values no law can use, named by file and column: sizes <= 0, x < 0 (x = 0 is a step-0
    baseline eval, dropped for laws in log x), and an x that never changes."""
    where = pts.source or "data"
    if np.any(pts.size <= 0):
        raise UserError(f"{where}: column 'N' (model size): values must be > 0, found "
                        f"{pts.size[pts.size <= 0][0]:g}")
    if not law.needs_positive_x:
        return
    if np.any(pts.x < 0):
        raise UserError(f"{where}: column '{pts.x_name}': values must be >= 0, found "
                        f"{pts.x[pts.x < 0][0]:g}")
    pos = pts.x[pts.x > 0]
    if len(pos) == 0:
        raise UserError(f"{where}: column '{pts.x_name}': no rows with a value > 0")
    if np.all(pos == pos[0]):
        raise UserError(f"{where}: column '{pts.x_name}': every value is {pos[0]:g}; a law "
                        "of x needs x to vary")


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
