"""Where should compute go? The pre-training / RL split on the micro ladder
(`rlscale study --preset allocate`).

For each of the base study preset's smallest rungs, checkpoints at several token budgets: one
warmup-stable-decay run with a decay branch per budget (rlscale.pretrain_loop), or a separate
cosine run per budget (the study's schedule; at the study's high lr a wsd branch fell far below
a cosine run of its tokens: docs/study.md, session 20). GRPO from every checkpoint
records held-out test loss along the way. Every evaluated point is one way to spend a total
C_total = 6 N D_pre + C_RL (C_RL = C_paper). Then:

    budgets     a geometric grid (ratio sqrt(10)) down from the largest measured C_total, kept
                while a budget is at least twice the cheapest checkpoint's pre-training cost
                (fixed before any loss is looked at)
    options     per budget and checkpoint: pure pre-training (its step-0 point) and the RL point
                that spends the most of the budget; `best` is the lowest test loss among them,
                compared with pure pre-training and with the seed study's "RL ~0%" (the first
                RL evaluation of each checkpoint, the smallest RL share measured); `tied`: the
                RL shares of every measured point within 2 SE of the best
    law         rlscale.scaling.joint, its form chosen by leave-one-curve-out error on the
                points of the smaller budgets only; fitted on all points for the frontier
    validation  fit on the points within the second-largest budget, predict the best
                allocation (a ladder rung, tokens, RL FLOPs) at the largest, pre-train and RL
                exactly that in val_draws draws, and compare their mean with the prediction
                (2 SE of the mean, from the draws' spread; and the law's own interval):
                rlscale.allocation_validation

OUT/allocation.json, OUT/allocation_fit.json (`rlscale plan --fit`), OUT/allocation.md,
OUT/allocation_frontier.png, OUT/allocation_share.png. Rerunning skips finished jobs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path

from rlscale.allocation_jobs import base_preset, plan_jobs
from rlscale.allocation_points import budget_grid, checkpoint_gains, collect, options_at
from rlscale.allocation_validation import (against_best, fit_law, validation_jobs,
                                           validation_plan, validation_result)
from rlscale.errors import UserError
from rlscale.files import atomic_write_json, atomic_write_text, read_json

__all__ = ["AllocPreset", "PRESETS", "allocate", "base_preset", "plan_jobs", "run_cli"]


@dataclass(frozen=True)
class AllocPreset:
    name: str
    base: str  # the study preset (rlscale.study_presets.PRESETS) whose task, corpus, rungs and GRPO use
    n_rungs: int = 3  # its smallest rungs
    token_fracs: tuple[float, ...] = (0.25, 0.5, 1.0)  # budgets per rung, x its preset tokens
    decay_frac: float = 0.2  # each budget's decay branch, share of its steps
    rl_steps: int = 30
    rl_steps_by_budget: tuple[int, ...] = ()  # GRPO steps from each budget's checkpoints, one
    # per token_frac in ascending order (empty: rl_steps from every checkpoint)
    eval_every: int = 5
    heldout: int = 200  # held-out problems x samples (T 0.7): the test loss
    eval_samples: int = 4
    n_boot: int = 100
    max_val_steps: int = 120  # the validation run's GRPO steps at most
    schedule: str = "wsd"  # wsd: one run per rung, a decay branch per budget; cosine: every
    # budget a separate run with the study's schedule (costs ~1.45x the tokens at 4 budgets)
    seed: int | None = None  # a replicate: replaces the base preset's seed (train split,
    # pre-training initialisation and batch order, RL runs; the held-out problems do not move)
    val_tokens_x: float = 0.0  # the validation's pre-training tokens at most this x the largest
    # measured budget (0: no cap; the rest of its compute goes to RL, up to max_val_steps)
    val_draws: int = 1  # the validation allocation pre-trained and RL'd this many times
    # (draw d seeded seed + 1000 d): its level is their mean, its SE their spread's
    # (rlscale.allocation_validation); a finished run rerun with more draws adds them

    def __post_init__(self):
        if self.rl_steps_by_budget and len(self.rl_steps_by_budget) != len(self.token_fracs):
            raise ValueError(f"{self.name}: rl_steps_by_budget needs one entry per token_frac")
        if self.val_draws < 1:
            raise ValueError(f"{self.name}: val_draws must be >= 1")

    def steps_at(self, i: int) -> int:
        """GRPO steps from the checkpoints of the i-th smallest budget."""
        return self.rl_steps_by_budget[i] if self.rl_steps_by_budget else self.rl_steps


PRESETS = {
    # three rungs x three budgets at 1/3, 2/3 and all of the cpu study's tokens (the 60k rung
    # crosses its copy transition between 2M and 3M tokens: docs/study.md), 30 GRPO steps from
    # each checkpoint; the decay branch is the last 30% of a budget's steps, the cpu study's
    # long-row share; the test loss on 800 held-out problems x 1 sample, as the cpu study's
    # (session 9: SE 0.015 against 0.025 for 200 x 4 at the same 800 samples)
    "allocate": AllocPreset("allocate", "cpu", token_fracs=(1 / 3, 2 / 3, 1.0), rl_steps=30,
                            heldout=800, eval_samples=1, max_val_steps=60, decay_frac=0.3),
    "allocate-smoke": AllocPreset("allocate-smoke", "smoke", n_rungs=2, rl_steps=4,
                                  eval_every=2, heldout=24, eval_samples=2, n_boot=10,
                                  max_val_steps=6, val_draws=2),
    # the same question on the organism of sessions 17-31 (cpu-words: its task, corpus, lr and
    # 120 GRPO steps from every checkpoint, eval every 10), its budgets over one decade of
    # tokens, four geometric steps from 1M to 10M (2x cpu-words' 5M): session 10's grid (1-3M)
    # sat below every rung's competence transition, and its law, extrapolated 7x in tokens, mispredicted
    # by 0.38. The validation's tokens are capped at 2x the largest budget so that one run fits
    # a session. Every budget is its own cosine run, as the study's: at cpu-words' lr a wsd
    # branch at 4.64M tokens answered 0.17-0.23 worse than a cosine run of the same tokens
    # (20k 0.086 vs 0.254, 200k 0.181 vs 0.412; docs/study.md, "Session 20", check 50).
    "allocate-words": AllocPreset("allocate-words", "cpu-words", schedule="cosine",
                                  token_fracs=(0.2, 0.2 * 10 ** (1 / 3), 0.2 * 10 ** (2 / 3), 2.0),
                                  rl_steps=120, eval_every=10, heldout=800, eval_samples=1,
                                  max_val_steps=120, decay_frac=0.3, val_tokens_x=2.0),
}
# allocate-words with 4x the GRPO steps (480) from the two largest budgets' checkpoints, the
# ones past their competence transition in runs 51-52 (docs/study.md, session 20), where the best
# measured allocation spent the most RL measured (120 steps, ~10%) at every budget: so that the
# RL share can be bounded from above. The validation run may take as many steps. Three
# validation draws (session 25, before any draw ran: runs 54, 65 and 66 had measured the same
# allocation 0.201 / 0.099 / 0.142, one draw each); measured since: within one experiment the
# draws agree to ~0.01 in two of three seeds, and in the third one draw sits 0.08 above the
# other two. On two workers the second draw runs beside the first; the third adds ~10 min
# (run 67: 51 min in all).
PRESETS["allocate-words-long"] = replace(PRESETS["allocate-words"], name="allocate-words-long",
                                         rl_steps_by_budget=(120, 120, 480, 480),
                                         max_val_steps=480, val_draws=3)
# allocate-words-long with the validation's pre-training capped at the grid's largest token
# budget (10M) instead of 2x it: the law tested where the grid pins its tokens. Pilot 72
# (docs/study.md, session 26) found the validation's misses to be the 2x extrapolation in
# tokens (with one draw at the validation's tokens in its fit, the law held the other draws'
# level within 2 SE in 4 of 5 seeds); this preset is its test on fresh runs (session 30).
PRESETS["allocate-words-seen"] = replace(PRESETS["allocate-words-long"],
                                         name="allocate-words-seen", val_tokens_x=1.0)


# ---------------------------------------------------------------- the experiment
def allocate(p: AllocPreset, out, workers: int | None = None, progress: bool | None = None) -> dict:
    """Run (or resume) the allocation experiment into out; returns allocation.json's content."""
    import sys
    import time

    import torch

    from rlscale import allocation_report as rep
    from rlscale import scheduler, study_plan
    from rlscale.corpus import corpus_tokenizer
    from rlscale.study_move import relocate
    from rlscale.tasks import load_task

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base, rungs = base_preset(p)
    settings = out / "allocation_settings.json"
    mine = {"preset": dataclasses.asdict(p), "base": base.name, "rungs": [r.name for r in rungs]}
    mine = read_json_roundtrip(mine)
    old = read_json(settings) if settings.is_file() else None
    if old is not None:  # a field the saved run predates counts as its default
        defaults = read_json_roundtrip(dataclasses.asdict(AllocPreset("", "")))
        old = {**old, "preset": {**defaults, **old.get("preset", {})}}
    if old is not None and _identity(old, mine) != _identity(mine, mine):
        raise UserError(f"{settings}: {out} holds an allocation study with other settings; "
                        f"use another --out")
    relocate(out, (old or {}).get("root"))  # a copied or moved study's paths follow it
    wall = (old or {}).get("wall_s", 0.0)
    t0 = time.perf_counter()
    progress = sys.stderr.isatty() if progress is None else progress
    workers = workers or base.workers
    threads = 1 if workers > 1 and not torch.cuda.is_available() else 0
    try:
        study_plan.write_task(base, out)
        corpus_tokenizer(load_task(str(out / "task"), seed=base.seed).train,  # warm the cache
                         numbers=base.numbers)
        jobs = plan_jobs(p, out)
        scheduler.schedule(jobs, workers, threads, progress)
        points = collect(jobs)
        budgets = budget_grid(points)
        if len(budgets) < 2:
            raise UserError(f"{out}: the measured compute spans too little for two budgets")
        plan = validation_plan(p, points, budgets, out)
        vjobs = validation_jobs(p, plan, points, out)
        scheduler.schedule(vjobs, workers, threads, progress)
        val = validation_result(plan, vjobs)
        fit = fit_law(points, plan["form"], sorted({q["N"] for q in points}), p.n_boot)
        atomic_write_json(out / "allocation_fit.json", fit.to_dict())
        result = summarise(p, base.seed, points, budgets, fit, plan, val)
    finally:
        wall += time.perf_counter() - t0
        atomic_write_json(settings, {**mine, "root": str(out), "wall_s": wall})
    result["wall_s"] = wall
    result["plots"] = rep.plots(result, points, fit, val, out)
    atomic_write_json(out / "allocation.json", result)
    atomic_write_text(out / "allocation.md", rep.markdown(result))
    return result


