"""`rlscale fit`: fit a scaling law, print its parameters with intervals, write fit.json + plots.

    rlscale fit --data runs/ --law loglinear_kn --x C_paper --bootstrap 200 --out fits/c
    rlscale fit --data paper.csv --protocol extrapolate --out fits/x      # predict the largest size
    rlscale fit --data paper.csv --protocol compute-half --law sigmoid --out fits/h

--first-steps / --max-size select the points the law is fitted on; with --protocol intra / inter
they also define the split, and the unseen part is predicted and scored. extrapolate / loso /
compute-half are the fixed protocols of docs/scaling.md (their own choices, their own split).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

PROTOCOLS = ["intra", "inter", "extrapolate", "loso", "compute-half"]
MAX_BOOTSTRAP = 100_000
DEFAULT_PROTOCOL_BOOT = 200


def configure(parser) -> None:
    inp = parser.add_argument_group("data")
    inp.add_argument("--data", default=None, help="CSV / JSONL / Parquet table, a run "
                       "directory (or a directory of them), a results .db, a verl log or a TRL "
                       "output dir / trainer_state.json (default: the results database of "
                       "`rlscale sweep` / `import`: $RLSCALE_DB, else ./results.sqlite)")
    inp.add_argument("--format", default="auto",
                       choices=["auto", "table", "runs", "db", "verl", "trl"])
    inp.add_argument("--x", default="C_flops", help="x column (default C_flops; C_paper, D...)")
    inp.add_argument("--y", default="test_loss", help="y column (default test_loss)")
    inp.add_argument("--size-col", default="N", help="model-size column (default N)")
    inp.add_argument("--step-col", default="step", help="step column (default step)")
    inp.add_argument("--curve-col", default=None,
                       help="column naming the curve (default: one curve per size / run)")
    inp.add_argument("--n-params", type=float, default=None,
                       help="N for verl / TRL inputs (non-embedding parameters)")
    inp.add_argument("--batch-size", type=int, default=None, help="prompts per step (D)")
    sel = parser.add_argument_group("selection")
    sel.add_argument("--first-steps", type=int, default=None, metavar="M",
                     help="fit the first M steps of each curve")
    sel.add_argument("--max-size", type=float, default=None, metavar="N",
                     help="fit sizes up to N")
    sel.add_argument("--warmup-clip", type=int, default=0, metavar="K",
                     help="drop the first K steps of each curve")
    f = parser.add_argument_group("fit")
    f.add_argument("--law", default="loglinear_kn",  # laws.LAWS, without importing scipy here
                   choices=["loglinear_kn", "loglinear_kn_param", "loglinear_kn_param_q",
                            "loglinear_kn_param_pn", "gain_power", "chinchilla", "sigmoid"])
    f.add_argument("--objective", choices=["mse", "huber"], default=None,
                   help="default: the law's own (loglinear_kn mse, chinchilla huber)")
    f.add_argument("--curve-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="weight every curve equally (default: the law's own)")
    f.add_argument("--delta", type=float, default=1e-3, help="Huber delta (log space), > 0")
    f.add_argument("--bootstrap", type=int, default=None, metavar="B",
                   help=f"bootstrap resamples, 0-{MAX_BOOTSTRAP} (default 0; the extrapolate, "
                        f"loso and compute-half protocols use {DEFAULT_PROTOCOL_BOOT})")
    f.add_argument("--bootstrap-unit", choices=["points", "curves"], default="curves",
                   help="resample whole curves (default) or points within each curve")
    f.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    f.add_argument("--protocol", choices=PROTOCOLS, default=None)
    f.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory (fit.json, PNG plots)")
    parser.add_argument("--no-plots", action="store_true")


def check_args(args) -> None:
    """Ranges of the fit flags, checked before anything is read or written."""
    from rlscale.errors import UserError

    if not 0 < args.level < 1:
        raise UserError(f"--level: {args.level}: must be in (0, 1)")
    if not args.delta > 0:  # also false for NaN
        raise UserError(f"--delta: {args.delta}: must be a positive number")
    if args.bootstrap is not None and not 0 <= args.bootstrap <= MAX_BOOTSTRAP:
        raise UserError(f"--bootstrap: {args.bootstrap}: must be in [0, {MAX_BOOTSTRAP}]")
    for flag in ("first_steps", "warmup_clip", "seed"):
        if (getattr(args, flag) or 0) < 0:
            raise UserError(f"--{flag.replace('_', '-')}: must be >= 0")
    for flag in ("max_size", "n_params", "batch_size"):
        v = getattr(args, flag)
        if v is not None and not v > 0:
            raise UserError(f"--{flag.replace('_', '-')}: {v}: must be > 0")
    if args.protocol == "compute-half" and args.law not in ("loglinear_kn", "sigmoid"):
        raise UserError("--protocol compute-half: --law must be loglinear_kn or sigmoid")


def _table(law, intervals, level) -> str:
    rows = [("parameter", "value", f"{level:.0%} interval" if intervals else "")]
    for k, v in law.params_.items():
        iv = intervals.get(k) if intervals else None
        rows.append((k, f"{v:.5g}", f"[{iv[0]:.5g}, {iv[1]:.5g}]" if iv else ""))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:>{w[1]}}  {c}".rstrip() for a, b, c in rows)


def run(args) -> int:
    import numpy as np

    from rlscale.store import default_db

    args.data = args.data or default_db()  # the one database rule of every command
    check_args(args)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # numeric warnings are the fit's business, not output
        return _run(args)


def _load(args, law):
    from rlscale.scaling import prepare
    from rlscale.scaling.data import load_points

    return prepare(load_points(args.data, x=args.x, y=args.y, size_col=args.size_col,
                               step_col=args.step_col, curve_col=args.curve_col,
                               fmt=args.format, n_params=args.n_params,
                               batch_size=args.batch_size),
                   law, warmup_clip=args.warmup_clip)


def _protocol(args, law, allpts, fit_kw) -> dict:
    from rlscale.scaling import extrapolation as ex
    from rlscale.scaling.compute_half import compute_half
    from rlscale.scaling.protocols import run_protocol

    n = DEFAULT_PROTOCOL_BOOT if args.bootstrap is None else args.bootstrap
    kw = dict(level=args.level, n_boot=max(n, 2), seed=args.seed)
    if args.protocol == "extrapolate":
        return ex.extrapolate(allpts, candidates=ex.candidates_for(allpts.x_name), **kw)
    if args.protocol == "loso":
        return ex.loso_extrapolate(allpts, candidates=ex.candidates_for(allpts.x_name), **kw)
    if args.protocol == "compute-half":
        return compute_half(allpts, args.law, **kw)
    return run_protocol(args.protocol, law, allpts, args.first_steps, args.max_size, **fit_kw)


def _report(args, law, pts, boot, intervals, flags) -> dict:
    from rlscale.scaling.laws import LogLinearKN
    from rlscale.scaling.predict import fit_record

    res = law.result_
    report = {"law": law.name, "data": str(args.data), "x": res.x, "y": res.y,
              "objective": res.objective, "curve_weights": res.curve_weights,
              "selection": {"warmup_clip": args.warmup_clip, "first_steps": args.first_steps,
                            "max_size": args.max_size},
              "params": law.params_, "r2": res.r2, "loss": res.loss, "n_points": res.n_points,
              "n_curves": res.n_curves, "converged": res.converged,
              "identified": not flags, "flags": flags,
              "convergence": {"rel_change": res.rel_change, "grad_norm": res.grad_norm,
                              "n_starts": res.n_starts, "restart_spread": res.restart_spread,
                              "at_bound": res.at_bound},
              "predict": fit_record(law, pts, boot)}
    if isinstance(law, LogLinearKN):
        report["k_of_N"] = {f"{s:.4g}": float(law.k_of(s)) for s in pts.sizes}
    if boot is not None:
        report.update(intervals={k: list(v) for k, v in intervals.items()}, level=args.level,
                      bootstrap={"n": len(boot.laws), "unit": args.bootstrap_unit,
                                 "seed": args.seed})
    return report


def _run(args) -> int:
    from rlscale.files import atomic_write_json
    from rlscale.scaling import fit_law, make_law
    from rlscale.scaling.bootstrap import bootstrap
    from rlscale.scaling.data import select, select_mask
    from rlscale.scaling.intervals import wide_intervals
    from rlscale.scaling.laws import LogLinearKN

    out = Path(args.out)
    law = make_law(args.law)
    allpts = _load(args, law)
    pts = select(allpts, first_steps=args.first_steps, max_size=args.max_size)
    fitted_mask = select_mask(allpts, first_steps=args.first_steps, max_size=args.max_size)
    fit_kw = dict(objective=args.objective, curve_weights=args.curve_weights, delta=args.delta)
    fit_law(law, pts, **fit_kw)
    res = law.result_
    flags = list(res.flags)
    boot, intervals = None, None
    if args.bootstrap:
        boot = bootstrap(law, pts, args.bootstrap, args.bootstrap_unit, args.seed)
        intervals = boot.intervals(args.level)
        flags += wide_intervals(intervals, law.specs_)
    report = _report(args, law, pts, boot, intervals, flags)
    unseen = None
    if args.protocol:
        proto = _protocol(args, law, allpts, fit_kw)
        report["protocol"] = proto
        report["prediction"] = proto["prediction"]
        if args.protocol in ("intra", "inter"):
            unseen = allpts.subset(~fitted_mask)
    if not args.no_plots:
        from rlscale.scaling.plots import plot_curves, plot_k

        plots = [plot_curves(law, pts, out / "fit_curves.png", boot, args.level, extra=unseen)]
        if isinstance(law, LogLinearKN):
            plots.append(plot_k(law, pts, out / "k_of_N.png", boot, args.level))
        report["plots"] = [Path(p).name for p in plots]
    atomic_write_json(out / "fit.json", report)
    _print(args, law, intervals, flags, report.get("protocol"))
    print(f"wrote {out / 'fit.json'}")
    return 0


def _print(args, law, intervals, flags, proto) -> None:
    res = law.result_
    print(f"{law.name} on {res.n_points} points ({res.n_curves} curves), x = {res.x}, "
          f"y = {res.y}, objective {res.objective}"
          f"{' (curves weighted equally)' if res.curve_weights else ''}")
    print(_table(law, intervals, args.level))
    print(f"R^2 {res.r2:.5f}   loss {res.loss:.5g}   converged {res.converged} "
          f"(restart change {res.rel_change:.1e}, gradient {res.grad_norm:.1e})")
    print(f"identified {not flags}" + (f": NOT identified ({'; '.join(flags)})" if flags else ""))
    if not res.converged:
        sys.stderr.write("warning: the fit did not pass the convergence check\n")
    if proto is None:
        return
    if args.protocol == "extrapolate":
        print(f"extrapolate: size={proto['size']:.4g} mare={proto['mare']:.4f} "
              f"coverage={proto['coverage']:.3f} level={proto['level']:g}")
        _print_fold_flags([proto])
    elif args.protocol == "loso":
        for f in proto["folds"]:
            print(f"loso: size={f['size']:.4g} mare={f['mare']:.4f} "
                  f"coverage={f['coverage']:.3f} level={f['level']:g}")
        print(f"loso: all sizes mare={proto['mare']:.4f} coverage={proto['coverage']:.3f} "
              f"level={proto['level']:g}")
        _print_fold_flags(proto["folds"])
    elif args.protocol == "compute-half":
        print(f"compute-half: law={proto['law']} mare={proto['mare']:.4f} "
              f"coverage={proto['coverage']:.3f}")
        _print_fold_flags([proto])
    else:
        p = proto["prediction"]
        note = " (E re-fitted on the target size)" if proto.get(
            "intercept_refit_on_target") else ""
        print(f"{args.protocol}: on {p['n']} unseen points MARE {p['mare']:.4f}, "
              f"R^2 {p['r2']:.4f}{note}")


def _print_fold_flags(folds) -> None:
    for f in folds:
        if f.get("choice"):
            c = f["choice"]
            print(f"  size {f['size']:.4g}: chose {c['law']}, warm-up clip {c['warmup_clip']}, "
                  f"{c['objective']} ({f.get('chosen_by', 'nested leave-one-size-out')})")
        if f["flags"]:
            where = f"size {f['size']:.4g}" if "size" in f else f["law"]
            print(f"  {where}: NOT identified ({'; '.join(f['flags'])})")
