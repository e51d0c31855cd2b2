"""The allocation experiment's measured points (rlscale.allocation): every evaluated RL step as
one way to spend a total compute, the budget grid, the options at a budget, and a fitted law
scored on the points it did not see. Pure functions over plain dicts: no models."""

from __future__ import annotations

import math
from pathlib import Path

from rlscale.files import read_json, read_jsonl
from rlscale.flops import pretrain_flops


def curve_points(run_dir: Path, pretrain_dir: Path, rung: str) -> list[dict]:
    """Every evaluated step of one RL run as an allocation: N, D_pre, C_RL, C_total, loss, SE."""
    pre = read_json(pretrain_dir / "pretrain.json")
    n, d = int(pre["N"]), int(pre["tokens"])
    out = []
    for r in read_jsonl(run_dir / "metrics.jsonl", tolerate_torn_tail=True):
        if r.get("test_loss") is None:
            continue
        c_rl, c_pre = float(r["C_paper"]), pretrain_flops(n, d)
        out.append({"curve": run_dir.name, "rung": rung, "N": n, "pretrain_tokens": d,
                    "pretrain_flops": c_pre, "rl_flops": c_rl, "step": int(r["step"]),
                    "C_total": c_pre + c_rl, "rl_share": c_rl / (c_pre + c_rl),
                    "test_loss": float(r["test_loss"]),
                    "test_loss_se": float(r.get("test_loss_se") or 0.0)})
    return out


def collect(jobs) -> list[dict]:
    pts = []
    for j in jobs:
        if j.kind == "rl" and (Path(j.out) / "metrics.jsonl").is_file():
            pts += curve_points(Path(j.out), Path(j.meta["pretrain"]), j.meta["rung"])
    return pts


def budget_grid(points: list[dict]) -> list[float]:
    """Geometric, ratio sqrt(10), down from the largest C_total while >= 2x the cheapest
    checkpoint (so every budget has options); ascending."""
    hi = max(p["C_total"] for p in points)
    lo = 2.0 * min(p["pretrain_flops"] for p in points)
    grid, b = [], hi
    while b >= lo:
        grid.append(b)
        b /= math.sqrt(10.0)
    return sorted(grid)


def _option(p: dict, kind: str) -> dict:
    keys = ("curve", "rung", "N", "pretrain_tokens", "rl_flops", "rl_share", "C_total", "step",
            "test_loss", "test_loss_se")
    return {"kind": kind, **{k: p[k] for k in keys}}


def options_at(points: list[dict], budget: float) -> dict:
    """The measured options at a budget, the best, and how much worse the two fixed recipes are.

    Per checkpoint that fits: pure pre-training (its step-0 point), the smallest RL measured (its
    first RL evaluation: the seed study's "RL ~0%") and the RL point that spends the most of
    the budget."""
    ok = [p for p in points if p["C_total"] <= budget * (1 + 1e-9)]
    opts = []
    for curve in sorted({p["curve"] for p in ok}):
        mine = sorted((p for p in ok if p["curve"] == curve), key=lambda p: p["step"])
        rl = [p for p in mine if p["step"] > 0]
        if mine[0]["step"] == 0:
            opts.append(_option(mine[0], "pretrain_only"))
        if rl:
            opts.append(_option(rl[0], "rl_minimal"))
        if len(rl) > 1:
            opts.append(_option(rl[-1], "rl"))
    if not opts:
        return {"C_total": budget, "options": [], "best": None}
    best = min(opts, key=lambda o: o["test_loss"])
    res = {"C_total": budget, "options": opts, "best": best}
    for kind in ("pretrain_only", "rl_minimal"):
        cands = [o for o in opts if o["kind"] == kind]
        if cands:
            res[kind] = _against(min(cands, key=lambda c: c["test_loss"]), best)
    res["tied"] = tied_with(ok, best)
    return res


def tied_with(points: list[dict], best: dict) -> dict:
    """The measured points (every evaluated step, spending at most the budget) whose loss is
    within 2 combined SE of the best option's: the range of RL shares the data cannot tell from
    the best. An RL curve that has plateaued puts many of its steps here, so the range is the
    measured uncertainty of the compute-optimal RL share."""
    tied = [p for p in points if p["test_loss"] - best["test_loss"]
            <= 2 * math.hypot(p["test_loss_se"], best["test_loss_se"])]
    shares = [p["rl_share"] for p in tied]
    return {"n_points": len(tied), "of": len(points), "rl_share": [min(shares), max(shares)],
            "curves": sorted({p["curve"] for p in tied})}


