"""`rlscale study`: the embedded RL scaling study on the micro ladder, end to end.

Stages (each cached in OUT and resumable; `rlscale study` again skips what is finished):

    task        OUT/task/{train,test}.jsonl: the procedural task, written once, used by all
    pretrain    OUT/pretrain/<rung>/         each rung pre-trained on the train split
    baseline    OUT/baseline/<rung>/         k-shot (0..5) accuracy of each pre-trained model
    rl          OUT/runs/<run>/              GRPO per rung and seed (held-out test loss through
                                              training), a data-reuse arm (tau) and a reward arm
    evals       OUT/evals/<rung>/<model>/    pass@k, transfer, greedy 0-shot of each pre-trained
                                              model and each main run's final policy
                                              (rlscale.study_evals)
    report      OUT/report.md, OUT/*.png, OUT/summary.json, OUT/results.sqlite

The jobs of the middle stages run in `workers` processes (one thread each on CPU): a small
scheduler starts every job whose inputs are ready, longest first, and shows one progress bar per
running job (read from the job's own log) under an overall bar. Ctrl-C stops the workers where
they stand; each job keeps its last checkpoint, so rerunning the command resumes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlscale.errors import UserError
from rlscale.files import atomic_write_json, atomic_write_text, dumps, read_json
from rlscale.study_evals import eval_cost, eval_specs, eval_units, run_evals

KSHOTS = (0, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class Rung:
    name: str  # micro ladder rung, e.g. "micro:200k"
    tokens: int  # pre-training tokens
    pretrain_lr: float
    rl_lr: float
    rl_steps: int


@dataclass(frozen=True)
class Preset:
    name: str
    task: str  # arith spec; materialised once into OUT/task
    n_train: int  # train problems (pre-training corpus and RL prompts)
    rungs: tuple[Rung, ...]
    slip_frac: float  # pre-training corpus knobs (rlscale.pretrain)
    direct_frac: float
    batch_size: int  # GRPO prompts per step
    group_size: int
    max_new_tokens: int
    eval_every: int
    heldout: int  # held-out problems x samples at temperature 0.7: the test loss
    eval_samples: int
    kshot_problems: int  # baseline k-shot eval (greedy)
    arm_rung: str  # the rung of the data-reuse and reward arms
    taus: tuple[int, ...] = (1, 4, 16)
    arm_reward: str = "strict"  # compared with the main runs' custom_flexible
    seq_len: int = 128
    pretrain_batch: int = 32
    workers: int = 2
    seed: int = 0
    rl_seeds: int = 2  # GRPO seeds per main rung (the arms use seed 0): mean and spread
    passk_problems: int = 0  # held-out problems of the pass@k evals; 0 = kshot_problems
    passk_samples: int = 32  # samples per problem: pass@k for k = 1, 2, 4, ... up to this
    passk_temperature: float = 1.0  # the rollout temperature: what RL itself samples from
    transfer_task: str = ""  # a task family RL never sees (greedy, before/after); "" = none
    plain_frac: float = 0.0  # corpus documents ending "The answer is N." (rlscale.pretrain)
    short_seq_len: int = 0  # pre-training rows before the long phase (0: all seq_len)
    long_frac: float = 1.0  # share of pre-training steps, at the end, in seq_len rows
    blank_join_frac: float = 0.0  # corpus documents joined by a blank line, as few-shot shots


# The task of the embedded study: chains of 1-4 steps (the level), numbers up to 30, + - *,
# stories and expressions mixed; transfer: 5-6 steps, longer than any chain in pre-training or
# RL. Every rung of a preset is pre-trained on the same number of tokens (one rule, as a model
# series shares one corpus); docs/study.md has the measurements behind each choice.
_TASK = "arith:ladder"
_TRANSFER = "arith:ladder,min_terms=6,max_terms=7"
_CORPUS = dict(slip_frac=0.1, direct_frac=0.0, plain_frac=0.2, blank_join_frac=0.5)
PRESETS: dict[str, Preset] = {
    # the README's first command: four rungs spanning 31x in N, on 2 cores
    "cpu": Preset(
        name="cpu", task=_TASK, transfer_task=_TRANSFER, n_train=20000,
        # pre-training lr tuned by pre-training loss; RL lr = pre-training lr / 47 (docs/study.md)
        rungs=(Rung("micro:20k", 3_000_000, 1e-2, 2e-4, 40),
               Rung("micro:60k", 3_000_000, 1e-2, 2e-4, 40),
               Rung("micro:200k", 3_000_000, 7e-3, 1.5e-4, 40),
               Rung("micro:600k", 3_000_000, 6e-3, 1.3e-4, 40)),
        **_CORPUS, batch_size=32, group_size=8, max_new_tokens=80, eval_every=5, heldout=200,
        eval_samples=4, kshot_problems=200, passk_problems=64, arm_rung="micro:60k",
        taus=(1, 4, 8), seq_len=512, pretrain_batch=8, short_seq_len=128, long_frac=0.3),
    # CI: every stage and file, minutes not science
    "smoke": Preset(
        name="smoke", task=_TASK, transfer_task=_TRANSFER, n_train=600,
        rungs=(Rung("micro:20k", 60_000, 1e-2, 3e-4, 4),
               Rung("micro:60k", 60_000, 8e-3, 2e-4, 4)),
        **_CORPUS, batch_size=8, group_size=4, max_new_tokens=32, eval_every=2, heldout=24,
        eval_samples=2, kshot_problems=8, arm_rung="micro:20k",
        seq_len=128, pretrain_batch=4, short_seq_len=64, long_frac=0.3),
    # a GPU: the ladder up to 100M parameters, harder levels (1-6 steps, numbers up to 99)
    "gpu": Preset(
        name="gpu", task="arith:ladder,max_terms=7,max_value=99",
        transfer_task="arith:ladder,min_terms=8,max_terms=9,max_value=99", n_train=50000,
        rungs=(Rung("micro:200k", 20_000_000, 7e-3, 1.5e-4, 200),
               Rung("micro:2m", 20_000_000, 3e-3, 6e-5, 200),
               Rung("micro:6m", 20_000_000, 2e-3, 4e-5, 200),
               Rung("micro:20m", 20_000_000, 1.2e-3, 2.5e-5, 200),
               Rung("micro:100m", 20_000_000, 6e-4, 1.3e-5, 200)),
        **_CORPUS, batch_size=128, group_size=8, max_new_tokens=128, eval_every=20,
        heldout=1000, eval_samples=4, kshot_problems=500, passk_problems=200,
        arm_rung="micro:2m", pretrain_batch=32, seq_len=1024, short_seq_len=256,
        long_frac=0.3, workers=1),
}


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
        n = _approx_n(LADDER[rung_name(r.name)])
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
                   plain_frac=preset.plain_frac, short_seq_len=preset.short_seq_len,
                   long_frac=preset.long_frac, blank_join_frac=preset.blank_join_frac,
                   checkpoint_every=max(10, steps // 10), log_every=max(1, min(10, steps // 20))),
              cost=r.tokens * (n + 60_000) * 7e-10, total=steps, meta={"rung": r.name})
    base = Job(f"baseline:{tag}", "baseline", str(out / "baseline" / tag),
               dict(model=model, task=str(out / "task"), shots=KSHOTS,
                    n_problems=preset.kshot_problems, max_new_tokens=preset.max_new_tokens,
                    seed=preset.seed),
               deps=(pre.name,), cost=len(KSHOTS) * preset.kshot_problems * (n + 5e4) * 4e-8,
               total=len(KSHOTS) * preset.kshot_problems, meta={"rung": r.name})
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


def _approx_n(rung) -> int:
    return rung.layers * (4 * rung.hidden**2 + 3 * rung.hidden * rung.intermediate)


def run_job(kind: str, out: str, params: dict, threads: int) -> dict:
    """Run one job in a worker process (resumable: a finished job returns at once)."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the study draws its own bars
    if threads:
        torch.set_num_threads(threads)
    if kind == "pretrain":
        from rlscale.pretrain import PretrainConfig, pretrain

        return pretrain(PretrainConfig(**params), out, resume=True, progress=False)
    if kind == "baseline":
        from rlscale.evaluate import EvalConfig, evaluate

        p = dict(params, shots=tuple(params["shots"]), out=out, temperature=0.0, samples=1)
        return evaluate(EvalConfig(**p))
    if kind == "rl":
        from rlscale.grpo.config import TrainConfig
        from rlscale.grpo.trainer import train

        return train(TrainConfig.from_dict(params), out, resume=True, progress=False)
    if kind == "evals":
        return run_evals(out, params)
    raise ValueError(kind)


