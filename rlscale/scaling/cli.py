"""`rlscale fit`: fit a scaling law, print its parameters with intervals, write fit.json + plots.

    rlscale fit --data runs/ --law loglinear_kn --x C_paper --bootstrap 200 --out fits/c
    rlscale fit --data paper.csv --law loglinear_kn_param --x C_flops --protocol inter \
        --max-size 3.2e10 --out fits/inter

--first-steps / --max-size select the points the law is fitted on; with --protocol intra / inter
they also define the split, and the unseen part is predicted and scored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def configure(parser) -> None:
    inp = parser.add_argument_group("data")
    inp.add_argument("--data", required=True, help="CSV / JSONL / Parquet table, a run "
                       "directory (or a directory of them), a results .db, a verl log or a TRL "
                       "output dir / trainer_state.json")
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
    f.add_argument("--law", default="loglinear_kn",
                   choices=["loglinear_kn", "loglinear_kn_param", "gain_power", "chinchilla",
                            "sigmoid"])
    f.add_argument("--objective", choices=["mse", "huber"], default=None,
                   help="default: the law's own (loglinear_kn mse, chinchilla huber)")
    f.add_argument("--curve-weights", action=argparse.BooleanOptionalAction, default=None,
                   help="weight every curve equally (default: the law's own)")
    f.add_argument("--delta", type=float, default=1e-3, help="Huber delta (log space)")
    f.add_argument("--bootstrap", type=int, default=0, metavar="B", help="bootstrap resamples")
    f.add_argument("--bootstrap-unit", choices=["points", "curves"], default="points")
    f.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    f.add_argument("--protocol", choices=["intra", "inter", "loso"], default=None)
    f.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory (fit.json, PNG plots)")
    parser.add_argument("--no-plots", action="store_true")


def _table(law, intervals, level) -> str:
    rows = [("parameter", "value", f"{level:.0%} interval" if intervals else "")]
    for k, v in law.params_.items():
        iv = intervals.get(k) if intervals else None
        rows.append((k, f"{v:.5g}", f"[{iv[0]:.5g}, {iv[1]:.5g}]" if iv else ""))
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:>{w[1]}}  {c}".rstrip() for a, b, c in rows)


def run(args) -> int:
    from rlscale.errors import UserError
    from rlscale.files import atomic_write_json
    from rlscale.scaling import fit_law, make_law, prepare
    from rlscale.scaling.bootstrap import bootstrap
    from rlscale.scaling.data import load_points, select, select_mask
    from rlscale.scaling.laws import LogLinearKN
    from rlscale.scaling.protocols import run_protocol

    if not 0 < args.level < 1:
        raise UserError(f"--level: must be in (0, 1), got {args.level}")
    for flag in ("first_steps", "bootstrap", "warmup_clip"):
        if (getattr(args, flag) or 0) < 0:
            raise UserError(f"--{flag.replace('_', '-')}: must be >= 0")
    out = Path(args.out)
    law = make_law(args.law)
    allpts = prepare(load_points(args.data, x=args.x, y=args.y, size_col=args.size_col,
                                 step_col=args.step_col, curve_col=args.curve_col,
                                 fmt=args.format, n_params=args.n_params,
                                 batch_size=args.batch_size),
                     law, warmup_clip=args.warmup_clip)
    pts = select(allpts, first_steps=args.first_steps, max_size=args.max_size)
    fitted_mask = select_mask(allpts, first_steps=args.first_steps, max_size=args.max_size)
    fit_kw = dict(objective=args.objective, curve_weights=args.curve_weights, delta=args.delta)
    fit_law(law, pts, **fit_kw)
    res = law.result_
    report = {"law": law.name, "data": str(args.data), "x": res.x, "y": res.y,
              "objective": res.objective, "curve_weights": res.curve_weights,
              "selection": {"warmup_clip": args.warmup_clip, "first_steps": args.first_steps,
                            "max_size": args.max_size},
              "params": law.params_, "r2": res.r2, "loss": res.loss, "n_points": res.n_points,
              "n_curves": res.n_curves, "converged": res.converged,
              "convergence": {"rel_change": res.rel_change, "grad_norm": res.grad_norm,
                              "n_starts": res.n_starts}}
    if isinstance(law, LogLinearKN):
        report["k_of_N"] = {f"{s:.4g}": float(law.k_of(s)) for s in pts.sizes}
    boot, intervals = None, None
    if args.bootstrap:
        boot = bootstrap(law, pts, args.bootstrap, args.bootstrap_unit, args.seed)
        intervals = boot.intervals(args.level)
        report.update(intervals={k: list(v) for k, v in intervals.items()}, level=args.level,
                      bootstrap={"n": args.bootstrap, "unit": args.bootstrap_unit,
                                 "seed": args.seed})
    unseen = None
    if args.protocol:
        proto = run_protocol(args.protocol, law, allpts, args.first_steps, args.max_size,
                             **fit_kw)
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

    print(f"{law.name} on {res.n_points} points ({res.n_curves} curves), x = {res.x}, "
          f"y = {res.y}, objective {res.objective}"
          f"{' (curves weighted equally)' if res.curve_weights else ''}")
    print(_table(law, intervals, args.level))
    print(f"R^2 {res.r2:.5f}   loss {res.loss:.5g}   converged {res.converged} "
          f"(restart change {res.rel_change:.1e}, gradient {res.grad_norm:.1e})")
    if not res.converged:
        sys.stderr.write("warning: the fit did not pass the convergence check\n")
    if args.protocol:
        p = report["prediction"]
        note = " (E re-fitted on the target size)" if report["protocol"].get(
            "intercept_refit_on_target") else ""
        print(f"{args.protocol}: on {p['n']} unseen points MARE {p['mare']:.4f}, "
              f"R^2 {p['r2']:.4f}{note}")
    print(f"wrote {out / 'fit.json'}")
    return 0

