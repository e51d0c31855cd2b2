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
                exactly that, and compare the measured loss with the prediction (2 SE)

OUT/allocation.json, OUT/allocation_fit.json (`rlscale plan --fit`), OUT/allocation.md,
OUT/allocation_frontier.png, OUT/allocation_share.png. Rerunning skips finished jobs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path

from rlscale.allocation_points import (budget_grid, checkpoint_gains, collect, curve_points,
                                       held_out, options_at)
from rlscale.errors import UserError
from rlscale.files import atomic_write_json, atomic_write_text, read_json


@dataclass(frozen=True)
class AllocPreset:
    name: str
    base: str  # the study preset (rlscale.study_plan.PRESETS) whose task, corpus, rungs and GRPO use
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

    def __post_init__(self):
        if self.rl_steps_by_budget and len(self.rl_steps_by_budget) != len(self.token_fracs):
            raise ValueError(f"{self.name}: rl_steps_by_budget needs one entry per token_frac")

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
                                  max_val_steps=6),
    # the same question on the default organism (cpu-words: its task, corpus, lr and 120 GRPO
    # steps from every checkpoint, eval every 10), its budgets over one decade of tokens, four
    # geometric steps from 1M to 10M (2x the study's 5M): session 10's grid (1-3M) sat below
    # every rung's competence transition, and its law, extrapolated 7x in tokens, mispredicted
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
# RL share can be bounded from above. The validation run may take as many steps.
PRESETS["allocate-words-long"] = replace(PRESETS["allocate-words"], name="allocate-words-long",
                                         rl_steps_by_budget=(120, 120, 480, 480),
                                         max_val_steps=480)


def base_preset(p: AllocPreset):
    from rlscale.models import LADDER, rung_name
    from rlscale.study_plan import PRESETS as STUDY

    base = STUDY[p.base] if p.seed is None else replace(STUDY[p.base], seed=p.seed)
    rungs = sorted(base.rungs, key=lambda r: _approx_n(LADDER[rung_name(r.name)]))[: p.n_rungs]
    return base, rungs


def _approx_n(rung) -> int:
    return rung.layers * (4 * rung.hidden**2 + 3 * rung.hidden * rung.intermediate)


