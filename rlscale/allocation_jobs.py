"""The allocation experiment's jobs (rlscale.allocation): the base study preset's rungs, a
pre-training run per rung and budget, and GRPO from every checkpoint. Plans only; the
scheduler runs them."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from pathlib import Path

from rlscale.errors import UserError


def base_preset(p):
    """(the study preset p is built on, with p's seed if set; its p.n_rungs smallest rungs)."""
    from rlscale.study_presets import PRESETS as STUDY

    base = STUDY[p.base] if p.seed is None else replace(STUDY[p.base], seed=p.seed)
    rungs = sorted(base.rungs, key=r_n)[: p.n_rungs]
    return base, rungs


def r_n(rung) -> int:
    """A study rung's approximate non-embedding parameters (for ordering and job costs)."""
    from rlscale.models import LADDER, rung_name
    from rlscale.study_plan import approx_n

    return approx_n(LADDER[rung_name(rung.name)])


def pretrain_cost(rung, tokens: int) -> float:
    """The scheduler's estimate of a pre-training job (relative units: longest first)."""
    return tokens * (r_n(rung) + 60_000) * 9e-10


def rl_cost(rung, steps: int) -> float:
    """The scheduler's estimate of a GRPO job, in pretrain_cost's units."""
    return steps * (r_n(rung) + 5e4) * 2e-4


def pretrain_params(base, rung, out: Path, tokens: int, budgets: list[int], decay_frac: float,
                    schedule: str = "wsd"):
    """`rlscale pretrain`'s parameters for one run of a rung (base: the study preset, whose seed
    seeds the run); returns (params, validated PretrainConfig)."""
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


def rl_params(p, base, rung, model: str, out: Path, steps: int, eval_every: int) -> dict:
    """`rlscale train`'s config for GRPO from one checkpoint (seeded by base.seed)."""
    from rlscale.grpo.config import TrainConfig

    d = dict(model=model, task=str(out / "task"), lr=rung.rl_lr, batch_size=base.batch_size,
             group_size=base.group_size, mini_batch_size=base.batch_size, steps=steps,
             reward="custom_flexible", max_new_tokens=base.max_new_tokens, eval_every=eval_every,
             heldout=p.heldout, eval_samples=p.eval_samples, eval_temperature=0.7,
             temperature=1.0, seed=base.seed, data_seed=base.seed,
             checkpoint_every=max(5, steps // 4))
    return TrainConfig.from_dict(d).validate().to_dict()


def plan_jobs(p, out: Path) -> list:
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
            params, cfg = pretrain_params(base, r, out, mine[-1], mine, p.decay_frac, p.schedule)
            rows = cfg.batch_size * cfg.seq_len
            own = "" if p.schedule == "wsd" else f"-{tokens_tag(cfg.steps() * rows)}"
            pre = Job(f"pretrain:{tag}{own.replace('-', ':')}", "pretrain",
                      str(out / "pretrain" / f"{tag}{own}"), params,
                      cost=pretrain_cost(r, mine[-1]), total=cfg.steps(),
                      meta={"rung": r.name})
            jobs.append(pre)
            first = budgets.index(mine[0])  # the budget index of this run's first checkpoint
            for i, end in enumerate(cfg.budget_steps(), start=first):
                tt, steps = tokens_tag(end * rows), p.steps_at(i)
                model = (Path(pre.out) / "branches" / tt if p.schedule == "wsd"
                         else Path(pre.out)) / "model"
                jobs.append(Job(f"rl:{tag}:{tt}", "rl", str(out / "runs" / f"{tag}-{tt}"),
                                rl_params(p, base, r, str(model), out, steps, p.eval_every),
                                deps=(pre.name,), cost=rl_cost(r, steps),
                                total=steps,
                                meta={"rung": r.name, "pretrain": str(model.parent)}))
    return jobs
