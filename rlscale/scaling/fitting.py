"""Fitting a law: summed objective, grid of starts, exact Jacobians, convergence checked.

Objectives (both a weighted sum over points, weights summing to 1):
    mse    sum_i w_i (pred_i - y_i)^2 in linear y; with curve weights every curve counts the same
           whatever its number of points (the paper's loglinear_kn fit).
    huber  sum_i w_i Huber_delta(ln pred_i - ln y_i), delta 1e-3 (Chinchilla / Epoch AI).
Both are solved as (robust) least squares with scipy's bounded trust-region method and the law's
exact Jacobian. Parameters marked `log` move in log10 space. Every start of the grid is scored
first (one prediction each); the `n_local` best are refined, the best refinement is kept.

Convergence is checked, not read off the optimiser's flag: the best solution is restarted once
more and must not improve by more than `rtol` (relative objective change), and the projected
gradient (zero at active bounds) scaled by the parameter ranges must be tiny relative to the
objective. Both numbers are reported in FitResult.

Identification is checked too, because an optimiser can converge to a point the data do not
determine: a parameter left on one of its bounds, refinements from different starts that end
equally good but far apart (`restart_spread`), or a Jacobian of deficient rank at the optimum
(`jacobian_rank`: a direction no prediction on the data depends on), mark the fit
`identified: false` with the reasons in `flags` (the bootstrap adds "interval spans more than a
decade"). Such a fit is never reported as a clean convergence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import least_squares

from rlscale.errors import UserError
from rlscale.scaling.metrics import r2 as r2_score

OBJECTIVES = ("mse", "huber")
FLAT = "parameter direction(s) the data do not determine"  # the flag of a rank-deficient fit


@dataclass
class FitResult:
    law: str
    params: dict[str, float]
    objective: str
    loss: float  # the objective value at the optimum
    r2: float  # on the fitted points, linear y
    n_points: int
    n_curves: int
    curve_weights: bool
    converged: bool
    rel_change: float  # objective improvement on a final restart (relative)
    grad_norm: float  # scaled projected gradient / objective
    n_starts: int
    fixed: dict[str, float] = field(default_factory=dict)
    x: str = ""
    y: str = ""
    at_bound: list[str] = field(default_factory=list)  # parameters left on a bound
    restart_spread: float = 0.0  # largest parameter gap between equally good refinements
    flags: list[str] = field(default_factory=list)  # reasons the fit is not identified

    @property
    def identified(self) -> bool:
        return not self.flags

    def to_dict(self) -> dict:
        return {**asdict(self), "identified": self.identified}


def point_weights(pts, curve_weights: bool) -> np.ndarray:
    """Per-point weights summing to 1: equal per curve (then per point within it) or per point."""
    if not curve_weights:
        return np.full(len(pts), 1.0 / len(pts))
    _, inv, counts = np.unique(pts.curve, return_inverse=True, return_counts=True)
    return 1.0 / (counts[inv] * len(counts))


class Problem:
    """One law on one data set: internal coordinates, residuals, Jacobians, objective value."""

    def __init__(self, law, pts, objective: str, curve_weights: bool, delta: float = 1e-3,
                 fixed: dict[str, float] | None = None):
        if objective not in OBJECTIVES:
            raise UserError(f"--objective: unknown objective '{objective}' (mse or huber)")
        self.law, self.pts, self.objective, self.delta = law, pts, objective, delta
        self.specs = law.specs_
        fixed = dict(fixed or {})
        unknown = set(fixed) - {s.name for s in self.specs}
        if unknown:
            raise UserError(f"fixed parameter(s) {sorted(unknown)} not in {law.name}")
        self.fixed = fixed
        self.free = [i for i, s in enumerate(self.specs) if s.name not in fixed]
        self.is_log = np.array([self.specs[i].log for i in self.free])
        lo = np.array([self.specs[i].lo for i in self.free], float)
        hi = np.array([self.specs[i].hi for i in self.free], float)
        self.lo, self.hi = lo.copy(), hi.copy()
        self.lo[self.is_log], self.hi[self.is_log] = np.log10(lo[self.is_log]), np.log10(hi[self.is_log])
        self.w = point_weights(pts, curve_weights)
        self.sw = np.sqrt(self.w)
        self.base = np.array([fixed.get(s.name, np.nan) for s in self.specs])
        if objective == "huber" and np.any(pts.y <= 0):
            raise UserError(f"{pts.source or 'data'}: column '{pts.y_name}' must be > 0 for the "
                            "huber objective (log space)")
        self.ly = np.log(pts.y) if objective == "huber" else None
        # objective scale for the convergence check: a constant model's objective, so an exact
        # fit (objective 0) is judged against the data's spread, not against zero
        yy = self.ly if objective == "huber" else pts.y
        r0 = yy - np.sum(self.w * yy)
        self.f_null = float(np.sum(self.w * r0 * r0)) if objective == "mse" else float(
            0.5 * np.sum(self.rho(r0 * r0)[0]))

    # internal <-> natural
    def theta(self, u: np.ndarray) -> np.ndarray:
        th = self.base.copy()
        th[self.free] = np.where(self.is_log, 10.0 ** u, u)
        return th

    def internal(self, th: np.ndarray) -> np.ndarray:
        v = np.asarray(th, float)[self.free]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(self.is_log, np.log10(np.maximum(v, 1e-300)), v)
        return np.clip(u, self.lo, self.hi)

    def residual(self, u):
        p = self.law.formula(self.theta(u), self.pts.x, self.pts.size)
        if self.objective == "mse":
            return self.sw * (p - self.pts.y)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(np.maximum(p, 1e-300)) - self.ly

    def jacobian(self, u):
        th = self.theta(u)
        p, jac = self.law.jacobian(th, self.pts.x, self.pts.size)
        jac = jac[:, self.free] * np.where(self.is_log, th[self.free] * math.log(10.0), 1.0)
        if self.objective == "mse":
            return self.sw[:, None] * jac
        return jac / np.maximum(p, 1e-300)[:, None]

    def rho(self, z):
        """scipy's robust-loss callable: w * Huber in terms of z = r^2 (value, 1st, 2nd deriv)."""
        d2, w = self.delta**2, self.w
        inner = z <= d2
        sz = np.sqrt(np.maximum(z, d2))  # only used outside the quadratic zone
        out = np.empty((3, len(z)))
        out[0] = np.where(inner, w * z, w * (2 * self.delta * sz - d2))
        out[1] = np.where(inner, w, w * self.delta / sz)
        out[2] = np.where(inner, 0.0, -w * self.delta / (2 * sz**3))
        return out

    def value(self, u) -> float:
        r = self.residual(u)
        if not np.all(np.isfinite(r)):
            return math.inf
        if self.objective == "mse":
            return float(np.sum(r * r))
        return float(0.5 * np.sum(self.rho(r * r)[0]))

    def gradient(self, u) -> np.ndarray:
        r, jac = self.residual(u), self.jacobian(u)
        if self.objective == "mse":
            return 2.0 * jac.T @ r
        return jac.T @ (self.rho(r * r)[1] * r)

    def local(self, u0, max_nfev: int | None = None):
        kw = dict(loss=self.rho) if self.objective == "huber" else {}
        res = least_squares(self.residual, u0, jac=self.jacobian, bounds=(self.lo, self.hi),
                            method="trf", x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12,
                            max_nfev=max_nfev or 200 * (len(u0) + 1), **kw)
        return res.x, self.value(res.x)


