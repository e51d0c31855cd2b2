"""A joint law of pre-training and RL, L(N, D_pre, C_RL), and the compute-optimal split it implies.

Test loss L = 1 - pass@1 after pre-training a model of N non-embedding parameters on D_pre
tokens and then spending C_RL FLOPs (C_paper) on RL. Total compute C_total = 6 N D_pre + C_RL.
Every form below is the base model's loss as a Chinchilla-style pre-training law, fed into an
RL law in the RL tokens T = C_RL / (6 N) (the tokens the RL steps processed):

    L0(N, D)       = E + A (N / N_ref)^-alpha + B (D / D_ref)^-beta        (the base model)
    rl_power       L = L0 (1 + T / T0)^-k                 the paper's power law in C, started at L0
    rl_kn          L = L0 (1 + T / T0)^-k(N),  k(N) = K_max / (1 + N0 / N)   (the paper's k(N))
    rl_floor       L = F + (L0 - F) (1 + T / T0)^-k       RL removes only the part above a floor F
    rl_edge        L = L0 (1 - phi (1 - (1 + T / T0)^-k)),  phi = phi_max / (1 + (a_c / a0)^gamma)
                   RL lifts what the base model half-knows: the share of L0 it can remove grows
                   with the base accuracy a0 = 1 - L0, half of phi_max at the competence a_c (a
                   threshold, sharp for large gamma), so a model below it gains little

N_ref and D_ref are the geometric means of the fitted data (conditioning only; stored with the
fit). The residuals are log L (relative errors: losses span decades). The form is chosen by
leave-one-curve-out error on the fitting data only (`choose_form`): each pre-trained checkpoint's
RL curve is left out in turn, predicted from the others, and the form with the lowest mean
squared log error wins; the data a prediction is judged on never choose the form.

`rlscale.scaling.frontier.frontier(fit, C)` minimises L over N and the RL share of C; the
bootstrap (whole curves resampled) gives intervals for parameters and predictions, the latter
widened past a size's last checkpoint by the law's own measured error there (`token_error`).
Pure: numpy and scipy only, no models.
"""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from rlscale.errors import UserError
from rlscale.scaling.intervals import interval_flags

# name, lower, upper, log (optimised as log10); pre-training part first
_PRE = [("E", 0.0, 1.0, False), ("A", 1e-6, 10.0, True), ("alpha", 0.01, 3.0, False),
        ("B", 1e-6, 10.0, True), ("beta", 0.01, 3.0, False)]
_RL = {"rl_power": [("T0", 1e2, 1e12, True), ("k", 1e-4, 5.0, False)],
       "rl_kn": [("T0", 1e2, 1e12, True), ("K_max", 1e-4, 5.0, False),
                 ("N0", 1e1, 1e12, True)],
       "rl_floor": [("T0", 1e2, 1e12, True), ("k", 1e-4, 5.0, False), ("F", 0.0, 1.0, False)],
       "rl_edge": [("T0", 1e2, 1e12, True), ("k", 1e-4, 5.0, False), ("a_c", 1e-3, 1.0, True),
                   ("gamma", 0.1, 10.0, False), ("phi_max", 0.0, 1.0, False)]}
FORMS = tuple(_RL)


Spec = namedtuple("Spec", "name lo hi log")  # the attributes intervals.interval_flags reads


def specs(form: str) -> list[Spec]:
    if form not in _RL:
        raise UserError(f"joint law: unknown form {form!r}; choose one of {', '.join(FORMS)}")
    return [Spec(*s) for s in _PRE + _RL[form]]


@dataclass
class JointData:
    """Points of RL curves: N, D_pre, C_RL (FLOPs), test loss, its SE, and the curve id."""

    n: np.ndarray
    d: np.ndarray
    c_rl: np.ndarray
    loss: np.ndarray
    se: np.ndarray
    curve: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[dict], source: str = "data") -> "JointData":
        keys = ("N", "pretrain_tokens", "rl_flops", "test_loss")
        for i, r in enumerate(rows):
            for k in keys:
                v = r.get(k)
                if not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise UserError(f"{source}: point {i}: field '{k}' must be a finite number")
            if r["N"] <= 0 or r["pretrain_tokens"] <= 0 or r["rl_flops"] < 0:
                raise UserError(f"{source}: point {i}: N and pretrain_tokens must be > 0, "
                                f"rl_flops >= 0")
            if not 0 < r["test_loss"] <= 1:
                raise UserError(f"{source}: point {i}: test_loss must be in (0, 1]")
        if len(rows) < 8:
            raise UserError(f"{source}: {len(rows)} points; a joint law needs at least 8")
        a = lambda k, d=0.0: np.array([float(r.get(k) or d) for r in rows])  # noqa: E731
        curves = [str(r.get("curve", (r["N"], r["pretrain_tokens"]))) for r in rows]
        _, cid = np.unique(curves, return_inverse=True)
        return cls(a("N"), a("pretrain_tokens"), a("rl_flops"), a("test_loss"), a("test_loss_se"),
                   cid)

    def take(self, mask) -> "JointData":
        return JointData(*(getattr(self, f)[mask] for f in
                           ("n", "d", "c_rl", "loss", "se", "curve")))


