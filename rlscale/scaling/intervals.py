"""Prediction intervals that mean what they say, and how to check them.

A predicted test-loss curve is uncertain for two reasons: the fitted law itself (which
resampling the fitted unit, whole curves, measures) and the scatter of a single measured point
around its curve (eval noise, run-to-run spread). A prediction interval for held-out points needs
both: `prediction_interval` combines the resample fits' predictions with residuals drawn from the
fit's own (log) residuals, and takes percentiles. `coverage` is then the share of held-out points
inside the interval, to be compared with its level.

Resampling units (never single points, which are autocorrelated along a curve):
    resample_curves     whole curves with replacement (the unit for predictions across sizes);
                        at least `min_sizes` distinct sizes are kept so the law stays identified
    resample_blocks     one curve's residuals in contiguous blocks (a moving-block bootstrap),
                        added back to its fitted curve: the unit when a law is fitted per curve
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rlscale.errors import UserError


def resample_curves(pts, rng: np.random.Generator, min_sizes: int = 3, tries: int = 100):
    """Whole curves drawn with replacement; each copy becomes its own curve."""
    curves = np.unique(pts.curve)
    size_of = {c: pts.size[pts.curve == c][0] for c in curves}
    need = min(min_sizes, len({*size_of.values()}))
    for _ in range(tries):
        pick = rng.choice(curves, len(curves))
        if len({size_of[c] for c in pick}) >= need:
            break
    parts = [np.flatnonzero(pts.curve == c) for c in pick]
    out = pts.subset(np.concatenate(parts))
    return replace(out, curve=np.repeat(np.arange(len(parts)), [len(p) for p in parts]))


def resample_blocks(y_fit: np.ndarray, log_resid: np.ndarray, rng: np.random.Generator,
                    block: int = 10) -> np.ndarray:
    """y_fit * exp(residuals re-drawn in contiguous blocks), for one curve in step order."""
    n = len(y_fit)
    block = max(1, min(block, n))
    starts = rng.integers(0, n - block + 1, size=-(-n // block))
    r = np.concatenate([log_resid[s:s + block] for s in starts])[:n]
    return y_fit * np.exp(r)


def log_residuals(y, pred) -> np.ndarray:
    return np.log(np.asarray(y, float)) - np.log(np.asarray(pred, float))


def prediction_interval(preds: np.ndarray, resid: np.ndarray, level: float,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of resample predictions (B, n) times exp(a drawn log residual).

    Each resample's prediction at each point gets one residual drawn from `resid` (the fit's own
    log residuals), so the interval covers a new measured point, not only the mean curve.
    """
    preds = np.asarray(preds, float)
    if preds.ndim != 2 or len(preds) < 2:
        raise UserError("prediction interval: need at least 2 resample fits")
    resid = np.asarray(resid, float)
    resid = resid[np.isfinite(resid)]
    noise = np.exp(rng.choice(resid, preds.shape)) if len(resid) else 1.0
    draws = preds * noise
    a = (1.0 - level) / 2
    with np.errstate(invalid="ignore"):
        return np.nanquantile(draws, a, axis=0), np.nanquantile(draws, 1 - a, axis=0)


def coverage(y, lo, hi) -> float:
    """Share of points y inside [lo, hi]."""
    y = np.asarray(y, float)
    return float(np.mean((y >= lo) & (y <= hi))) if len(y) else float("nan")


def interval_flags(intervals: dict[str, tuple[float, float]], specs) -> dict[str, str]:
    """Parameters the resamples do not pin down, name -> why: an interval reaching one of the
    parameter's bounds, or, for positive parameters (log-scaled or bounded below by 0), one
    spanning more than a decade (hi / lo > 10). A signed parameter (an intercept, e1) has no
    scale to compare a decade with."""
    flags = {}
    for p in specs:
        lo, hi = intervals.get(p.name, (np.nan, np.nan))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        tol = 1e-6 * (p.hi - p.lo) if not p.log else 0.0
        if lo <= p.lo + tol or hi >= p.hi - tol:  # resample fits ran to the edge: unpinned
            flags[p.name] = "interval reaches its bound"
        elif (p.log or p.lo >= 0) and lo > 0 and hi / lo > 10:
            flags[p.name] = "interval spans more than a decade"
    return flags


def wide_intervals(intervals: dict[str, tuple[float, float]], specs) -> list[str]:
    """interval_flags as report lines, "NAME why"."""
    return [f"{name} {why}" for name, why in interval_flags(intervals, specs).items()]
