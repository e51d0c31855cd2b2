"""The allocation law tested where it was not fitted (rlscale.allocation): fit on the points
within the second-largest budget, predict the best allocation at the largest, then pre-train
and RL exactly that, `val_draws` times, and compare.

One run of the predicted allocation is one pre-training draw, and one draw can be an outlier:
on the micro ladder three draws of the same allocation measured 0.201 / 0.109 / 0.134 in one
experiment (SD 0.048, against an evaluation SE of ~0.012), 0.099 / 0.110 / 0.103 and 0.142 /
0.125 / 0.130 in two others (docs/study.md, session 25). So the measured level is the mean over
draws (draw d: pre-training and RL seeded seed + 1000 d, the same task files and held-out
problems) with the SE of that mean from the draws' spread, and the verdict has two parts: the
error within 2 of those SEs (the law's point prediction), and the mean inside the law's own
interval at the realised allocation (the law's stated uncertainty: `JointFit.interval`)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from rlscale.allocation_jobs import (base_preset, pretrain_cost, pretrain_params, rl_cost,
                                     rl_params)
from rlscale.allocation_points import curve_points, held_out
from rlscale.files import atomic_write_json, read_json

DRAW_STRIDE = 1000  # draw d's seed = the experiment's seed + DRAW_STRIDE d


def joint_data(points: list[dict], source: str = "allocation"):
    from rlscale.scaling.joint import JointData

    return JointData.from_rows(points, source)


def fit_law(points: list[dict], form: str, sizes: list[float], n_boot: int, seed: int = 0):
    from rlscale.scaling.joint import fit_joint

    fit = fit_joint(joint_data(points), form, n_boot=n_boot, seed=seed)
    fit.n_choices = sorted(float(s) for s in sizes)
    return fit


def fitting_points(points: list[dict], fit_budget: float) -> list[dict]:
    """The points the law is fitted on: those within the fitting budget."""
    return [q for q in points if q["C_total"] <= fit_budget * (1 + 1e-9)]


def token_cap(p, points: list[dict]) -> float | None:
    """The validation's pre-training tokens at most (val_tokens_x x the largest measured)."""
    return p.val_tokens_x * max(q["pretrain_tokens"] for q in points) if p.val_tokens_x else None


def validation_plan(p, points: list[dict], budgets: list[float], out: Path) -> dict:
    """Fit on the smaller budgets (form chosen there too), predict the best allocation at the
    largest budget over the rungs of the experiment. Written once to
    OUT/allocation_validation_plan.json (a rerun, or more draws, use it as it is)."""
    from rlscale.scaling.frontier import frontier
    from rlscale.scaling.joint import choose_form

    path = out / "allocation_validation_plan.json"
    if path.is_file():
        return read_json(path)
    fit_budget, val_budget = budgets[-2], budgets[-1]
    fit_pts = fitting_points(points, fit_budget)
    form, scores = choose_form(joint_data(fit_pts, "fitting points"))
    sizes = sorted({q["N"] for q in points})
    fit = fit_law(fit_pts, form, sizes, p.n_boot)
    pred = frontier(fit, val_budget, d_max=token_cap(p, points))
    plan = {"fit_budget": fit_budget, "budget": val_budget, "form": form, "form_scores": scores,
            "n_fit_points": len(fit_pts), "fit": fit.to_dict(), "predicted": pred,
            "held_out": held_out(fit, points, fit_budget, val_budget)}
    atomic_write_json(path, plan)
    return plan


def validation_jobs(p, plan: dict, points: list[dict], out: Path) -> list:
    """Per draw: pre-train the predicted rung for the predicted tokens, then GRPO for the
    predicted RL FLOPs (steps from the RL FLOPs per step this rung measured). Draw 0 lives in
    OUT/validation (as before draws existed), draw d in OUT/validation/dD."""
    from rlscale.study_plan import Job

    base, rungs = base_preset(p)
    pred = plan["predicted"]
    n_of = {}
    for q in points:
        n_of.setdefault(q["rung"], q["N"])
    rung = next(r for r in rungs if n_of.get(r.name) == pred["N"])
    rows = base.pretrain_batch * base.seq_len
    tokens = max(rows * 2, int(round(pred["pretrain_tokens"] / rows)) * rows)
    per_step = [q["rl_flops"] / q["step"] for q in points if q["rung"] == rung.name and q["step"]]
    steps = round(pred["rl_flops"] / (sum(per_step) / len(per_step))) if per_step else 0
    steps = min(p.max_val_steps, max(1, steps))
    jobs = []
    for d in range(p.val_draws):
        mine = replace(base, seed=base.seed + DRAW_STRIDE * d)
        root, tag = (out / "validation" / f"d{d}", f":d{d}") if d else (out / "validation", "")
        params, cfg = pretrain_params(mine, rung, out, tokens, [tokens], p.decay_frac, p.schedule)
        pre = Job(f"pretrain:validation{tag}", "pretrain", str(root / "pretrain"), params,
                  cost=pretrain_cost(rung, tokens), total=cfg.steps(),
                  meta={"rung": rung.name})
        rl = Job(f"rl:validation{tag}", "rl", str(root / "rl"),
                 rl_params(p, mine, rung, str(Path(pre.out) / "model"), out, steps, 0),
                 deps=(pre.name,), cost=rl_cost(rung, steps), total=steps,
                 meta={"rung": rung.name, "pretrain": str(pre.out), "draw": d,
                       "seed": mine.seed})
        jobs += [pre, rl]
    return jobs