def job_progress(job: Job) -> int:
    """Units done so far, read from the job's own log (cheap; no locking needed)."""
    try:
        if job.kind == "pretrain":
            state = Path(job.out) / "pretrain.json"
            if state.is_file() and read_json(state).get("done"):
                return job.total
            return _last_int(Path(job.out) / "loss.jsonl", "step")
        if job.kind == "rl":
            return _last_int(Path(job.out) / "metrics.jsonl", "step")
        if job.kind == "baseline":
            return _lines(Path(job.out) / "completions.jsonl")
        if job.kind == "evals":
            return sum(_lines(Path(job.out) / e["sub"] / "completions.jsonl")
                       for e in job.params["evals"])
    except (OSError, UserError, ValueError):
        pass
    return 0


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def _last_int(path: Path, key: str) -> int:
    if not path.is_file():
        return 0
    lines = path.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)
    try:
        return int(json.loads(lines[-1]).get(key, 0))
    except (ValueError, AttributeError):
        return 0


def job_done(job: Job) -> bool:
    out = Path(job.out)
    if job.kind == "pretrain":
        return (out / "pretrain.json").is_file() and bool(read_json(out / "pretrain.json").get("done"))
    if job.kind == "baseline":
        return (out / "summary.json").is_file() and job_progress(job) >= job.total
    if job.kind == "evals":
        return all((out / e["sub"] / "summary.json").is_file() for e in job.params["evals"]) \
            and job_progress(job) >= job.total
    return job_progress(job) >= job.total and (out / "metrics.jsonl").is_file()


