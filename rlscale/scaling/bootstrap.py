"""Bootstrap intervals for a fitted law's parameters and predictions.

Resampling units:
    points  every curve keeps its number of points, drawn with replacement from its own points
            (all sizes stay present, so per-size parameters always exist);
    curves  whole curves drawn with replacement (each copy counts as its own curve); a per-size
            parameter missing from a resample is NaN there and its interval uses the others.
Each resample is fitted once, warm-started from the full fit (no grid: the full fit already
found the basin), which is what makes 200 resamples cheap. Intervals are percentile intervals.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np

from rlscale.errors import UserError
from rlscale.scaling.fitting import fit_law


@dataclass
class Bootstrap:
    law: object  # the full fit
    names: list[str]
    samples: np.ndarray  # (B, n_params) natural parameters, NaN where a parameter was absent
    unit: str
    laws: list  # the fitted resample laws (for predictions)

    def intervals(self, level: float = 0.9) -> dict[str, tuple[float, float]]:
        a = (1.0 - level) / 2
        out = {}
        for j, name in enumerate(self.names):
            col = self.samples[:, j]
            col = col[np.isfinite(col)]
            out[name] = (float(np.quantile(col, a)), float(np.quantile(col, 1 - a))) \
                if len(col) else (float("nan"), float("nan"))
        return out

    def predict_band(self, x, size, level: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
        """Percentile band of the predictions at (x, size) over the resample fits that can
        predict that size."""
        preds = []
        for law in self.laws:
            try:
                preds.append(law.predict(x, size))
            except UserError:  # a curve resample that lost this size
                continue
        if not preds:
            raise UserError("bootstrap: no resample fit can predict this size")
        p = np.asarray(preds)
        a = (1.0 - level) / 2
        return np.quantile(p, a, axis=0), np.quantile(p, 1 - a, axis=0)


def resample(pts, unit: str, rng: np.random.Generator):
    if unit == "points":
        idx = np.concatenate([rng.choice(np.flatnonzero(pts.curve == c), (pts.curve == c).sum())
                              for c in np.unique(pts.curve)])
        return pts.subset(idx)
    if unit == "curves":
        curves = np.unique(pts.curve)
        parts, new_curve = [], []
        for j, c in enumerate(rng.choice(curves, len(curves))):
            m = np.flatnonzero(pts.curve == c)
            parts.append(m)
            new_curve.append(np.full(len(m), j))
        out = pts.subset(np.concatenate(parts))
        return replace(out, curve=np.concatenate(new_curve))
    raise UserError(f"--bootstrap-unit: unknown unit '{unit}' (points or curves)")


def bootstrap(law, pts, n: int = 200, unit: str = "points", seed: int = 0) -> Bootstrap:
    """Refit `law` (already fitted on pts) on n resamples of pts; returns a Bootstrap."""
    if law.params_ is None:
        raise UserError("bootstrap: fit the law first")
    if n < 2:
        raise UserError("--bootstrap: need at least 2 resamples")
    rng = np.random.default_rng(seed)
    res = law.result_
    names = list(law.params_)
    samples = np.full((n, len(names)), np.nan)
    laws = []
    for b in range(n):
        sample = resample(pts, unit, rng)
        bl = copy.deepcopy(law)
        # warm start: the full fit's values, for the parameters this resample has
        start = {s.name: law.params_.get(s.name, np.nan) for s in bl.bind(sample)}
        start = {k: (v if np.isfinite(v) else 0.0) for k, v in start.items()}
        fit_law(bl, sample, objective=res.objective, curve_weights=res.curve_weights,
                fixed=res.fixed or None, x0=start, check=False)
        for j, name in enumerate(names):
            samples[b, j] = bl.params_.get(name, np.nan)
        laws.append(bl)
    return Bootstrap(law, names, samples, unit, laws)
