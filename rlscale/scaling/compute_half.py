"""Extrapolation in compute: fit the first half of every curve's compute, predict the rest.

    compute_half(pts, "loglinear_kn")   the paper's law, fitted its way: one joint fit of all
                                        curves (K_max, N0 shared, E free per size), mse in L with
                                        every curve weighted equally
    compute_half(pts, "sigmoid")        the ScaleRL law, fitted its way: each curve on its own,
                                        R0 held at the curve's first measured value, the early
                                        points dropped (compute below `early` x the fitted
                                        half's end), A, B, C_mid fitted (`fit_scalerl_curve`)

The sigmoid is written for a reward R (pass rate); our y is the test loss L = 1 - pass@1, and
R = 1 - L maps the ScaleRL curve onto the same form in L (R0 -> L0 = 1 - R0, A -> 1 - A), so
the least-squares fit is the same; A here is the asymptotic loss.

Intervals: a law fitted per curve has no larger unit to resample, so both laws use the same
moving-block bootstrap of each curve's log residuals (blocks of consecutive points keep the
correlation along a curve), refit (the sigmoid's held R0, one measured point, moved by a drawn
residual too), and add a drawn residual to each prediction (rlscale.scaling.intervals). Coverage is the share of the second-half points inside.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from rlscale.errors import UserError
from rlscale.scaling.fitting import fit_law
from rlscale.scaling.intervals import (coverage, log_residuals, prediction_interval,
                                       resample_blocks)
from rlscale.scaling.laws import LogLinearKN, Sigmoid
from rlscale.scaling.metrics import errors

COMPUTE_HALF_LAWS = ("loglinear_kn", "sigmoid")


def scalerl_starts(pts, r0: float, n_a: int = 20, n_mid: int = 25) -> list[np.ndarray]:
    """ScaleRL's search: a grid over the asymptote A and the midpoint C_mid, with the exponent
    B fitted (1-D, on a fine log grid) at each grid point; the fitter refines the best ones."""
    x, y = pts.x, pts.y
    bs = np.geomspace(0.02, 10.0, 60)
    # the asymptote lies beyond every measured value, on the side the curve moves to
    falling = y[-1] < r0
    a_grid = np.linspace(0.0, y.min(), n_a, endpoint=False) if falling else np.linspace(
        1.0, y.max(), n_a, endpoint=False)
    mids = np.geomspace(x.min() / 10, x.max() * 1e3, n_mid)
    out = []
    lx = np.log(x)
    for a, mid in itertools.product(a_grid, mids):
        z = bs[:, None] * (lx[None, :] - np.log(mid))
        pred = r0 + (a - r0) / (1 + np.exp(-z))
        b = bs[int(np.argmin(np.sum((pred - y) ** 2, axis=1)))]
        out.append(np.array([r0, a, mid, b]))
    return out


def fit_scalerl_curve(curve, r0: float, early: float = 0.1, x0=None):
    """One curve, ScaleRL's way: R0 held, points below `early` x the last compute dropped."""
    keep = curve.x >= early * curve.x.max()
    pts = curve.subset(keep)
    law = Sigmoid(rate=True)
    kw = dict(fixed={"R0": r0}, objective="mse", curve_weights=False)
    if x0 is not None:
        return fit_law(law, pts, x0=x0, check=False, **kw)
    return fit_law(law, pts, starts=scalerl_starts(pts, r0), **kw)


def _split(pts):
    """First half of every curve's compute (x <= half its last x) vs the rest."""
    half = np.zeros(len(pts), bool)
    for c in np.unique(pts.curve):
        m = pts.curve == c
        half[m] = pts.x[m] <= pts.x[m].max() / 2
    return half


class _Fitter:
    """Fit / predict for one law on the first halves; `refit(y)` is a warm-started bootstrap fit."""

    def __init__(self, law: str, train, early: float):
        self.law, self.train, self.early = law, train, early
        self.curves = np.unique(train.curve)
        if law == "loglinear_kn":
            self.fits = [fit_law(LogLinearKN(), train, objective="mse", curve_weights=True)]
        elif law == "sigmoid":
            self.r0 = {c: float(train.y[train.curve == c][np.argmin(train.x[train.curve == c])])
                       for c in self.curves}
            self.fits = [fit_scalerl_curve(train.subset(train.curve == c), self.r0[c], early)
                         for c in self.curves]
        else:
            raise UserError(f"--law: compute-half compares {' and '.join(COMPUTE_HALF_LAWS)}, "
                            f"not '{law}'")

    def predict(self, pts, fits=None) -> np.ndarray:
        fits = fits or self.fits
        if self.law == "loglinear_kn":
            return fits[0].predict(pts)
        out = np.empty(len(pts))
        for c, f in zip(self.curves, fits):
            m = pts.curve == c
            out[m] = f.predict(pts.x[m], pts.size[m])
        return out

    def refit(self, y, r0_noise):
        """Fits to resampled y; R0, itself one measured point, is moved by a drawn residual."""
        pts = replace(self.train, y=y)
        if self.law == "loglinear_kn":
            return [fit_law(LogLinearKN(), pts, objective="mse", curve_weights=True,
                            x0=self.fits[0].params_, check=False)]
        out = []
        for c, f, e in zip(self.curves, self.fits, r0_noise):
            r0 = float(np.clip(self.r0[c] * np.exp(e), 0.0, 1.0))
            out.append(fit_scalerl_curve(pts.subset(pts.curve == c), r0, self.early,
                                         x0={**f.params_, "R0": r0}))
        return out


def compute_half(pts, law: str = "loglinear_kn", level: float = 0.9, n_boot: int = 200,
                 seed: int = 0, early: float = 0.1) -> dict:
    """Fit each curve's first half of compute, predict its second half; errors and coverage."""
    half = _split(pts)
    train, test = pts.subset(half), pts.subset(~half)
    if len(test) == 0 or min(np.bincount(train.curve)[np.unique(train.curve)]) < 5:
        raise UserError(f"{pts.source or 'data'}: compute-half needs curves of at least 10 points")
    model = _Fitter(law, train, early)
    fit_pred, pred = model.predict(train), model.predict(test)
    resid = log_residuals(train.y, fit_pred)
    rng = np.random.default_rng(seed)
    order = np.lexsort((train.x, train.curve))
    preds = []
    for _ in range(n_boot):
        y = train.y.copy()
        for c in model.curves:
            idx = order[train.curve[order] == c]
            y[idx] = resample_blocks(fit_pred[idx], resid[idx], rng)
        try:
            preds.append(model.predict(test, model.refit(y, rng.choice(resid, len(model.curves)))))
        except UserError:
            continue
    lo, hi = prediction_interval(np.array(preds), resid, level, rng)
    flags = sorted({f for m in model.fits for f in m.result_.flags})
    per_size = {}
    for s in np.unique(test.size):
        m = test.size == s
        per_size[f"{s:.4g}"] = {**errors(test.y[m], pred[m]),
                                "coverage": coverage(test.y[m], lo[m], hi[m])}
    err = errors(test.y, pred)
    return {"protocol": "compute-half", "law": law, "level": level, "mare": err["mare"],
            "coverage": coverage(test.y, lo, hi), "prediction": err, "per_size": per_size,
            "n_boot": len(preds), "seed": seed, "early": early if law == "sigmoid" else None,
            "identified": not flags, "flags": flags,
            "params": [dict(m.params_) for m in model.fits]}
