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

A copied or moved study resumes at its new place (`--out NEW`): its recorded paths are rewritten
first (rlscale.study_move).

The jobs of the middle stages run in `workers` processes (one thread each on CPU): a small
scheduler starts every job whose inputs are ready, longest first, and shows one progress bar per
running job (read from the job's own log) under an overall bar. Ctrl-C stops the workers where
they stand; each job keeps its last checkpoint, so rerunning the command resumes. Presets:
rlscale.study_presets; the plan: rlscale.study_plan; the scheduler: rlscale.scheduler.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from rlscale.allocation import PRESETS as ALLOC_PRESETS
from rlscale.errors import UserError
from rlscale.files import atomic_write_json, dumps, read_json
from rlscale.scheduler import run_job, schedule  # noqa: F401 (run_job: public here too)
from rlscale.study_move import relocate
from rlscale.study_plan import plan, write_task
from rlscale.study_presets import DEFAULT_PRESET, PRESETS, Preset


# ---------------------------------------------------------------- the study
def with_defaults(saved):
    """A saved preset with every field it predates at that field's default (a study written
    before the field existed ran without it), as JSON; anything else as it is."""
    if not isinstance(saved, dict):
        return saved
    new = {f.name: json.loads(dumps(f.default)) for f in dataclasses.fields(Preset)
           if f.default is not dataclasses.MISSING and f.name not in saved}
    return {**saved, **new}


def study(preset: Preset, out, workers: int | None = None, progress: bool | None = None) -> dict:
    """Run (or resume) the whole study into out; returns summary.json's content."""
    import sys

    import torch

    from rlscale import report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = out / "study.json"
    # root: where the jobs' recorded paths point (a copied or moved study follows it: study_move)
    mine = {"preset": json.loads(dumps(dataclasses.asdict(preset))),  # tuples as JSON lists
            "root": str(out)}
    old = read_json(settings) if settings.is_file() else {"preset": mine["preset"]}
    if with_defaults(old.get("preset")) != mine["preset"]:
        raise UserError(f"{settings}: {out} holds a study with other settings (preset "
                        f"{old.get('preset', {}).get('name')!r}); use another --out")
    relocate(out, old.get("root"))  # before the new root is recorded: an interrupted one reruns
    t0 = time.perf_counter()
    wall, job_s = old.get("wall_s", 0.0), old.get("job_s", {})  # of earlier invocations
    atomic_write_json(settings, {**mine, "wall_s": wall, "job_s": job_s})
    progress = sys.stderr.isatty() if progress is None else progress
    workers = workers or preset.workers
    threads = 1 if workers > 1 and not torch.cuda.is_available() else 0
    write_task(preset, out)
    from rlscale.corpus import corpus_tokenizer
    from rlscale.tasks import load_task

    corpus_tokenizer(load_task(str(out / "task"), seed=preset.seed).train,  # warm the cache
                     numbers=preset.numbers)
    jobs = plan(preset, out)
    try:
        times = schedule(jobs, workers, threads, progress)
    except BaseException:  # killed or failed: the time its jobs ran still counts on resume
        atomic_write_json(settings, {**mine, "wall_s": wall + time.perf_counter() - t0,
                                     "job_s": job_s})
        raise
    # wall_s is the time of the invocations that ran jobs, up to their last job: re-summarising
    # a finished study (e.g. after a report change) adds nothing, and summary.json, written by
    # the report, holds the same number. The report's own time (fits, figures) is report_s.
    wall = wall + (time.perf_counter() - t0 if times else 0.0)
    job_s = {**job_s, **times}
    atomic_write_json(settings, {**mine, "wall_s": wall, "job_s": job_s})
    t1 = time.perf_counter()
    summary = report.write_report(preset, jobs, out)
    atomic_write_json(settings, {**mine, "wall_s": wall, "job_s": job_s,
                                 "report_s": time.perf_counter() - t1})
    return summary


# ---------------------------------------------------------------- CLI
def configure(p) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS) + sorted(ALLOC_PRESETS),
                   default=DEFAULT_PRESET,
                   help="cpu-words-10m (the default: sessions 32-42 and since 44): 4 rungs on 10M "
                   "tokens each, number-words in the stories, ~18-21.5 min "
                   "on 2 cores of the Intel kind, ~21-24.5 min on the AMD kind (docs/study.md, "
                   "sessions 20-23, 31-32, 38-44); cpu-words-10m-e20: the same models with the "
                   "in-run test loss every 20 steps, 1-7%% less wall, sparser curves (the default "
                   "of session 43; sessions 43-44); cpu-words-10m-bf16: its ladder with "
                   "pre-training's products in bf16, 16.5 min on the AMD kind, the checks in 2 "
                   "of 3 draws (session 50); cpu-words: "
                   "cpu-words-10m's ladder on 5M tokens, ~14 min (sessions 16-17); cpu: that "
                   "ladder on 3M "
                   "tokens and an easier task, ~11 min; cpu-edge: 5M tokens and a "
                   "two-difficulty task (session 13); cpu-tilt: cpu-edge with more tokens for "
                   "smaller rungs (session 14); cpu-words-2m: cpu-words plus a 2m rung, ~31 "
                   "min (session 18); cpu-words-7m: cpu-words on 7.1M tokens a rung (session "
                   "19); cpu-words-7m-wsd: cpu-words-10m on 7.1M tokens a rung, the in-run "
                   "test loss every 20 steps (session 42); cpu-words-tilt: that on tokens = "
                   "7.1M x (N_600k / N)^0.1, 10M for the 20k rung (session 42); "
                   "cpu-long: 9M tokens; smoke: CI; gpu: up to 100M params; "
                   "allocate: the "
                   "pre-training / RL split (rlscale.allocation) on the cpu task; "
                   "allocate-words: on cpu-words' over a decade of tokens (~33 min); "
                   "allocate-words-long: with 480 RL steps from its two largest budgets and "
                   "three validation draws (sessions 21 and 25, ~51 min); allocate-words-seen: "
                   "its validation capped at the grid's largest token budget (session 30)")
    p.add_argument("--out", default="study", metavar="DIR", help="output directory (resumes)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel jobs (default: the preset's; one thread each on CPU)")
    p.add_argument("--seed", type=int, default=None,
                   help="a replicate: the seed of the train split, the pre-training "
                        "initialisation and batch order and the RL runs (the held-out problems "
                        "do not move; default: the preset's, 0)")
    p.add_argument("--progress", action="store_true", default=None,
                   help="progress bars even when stderr is not a terminal")


def run(args) -> int:
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers: {args.workers}: must be >= 1")
    from rlscale.procs import dir_lock

    if args.seed is not None and not 0 <= args.seed < 2**31:
        raise UserError(f"--seed: {args.seed}: must be in [0, 2^31)")
    if args.preset.startswith("allocate"):  # its own driver, on this module's scheduler
        from rlscale.allocation import run_cli

        with dir_lock(args.out, "study"):
            return run_cli(args)

    with dir_lock(args.out, "study"):  # one study per directory; a dead holder does not block
        preset = PRESETS[args.preset]
        if args.seed is not None:
            preset = dataclasses.replace(preset, seed=args.seed)
        summary = study(preset, args.out, args.workers, args.progress)
    print(f"report: {Path(args.out) / 'report.md'}; summary: {Path(args.out) / 'summary.json'}; "
          f"wall time {summary['wall_s']:.0f} s")
    return 0
