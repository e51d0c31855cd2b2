"""What keep_freed_memory buys the study's jobs: each job run twice at once, with and without it.

rlscale.procs.keep_freed_memory sets glibc's malloc thresholds so that a step's freed memory
serves the next step instead of going back to the kernel (then faulted in again, zeroed, a page
at a time). Every study worker and `rlscale` command makes the setting; this script measures it
on the default study's jobs (cpu-words-10m): a pre-training run of a rung (the study's
parameters but --tokens) and a GRPO run (the study's parameters but --rl-steps, on a model this
script pre-trains first). Each round starts the two sides together, one per core (as the
study's two workers run), the launch order alternating, so a drift of the machine hits both;
each side is a fresh process timed around the job alone (imports and the task's files before).

Printed per round and job: the wall time of each side, their ratio (speedup = default over
kept), and each side's minor page faults and system time; then the median speedup per job.

    .venv/bin/python benchmarks/malloc_reuse.py [--rung 600k] [--tokens 400000] [--rl-steps 20]
        [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESET = "cpu-words-10m"


def _job(root: Path, name: str, budget: int, model: str) -> tuple[str, dict]:
    from rlscale.study_plan import plan
    from rlscale.study_presets import PRESETS

    job = next(j for j in plan(PRESETS[PRESET], root) if j.name == name)
    if job.kind == "pretrain":
        return job.kind, dict(job.params, tokens=budget, checkpoint_every=10**9)
    return job.kind, dict(job.params, steps=budget, model=model, checkpoint_every=10**9)


def child(root: Path, name: str, budget: int, model: str, out: str, keep: bool) -> None:
    """One side of a round: the job in this fresh process; prints its timing as JSON."""
    from rlscale.procs import keep_freed_memory
    from rlscale.scheduler import run_job

    kept = keep_freed_memory() if keep else False
    kind, params = _job(root, name, budget, model)
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    run_job(kind, out, params, threads=1)
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps(dict(kept=kept, wall=t1 - t0, sys=r1.ru_stime - r0.ru_stime,
                          faults=r1.ru_minflt - r0.ru_minflt)))


def _side(root, name, budget, model, out, keep) -> subprocess.Popen:
    argv = [sys.executable, __file__, "--child", str(root), name, str(budget), model, out,
            "keep" if keep else "default"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def _round(root: Path, name: str, budget: int, model: str, r: int) -> dict[bool, dict]:
    tag = name.replace(":", "-")
    order = (True, False) if r % 2 == 0 else (False, True)
    procs = {keep: _side(root, name, budget, model, str(root / f"{tag}-{r}-{keep}"), keep)
             for keep in order}
    res = {}
    for keep, p in procs.items():
        out, _ = p.communicate()
        if p.returncode:
            sys.exit(f"malloc_reuse: the {name} side (keep={keep}) failed, exit {p.returncode}")
        res[keep] = json.loads(out.strip().splitlines()[-1])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rung", default="600k")
    ap.add_argument("--tokens", type=int, default=400_000, help="pre-training tokens per side")
    ap.add_argument("--rl-steps", type=int, default=20, help="GRPO steps per side")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="malloc_reuse-"))
    try:
        _measure(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _measure(root: Path, args) -> None:
    from rlscale.study_plan import write_task
    from rlscale.study_presets import PRESETS

    write_task(PRESETS[PRESET], root)
    model_run = root / "model-run"  # the GRPO job's starting point (its quality is beside the point)
    _run_plain(root, f"pretrain:{args.rung}", args.tokens, str(model_run))
    jobs = [(f"pretrain:{args.rung}", args.tokens), (f"rl:{args.rung}", args.rl_steps)]
    ratios: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name, budget in jobs:
            res = _round(root, name, budget, str(model_run / "model"), r)
            speedup = res[False]["wall"] / res[True]["wall"]
            ratios.setdefault(name, []).append(speedup)
            print(f"malloc_reuse round={r} job={name} default_s={res[False]['wall']:.2f} "
                  f"kept_s={res[True]['wall']:.2f} speedup={speedup:.3f} "
                  f"default_faults={res[False]['faults']} kept_faults={res[True]['faults']} "
                  f"default_sys_s={res[False]['sys']:.2f} kept_sys_s={res[True]['sys']:.2f}",
                  flush=True)
    for name, rs in ratios.items():
        print(f"malloc_reuse job={name} rounds={len(rs)} median_speedup={statistics.median(rs):.3f}"
              f" min={min(rs):.3f} max={max(rs):.3f}")


def _run_plain(root: Path, name: str, budget: int, out: str) -> None:
    p = _side(root, name, budget, "", out, keep=False)
    p.communicate()
    if p.returncode:
        sys.exit(f"malloc_reuse: pre-training the GRPO job's model failed, exit {p.returncode}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        root, name, budget, model, out, mode = sys.argv[2:8]
        child(Path(root), name, int(budget), model, out, mode == "keep")
    else:
        main()
