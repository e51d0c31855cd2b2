"""`rlscale predict`: a fitted law's predicted test loss, with its interval, for a planned run.

    rlscale predict --fit fits/x/fit.json --size 7e10 --compute 1e20
    rlscale predict --fit fits/x --size 7e10 --steps 100 --curve pred.csv   # + pred.png

fit.json (written by `rlscale fit`) carries what a prediction needs under "predict": the law,
its parameters, the sizes it was bound to, the bootstrap resamples' parameters (when the fit was
bootstrapped), the fit's log residuals (the scatter of one measured point around its curve) and
compute per step as a power of N (for --steps). The interval is the bootstrap resamples'
predictions times a drawn residual (rlscale.scaling.intervals.prediction_interval): a range for a
measured point, at the fit's level.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

MAX_RESIDUALS = 2000  # kept in fit.json: enough for percentiles, small on disk


def fit_record(law, pts, boot=None) -> dict:
    """The "predict" block of fit.json."""
    from rlscale.scaling.intervals import log_residuals

    resid = log_residuals(pts.y, law.predict(pts)) if np.all(pts.y > 0) else np.zeros(0)
    if len(resid) > MAX_RESIDUALS:
        resid = np.quantile(resid, np.linspace(0, 1, MAX_RESIDUALS))
    rec = {"law": law.name, "sizes": [float(s) for s in law.sizes_], "params": dict(law.params_),
           "x": pts.x_name, "y": pts.y_name, "log_residuals": [float(r) for r in resid],
           "compute_per_step": per_step(pts)}
    if boot is not None:
        rec["boot_params"] = [{k: (None if not math.isfinite(v) else v) for k, v in
                               zip(boot.names, row)} for row in boot.samples.tolist()]
    return rec


def per_step(pts) -> dict | None:
    """log10(x / step) = a + b log10 N over the sizes (x per step grows with N)."""
    ok = pts.step > 0
    if not ok.any():
        return None
    sizes = np.unique(pts.size[ok])
    per = [float(np.median(pts.x[ok & (pts.size == s)] / pts.step[ok & (pts.size == s)]))
           for s in sizes]
    if len(sizes) == 1:
        return {"a": math.log10(per[0]) - math.log10(sizes[0]), "b": 1.0}
    b, a = np.polyfit(np.log10(sizes), np.log10(per), 1)
    return {"a": float(a), "b": float(b)}


def configure(parser) -> None:
    parser.add_argument("--fit", required=True, help="fit.json written by `rlscale fit` (or "
                        "its directory)")
    parser.add_argument("--size", type=float, required=True, help="model size N (parameters)")
    at = parser.add_mutually_exclusive_group(required=True)
    at.add_argument("--compute", type=float, help="RL compute C (the fit's x, e.g. FLOPs)")
    at.add_argument("--steps", type=float, help="RL steps (x from the fit's x per step at N)")
    parser.add_argument("--level", type=float, default=None,
                        help="interval level (default: the fit's, else 0.9)")
    parser.add_argument("--curve", default=None, metavar="OUT.csv",
                        help="also write the predicted curve up to --compute/--steps with its "
                             "band (CSV, and a PNG beside it)")
    parser.add_argument("--seed", type=int, default=0)


def load_fit(path):
    """(law with fitted parameters, the predict record, its level) from a fit.json."""
    from rlscale.errors import UserError
    from rlscale.files import read_json
    from rlscale.scaling.laws import make_law

    p = Path(path)
    p = p / "fit.json" if p.is_dir() else p
    if not p.exists():
        raise UserError(f"--fit: {p}: no such file")
    doc = read_json(p)
    rec = doc.get("predict") if isinstance(doc, dict) else None
    if not isinstance(rec, dict) or not {"law", "params", "sizes"} <= set(rec):
        raise UserError(f"{p}: not a fit.json of this rlscale version (no 'predict' block; "
                        "refit with `rlscale fit`)")
    return _law(make_law(str(rec["law"])), rec["sizes"], rec["params"], p), rec, doc.get("level")


def _law(law, sizes, params, where):
    from rlscale.errors import UserError

    law.sizes_ = np.asarray(sizes, float)
    law.specs_ = law.specs(law.sizes_)
    try:
        law.set_fitted({s.name: float(params[s.name]) for s in law.specs_})
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{where}: parameters do not match law {law.name}") from None
    return law


def predict_at(law, rec, x: np.ndarray, size: float, level: float, seed: int = 0):
    """(prediction, lo, hi) at x for size N; lo/hi are None without bootstrap resamples."""
    from rlscale.scaling.intervals import prediction_interval

    pred = law.predict(x, size)
    boot = rec.get("boot_params") or []
    if len(boot) < 2:
        return pred, None, None
    preds = []
    for row in boot:
        vals = {k: (np.nan if v is None else v) for k, v in row.items()}
        bl = _law(type(law)(), law.sizes_, vals, "fit.json")
        preds.append(bl.predict(x, size))
    rng = np.random.default_rng(seed)
    lo, hi = prediction_interval(np.array(preds), np.asarray(rec.get("log_residuals") or []),
                                 level, rng)
    return pred, lo, hi


def run(args) -> int:
    import warnings

    from rlscale.errors import UserError

    for flag in ("size", "compute", "steps"):
        v = getattr(args, flag)
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"--{flag}: {v}: must be a positive number")
    law, rec, fit_level = load_fit(args.fit)
    level = args.level if args.level is not None else (fit_level or 0.9)
    if not 0 < level < 1:
        raise UserError(f"--level: {level}: must be in (0, 1)")
    if args.compute is not None:
        x_end = args.compute
    else:
        cps = rec.get("compute_per_step")
        if not cps:
            raise UserError(f"{args.fit}: the fit has no steps to convert --steps; use --compute")
        x_end = args.steps * 10 ** (cps["a"] + cps["b"] * math.log10(args.size))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        pred, lo, hi = predict_at(law, rec, np.array([x_end]), args.size, level, args.seed)
        band = "" if lo is None else f"  {level:.0%} interval [{lo[0]:.4f}, {hi[0]:.4f}]"
        print(f"{rec.get('y', 'y')} at N={args.size:.4g}, {rec.get('x', 'x')}={x_end:.4g}: "
              f"{pred[0]:.4f}{band}")
        if lo is None:
            print("(no interval: the fit was not bootstrapped; refit with --bootstrap 200)")
        if args.curve:
            write_curve(law, rec, args, x_end, level)
    return 0


def write_curve(law, rec, args, x_end: float, level: float) -> None:
    from rlscale.files import atomic_write_text

    x = np.geomspace(x_end / 100, x_end, 60)
    pred, lo, hi = predict_at(law, rec, x, args.size, level, args.seed)
    rows = [f"{rec.get('x', 'x')},prediction,lo,hi"]
    for i, xi in enumerate(x):
        lo_i, hi_i = ("", "") if lo is None else (f"{lo[i]:.6g}", f"{hi[i]:.6g}")
        rows.append(f"{xi:.6g},{pred[i]:.6g},{lo_i},{hi_i}")
    out = Path(args.curve)
    atomic_write_text(out, "\n".join(rows) + "\n")
    png = out.with_suffix(".png")
    _plot(x, pred, lo, hi, rec, args.size, level, png)
    print(f"wrote {out} and {png}")


def _plot(x, pred, lo, hi, rec, size, level, path) -> None:
    from rlscale.files import atomic_write_bytes
    from rlscale.scaling.plots import _plt, size_name

    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.plot(x, pred, color="C0", label=f"{rec['law']} prediction, N = {size_name(size)}")
    if lo is not None:
        ax.fill_between(x, lo, hi, color="C0", alpha=0.25, label=f"{level:.0%} interval")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(rec.get("x", "x"))
    ax.set_ylabel(rec.get("y", "y"))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
