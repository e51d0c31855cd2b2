"""Scaling laws as pure formulas: named parameters with bounds, the formula and its exact Jacobian.

A law maps data points (x = compute or data, size = N) to a predicted y (`formula(theta, x, n)`)
and gives the exact Jacobian dy/dtheta (`jacobian(theta, x, n)`), which the fitter
(rlscale.scaling.fitting, which imports this module, never the reverse) uses for its
least-squares solves. `bind(pts)` fixes the structure a data set implies (which sizes have an
intercept) and returns the parameter specs. Parameters spanning decades (N0, A, C_mid...) are
marked `log`: the fitter moves them in log10 space so one step size suits every parameter.
`starts(pts)` yields the grid of starting points; a law fills what the grid does not cover
(e.g. the per-size intercepts) from the data. A law of several inputs passes them in `x` (any
array whose first axis runs over points) and keeps `n` for the model size.

    loglinear_kn        log10 L = -k(N) log10 X + E(N), k(N) = K_max / (1 + N0 / N), E free per size
    loglinear_kn_param  the same with E(N) = e0 + e1 log10(N / 1e9) + k(N) x0: unseen sizes predictable
    loglinear_kn_param_q  the same plus e2 log10(N / 1e9)^2 in E(N)
    loglinear_kn_param_pn the same pinned at X per parameter: log10 X - log10(N / 1e9) - x0
    gain_power          G = a N^b (RL gain across model sizes, the seed study)
    chinchilla          L = E + A / N^alpha + B / D^beta
    sigmoid             R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B) (ScaleRL)

The base class `Law` and `Param` live in rlscale.scaling.law_base. A fitted law holds its
values in `params_` and its FitResult in `result_` (set by
`rlscale.scaling.fitting.fit_law(law, points)` through `set_fitted`); `predict(x, size)` and
`score(points)` use them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
from scipy.special import expit

from rlscale.errors import UserError
from rlscale.scaling.law_base import LN10, Law, Param, size_label  # noqa: F401 (re-exported)


def _k(th0: float, n0: float, n: np.ndarray):
    q = 1.0 / (1.0 + n0 / n)  # k(N) / K_max
    return th0 * q, q


class LogLinearKN(Law):
    """log10 L = -k(N) log10 X + E(N), k(N) = K_max / (1 + N0 / N); E one free value per size."""

    name = "loglinear_kn"
    y_label = "test loss L"

    def specs(self, sizes) -> list[Param]:
        return [Param("K_max", 1e-6, 5.0), Param("N0", 1e3, 1e16, log=True, unit="params")] + [
            Param(f"E0_{size_label(s)}", -50.0, 50.0) for s in sizes]

    def validate(self, pts) -> None:
        super().validate(pts)
        if np.any(pts.y <= 0):
            raise UserError(f"{pts.source or 'data'}: column '{pts.y_name}' must be > 0 "
                            f"(log10 L) for {self.name}")

    def _index(self, n: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.sizes_, n)
        idx = np.clip(idx, 0, len(self.sizes_) - 1)
        bad = self.sizes_[idx] != n
        if np.any(bad):
            raise UserError(f"{self.name}: size {n[bad][0]:.4g} has no fitted intercept E(N); "
                            "use loglinear_kn_param or refit_intercepts() to predict an unseen size")
        return idx

    def formula(self, th, x, n):
        k, _ = _k(th[0], th[1], n)
        return 10.0 ** (th[2:][self._index(n)] - k * np.log10(x))

    def jacobian(self, th, x, n):
        idx, lx = self._index(n), np.log10(x)
        k, q = _k(th[0], th[1], n)
        p = 10.0 ** (th[2:][idx] - k * lx)
        g = p * LN10
        jac = np.zeros((len(x), len(th)))
        jac[:, 0] = -g * lx * q
        jac[:, 1] = g * lx * th[0] * q * q / n  # d/dN0 of -k lx
        jac[np.arange(len(x)), 2 + idx] = g
        return p, jac

    def intercepts(self, kmax: float, n0: float, pts) -> np.ndarray:
        """Per-size E given k(N): the log-space least-squares value (a good starting point)."""
        k, _ = _k(kmax, n0, pts.size)
        idx = self._index(pts.size)
        v = np.log10(pts.y) + k * np.log10(pts.x)
        return np.bincount(idx, v, len(self.sizes_)) / np.maximum(np.bincount(idx, None, len(self.sizes_)), 1)

    def starts(self, pts):
        for kmax, ln0 in itertools.product((0.03, 0.1, 0.3, 1.0), (8.0, 9.0, 10.0, 11.0, 12.0)):
            yield np.concatenate([[kmax, 10.0**ln0], self.intercepts(kmax, 10.0**ln0, pts)])

    def k_of(self, n) -> np.ndarray:
        return _k(self.params_["K_max"], self.params_["N0"], np.asarray(n, float))[0]


class LogLinearKNParam(LogLinearKN):
    """loglinear_kn with a parametric intercept, so a size never seen in the fit can be predicted:

        log10 L = e0 + e1 log10(N / 1e9) - k(N) (log10 X - x0)

    i.e. every curve is a line in log-log that passes, at log10 X = x0, through a loss that falls
    as a power of N (e0, e1); k(N) is the paper's saturating slope. E(N) = e0 + e1 u + k(N) x0.
    """

    name = "loglinear_kn_param"

    def specs(self, sizes=None) -> list[Param]:
        return [Param("K_max", 1e-6, 5.0), Param("N0", 1e3, 1e16, log=True, unit="params"),
                Param("e0", -50.0, 50.0), Param("e1", -50.0, 50.0), Param("x0", -100.0, 100.0)]

    def formula(self, th, x, n):
        k, _ = _k(th[0], th[1], n)
        return 10.0 ** (th[2] + th[3] * np.log10(n / 1e9) - k * (np.log10(x) - th[4]))

    def jacobian(self, th, x, n):
        k, q = _k(th[0], th[1], n)
        u, dx = np.log10(n / 1e9), np.log10(x) - th[4]
        p = 10.0 ** (th[2] + th[3] * u - k * dx)
        g = p * LN10
        return p, np.stack([-g * dx * q, g * dx * th[0] * q * q / n, g, g * u, g * k], axis=1)

    def intercept(self, n) -> np.ndarray:
        """E(N) of the paper's form, for comparison with loglinear_kn's free intercepts."""
        p = self.params_
        return p["e0"] + p["e1"] * np.log10(np.asarray(n, float) / 1e9) + self.k_of(n) * p["x0"]

    def starts(self, pts):
        lx, ly, u = np.log10(pts.x), np.log10(pts.y), np.log10(pts.size / 1e9)
        for kmax, ln0 in itertools.product((0.03, 0.1, 0.3), (9.0, 10.0, 11.0)):
            k, _ = _k(kmax, 10.0**ln0, pts.size)
            for x0 in (np.median(lx), np.min(lx), 0.0):
                # e0, e1: linear least squares of log10 L + k (lx - x0) on u
                a = np.stack([np.ones_like(u), u], axis=1)
                e = np.linalg.lstsq(a, ly + k * (lx - x0), rcond=None)[0]
                yield np.array([kmax, 10.0**ln0, e[0], e[1], x0])


class LogLinearKNParamQ(LogLinearKNParam):
    """loglinear_kn_param with a curved intercept: + e2 log10(N / 1e9)^2, so the loss at x0 may
    stop falling as a power of N (a candidate E(N) form of the extrapolation protocol)."""

    name = "loglinear_kn_param_q"

    def specs(self, sizes=None) -> list[Param]:
        return super().specs(sizes) + [Param("e2", -50.0, 50.0)]

    def formula(self, th, x, n):
        u = np.log10(n / 1e9)
        return super().formula(th[:5], x, n) * 10.0 ** (th[5] * u * u)

    def jacobian(self, th, x, n):
        u = np.log10(n / 1e9)
        p, jac = super().jacobian(th[:5], x, n)
        f = 10.0 ** (th[5] * u * u)
        p = p * f
        return p, np.concatenate([jac * f[:, None], (p * LN10 * u * u)[:, None]], axis=1)

    def intercept(self, n) -> np.ndarray:
        u = np.log10(np.asarray(n, float) / 1e9)
        return super().intercept(n) + self.params_["e2"] * u * u

    def starts(self, pts):
        for th in super().starts(pts):
            yield np.append(th, 0.0)


class LogLinearKNParamPN(LogLinearKNParam):
    """loglinear_kn_param pinned per parameter: every curve passes through its E(N) level at
    log10 X = x0 + log10(N / 1e9), not at one X for every size:

        log10 L = e0 + e1 log10(N / 1e9) - k(N) (log10 (X / (N / 1e9)) - x0)

    In compute (C = 6 N T summed over the steps) runs of the same RL steps sit at C ~ N, so a
    ladder whose curves are power laws in steps puts a k(N) log N term in E(N) that the fixed
    pivot cannot hold when k varies with N (docs/scaling.md; a candidate of the extrapolation
    protocol in compute)."""

    name = "loglinear_kn_param_pn"

    def formula(self, th, x, n):
        return super().formula(th, x / (n / 1e9), n)

    def jacobian(self, th, x, n):
        return super().jacobian(th, x / (n / 1e9), n)

    def intercept(self, n) -> np.ndarray:
        """E(N) as a function of log10 X: the fixed-pivot intercept plus k(N) log10(N / 1e9)."""
        n = np.asarray(n, float)
        return super().intercept(n) + self.k_of(n) * np.log10(n / 1e9)

    def starts(self, pts):
        per_param = replace(pts, x=pts.x / (pts.size / 1e9))
        yield from super().starts(per_param)


class GainPower(Law):
    """RL gain across model sizes: G = a * N^b (x is ignored; size is N)."""

    name = "gain_power"
    x_label = "model size N"
    y_label = "RL gain"
    default_curve_weights = False
    needs_positive_x = False

    def specs(self, sizes=None):
        return [Param("a", 1e-300, 1e300, log=True), Param("b", -10.0, 10.0)]

    def validate(self, pts) -> None:
        super().validate(pts)
        if np.any(pts.y <= 0) or np.any(pts.size <= 0):
            raise UserError(f"{pts.source or 'data'}: gain_power needs gains > 0 and sizes > 0 "
                            f"(column '{pts.y_name}')")

    def formula(self, th, x, n):
        return th[0] * n ** th[1]

    def jacobian(self, th, x, n):
        p = th[0] * n ** th[1]
        return p, np.stack([n ** th[1], p * np.log(n)], axis=1)

    def starts(self, pts):
        ln, ly = np.log(pts.size), np.log(pts.y)
        for b in (-1.0, -0.3, 0.0, 0.3, 1.0):
            yield np.array([math.exp(float(np.mean(ly - b * ln))), b])


class Chinchilla(Law):
    """L = E + A / N^alpha + B / D^beta (x is D, size is N); Huber in log space by default."""

    name = "chinchilla"
    x_label = "data D (tokens)"
    y_label = "loss L"
    default_objective = "huber"
    default_curve_weights = False

    def specs(self, sizes=None):
        return [Param("E", 1e-6, 1e3, log=True), Param("A", 1e-6, 1e12, log=True),
                Param("B", 1e-6, 1e12, log=True), Param("alpha", 0.0, 3.0),
                Param("beta", 0.0, 3.0)]

    def validate(self, pts) -> None:
        super().validate(pts)
        if np.any(pts.y <= 0) or np.any(pts.size <= 0):
            raise UserError(f"{pts.source or 'data'}: chinchilla needs loss > 0 (column "
                            f"'{pts.y_name}') and sizes > 0")

    def formula(self, th, x, n):
        return th[0] + th[1] * n ** -th[3] + th[2] * x ** -th[4]

    def jacobian(self, th, x, n):
        an, bd = th[1] * n ** -th[3], th[2] * x ** -th[4]
        jac = np.stack([np.ones_like(x), an / th[1], bd / th[2], -an * np.log(n),
                        -bd * np.log(x)], axis=1)
        return th[0] + an + bd, jac

    def starts(self, pts):
        # the Epoch AI replication grid (coarser): exp of a, b, e and the two exponents
        for a, b, e, al, be in itertools.product((0, 5, 10, 15, 20, 25), (0, 5, 10, 15, 20, 25),
                                                 (-1, -0.5, 0, 0.5, 1, 1.5), (0, 0.5, 1, 1.5, 2),
                                                 (0, 0.5, 1, 1.5, 2)):
            yield np.array([math.exp(e), math.exp(a), math.exp(b), al, be])


class Sigmoid(Law):
    """ScaleRL: R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B); y is a reward / pass rate."""

    name = "sigmoid"
    x_label = "compute C (FLOPs)"
    y_label = "reward R"
    default_curve_weights = False

    def __init__(self, rate: bool = False):
        super().__init__()
        self.rate = rate  # y is a pass rate (or 1 - pass rate): R0 and A stay in [0, 1]

    def specs(self, sizes=None):
        lo, hi = (0.0, 1.0) if self.rate else (-1e6, 1e6)
        return [Param("R0", lo, hi), Param("A", lo, hi),
                Param("C_mid", 1e-300, 1e300, log=True), Param("B", 1e-3, 20.0)]

    def _z(self, th, x):
        return th[3] * (np.log(x) - np.log(th[2]))

    def formula(self, th, x, n):
        return th[0] + (th[1] - th[0]) * expit(self._z(th, x))

    def jacobian(self, th, x, n):
        s = expit(self._z(th, x))
        ds = (th[1] - th[0]) * s * (1 - s)
        jac = np.stack([1 - s, s, -ds * th[3] / th[2], ds * (np.log(x) - np.log(th[2]))], axis=1)
        return th[0] + (th[1] - th[0]) * s, jac

    def starts(self, pts):
        lo, hi = float(np.min(pts.y)), float(np.max(pts.y))
        span = max(hi - lo, 1e-6)
        for q, b, top in itertools.product((0.1, 0.5, 0.9), (0.5, 1.0, 2.0), (0.0, 0.5, 2.0)):
            yield np.array([lo - 0.1 * span, hi + top * span, float(np.quantile(pts.x, q)), b])


LAWS: dict[str, type[Law]] = {c.name: c for c in
                              (LogLinearKN, LogLinearKNParam, LogLinearKNParamQ,
                               LogLinearKNParamPN, GainPower,
                               Chinchilla, Sigmoid)}


def make_law(name: str) -> Law:
    if name not in LAWS:
        raise UserError(f"--law: unknown law '{name}' (choose from {', '.join(LAWS)})")
    return LAWS[name]()
