"""The base of every scaling law: named parameters with bounds (`Param`) and `Law`, whose
subclasses (rlscale.scaling.laws) give the formula, its exact Jacobian and starting points, and
which holds the fitted values behind `predict` / `score` (scikit-learn's shape).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rlscale.errors import UserError
from rlscale.scaling.metrics import r2

LN10 = math.log(10.0)


@dataclass(frozen=True)
class Param:
    name: str
    lo: float
    hi: float
    log: bool = False  # optimised as log10(value) (positive parameters spanning decades)
    unit: str = ""


def size_label(n: float) -> str:
    """E0 names as in the paper's code: 5e8 -> '0_5', 7.2e10 -> '72' (billions)."""
    b = n / 1e9
    return f"{b:g}".replace(".", "_")


class Law:
    """Base class: subclasses define specs(sizes), formula(), jacobian() and starts()."""

    name = "law"
    x_label = "X"
    y_label = "y"
    default_objective = "mse"  # the objective the law's source used
    default_curve_weights = True
    needs_positive_x = True

    def __init__(self):
        self.params_: dict[str, float] | None = None
        self.result_ = None  # FitResult after fit_law()
        self.sizes_: np.ndarray | None = None  # the sizes the law was bound to
        self.specs_: list[Param] | None = None

    # -- structure --------------------------------------------------------------------------
    def specs(self, sizes) -> list[Param]:
        """Parameters for data with these model sizes (may depend on them)."""
        raise NotImplementedError

    def bind(self, pts) -> list[Param]:
        """Fix the data-dependent structure (the sizes present) before a fit; the specs."""
        self.sizes_ = np.unique(pts.size)
        self.specs_ = self.specs(self.sizes_)
        return self.specs_

    def validate(self, pts) -> None:
        where = pts.source or "data"
        if self.needs_positive_x and np.any(pts.x <= 0):
            raise UserError(f"{where}: column '{pts.x_name}' must be > 0 for {self.name}")
        if np.any(~np.isfinite(pts.y)):
            raise UserError(f"{where}: column '{pts.y_name}' has non-finite values")

    def theta(self, params: dict[str, float] | None = None) -> np.ndarray:
        params = self.params_ if params is None else params
        return np.array([params[p.name] for p in self.specs_])

    def set_fitted(self, params: dict[str, float], result=None) -> None:
        """Install fitted values (the fitter calls this; so can a caller loading a fit.json)."""
        self.params_, self.result_ = dict(params), result

    # -- math -------------------------------------------------------------------------------
    def formula(self, th: np.ndarray, x: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Predicted y for parameter vector th (in specs order) at inputs x and sizes n."""
        raise NotImplementedError

    def jacobian(self, th: np.ndarray, x: np.ndarray, n: np.ndarray):
        """(prediction, Jacobian d prediction / d theta of shape (n_points, n_params))."""
        raise NotImplementedError

    def starts(self, pts) -> list[np.ndarray]:
        raise NotImplementedError

    # -- fitted-law API ---------------------------------------------------------------------
    def predict(self, x, size=None) -> np.ndarray:
        """Predicted y at x (array or Points) for model sizes `size` (scalar or array)."""
        if self.params_ is None:
            raise UserError(f"{self.name}: predict() before fit()")
        if size is None:
            x, size = x.x, x.size
        x = np.asarray(x, dtype=float)
        n = np.broadcast_to(np.asarray(size, dtype=float), x.shape[:1] if x.ndim else x.shape)
        return self.formula(self.theta(), x, n)

    def score(self, pts) -> float:
        """R^2 of the predictions in linear y (the paper's convention)."""
        return r2(pts.y, self.predict(pts))

    def __repr__(self) -> str:
        if self.params_ is None:
            return f"{type(self).__name__}()"
        body = ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items())
        return f"{type(self).__name__}({body})"
