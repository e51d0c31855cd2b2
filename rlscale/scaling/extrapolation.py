"""The extrapolation protocol: predict a model size no fit has seen, every choice made without it.

    extrapolate(pts)          fit every size but the largest, predict the largest
    extrapolate(pts, size=N)  the same for any held-out size (`loso_extrapolate` does every size)

What is fixed before any data are seen (docs/scaling.md says why): the candidate choices below
(the E(N) form, warm-up clip, objective), the rule that picks one, the resampling unit and the
interval level. What the data decide, using the training sizes only: nested leave-one-size-out
inside the training sizes scores every candidate (mean over inner folds of the MARE on the size
each inner fit left out); the lowest score among candidates whose fit on all training sizes is
identified wins. An inner fit whose parameters its sizes do not determine (fitting.jacobian_rank)
cannot score its candidate: with three training sizes no candidate can be scored (two sizes leave
a pivot free), and the first identified candidate in the fixed order is taken (`chosen_by` says
which rule chose). Only then is the held-out size predicted and scored. Nothing of it is used
before that, not even its first point.

Intervals: whole training curves are resampled (at least three distinct sizes kept), the chosen
candidate is refitted on each resample (warm start), its predictions for the held-out size get
residuals drawn from the fit's own log residuals (rlscale.scaling.intervals), and the percentile
interval at `level` is scored by its coverage of the held-out points.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rlscale.errors import UserError
from rlscale.scaling.data import select
from rlscale.scaling.fitting import FLAT, fit_law
from rlscale.scaling.intervals import (coverage, log_residuals, prediction_interval,
                                       resample_curves, wide_intervals)
from rlscale.scaling.laws import make_law
from rlscale.scaling.metrics import errors


@dataclass(frozen=True)
class Choice:
    law: str  # an E(N) form that can predict an unseen size
    warmup_clip: int  # points dropped at the start of every training curve
    objective: str  # mse with every curve weighted equally (the paper's) or huber in log space

    def fit(self, pts, x0=None, check: bool = True):
        law = make_law(self.law)
        train = select(pts, warmup_clip=self.warmup_clip)
        return fit_law(law, train, objective=self.objective,
                       curve_weights=self.objective == "mse", x0=x0, check=check)

    def label(self) -> str:
        return f"{self.law}, warm-up clip {self.warmup_clip}, {self.objective}"


def _choices(*laws: str) -> tuple[Choice, ...]:
    return tuple(Choice(law, clip, obj) for law in laws for clip in (0, 5)
                 for obj in ("mse", "huber"))


CANDIDATES = _choices("loglinear_kn_param", "loglinear_kn_param_q")
# In compute the pivot may also sit at a compute per parameter: a study's C is 6 N T summed
# over its steps, so runs of equal steps meet at C ~ N (laws.LogLinearKNParamPN; session 22,
# from the synthetic ladder of tests/test_report.py, which the fixed pivot cannot extrapolate)
PER_PARAM_PIVOT = _choices("loglinear_kn_param_pn")
COMPUTE_COLUMNS = ("C_flops", "C_paper", "C_itemized")  # x columns that are compute


def candidates_for(x_name: str) -> tuple[Choice, ...]:
    """The candidate set of an x column: compute adds the per-parameter pivot (12 in all), first
    in the fixed order, since equal steps put every run's start at C ~ N (choose's fallback
    takes the first identified candidate)."""
    return PER_PARAM_PIVOT + CANDIDATES if x_name in COMPUTE_COLUMNS else CANDIDATES


def inner_score(choice: Choice, train) -> float:
    """Mean over the training sizes of the MARE on that size when fitted on the others; inf
    where an inner fit cannot judge the form: too few points or sizes left, or parameters the
    remaining sizes do not determine (a flat direction: what the fit predicts for the size it
    left out is wherever the optimiser stopped, not a property of the form)."""
    scores = []
    for s in np.unique(train.size):
        m = train.size == s
        try:
            law = choice.fit(train.subset(~m))
        except UserError:
            return float("inf")
        if any(FLAT in f for f in law.result_.flags):
            return float("inf")
        scores.append(errors(train.y[m], law.predict(train.subset(m)))["mare"])
    return float(np.mean(scores)) if scores else float("inf")


def choose(train, candidates=CANDIDATES) -> tuple[Choice, object, list[dict], str]:
    """The candidate nested leave-one-size-out prefers, its fit on all training sizes, the
    table of scores and how the choice was made. Scored candidates whose full fit is not
    identified are passed over (unless all scored ones are). Where no candidate can be scored
    (three training sizes: every inner fit has two, and two sizes determine no form with a
    pivot), the first candidate in the fixed order whose full fit is identified is taken, as
    declared before any data are seen. Full fits are made only where they can matter (the
    scored candidates, or the fixed order up to its first identified fit)."""
    rows = [{**asdict(c), "inner_mare": inner_score(c, train), "identified": None,
             "flags": [], "_choice": c} for c in candidates]

    def full(r):  # fit on every training size, once
        if "_law" not in r and r["identified"] is None:
            try:
                r["_law"] = r["_choice"].fit(train)
                r["identified"], r["flags"] = r["_law"].result_.identified, r["_law"].result_.flags
            except UserError as e:
                r["identified"], r["flags"] = False, [str(e)]
        return "_law" in r

    scored = [r for r in rows if np.isfinite(r["inner_mare"]) and full(r)]
    if scored:
        pool = [r for r in scored if r["identified"]] or scored
        best = min(pool, key=lambda r: r["inner_mare"])
        how = "nested leave-one-size-out on training sizes"
    else:
        fitted = []
        for r in rows:  # in the fixed order, up to the first identified fit
            if full(r):
                fitted.append(r)
                if r["identified"]:
                    break
        best = next((r for r in fitted if r["identified"]), fitted[0] if fitted else None)
        if best is None:
            raise UserError("extrapolate: no candidate law could be fitted on the training sizes")
        how = ("the first identified candidate in the fixed order: none could be scored by "
               "nested leave-one-size-out (its inner fits, on "
               f"{len(np.unique(train.size)) - 1} sizes, do not determine it)")
    table = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    return best["_choice"], best["_law"], table, how


def boot_predictions(choice: Choice, law, train, test, n: int, rng) -> tuple[np.ndarray, list]:
    """(B, len(test)) predictions of the chosen candidate refitted on curve resamples."""
    preds, params = [], []
    for _ in range(n):
        sample = resample_curves(train, rng)
        try:
            bl = choice.fit(sample, x0=law.params_, check=False)
        except UserError:
            continue
        preds.append(bl.predict(test))
        params.append(bl.params_)
    return np.array(preds), params


def param_intervals(params: list[dict], level: float) -> dict[str, tuple[float, float]]:
    a = (1 - level) / 2
    names = params[0].keys() if params else []
    return {k: (float(np.quantile([p[k] for p in params], a)),
                float(np.quantile([p[k] for p in params], 1 - a))) for k in names}


def extrapolate(pts, size: float | None = None, level: float = 0.9, n_boot: int = 200,
                seed: int = 0, candidates=CANDIDATES) -> dict:
    """Fit every size but `size` (default: the largest) and predict it; see the module doc."""
    sizes = np.unique(pts.size)
    if len(sizes) < 3:
        raise UserError(f"{pts.source or 'data'}: extrapolation needs at least 3 sizes "
                        f"(found {len(sizes)})")
    size = float(sizes[-1] if size is None else size)
    held = np.isclose(pts.size, size, rtol=1e-9)
    if not held.any():
        raise UserError(f"--size {size:g}: no such size in {pts.source or 'the data'}")
    train, test = pts.subset(~held), pts.subset(held)
    choice, law, table, chosen_by = choose(train, candidates)
    pred = law.predict(test)
    rng = np.random.default_rng(seed)
    preds, params = boot_predictions(choice, law, train, test, n_boot, rng)
    fitted = select(train, warmup_clip=choice.warmup_clip)
    resid = log_residuals(fitted.y, law.predict(fitted))
    lo, hi = prediction_interval(preds, resid, level, rng)
    intervals = param_intervals(params, level)
    flags = list(law.result_.flags) + wide_intervals(intervals, law.specs_)
    if len(np.unique(train.size)) < 4:  # every resample keeps the same three sizes
        flags.append("fewer than 4 training sizes: the curve bootstrap cannot measure the "
                     "size-to-size uncertainty")
    err = errors(test.y, pred)
    return {"protocol": "extrapolate", "size": size, "level": level,
            "mare": err["mare"], "coverage": coverage(test.y, lo, hi), "prediction": err,
            "choice": asdict(choice), "chosen_by": chosen_by,
            "candidates": table, "params": dict(law.params_),
            "intervals": {k: list(v) for k, v in intervals.items()},
            "n_boot": len(preds), "seed": seed, "identified": not flags, "flags": flags,
            "converged": law.result_.converged, "n_train": len(train),
            "curve": {"x": test.x.tolist(), "y": test.y.tolist(), "pred": pred.tolist(),
                      "lo": lo.tolist(), "hi": hi.tolist()}}


def loso_extrapolate(pts, level: float = 0.9, n_boot: int = 200, seed: int = 0,
                     candidates=CANDIDATES) -> dict:
    """The extrapolation protocol with every size held out in turn (choices re-made per fold)."""
    folds = [extrapolate(pts, s, level, n_boot, seed, candidates) for s in np.unique(pts.size)]
    y, pred, inside = [], [], []
    for f in folds:
        c = f.pop("curve")
        y += c["y"]
        pred += c["pred"]
        inside += [lo <= v <= hi for v, lo, hi in zip(c["y"], c["lo"], c["hi"])]
    err = errors(y, pred)
    return {"protocol": "loso", "level": level, "mare": err["mare"],
            "coverage": float(np.mean(inside)), "prediction": err, "folds": folds,
            "identified": all(f["identified"] for f in folds)}