def predict(form: str, p: dict, n, d, c_rl) -> np.ndarray:
    """L(N, D_pre, C_RL) of a form with natural parameters p (dict incl. N_ref, D_ref)."""
    n, d, c_rl = (np.asarray(v, dtype=float) for v in (n, d, c_rl))
    l0 = p["E"] + p["A"] * (n / p["N_ref"]) ** -p["alpha"] + p["B"] * (d / p["D_ref"]) ** -p["beta"]
    g = 1.0 + c_rl / (6.0 * n) / p["T0"]
    if form == "rl_power":
        return l0 * g ** -p["k"]
    if form == "rl_kn":
        return l0 * g ** -(p["K_max"] / (1.0 + p["N0"] / n))
    if form == "rl_edge":  # a0 clipped: a fit's L0 may pass 1 where no data are
        a0 = np.clip(1.0 - l0, 1e-9, 1.0)
        phi = p["phi_max"] / (1.0 + (p["a_c"] / a0) ** p["gamma"])
        return l0 * (1.0 - phi * (1.0 - g ** -p["k"]))
    f = np.minimum(p["F"], l0)
    return f + (l0 - f) * g ** -p["k"]


def _to_natural(form, z) -> dict:
    return {name: float(10.0 ** v if log else v) for (name, _, _, log), v in zip(specs(form), z)}


def _bounds(form):
    sp = specs(form)
    lo = [math.log10(a) if log else a for _, a, _, log in sp]
    hi = [math.log10(b) if log else b for _, _, b, log in sp]
    return np.array(lo), np.array(hi)


def _starts(form, data: JointData, refs) -> list[np.ndarray]:
    lmin = float(np.min(data.loss))
    out = []
    for e in (0.0, 0.5 * lmin):
        for alpha, beta in ((0.3, 0.3), (0.7, 0.7), (0.3, 1.0)):
            for lt0 in (3.0, 5.0):
                base = [e, math.log10(0.3), alpha, math.log10(0.3), beta, lt0]
                rest = {"rl_power": [0.3], "rl_kn": [0.5, math.log10(float(np.median(data.n)))],
                        "rl_floor": [0.5, 0.5 * lmin],
                        "rl_edge": [0.5, math.log10(0.3), 2.0, 0.8]}[form]
                out.append(np.array(base + rest))
    return out


def _fit_z(form, data: JointData, refs, starts) -> tuple[np.ndarray, float]:
    lo, hi = _bounds(form)
    ly = np.log(data.loss)

    def resid(z):
        p = {**_to_natural(form, z), **refs}
        pred = predict(form, p, data.n, data.d, data.c_rl)
        return np.log(np.clip(pred, 1e-9, None)) - ly

    best = None
    for z0 in starts:
        z0 = np.clip(z0, lo + 1e-9, hi - 1e-9)
        try:
            r = least_squares(resid, z0, bounds=(lo, hi), method="trf", max_nfev=400,
                              x_scale="jac")
        except ValueError:
            continue
        if best is None or r.cost < best.cost:
            best = r
    if best is None:
        raise UserError("joint law: no start converged (are the losses in (0, 1]?)")
    return best.x, float(best.cost)