def solve(prob: Problem, starts, n_local: int = 5, check: bool = True):
    """Score every start, refine the n_local best, check convergence of the best refinement."""
    scored = []
    for th in starts:
        u = prob.internal(th)
        scored.append((prob.value(u), len(scored), u))
    scored = [s for s in scored if math.isfinite(s[0])]
    if not scored:
        raise UserError(f"{prob.law.name}: no starting point gives a finite prediction on "
                        f"{prob.pts.source or 'the data'}")
    scored.sort(key=lambda s: (s[0], s[1]))
    best_u, best_f, ends = None, math.inf, []
    for _, _, u0 in scored[:n_local]:
        try:
            u, f = prob.local(u0)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue  # a start whose residuals overflow: the others cover it
        ends.append((f, u))
        if f < best_f:
            best_u, best_f = u, f
    if best_u is None:
        raise UserError(f"{prob.law.name}: every local fit failed on {prob.pts.source or 'data'}")
    rel_change, gnorm = 0.0, 0.0
    if check:
        for _ in range(3):  # restart from the optimum until it stops moving
            u, f = prob.local(best_u)
            rel_change = max(best_f - f, 0.0) / (abs(best_f) + 1e-9 * prob.f_null + 1e-300)
            if f < best_f:
                best_u, best_f = u, f
            if rel_change <= 1e-9:
                break
        gnorm = projected_gradient(prob, best_u) / (abs(best_f) + 1e-9 * prob.f_null + 1e-300)
    return best_u, best_f, rel_change, gnorm, len(scored), restart_spread(prob, ends, best_f)


def restart_spread(prob: Problem, ends, best_f: float, rtol: float = 1e-4) -> float:
    """Largest gap, as a share of the parameter's range (log10 range for log parameters),
    between refinements that end within rtol of the best objective: equally good fits far apart
    mean the data do not pin that parameter down."""
    good = [u for f, u in ends if f <= best_f + rtol * (abs(best_f) + 1e-9 * prob.f_null)]
    if len(good) < 2:
        return 0.0
    u = np.array(good)
    span = np.minimum(prob.hi - prob.lo, 10.0)  # a decade in log space, or 10 units, at most
    return float(np.max((u.max(0) - u.min(0)) / span))


