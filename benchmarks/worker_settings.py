"""What a study worker's process settings buy its jobs: each job run twice at once, with and
without one setting.

    --setting malloc     rlscale.procs.keep_freed_memory: glibc's malloc keeps a step's freed
                         memory for the next step instead of returning it to the kernel (then
                         faulted in again, zeroed, a page at a time)
    --setting tokenizer  TOKENIZERS_PARALLELISM=false, as `rlscale.scheduler.run_job` sets it
                         for a one-thread worker: without it the tokenizer's own thread pool
                         runs every batch encode and decode (a rollout's prompts, its stop
                         checks) on threads that spin beside the other worker's job

Every other setting is the study's on both sides (one torch thread; the tokenizer's pool off and
keep_freed_memory on, but for the one compared). The jobs are the default study's
(cpu-words-10m): a pre-training run of a rung (the study's parameters but --tokens) and a GRPO
run (the study's parameters but --rl-steps, on a model this script pre-trains first). Each
round starts the two sides together, one per core (as the study's two workers run), the launch
order alternating, so a drift of the machine hits both; each side is a fresh process timed
around the job alone (imports and the task's files before).

Printed per round and job: the wall time of each side and their ratio (speedup = without over
with), each side's CPU seconds (all its threads: with two busy workers on two cores, a thread
pool's extra CPU is taken from the other worker's job, so the CPU ratio is the one that counts
for the tokenizer's pool), minor page faults, system time, and CPU seconds on threads other than
the main one (the tokenizer pool's); then the medians per job.

    .venv/bin/python benchmarks/worker_settings.py --setting malloc|tokenizer [--rung 600k]
        [--tokens 400000] [--rl-steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESET = "cpu-words-10m"
SETTINGS = ("malloc", "tokenizer")


def study_job(root: Path, name: str, budget: int, model: str) -> tuple[str, dict]:
    """(kind, params) of the default study's job `name` under root, cut to budget (tokens,
    GRPO steps or the baseline's problems) and, but for pre-training, on `model`."""
    from rlscale.study_plan import plan
    from rlscale.study_presets import PRESETS

    job = next(j for j in plan(PRESETS[PRESET], root) if j.name == name)
    over = {"pretrain": dict(tokens=budget, checkpoint_every=10**9),
            "rl": dict(steps=budget, model=model, checkpoint_every=10**9),
            "baseline": dict(n_problems=budget, model=model)}[job.kind]
    return job.kind, dict(job.params, **over)


def common_args(ap, tokens: int, rl_steps: int, rounds: int):
    """The flags both process-setting benchmarks take; returns the parsed arguments."""
    ap.add_argument("--rung", default="600k")
    ap.add_argument("--tokens", type=int, default=tokens, help="pre-training tokens per run")
    ap.add_argument("--rl-steps", type=int, default=rl_steps, help="GRPO steps per run")
    ap.add_argument("--rounds", type=int, default=rounds)
    return ap.parse_args()


def in_scratch(measure, args, prefix: str) -> None:
    """measure(root, args) in a fresh temporary directory, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        measure(root, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _other_threads_cpu() -> float:
    """CPU seconds of this process's threads but the main one (Linux /proc; 0 elsewhere)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").glob("*"):
        if task.name != str(os.getpid()):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def child(root: Path, name: str, budget: int, model: str, out: str, setting: str,
          on: bool) -> None:
    """One side of a round: the job in this fresh process; prints its timing as JSON."""
    import torch

    from rlscale.procs import keep_freed_memory
    from rlscale.scheduler import run_job

    torch.set_num_threads(1)
    if on or setting != "tokenizer":
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if on or setting != "malloc":
        keep_freed_memory()
    kind, params = study_job(root, name, budget, model)
    t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    c0 = _other_threads_cpu()
    run_job(kind, out, params, threads=0)  # 0: run_job leaves threads and the pool as set here
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)  # all threads
    print(json.dumps(dict(wall=t1 - t0, cpu=cpu, sys=r1.ru_stime - r0.ru_stime,
                          faults=r1.ru_minflt - r0.ru_minflt,
                          other_threads_s=_other_threads_cpu() - c0)))


def _side(root, name, budget, model, out, setting, on) -> subprocess.Popen:
    argv = [sys.executable, __file__, "--child", str(root), name, str(budget), model, out,
            setting, "on" if on else "off"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def _round(root: Path, name: str, budget: int, model: str, setting: str,
           r: int) -> dict[bool, dict]:
    tag = name.replace(":", "-")
    order = (True, False) if r % 2 == 0 else (False, True)
    procs = {on: _side(root, name, budget, model, str(root / f"{tag}-{r}-{on}"), setting, on)
             for on in order}
    res = {}
    for on, p in procs.items():
        out, _ = p.communicate()
        if p.returncode:
            sys.exit(f"worker_settings: the {name} side ({setting} {'on' if on else 'off'}) "
                     f"failed, exit {p.returncode}")
        res[on] = json.loads(out.strip().splitlines()[-1])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=SETTINGS, required=True)
    in_scratch(_measure, common_args(ap, tokens=400_000, rl_steps=20, rounds=3), "worker_settings-")


def _measure(root: Path, args) -> None:
    from rlscale.study_plan import write_task
    from rlscale.study_presets import PRESETS

    write_task(PRESETS[PRESET], root)
    model_run = root / "model-run"  # the GRPO job's model (its quality is beside the point)
    p = _side(root, f"pretrain:{args.rung}", args.tokens, "", str(model_run), args.setting, True)
    if p.wait():
        sys.exit(f"worker_settings: pre-training the GRPO job's model failed, exit {p.returncode}")
    jobs = [(f"pretrain:{args.rung}", args.tokens), (f"rl:{args.rung}", args.rl_steps)]
    ratios: dict[str, list[float]] = {}
    cpu_ratios: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name, budget in jobs:
            res = _round(root, name, budget, str(model_run / "model"), args.setting, r)
            off, on = res[False], res[True]
            speedup = off["wall"] / on["wall"]
            ratios.setdefault(name, []).append(speedup)
            cpu_ratios.setdefault(name, []).append(off["cpu"] / on["cpu"])
            print(f"worker_settings setting={args.setting} round={r} job={name} "
                  f"off_s={off['wall']:.2f} on_s={on['wall']:.2f} speedup={speedup:.3f} "
                  f"off_cpu_s={off['cpu']:.2f} on_cpu_s={on['cpu']:.2f} "
                  f"off_faults={off['faults']} on_faults={on['faults']} "
                  f"off_sys_s={off['sys']:.2f} on_sys_s={on['sys']:.2f} "
                  f"off_other_threads_s={off['other_threads_s']:.2f} "
                  f"on_other_threads_s={on['other_threads_s']:.2f}", flush=True)
    for name, rs in ratios.items():
        print(f"worker_settings setting={args.setting} job={name} rounds={len(rs)} "
              f"median_speedup={statistics.median(rs):.3f} min={min(rs):.3f} max={max(rs):.3f} "
              f"median_cpu_ratio={statistics.median(cpu_ratios[name]):.3f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        root, name, budget, model, out, setting, mode = sys.argv[2:9]
        child(Path(root), name, int(budget), model, out, setting, mode == "on")
    else:
        main()