# ---------------------------------------------------------------- jobs
def _pretrain_params(base, rung, out: Path, tokens: int, budgets: list[int], decay_frac: float,
                     schedule: str = "wsd"):
    from rlscale.pretrain import PretrainConfig

    names = {f.name for f in dataclasses.fields(PretrainConfig)}
    rows = base.pretrain_batch * base.seq_len
    steps = max(1, tokens // rows)
    params = dict(rung=rung.name, task=str(out / "task"), tokens=tokens, lr=rung.pretrain_lr,
                  batch_size=base.pretrain_batch, seq_len=base.seq_len, seed=base.seed,
                  schedule=schedule,
                  budgets=",".join(str(b) for b in budgets if b != tokens and schedule == "wsd"),
                  decay_frac=decay_frac, checkpoint_every=max(10, steps // 10),
                  log_every=max(1, min(10, steps // 20)))
    # the base study's corpus (in wsd each decay is the long phase)
    for knob in ("slip_frac", "direct_frac", "direct_style", "plain_frac", "blank_join_frac",
                 "short_seq_len", "long_frac", "numbers", "direct_frac_other"):
        if knob in names and hasattr(base, knob):
            params[knob] = getattr(base, knob)
    cfg = PretrainConfig(**params).validate()
    return params, cfg


def _rl_params(p: AllocPreset, base, rung, model: str, out: Path, steps: int, eval_every: int):
    from rlscale.grpo.config import TrainConfig

    d = dict(model=model, task=str(out / "task"), lr=rung.rl_lr, batch_size=base.batch_size,
             group_size=base.group_size, mini_batch_size=base.batch_size, steps=steps,
             reward="custom_flexible", max_new_tokens=base.max_new_tokens, eval_every=eval_every,
             heldout=p.heldout, eval_samples=p.eval_samples, eval_temperature=0.7,
             temperature=1.0, seed=base.seed, data_seed=base.seed,
             checkpoint_every=max(5, steps // 4))
    return TrainConfig.from_dict(d).validate().to_dict()


def plan_jobs(p: AllocPreset, out: Path) -> list:
    """Pre-training (wsd: one run per rung, a branch per budget; cosine: one run per budget) and
    GRPO per checkpoint."""
    from rlscale.pretrain_loop import tokens_tag
    from rlscale.study_plan import Job, rung_tag

    base, rungs = base_preset(p)
    jobs = []
    for r in rungs:
        tag = rung_tag(r.name)
        budgets = sorted({max(1, round(f * r.tokens)) for f in p.token_fracs})
        if p.rl_steps_by_budget and len(budgets) != len(p.token_fracs):
            raise UserError(f"{p.name}: two token_fracs give {r.name} the same budget")
        runs = [budgets] if p.schedule == "wsd" else [[b] for b in budgets]
        for mine in runs:
            params, cfg = _pretrain_params(base, r, out, mine[-1], mine, p.decay_frac, p.schedule)
            rows = cfg.batch_size * cfg.seq_len
            own = "" if p.schedule == "wsd" else f"-{tokens_tag(cfg.steps() * rows)}"
            pre = Job(f"pretrain:{tag}{own.replace('-', ':')}", "pretrain",
                      str(out / "pretrain" / f"{tag}{own}"), params,
                      cost=mine[-1] * (r_n(r) + 60_000) * 9e-10, total=cfg.steps(),
                      meta={"rung": r.name})
            jobs.append(pre)
            first = budgets.index(mine[0])  # the budget index of this run's first checkpoint
            for i, end in enumerate(cfg.budget_steps(), start=first):
                tt, steps = tokens_tag(end * rows), p.steps_at(i)
                model = (Path(pre.out) / "branches" / tt if p.schedule == "wsd"
                         else Path(pre.out)) / "model"
                jobs.append(Job(f"rl:{tag}:{tt}", "rl", str(out / "runs" / f"{tag}-{tt}"),
                                _rl_params(p, base, r, str(model), out, steps, p.eval_every),
                                deps=(pre.name,), cost=steps * (r_n(r) + 5e4) * 2e-4,
                                total=steps,
                                meta={"rung": r.name, "pretrain": str(model.parent)}))
    return jobs


def r_n(rung) -> int:
    from rlscale.models import LADDER, rung_name

    return _approx_n(LADDER[rung_name(rung.name)])


# ---------------------------------------------------------------- fit and validation
def joint_data(points: list[dict], source: str = "allocation"):
    from rlscale.scaling.joint import JointData

    return JointData.from_rows(points, source)


def fit_law(points: list[dict], form: str, sizes: list[float], n_boot: int, seed: int = 0):
    from rlscale.scaling.joint import fit_joint

    fit = fit_joint(joint_data(points), form, n_boot=n_boot, seed=seed)
    fit.n_choices = sorted(float(s) for s in sizes)
    return fit


def validation_plan(p: AllocPreset, points: list[dict], budgets: list[float], out: Path) -> dict:
    """Fit on the smaller budgets (form chosen there too), predict the best allocation at the
    largest budget over the rungs of the experiment. Written once to OUT/allocation_validation_plan.json
    (a rerun uses it as it is)."""
    from rlscale.scaling.joint import choose_form, frontier

    path = out / "allocation_validation_plan.json"
    if path.is_file():
        return read_json(path)
    fit_budget, val_budget = budgets[-2], budgets[-1]
    fit_pts = [q for q in points if q["C_total"] <= fit_budget * (1 + 1e-9)]
    form, scores = choose_form(joint_data(fit_pts, "fitting points"))
    sizes = sorted({q["N"] for q in points})
    fit = fit_law(fit_pts, form, sizes, p.n_boot)
    d_max = p.val_tokens_x * max(q["pretrain_tokens"] for q in points) if p.val_tokens_x else None
    pred = frontier(fit, val_budget, d_max=d_max)
    plan = {"fit_budget": fit_budget, "budget": val_budget, "form": form, "form_scores": scores,
            "n_fit_points": len(fit_pts), "fit": fit.to_dict(), "predicted": pred,
            "held_out": held_out(fit, points, fit_budget, val_budget)}
    atomic_write_json(path, plan)
    return plan


def validation_jobs(p: AllocPreset, plan: dict, points: list[dict], out: Path) -> list:
    """Pre-train the predicted rung for the predicted tokens, then GRPO for the predicted RL
    FLOPs (steps from the RL FLOPs per step this rung measured)."""
    from rlscale.study_plan import Job

    base, rungs = base_preset(p)
    pred = plan["predicted"]
    n_of = {}
    for q in points:
        n_of.setdefault(q["rung"], q["N"])
    rung = next(r for r in rungs if n_of.get(r.name) == pred["N"])
    rows = base.pretrain_batch * base.seq_len
    tokens = max(rows * 2, int(round(pred["pretrain_tokens"] / rows)) * rows)
    params, cfg = _pretrain_params(base, rung, out, tokens, [tokens], p.decay_frac, p.schedule)
    pre = Job("pretrain:validation", "pretrain", str(out / "validation" / "pretrain"), params,
              cost=tokens * (r_n(rung) + 60_000) * 9e-10, total=cfg.steps(),
              meta={"rung": rung.name})
    per_step = [q["rl_flops"] / q["step"] for q in points if q["rung"] == rung.name and q["step"]]
    steps = round(pred["rl_flops"] / (sum(per_step) / len(per_step))) if per_step else 0
    steps = min(p.max_val_steps, max(1, steps))
    model = str(Path(pre.out) / "model")
    rl = Job("rl:validation", "rl", str(out / "validation" / "rl"),
             _rl_params(p, base, rung, model, out, steps, 0), deps=(pre.name,),
             cost=steps * (r_n(rung) + 5e4) * 2e-4, total=steps,
             meta={"rung": rung.name, "pretrain": str(pre.out)})
    return [pre, rl]


def validation_result(plan: dict, jobs: list) -> dict:
    """The measured validation run against the prediction (at the realised allocation too)."""
    from rlscale.scaling.joint import JointFit

    rl = jobs[-1]
    pts = curve_points(Path(rl.out), Path(rl.meta["pretrain"]), rl.meta["rung"])
    last = max(pts, key=lambda q: q["step"])
    fit = JointFit.from_dict(plan["fit"])
    at = float(fit.predict(last["N"], last["pretrain_tokens"], last["rl_flops"]))
    pred = plan["predicted"]
    se = last["test_loss_se"]
    return {"budget": plan["budget"], "fit_budget": plan["fit_budget"], "form": plan["form"],
            "predicted": pred["predicted_test_loss"], "predicted_interval": pred["interval"],
            "predicted_allocation": {k: pred[k] for k in ("N", "pretrain_tokens", "rl_flops",
                                                          "rl_share")},
            "realised": {k: last[k] for k in ("N", "pretrain_tokens", "rl_flops", "rl_share",
                                               "C_total", "step")},
            "predicted_at_realised": at, "measured": last["test_loss"], "se": se,
            "error": last["test_loss"] - at,
            "within_2se": bool(abs(last["test_loss"] - at) <= 2 * se),
            "run": rl.out, "points": pts}


# ---------------------------------------------------------------- the experiment
def allocate(p: AllocPreset, out, workers: int | None = None, progress: bool | None = None) -> dict:
    """Run (or resume) the allocation experiment into out; returns allocation.json's content."""
    import sys
    import time

    import torch

    from rlscale import allocation_report as rep
    from rlscale import scheduler, study_plan
    from rlscale.pretrain import corpus_tokenizer
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
    if old is not None and {k: old.get(k) for k in mine} != mine:
        raise UserError(f"{settings}: {out} holds an allocation study with other settings; "
                        f"use another --out")
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
        result = summarise(p, points, budgets, fit, plan, val)
    finally:
        wall += time.perf_counter() - t0
        atomic_write_json(settings, {**mine, "wall_s": wall})
    result["wall_s"] = wall
    result["plots"] = rep.plots(result, points, fit, val, out)
    atomic_write_json(out / "allocation.json", result)
    atomic_write_text(out / "allocation.md", rep.markdown(result))
    return result


def read_json_roundtrip(obj):
    import json

    from rlscale.files import dumps

    return json.loads(dumps(obj))  # tuples become lists, as read back from disk


def summarise(p: AllocPreset, points, budgets, fit, plan, val) -> dict:
    from rlscale.scaling.joint import frontier

    rows = []
    for b in budgets:
        row = options_at(points, b)
        row["fitted"] = frontier(fit, b)
        rows.append(row)
    law = {"name": f"joint_{fit.form}", "form": fit.form, "params": fit.params,
           "intervals": fit.intervals, "flags": fit.flags, "r2": fit.r2, "rmse_log": fit.rmse_log,
           "n_points": fit.n_points, "n_curves": fit.n_curves, "level": fit.level,
           "form_chosen_by": "leave-one-curve-out mean squared log error on the points within "
                             "the second-largest budget (the validation's fitting data)",
           "form_scores": plan["form_scores"]}
    return {"preset": p.name, "seed": base_preset(p)[0].seed, "budgets": rows, "law": law,
            "validation": {k: v for k, v in val.items() if k != "points"},
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