def _draw(fit, rl) -> dict:
    """One validation draw: its last evaluation and the law's prediction at what it spent."""
    pts = curve_points(Path(rl.out), Path(rl.meta["pretrain"]), rl.meta["rung"])
    last = max(pts, key=lambda q: q["step"])
    at = float(fit.predict(last["N"], last["pretrain_tokens"], last["rl_flops"]))
    return {"draw": rl.meta.get("draw", 0), "seed": rl.meta.get("seed"), "run": rl.out,
            "measured": last["test_loss"], "se": last["test_loss_se"],
            "realised": {k: last[k] for k in ("N", "pretrain_tokens", "rl_flops", "rl_share",
                                               "C_total", "step")},
            "predicted_at_realised": at, "points": pts}


def validation_result(plan: dict, jobs: list) -> dict:
    """The measured draws against the prediction: the mean level; its SE from the draws' spread
    (SD / sqrt k, never below the evaluation SE of the mean; one draw: its evaluation SE); the
    error at the realised allocation (the draws' mean RL FLOPs) and the law's interval there."""
    import numpy as np

    from rlscale.scaling.joint import JointFit

    fit = JointFit.from_dict(plan["fit"])
    draws = [_draw(fit, j) for j in jobs if j.kind == "rl"]
    k, m = len(draws), np.array([d["measured"] for d in draws])
    eval_se = math.sqrt(sum(d["se"] ** 2 for d in draws)) / k
    sd = float(np.std(m, ddof=1)) if k > 1 else None
    se = max(sd / math.sqrt(k), eval_se) if k > 1 else eval_se
    realised = dict(draws[0]["realised"])  # N, tokens and steps are the same in every draw
    for key in ("rl_flops", "rl_share", "C_total"):
        realised[key] = float(np.mean([d["realised"][key] for d in draws]))
    at = float(np.mean([d["predicted_at_realised"] for d in draws]))
    lo, hi = fit.interval(realised["N"], realised["pretrain_tokens"], realised["rl_flops"])
    mean, pred = float(m.mean()), plan["predicted"]
    return {"budget": plan["budget"], "fit_budget": plan["fit_budget"], "form": plan["form"],
            "predicted": pred["predicted_test_loss"], "predicted_interval": pred["interval"],
            "predicted_allocation": {k: pred[k] for k in ("N", "pretrain_tokens", "rl_flops",
                                                          "rl_share")},
            "realised": realised, "predicted_at_realised": at,
            "interval_at_realised": [lo, hi], "level": fit.level,
            "measured": mean, "se": se, "n_draws": k, "draw_sd": sd, "eval_se": eval_se,
            "error": mean - at, "within_2se": bool(abs(mean - at) <= 2 * se),
            "inside_interval": None if lo is None else bool(lo <= mean <= hi),
            "draws": [{key: v for key, v in d.items() if key != "points"} for d in draws],
            "run": draws[0]["run"], "points": draws[0]["points"]}


def against_best(val: dict, row: dict) -> dict | None:
    """The validation allocation against the best option measured at its budget (a row of
    allocation_points.options_at): did following the law beat the grid? Negative difference:
    the law's allocation measured lower loss. None where nothing measured fits the budget."""
    best = row.get("best")
    if not best:
        return None
    diff = val["measured"] - best["test_loss"]
    se = math.hypot(val["se"], best["test_loss_se"])
    return {**{k: best[k] for k in ("curve", "N", "pretrain_tokens", "rl_share", "C_total",
                                    "step", "test_loss", "test_loss_se")},
            "difference": diff, "se": se, "z": diff / se if se > 0 else None,
            "budget_share_spent": val["realised"]["C_total"] / row["C_total"]}
