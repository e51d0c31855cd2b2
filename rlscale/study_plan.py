"""The study's plan: every job of `rlscale study` with its inputs and cost, from a preset
(rlscale.study_presets).

Lower than the scheduler (rlscale.scheduler) and the study driver (rlscale.study), so the
allocation experiment (rlscale.allocation) plans its jobs on the same presets without a cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rlscale.files import atomic_write_text, dumps
from rlscale.study_evals import eval_cost, eval_specs, eval_units
from rlscale.study_presets import Preset, Rung

KSHOTS = (0, 1, 2, 3, 4, 5)


# ---------------------------------------------------------------- jobs
@dataclass
class Job:
    name: str  # e.g. "pretrain:micro:200k", "rl:200k", "baseline:micro:20k"
    kind: str  # pretrain | baseline | rl
    out: str  # the job's directory
    params: dict  # what the worker needs (plain data: it crosses a process boundary)
    deps: tuple[str, ...] = ()
    cost: float = 1.0  # estimated seconds, for ordering and the overall bar
    total: int = 1  # units of its progress bar (steps / problems)
    meta: dict = field(default_factory=dict)  # for the report: rung, tau, reward


def rung_tag(rung: str) -> str:
    return rung.removeprefix("micro:")


def plan(preset: Preset, out: Path) -> list[Job]:
    """Every job of the study, with its inputs and estimated cost."""
    from rlscale.models import LADDER, rung_name

    jobs: list[Job] = []
    for r in preset.rungs:
        n = approx_n(LADDER[rung_name(r.name)])
        jobs += _base_jobs(preset, r, n, out)
        for arm in _rl_arms(preset, r):
            jobs.append(_rl_job(preset, r, n, out, *arm))
            if arm[-1]:  # a main run: evaluated after RL
                jobs.append(_evals_job(preset, r, n, out, jobs[-1]))
    return jobs


def _base_jobs(preset: Preset, r: Rung, n: int, out: Path) -> list[Job]:
    """Pre-training, the k-shot baseline and the pre-RL evals (pass@k, transfer) of a rung."""
    tag = rung_tag(r.name)
    steps = max(1, r.tokens // (preset.pretrain_batch * preset.seq_len))
    model = str(out / "pretrain" / tag / "model")
    pre = Job(f"pretrain:{tag}", "pretrain", str(out / "pretrain" / tag),
              dict(rung=r.name, task=str(out / "task"), tokens=r.tokens, lr=r.pretrain_lr,
                   batch_size=preset.pretrain_batch, seq_len=preset.seq_len,
                   slip_frac=preset.slip_frac, direct_frac=preset.direct_frac, seed=preset.seed,
                   direct_style=preset.direct_style, numbers=preset.numbers,
                   direct_frac_other=preset.direct_frac_other,
                   plain_frac=preset.plain_frac, short_seq_len=preset.short_seq_len,
                   long_frac=preset.long_frac, blank_join_frac=preset.blank_join_frac,
                   matmul_precision=preset.pretrain_matmul, schedule=preset.pretrain_schedule,
                   checkpoint_every=max(10, steps // 10), log_every=max(1, min(10, steps // 20))),
              cost=r.tokens * (n + 60_000) * 7e-10, total=steps, meta={"rung": r.name})
    mid = min(preset.kshot_mid_problems or preset.kshot_problems, preset.kshot_problems)
    fewer = tuple((k, mid) for k in KSHOTS[1:-1]) if mid < preset.kshot_problems else ()
    n_at = {k: dict(fewer).get(k, preset.kshot_problems) for k in KSHOTS}
    # a k-shot prompt costs ~(1 + k) 0-shot ones (prefill: 3.0, 7.1, 9.2, 13.2, 17.3, 20.4 s
    # for 0..5 shots on 800 problems, 600k rung, session 47), which orders the baselines among
    # the evals as their real length does (a shorter tail for the study's two workers)
    base = Job(f"baseline:{tag}", "baseline", str(out / "baseline" / tag),
               dict(model=model, task=str(out / "task"), shots=KSHOTS,
                    n_problems=preset.kshot_problems, shot_problems=fewer,
                    max_new_tokens=preset.max_new_tokens, seed=preset.seed),
               deps=(pre.name,), cost=sum(v * (1 + k) for k, v in n_at.items()) * (n + 5e4) * 4e-8,
               total=sum(n_at.values()), meta={"rung": r.name})
    evals = eval_specs(preset, out, after=False)
    before = Job(f"evals:{tag}", "evals", str(out / "evals" / tag / "base"),
                 dict(model=model, base=model, run="", evals=evals), deps=(pre.name,),
                 cost=eval_cost(evals, n), total=eval_units(evals),
                 meta={"rung": r.name, "when": "before"})
    return [pre, base, before]


def _rl_arms(preset: Preset, r: Rung) -> list[tuple[str, int, str, int, bool]]:
    """(run-name suffix, tau, reward, seed, main) of every GRPO run of a rung: the main runs
    (one per seed), and on the arm rung the data-reuse and reward arms (seed 0)."""
    tau0 = preset.taus[0] if preset.taus else 1
    arms = [("" if s == 0 else f"-s{s}", tau0, "custom_flexible", preset.seed + s, True)
            for s in range(max(1, preset.rl_seeds))]
    if r.name == preset.arm_rung:
        arms += [(f"-tau{t}", t, "custom_flexible", preset.seed, False) for t in preset.taus[1:]]
        arms += [(f"-{preset.arm_reward}", 1, preset.arm_reward, preset.seed, False)]
    return arms


def _rl_job(preset: Preset, r: Rung, n: int, out: Path, suffix: str, tau: int, reward: str,
            seed: int, main: bool) -> Job:
    from rlscale.grpo.config import resolve

    tag = rung_tag(r.name)
    cfg = resolve(None, dict(
        model=str(out / "pretrain" / tag / "model"), task=str(out / "task"), lr=r.rl_lr,
        batch_size=preset.batch_size, group_size=preset.group_size,
        mini_batch_size=preset.batch_size, steps=r.rl_steps, reuse=tau, reward=reward,
        max_new_tokens=preset.max_new_tokens, eval_every=preset.eval_every,
        heldout=preset.heldout, eval_samples=preset.eval_samples, eval_temperature=0.7,
        temperature=1.0, seed=seed, checkpoint_every=max(5, r.rl_steps // 4),
        data_seed=preset.seed)).validate()
    evals = r.rl_steps // max(1, preset.eval_every) + 2
    cost = (r.rl_steps * preset.batch_size * preset.group_size
            + evals * preset.heldout * preset.eval_samples) * (n + 5e4) * 6e-8
    return Job(f"rl:{tag}{suffix}", "rl", str(out / "runs" / f"{tag}{suffix}"), cfg.to_dict(),
               deps=(f"pretrain:{tag}",), cost=cost, total=r.rl_steps,
               meta={"rung": r.name, "tau": tau, "reward": reward, "seed": seed, "main": main})


def _evals_job(preset: Preset, r: Rung, n: int, out: Path, rl: Job) -> Job:
    """After RL: greedy 0-shot on the baseline's problems, pass@k and transfer, of the run's
    final policy."""
    from rlscale.rundir import policy_dir

    tag = rung_tag(r.name)
    evals = eval_specs(preset, out, after=True)
    return Job(f"evals:{rl.name.removeprefix('rl:')}:after", "evals",
               str(out / "evals" / tag / Path(rl.out).name),
               dict(model=str(policy_dir(rl.out)), base=str(out / "pretrain" / tag / "model"),
                    run=rl.out, evals=evals),
               deps=(rl.name,), cost=eval_cost(evals, n), total=eval_units(evals),
               meta={**rl.meta, "when": "after", "run": rl.name})


def approx_n(rung) -> int:
    """A ladder rung's non-embedding parameters from its shape (attention 4 h^2, SwiGLU 3 h I per
    layer): the plan's cost unit, known before a model is built."""
    return rung.layers * (4 * rung.hidden**2 + 3 * rung.hidden * rung.intermediate)


def write_task(preset: Preset, out: Path) -> None:
    """OUT/task/{train,test}.jsonl in GSM8K format, once (a rerun keeps the same files)."""
    from rlscale.tasks import load_task

    task_dir = out / "task"
    if (task_dir / "test.jsonl").is_file() and (task_dir / "train.jsonl").is_file():
        return
    n_test = max(preset.heldout, preset.kshot_problems, preset.passk_problems)  # every eval's
    task = load_task(preset.task, seed=preset.seed, n_test=n_test, n_train=preset.n_train)
    for split, problems in (("train", task.train), ("test", task.test)):
        atomic_write_text(task_dir / f"{split}.jsonl", "".join(
            dumps({"question": p.question, "answer": p.solution, "level": p.level}) + "\n"
            for p in problems))