def schedule(jobs: list[Job], workers: int, threads: int, progress: bool) -> dict[str, float]:
    """Run the jobs in a process pool, dependencies first, longest first; returns wall times."""
    import concurrent.futures as cf
    import multiprocessing as mp

    from tqdm.auto import tqdm

    todo = {j.name: j for j in jobs if not job_done(j)}
    done = {j.name for j in jobs} - set(todo)
    times: dict[str, float] = {}
    overall = tqdm(total=sum(j.cost for j in jobs), initial=sum(j.cost for j in jobs if j.name in done),
                   desc="study", unit="s(est)", disable=not progress, position=0,
                   bar_format="{l_bar}{bar}| {elapsed}<{remaining}")
    bars: dict[str, object] = {}
    running: dict[cf.Future, tuple[Job, float]] = {}
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                  initializer=_worker_init)
    try:
        while todo or running:
            ready = sorted((j for j in todo.values() if set(j.deps) <= done),
                           key=lambda j: -j.cost)
            for job in ready[: max(0, workers - len(running))]:
                del todo[job.name]
                fut = pool.submit(run_job, job.kind, job.out, job.params, threads)
                running[fut] = (job, time.perf_counter())
                bars[job.name] = tqdm(total=job.total, desc=job.name, disable=not progress,
                                      position=len(bars) % workers + 1, leave=False)
            if not running:
                missing = sorted({d for j in todo.values() for d in j.deps} - done)
                raise RuntimeError(f"study: jobs wait on unknown jobs {missing}")
            finished, _ = cf.wait(running, timeout=1.0, return_when=cf.FIRST_COMPLETED)
            for fut in list(running):
                job, t0 = running[fut]
                bar = bars[job.name]
                bar.n = min(job.total, job_progress(job))
                bar.refresh()
                if fut not in finished:
                    continue
                fut.result()  # re-raise a job's error here, in the main process
                del running[fut]
                times[job.name] = time.perf_counter() - t0
                done.add(job.name)
                bar.close()
                overall.update(job.cost)
                overall.write(f"  {job.name}: done in {times[job.name]:.0f} s")
    except BaseException:
        for fut in running:
            fut.cancel()
        _interrupt_workers(pool)  # a job that fails or a Ctrl-C stops the others too
        pool.shutdown(wait=True, cancel_futures=True)  # workers save their checkpoints first
        raise
    finally:
        overall.close()
    pool.shutdown()
    return times