def _identity(settings: dict, keys) -> dict:
    """The settings a finished run must share with its rerun: all but the number of validation
    draws (more draws extend it; fewer leave the extra ones on disk, unread)."""
    out = {k: settings.get(k) for k in keys}
    out["preset"] = {k: v for k, v in (out.get("preset") or {}).items() if k != "val_draws"}
    return out


def read_json_roundtrip(obj):
    import json

    from rlscale.files import dumps

    return json.loads(dumps(obj))  # tuples become lists, as read back from disk


def summarise(p: AllocPreset, seed: int, points, budgets, fit, plan, val) -> dict:
    from rlscale.scaling.frontier import frontier

    rows = []
    for b in budgets:
        row = options_at(points, b)
        row["fitted"] = frontier(fit, b)
        rows.append(row)
    law = {"name": f"joint_{fit.form}", "form": fit.form, "params": fit.params,
           "intervals": fit.intervals, "flags": fit.flags, "r2": fit.r2, "rmse_log": fit.rmse_log,
           "n_points": fit.n_points, "n_curves": fit.n_curves, "level": fit.level,
           "token_error": fit.token_error,
           "form_chosen_by": "leave-one-curve-out mean squared log error on the points within "
                             "the second-largest budget (the validation's fitting data)",
           "form_scores": plan["form_scores"]}
    return {"preset": p.name, "seed": seed, "budgets": rows, "law": law,
            "validation": {**{k: v for k, v in val.items() if k != "points"},
                           "vs_measured_best": against_best(val, rows[-1])},
            "held_out": plan.get("held_out"), "checkpoints": checkpoint_gains(points),
            "n_points": len(points), "conventions": {
                "C_total": "6 N D_pre + C_RL; C_RL = C_paper (6 N T over RL steps)",
                "test_loss": "1 - pass@1 at temperature 0.7 on the held-out split"}}


# ---------------------------------------------------------------- CLI (via `rlscale study`)
def run_cli(args) -> int:
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers: {args.workers}: must be >= 1")
    p = PRESETS[args.preset]
    res = allocate(p if args.seed is None else replace(p, seed=args.seed), args.out,
                   args.workers, args.progress)
    print(f"allocation: {Path(args.out) / 'allocation.md'}; fit: "
          f"{Path(args.out) / 'allocation_fit.json'}; wall time {res['wall_s']:.0f} s")
    return 0