@dataclass
class JointFit:
    form: str
    params: dict  # natural parameters + N_ref, D_ref
    r2: float  # in linear L on the fitted points
    rmse_log: float
    n_points: int
    n_curves: int
    intervals: dict | None = None  # name -> [lo, hi] (bootstrap percentiles)
    boot: list | None = None  # bootstrap parameter dicts (for prediction intervals)
    n_choices: list | None = None  # sizes a plan may choose (e.g. the ladder's rungs)
    n_range: list | None = None  # [min, max] N of the fitted data
    level: float = 0.9
    d_range: list | None = None  # [min, max] pre-training tokens of the fitted data
    t_max: float | None = None  # the most RL tokens (C_RL / 6N) of the fitted data
    flags: dict | None = None  # name -> why it is not identified (at a bound, interval > decade)
    d_seen: list | None = None  # [[N, most pre-training tokens fitted at that N], ...]: past
    # them the law extrapolates to a checkpoint it never saw (measured: where it fails most)
    token_error: dict | None = None  # the law's measured error per decade of tokens past a
    # size's last checkpoint (`token_error`): widens `interval` there

    def predict(self, n, d, c_rl) -> np.ndarray:
        return predict(self.form, self.params, n, d, c_rl)

    def interval(self, n, d, c_rl) -> tuple[float, float] | tuple[None, None]:
        """The predicted loss's interval at `level` at one allocation (a measurement there adds
        its own noise); (None, None) without bootstrap draws. The bootstrap's percentiles carry
        the parameters' uncertainty; past the tokens the fit saw at this size they are widened
        to at least the law's measured error for that many decades (`token_error`), which the
        bootstrap cannot see: no resampled curve lies at those tokens."""
        if not self.boot:
            return None, None
        preds = [float(predict(self.form, b, n, d, c_rl)) for b in self.boot]
        a = (1 - self.level) / 2
        lo, hi = float(np.quantile(preds, a)), float(np.quantile(preds, 1 - a))
        seen = tokens_seen(self, n)
        if self.token_error and seen is not None and d > seen * 1.001:
            half = self.token_error["per_decade"] * math.log10(d / seen)
            p = float(self.predict(n, d, c_rl))
            lo, hi = min(lo, p * math.exp(-half)), max(hi, p * math.exp(half))
        return lo, hi

    def to_dict(self) -> dict:
        return {"law": f"joint_{self.form}", "form": self.form, "params": self.params,
                "intervals": self.intervals, "r2": self.r2, "rmse_log": self.rmse_log,
                "n_points": self.n_points, "n_curves": self.n_curves, "level": self.level,
                "n_choices": self.n_choices, "n_range": self.n_range, "d_range": self.d_range,
                "t_max": self.t_max, "flags": self.flags, "boot": self.boot,
                "d_seen": self.d_seen, "token_error": self.token_error}

    @classmethod
    def from_dict(cls, d: dict, source: str = "fit") -> "JointFit":
        try:
            form, params = d["form"], {k: float(v) for k, v in d["params"].items()}
            need = [s[0] for s in specs(form)] + ["N_ref", "D_ref"]
            missing = [k for k in need if k not in params or not math.isfinite(params[k])]
            if missing:
                raise UserError(f"{source}: params: missing or non-finite {missing[0]!r}")
            te = d.get("token_error")
            if te is not None and not (isinstance(te, dict) and isinstance(
                    te.get("per_decade"), (int, float)) and 0 <= te["per_decade"] < math.inf):
                raise UserError(f"{source}: token_error: must hold a finite per_decade >= 0")
            return cls(form, params, float(d.get("r2", float("nan"))),
                       float(d.get("rmse_log", float("nan"))), int(d.get("n_points", 0)),
                       int(d.get("n_curves", 0)), d.get("intervals"), d.get("boot"),
                       d.get("n_choices"), d.get("n_range"), float(d.get("level", 0.9)),
                       d.get("d_range"), d.get("t_max"), d.get("flags"), d.get("d_seen"),
                       d.get("token_error"))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise UserError(f"{source}: not a joint fit (allocation_fit.json): {e!s:.80}") from None


def fit_joint(data: JointData, form: str, n_boot: int = 100, seed: int = 0,
              level: float = 0.9) -> JointFit:
    """Fit one form; bootstrap over whole curves for intervals."""
    refs = _refs(data)
    z, _ = _fit_z(form, data, refs, _starts(form, data, refs))
    params = {**_to_natural(form, z), **refs}
    pred = predict(form, params, data.n, data.d, data.c_rl)
    ss = float(np.sum((data.loss - np.mean(data.loss)) ** 2))
    r2 = 1.0 - float(np.sum((data.loss - pred) ** 2)) / ss if ss > 0 else float("nan")
    rmse = float(np.sqrt(np.mean((np.log(pred) - np.log(data.loss)) ** 2)))
    fit = JointFit(form, params, r2, rmse, len(data.loss), int(len(np.unique(data.curve))),
                   level=level, n_range=[float(data.n.min()), float(data.n.max())],
                   d_range=[float(data.d.min()), float(data.d.max())],
                   t_max=float(np.max(data.c_rl / (6.0 * data.n))),
                   d_seen=[[float(n), float(data.d[data.n == n].max())] for n in np.unique(data.n)])
    if n_boot:
        rng = np.random.default_rng(seed)
        curves = np.unique(data.curve)
        boot = []
        for _ in range(n_boot):
            pick = rng.choice(curves, len(curves), replace=True)
            sub = JointData(*(np.concatenate([getattr(data, f)[data.curve == c] for c in pick])
                              for f in ("n", "d", "c_rl", "loss", "se", "curve")))
            zb, _ = _fit_z(form, sub, refs, [z])
            boot.append({**_to_natural(form, zb), **refs})
        a = (1 - level) / 2
        fit.boot = boot
        fit.intervals = {k: [float(np.quantile([b[k] for b in boot], a)),
                             float(np.quantile([b[k] for b in boot], 1 - a))]
                         for k in params if k not in refs}
        fit.token_error = token_error(data, form, refs, level)
    fit.flags = _flags(form, z, fit.intervals)
    return fit