def _against(o: dict, best: dict) -> dict:
    return {**o, "worse_by": o["test_loss"] - best["test_loss"],
            "worse_by_se": math.hypot(o["test_loss_se"], best["test_loss_se"])}


def scored(fit, pts: list[dict]) -> dict:
    """A fit against measured points: mean absolute relative error, the share within 2 of each
    point's evaluation SE, the share inside the law's own interval (`JointFit.interval`, as
    `frontier` states it), and the median signed error in SE (positive: measured above)."""
    import numpy as np

    if not pts:
        return {"n_points": 0}
    pred = np.array([float(fit.predict(q["N"], q["pretrain_tokens"], q["rl_flops"]))
                     for q in pts])
    meas = np.array([q["test_loss"] for q in pts])
    se = np.array([q["test_loss_se"] for q in pts])
    res = {"n_points": len(pts), "mare": float(np.mean(np.abs(pred - meas) / meas)),
           "within_2se": float(np.mean(np.abs(pred - meas) <= 2 * se))}
    if (se > 0).any():
        res["median_z"] = float(np.median((meas - pred)[se > 0] / se[se > 0]))
    if fit.boot:
        iv = [fit.interval(q["N"], q["pretrain_tokens"], q["rl_flops"]) for q in pts]
        res["inside_interval"] = float(np.mean([lo <= m <= hi for (lo, hi), m in zip(iv, meas)]))
    return res


def held_out(fit, points: list[dict], fit_budget: float, val_budget: float) -> dict:
    """The fit (on the points within fit_budget) scored on the measured points it did not see,
    in all and split by how far they lie: points of a checkpoint the fit saw (only their RL
    reaches past it) and of checkpoints it never saw (their pre-training tokens lie past the
    fit's for that rung); and as a chooser: of the measured options at val_budget, the one it
    predicts best, against the measured best (regret: how much worse the law's pick measured)."""
    seen = {(q["N"], q["pretrain_tokens"]) for q in points
            if q["C_total"] <= fit_budget * (1 + 1e-9)}
    unseen = [q for q in points if q["C_total"] > fit_budget * (1 + 1e-9)]
    res = scored(fit, unseen)
    if unseen:
        known = [(q["N"], q["pretrain_tokens"]) in seen for q in unseen]
        res["by_checkpoint"] = {
            "seen": scored(fit, [q for q, k in zip(unseen, known) if k]),
            "unseen": scored(fit, [q for q, k in zip(unseen, known) if not k])}
    opts = options_at(points, val_budget)["options"]
    if opts:
        def predicted(o):
            return float(fit.predict(o["N"], o["pretrain_tokens"], o["rl_flops"]))

        pick = min(opts, key=predicted)
        best = min(opts, key=lambda o: o["test_loss"])
        res |= {"n_options": len(opts), "law_pick": {**pick, "predicted": predicted(pick)},
                "measured_best": best, "regret": pick["test_loss"] - best["test_loss"],
                "regret_se": math.hypot(pick["test_loss_se"], best["test_loss_se"])}
    return res


def checkpoint_gains(points: list[dict]) -> list[dict]:
    """Per checkpoint (RL curve): its accuracy before RL and at its last evaluation, and the gain
    in combined standard errors (None where both ends have no spread); sorted by rung size,
    then tokens."""
    rows = []
    for curve in sorted({q["curve"] for q in points}):
        mine = sorted((q for q in points if q["curve"] == curve), key=lambda q: q["step"])
        first, last = mine[0], mine[-1]
        se = math.hypot(first["test_loss_se"], last["test_loss_se"])
        gain = first["test_loss"] - last["test_loss"]
        rows.append({"curve": curve, "rung": first["rung"], "N": first["N"],
                     "pretrain_tokens": first["pretrain_tokens"], "steps": last["step"],
                     "before": 1 - first["test_loss"], "after": 1 - last["test_loss"],
                     "gain": gain, "gain_se": gain / se if se > 0 else None})
    return sorted(rows, key=lambda r: (r["N"], r["pretrain_tokens"]))