def jacobian_rank(prob: Problem, u, rtol: float = 1e-10) -> int:
    """Numerical rank of the Jacobian at u, its columns scaled to unit length: below the number
    of free parameters, some direction in parameter space leaves every prediction unchanged
    (e.g. loglinear_kn_param's pivot x0 on two sizes, where e0, e1 and x0 trade off exactly),
    so the optimiser stops anywhere along it and what the fit predicts off the data (an unseen
    size) is arbitrary. Structural flat directions read ~1e-16 relative, identified fits of the
    study's curves 1e-6 to 1e-3 (docs/scaling.md)."""
    jac = prob.jacobian(u)
    if jac.size == 0:
        return 0
    jac = jac / np.maximum(np.linalg.norm(jac, axis=0), 1e-300)
    with np.errstate(all="ignore"):
        s = np.linalg.svd(jac, compute_uv=False) if np.all(np.isfinite(jac)) else np.zeros(1)
    return int(np.sum(s > rtol * s[0])) if s[0] > 0 else 0


def bound_hits(prob: Problem, u, tol: float = 1e-6) -> list[str]:
    """Names of free parameters sitting on a bound (within tol of the internal range)."""
    span = prob.hi - prob.lo
    hit = (u <= prob.lo + tol * span) | (u >= prob.hi - tol * span)
    return [prob.specs[i].name for i, h in zip(prob.free, hit) if h]


def projected_gradient(prob: Problem, u) -> float:
    """Largest |gradient| x parameter scale over free parameters not held by an active bound."""
    g = prob.gradient(u)
    span = np.minimum(prob.hi - prob.lo, np.maximum(np.abs(u), 1.0))
    at_lo = (u <= prob.lo + 1e-10 * span) & (g > 0)
    at_hi = (u >= prob.hi - 1e-10 * span) & (g < 0)
    g = np.where(at_lo | at_hi, 0.0, g)
    return float(np.max(np.abs(g) * span)) if len(g) else 0.0


def fit_law(law, pts, objective: str | None = None, curve_weights: bool | None = None,
            delta: float = 1e-3, fixed: dict[str, float] | None = None, x0=None,
            n_local: int = 5, check: bool = True, rtol: float = 1e-6, gtol: float = 1e-3,
            spread_tol: float = 0.05, starts=None):
    """Fit `law` to `pts` in place (law.params_, law.result_) and return it; see the module
    docstring.

    x0: a natural-parameter dict or vector to start from instead of the grid (warm start, as the
    bootstrap does). fixed: parameters held at given values (e.g. K_max, N0 when re-fitting the
    intercept of an unseen size). spread_tol: the restart spread above which the fit is flagged.
    starts: natural-parameter vectors to score instead of the law's own grid.
    """
    objective = objective or law.default_objective
    curve_weights = law.default_curve_weights if curve_weights is None else curve_weights
    law.validate(pts)
    specs = law.bind(pts)
    prob = Problem(law, pts, objective, curve_weights, delta, fixed)
    if len(pts) < len(prob.free):
        raise UserError(f"{pts.source or 'data'}: {len(pts)} points cannot fit "
                        f"{len(prob.free)} parameters of {law.name}")
    if x0 is not None:
        starts = [law.theta(x0) if isinstance(x0, dict) else np.asarray(x0, float)]
        n_local = 1
    elif starts is None:
        starts = law.starts(pts)
    with np.errstate(all="ignore"):  # overflow in a far start is scored inf, never printed
        u, f, rel_change, gnorm, n_starts, spread = solve(prob, starts, n_local, check)
    th = prob.theta(u)
    params = {s.name: float(v) for s, v in zip(specs, th)}
    at_bound = bound_hits(prob, u)
    flags = [f"{name} at a bound" for name in at_bound]
    rank = jacobian_rank(prob, u)
    if rank < len(prob.free):
        flags.append(f"{len(prob.free) - rank} {FLAT} (Jacobian rank {rank} of "
                     f"{len(prob.free)})")
    if spread > spread_tol:
        flags.append(f"restart spread {spread:.2g} > {spread_tol:g}")
    result = FitResult(
        law=law.name, params=dict(params), objective=objective, loss=f,
        r2=r2_score(pts.y, law.formula(th, pts.x, pts.size)), n_points=len(pts),
        n_curves=len(np.unique(pts.curve)), curve_weights=bool(curve_weights),
        converged=bool(check and rel_change <= rtol and gnorm <= gtol),
        rel_change=rel_change, grad_norm=gnorm, n_starts=n_starts, fixed=dict(fixed or {}),
        x=pts.x_name, y=pts.y_name, at_bound=at_bound, restart_spread=spread, flags=flags)
    law.set_fitted(params, result)
    return law