def token_error(data: JointData, form: str, refs: dict, level: float) -> dict | None:
    """The law's error in extrapolating pre-training tokens, measured on its own fitting data:
    for each size with >= 2 checkpoints (token counts), its largest is left out, the form
    refitted on the rest and the left-out points predicted; each point's |log error| divided
    by the decades it lay past the size's next checkpoint, pooled over sizes. Returns its
    `level` quantile (`per_decade`) and the number of checkpoints left out; None if no size has
    two. Assumes the error grows linearly in log tokens past the last checkpoint seen."""
    scaled, n_ck = [], 0
    for n in np.unique(data.n):
        ds = np.unique(data.d[data.n == n])
        if len(ds) < 2:
            continue
        err = np.abs(_held_out_log_errors(data, (data.n == n) & (data.d == ds[-1]), form, refs))
        scaled += list(err / math.log10(ds[-1] / ds[-2]))
        n_ck += 1
    if not scaled:
        return None
    return {"per_decade": float(np.quantile(scaled, level)), "checkpoints": n_ck}


def _flags(form, z, intervals) -> dict:
    """Parameters the data do not pin down: the estimate at a bound of the search, or a
    bootstrap interval that intervals.interval_flags flags (reaching a bound, or a positive
    parameter's spanning more than a decade): name -> why."""
    lo, hi = _bounds(form)
    out = {sp.name: "at a bound" for sp, zi, a, b in zip(specs(form), z, lo, hi)
           if min(zi - a, b - zi) <= 1e-3 * (b - a)}
    for name, why in interval_flags(intervals or {}, specs(form)).items():
        out.setdefault(name, why)  # an estimate at a bound says more than its interval
    return out


def loco_error(data: JointData, form: str) -> float:
    """Leave-one-curve-out mean squared log error of a form (fit on the rest, predict the curve)."""
    refs = _refs(data)
    errs = []
    for c in np.unique(data.curve):
        errs += list(_held_out_log_errors(data, data.curve == c, form, refs) ** 2)
    return float(np.mean(errs))


def _refs(data: JointData) -> dict:
    """N_ref and D_ref: the geometric means of the data's sizes and tokens (conditioning only)."""
    return {"N_ref": float(np.exp(np.mean(np.log(data.n)))),
            "D_ref": float(np.exp(np.mean(np.log(data.d))))}


def _held_out_log_errors(data: JointData, out, form: str, refs: dict) -> np.ndarray:
    """log predicted - log measured loss on the points `out` (a mask), the form refitted on the
    rest: what leave-one-curve-out and `token_error` score."""
    rest, held = data.take(~out), data.take(out)
    z, _ = _fit_z(form, rest, refs, _starts(form, rest, refs))
    pred = predict(form, {**_to_natural(form, z), **refs}, held.n, held.d, held.c_rl)
    return np.log(np.clip(pred, 1e-9, None)) - np.log(held.loss)


def choose_form(data: JointData, forms=FORMS) -> tuple[str, dict[str, float]]:
    """The form with the lowest leave-one-curve-out error on these (fitting) data."""
    scores = {f: loco_error(data, f) for f in forms}
    return min(scores, key=scores.get), scores


def tokens_seen(fit: JointFit, n: float) -> float | None:
    """The most pre-training tokens the fit saw at size n (None: a size it never saw, or a fit
    written before it recorded them). A checkpoint past them is the law's weakest prediction:
    on the micro ladder its held-out error there was 1.2-30x its error on checkpoints it saw,
    in 5 of 5 seeds (docs/study.md, session 27)."""
    for m, d in fit.d_seen or []:
        if abs(m - n) <= 1e-6 * max(m, n):
            return float(d)
    return None
