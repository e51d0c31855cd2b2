"""`rlscale plan`: the recommended pre-training / RL split of a compute budget, from a joint fit.

    rlscale plan --fit OUT/allocation_fit.json --budget 3e12
    plan: budget=3e+12 N=... pretrain_tokens=... rl_flops=... rl_share=... predicted_test_loss=... interval=lo,hi

The fit is the one `rlscale study --preset allocate` writes (OUT/allocation_fit.json), or one
made here from your own runs that vary pre-training tokens: `--points runs.csv --fit FIT.json`
fits a joint law (rlscale.scaling.joint; the form with the lowest leave-one-curve-out error)
to a CSV with columns N (non-embedding parameters), pretrain_tokens, rl_flops (C_paper of the
RL so far; or C_paper), test_loss, and optionally test_loss_se and curve (one id per
pre-trained checkpoint's RL run; or run_id), writes it to FIT.json and plans from it: the CSV of
`rlscale runs export --format csv` plus a pretrain_tokens column (docs/study.md). The frontier plot goes to --plot (default: beside the fit).
"""

from __future__ import annotations

import math
from pathlib import Path

from rlscale.errors import UserError


def configure(p) -> None:
    p.add_argument("--fit", required=True, metavar="FIT.json",
                   help="joint fit (allocation_fit.json); written first when --points is given")
    p.add_argument("--budget", required=True, metavar="C", help="total compute in FLOPs, e.g. 3e12")
    p.add_argument("--points", metavar="CSV", default=None,
                   help="fit the joint law to these runs first (columns N, pretrain_tokens, "
                        "rl_flops, test_loss[, test_loss_se, curve])")
    p.add_argument("--bootstrap", type=int, default=100, help="resamples for intervals (--points)")
    p.add_argument("--within-seen", action="store_true",
                   help="keep every size at most at the pre-training tokens the fit saw there "
                        "(RL past measured checkpoints only: where the law held best)")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="frontier plot (default: plan_frontier.png beside the fit)")


def parse_budget(text: str) -> float:
    try:
        c = float(text)
    except (TypeError, ValueError):
        raise UserError(f"--budget: {text!r}: not a number of FLOPs (e.g. 3e12)") from None
    if not math.isfinite(c) or c <= 0:
        raise UserError(f"--budget: {text!r}: must be a positive, finite number of FLOPs")
    return c


def load_fit(path):
    from rlscale.files import read_json
    from rlscale.scaling.joint import JointFit

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such fit file")
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a joint fit (a JSON object is expected)")
    return JointFit.from_dict(data, str(path))


def fit_points(csv_path, fit_path, n_boot: int):
    """Fit a joint law to a CSV of RL curves from several pre-training budgets; save it."""
    from rlscale.files import atomic_write_json, read_csv
    from rlscale.scaling.joint import JointData, choose_form, fit_joint

    rows = []
    for line, r in read_csv(csv_path):
        # `rlscale runs export --format csv` names them C_paper and run_id
        r = {"rl_flops": r.get("C_paper"), "curve": r.get("run_id"), **r}
        if r.get("test_loss") in (None, ""):  # a step without an evaluation
            continue
        row = {}
        for k in ("N", "pretrain_tokens", "rl_flops", "test_loss", "test_loss_se"):
            v = r.get(k)
            if v in (None, "") and k == "test_loss_se":
                continue
            try:
                row[k] = float(v)
            except (TypeError, ValueError):
                raise UserError(f"{csv_path}:{line}: column '{k}': {v!r} is not a number") from None
        row["curve"] = r.get("curve") or f"{row['N']}/{row['pretrain_tokens']}"
        rows.append(row)
    data = JointData.from_rows(rows, str(csv_path))
    form, scores = choose_form(data)
    fit = fit_joint(data, form, n_boot=n_boot)
    atomic_write_json(fit_path, {**fit.to_dict(), "form_scores": scores, "source": str(csv_path)})
    return fit


def run(args) -> int:
    from rlscale.allocation_report import plot_frontier
    from rlscale.scaling.frontier import frontier

    budget = parse_budget(args.budget)
    if args.bootstrap < 0:
        raise UserError(f"--bootstrap: {args.bootstrap}: must be >= 0")
    fit = fit_points(args.points, args.fit, args.bootstrap) if args.points else load_fit(args.fit)
    f = frontier(fit, budget, within_seen=args.within_seen)
    lo, hi = f["interval"]
    print(f"plan: budget={budget:.6g} N={f['N']:.0f} pretrain_tokens={f['pretrain_tokens']:.0f} "
          f"rl_flops={f['rl_flops']:.6g} rl_share={f['rl_share']:.4f} "
          f"predicted_test_loss={f['predicted_test_loss']:.4f} interval={lo:.4f},{hi:.4f}")
    if f.get("extrapolated"):  # stdout keeps its one line; the caveat goes to stderr
        import sys

        past = (f"; its pre-training tokens are {f['tokens_x_seen']:.3g}x the most the fit saw "
                f"at this N" if (f.get("tokens_x_seen") or 0) > 1.001 else "")
        sys.stderr.write(f"plan: note: the optimum lies outside the fitted data in "
                         f"{', '.join(f['extrapolated'])} (an extrapolation{past})\n")
    plot = Path(args.plot) if args.plot else Path(args.fit).parent / "plan_frontier.png"
    plot_frontier(fit, plot, budget / 30, budget * 30, mark=f, within_seen=args.within_seen)
    return 0
