"""Prediction protocols: fit on part of the data, report the error on the part the fit never saw.

    intra(m)          fit the first m points (steps) of every curve, predict the rest of each curve
    inter(max_size)   fit the sizes <= max_size, predict the larger sizes
    loso              leave one size out: for each size, fit the others and predict it

Each returns a dict with the fit (params, r2 on what it saw) and `prediction` = mean absolute
relative error and R^2 (linear y) on the unseen points. With loglinear_kn (free E per size) an
unseen size has no intercept: its E is re-fitted on that size's own points with K_max and N0
held (the paper's 72B protocol), and the result says so (`intercept_refit_on_target`); with
loglinear_kn_param (or any law without per-size parameters) the prediction uses no target point.
"""

from __future__ import annotations

import copy

import numpy as np

from rlscale.errors import UserError
from rlscale.scaling.data import select
from rlscale.scaling.fitting import fit_law
from rlscale.scaling.laws import LogLinearKN, LogLinearKNParam
from rlscale.scaling.metrics import errors

PROTOCOLS = ("intra", "inter", "loso")


def refit_intercepts(law, pts):
    """The paper's protocol for a size the fit never saw: keep K_max and N0, fit only E(N) on
    that size's own points. Returns a new LogLinearKN for the sizes in pts."""
    fixed = {"K_max": law.params_["K_max"], "N0": law.params_["N0"]}
    return fit_law(LogLinearKN(), pts, objective=law.result_.objective,
                   curve_weights=law.result_.curve_weights, fixed=fixed)


def _fit(law, pts, **fit_kw):
    law = copy.deepcopy(law)
    law.params_ = None
    return fit_law(law, pts, **fit_kw)


def _has_free_intercepts(law) -> bool:
    return isinstance(law, LogLinearKN) and not isinstance(law, LogLinearKNParam)


def _predict_unseen(law, test):
    """Predictions on sizes the fit may not have seen; re-fits E(N) for loglinear_kn."""
    if _has_free_intercepts(law):
        unseen = ~np.isin(test.size, law.sizes_)
        pred = np.empty(len(test))
        if np.any(~unseen):
            pred[~unseen] = law.predict(test.subset(~unseen))
        if np.any(unseen):
            sub = test.subset(unseen)
            pred[unseen] = refit_intercepts(law, sub).predict(sub)
        return pred, bool(np.any(unseen))
    return law.predict(test), False


def _report(name, law, train, test, pred, refit, **extra) -> dict:
    out = {"protocol": name, **extra, "params": dict(law.params_), "fit_r2": law.result_.r2,
           "n_train": len(train), "converged": law.result_.converged,
           "prediction": errors(test.y, pred)}
    if refit:
        out["intercept_refit_on_target"] = True
    per_size = {}
    for s in np.unique(test.size):
        m = test.size == s
        per_size[f"{s:.4g}"] = errors(test.y[m], pred[m])
    out["per_size"] = per_size
    return out


def intra(law, pts, first_steps: int, **fit_kw) -> dict:
    """Fit the first `first_steps` points of every curve; predict the later points."""
    rank = pts.rank_in_curve()
    train, test = pts.subset(rank < first_steps), pts.subset(rank >= first_steps)
    if len(test) == 0:
        raise UserError(f"--first-steps {first_steps}: no later points to predict")
    fitted = _fit(law, train, **fit_kw)
    pred = fitted.predict(test)
    out = _report("intra", fitted, train, test, pred, False, first_steps=first_steps)
    out["all_r2"] = fitted.score(pts)  # the fit judged on every point, seen or not
    return out


def inter(law, pts, max_size: float, **fit_kw) -> dict:
    """Fit the sizes <= max_size; predict the larger ones."""
    train = select(pts, max_size=max_size)
    test = pts.subset(pts.size > max_size * (1 + 1e-9))
    if len(test) == 0:
        raise UserError(f"--max-size {max_size:g}: no larger size to predict")
    fitted = _fit(law, train, **fit_kw)
    pred, refit = _predict_unseen(fitted, test)
    return _report("inter", fitted, train, test, pred, refit, max_size=max_size)


def loso(law, pts, **fit_kw) -> dict:
    """Leave one size out: one fit per size, each predicting the size it left out."""
    sizes = np.unique(pts.size)
    if len(sizes) < 3:
        raise UserError(f"{pts.source or 'data'}: leave-one-size-out needs at least 3 sizes")
    preds, folds = np.empty(len(pts)), []
    for s in sizes:
        m = pts.size == s
        fitted = _fit(law, pts.subset(~m), **fit_kw)
        p, refit = _predict_unseen(fitted, pts.subset(m))
        preds[m] = p
        folds.append({"size": float(s), "params": dict(fitted.params_),
                      "prediction": errors(pts.y[m], p), "intercept_refit_on_target": refit})
    out = {"protocol": "loso", "prediction": errors(pts.y, preds), "folds": folds,
           "per_size": {f"{f['size']:.4g}": f["prediction"] for f in folds}}
    return out


def run_protocol(name: str, law, pts, first_steps: int | None = None,
                 max_size: float | None = None, **fit_kw) -> dict:
    if name == "intra":
        if not first_steps:
            raise UserError("--protocol intra needs --first-steps M")
        return intra(law, pts, first_steps, **fit_kw)
    if name == "inter":
        if not max_size:
            raise UserError("--protocol inter needs --max-size N")
        return inter(law, pts, max_size, **fit_kw)
    if name == "loso":
        return loso(law, pts, **fit_kw)
    raise UserError(f"--protocol: unknown protocol '{name}' ({', '.join(PROTOCOLS)})")