def _worker_init() -> None:
    # a worker started from a non-interactive shell inherits SIGINT ignored; make Ctrl-C (and
    # _interrupt_workers) raise KeyboardInterrupt there, so the job saves and stops
    import multiprocessing
    import signal

    from rlscale.procs import die_with_parent

    signal.signal(signal.SIGINT, signal.default_int_handler)
    die_with_parent(multiprocessing.parent_process().pid)  # no orphan computing if we are killed


def _interrupt_workers(pool) -> None:
    import os
    import signal

    for proc in list(getattr(pool, "_processes", {}).values()):
        if proc.is_alive():
            try:
                os.kill(proc.pid, signal.SIGINT)
            except OSError:
                pass


# ---------------------------------------------------------------- the study
def write_task(preset: Preset, out: Path) -> None:
    """OUT/task/{train,test}.jsonl in GSM8K format, once (a rerun keeps the same files)."""
    from rlscale.tasks import load_task

    task_dir = out / "task"
    if (task_dir / "test.jsonl").is_file() and (task_dir / "train.jsonl").is_file():
        return
    task = load_task(preset.task, seed=preset.seed, n_test=preset.heldout, n_train=preset.n_train)
    for split, problems in (("train", task.train), ("test", task.test)):
        atomic_write_text(task_dir / f"{split}.jsonl", "".join(
            dumps({"question": p.question, "answer": p.solution, "level": p.level}) + "\n"
            for p in problems))


def study(preset: Preset, out, workers: int | None = None, progress: bool | None = None) -> dict:
    """Run (or resume) the whole study into out; returns summary.json's content."""
    import sys

    import torch

    from rlscale import report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "study.json"
    mine = {"preset": json.loads(dumps(dataclasses.asdict(preset)))}  # tuples as JSON lists
    if settings.is_file():
        old = read_json(settings)
        if old.get("preset") != mine["preset"]:
            raise UserError(f"{settings}: {out} holds a study with other settings (preset "
                            f"{old.get('preset', {}).get('name')!r}); use another --out")
    t0 = time.perf_counter()
    wall = read_json(settings).get("wall_s", 0.0) if settings.is_file() else 0.0
    atomic_write_json(settings, {**mine, "wall_s": wall})
    progress = sys.stderr.isatty() if progress is None else progress
    workers = workers or preset.workers
    threads = 1 if workers > 1 and not torch.cuda.is_available() else 0
    write_task(preset, out)
    from rlscale.pretrain import corpus_tokenizer
    from rlscale.tasks import load_task

    corpus_tokenizer(load_task(str(out / "task"), seed=preset.seed).train)  # warm the cache once
    jobs = plan(preset, out)
    try:
        times = schedule(jobs, workers, threads, progress)
    finally:
        wall += time.perf_counter() - t0
        atomic_write_json(settings, {**mine, "wall_s": wall})
    old_times = read_json(settings).get("job_s", {})
    atomic_write_json(settings, {**mine, "wall_s": wall, "job_s": {**old_times, **times}})
    t1 = time.perf_counter()
    summary = report.write_report(preset, jobs, out)
    atomic_write_json(settings, {**mine, "wall_s": wall + time.perf_counter() - t1,
                                 "job_s": {**old_times, **times}})
    return summary


# ---------------------------------------------------------------- CLI
def configure(p) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS) + ["allocate", "allocate-smoke"],
                   default="cpu", help="cpu: 4 rungs, <= 20 min on 2 cores; smoke: CI; gpu: up "
                   "to 100M params; allocate: the pre-training / RL split (rlscale.allocation)")
    p.add_argument("--out", default="study", metavar="DIR", help="output directory (resumes)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel jobs (default: the preset's; one thread each on CPU)")
    p.add_argument("--progress", action="store_true", default=None,
                   help="progress bars even when stderr is not a terminal")


def run(args) -> int:
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers: {args.workers}: must be >= 1")
    from rlscale.procs import dir_lock

    if args.preset.startswith("allocate"):  # its own driver, on this module's scheduler
        from rlscale.allocation import run_cli

        with dir_lock(args.out, "study"):
            return run_cli(args)

    with dir_lock(args.out, "study"):  # one study per directory; a dead holder does not block
        summary = study(PRESETS[args.preset], args.out, args.workers, args.progress)
    print(f"report: {Path(args.out) / 'report.md'}; summary: {Path(args.out) / 'summary.json'}; "
          f"wall time {summary['wall_s']:.0f} s")
    return 0
