"""What the study workers' collector settings save: each job run with and without them.

A study worker imports torch and transformers once, then `rlscale.procs.freeze_imports()` takes
those ~190,000 objects out of the cyclic collector's reach; `gc_paused()` holds the collector off
while a corpus's token ids and a task file's rows are built (`encode_ids`, `read_problems`).
Without them, the growing heap triggers full collections that walk every object and free
nothing. This script runs jobs of the default study (cpu-words-10m: a pre-training run of a rung
at --tokens, a GRPO run at --rl-steps and the k-shot baseline on --problems, on a model it
pre-trains first) in fresh processes, each side after the same imports, the sides alternating:

    default   the collector as Python sets it (gc_paused a no-op)
    settled   freeze_imports() after the imports, gc_paused as the code has it

Printed per round and job: full (generation-2) collections and the seconds they took, all
collections' seconds, and the job's wall time; then per job the median of the saving.

    .venv/bin/python benchmarks/gc_collections.py [--rung 600k] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # worker_settings: the study's jobs
from worker_settings import PRESET, common_args, in_scratch, study_job  # noqa: E402


def child(root: Path, name: str, budget: int, model: str, out: str, settled: bool) -> None:
    import torch  # noqa: F401  the worker's imports, on both sides before the timing
    import transformers  # noqa: F401

    import rlscale.models.tokenizer as tok_mod
    import rlscale.tasks as tasks_mod
    from rlscale.procs import freeze_imports, keep_freed_memory
    from rlscale.scheduler import run_job

    keep_freed_memory()
    if settled:
        freeze_imports()
    else:
        tok_mod.gc_paused = tasks_mod.gc_paused = contextlib.nullcontext
    kind, params = study_job(root, name, budget, model)
    stats = {"full": 0, "full_s": 0.0, "all_s": 0.0}
    start = [0.0]

    def timer(phase, info):
        if phase == "start":
            start[0] = time.perf_counter()
            return
        took = time.perf_counter() - start[0]
        stats["all_s"] += took
        if info["generation"] == 2:
            stats["full"] += 1
            stats["full_s"] += took

    gc.callbacks.append(timer)
    t0 = time.perf_counter()
    run_job(kind, out, params, threads=1)
    print(json.dumps(dict(stats, wall=time.perf_counter() - t0)))


def _side(root: Path, name: str, budget: int, model: str, out: str, settled: bool) -> dict:
    argv = [sys.executable, __file__, "--child", str(root), name, str(budget), model, out,
            "settled" if settled else "default"]
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode:
        sys.exit(f"gc_collections: {name} (settled={settled}) failed, exit {p.returncode}:\n"
                 f"{p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _measure(root: Path, args) -> None:
    from rlscale.study_plan import write_task
    from rlscale.study_presets import PRESETS

    write_task(PRESETS[PRESET], root)
    model_run = root / "model-run"  # the GRPO and baseline jobs' model (its quality aside)
    _side(root, f"pretrain:{args.rung}", args.tokens, "", str(model_run), settled=True)
    model = str(model_run / "model")
    jobs = [(f"pretrain:{args.rung}", args.tokens), (f"rl:{args.rung}", args.rl_steps),
            (f"baseline:{args.rung}", args.problems)]
    saved: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for name, budget in jobs:
            res = {}
            for settled in ((True, False) if r % 2 else (False, True)):
                out = str(root / f"{name.replace(':', '-')}-{r}-{settled}")
                res[settled] = _side(root, name, budget, model, out, settled)
            d, s = res[False], res[True]
            saved.setdefault(name, []).append(d["all_s"] - s["all_s"])
            print(f"gc_collections round={r} job={name} default_full={d['full']} "
                  f"default_full_s={d['full_s']:.3f} default_gc_s={d['all_s']:.3f} "
                  f"settled_full={s['full']} settled_full_s={s['full_s']:.3f} "
                  f"settled_gc_s={s['all_s']:.3f} default_wall_s={d['wall']:.2f} "
                  f"settled_wall_s={s['wall']:.2f}", flush=True)
    for name, v in saved.items():
        print(f"gc_collections job={name} rounds={len(v)} median_gc_s_saved="
              f"{statistics.median(v):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=50, help="the baseline's problems per run")
    in_scratch(_measure, common_args(ap, tokens=100_000, rl_steps=3, rounds=2), "gc_collections-")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        root, name, budget, model, out, mode = sys.argv[2:8]
        child(Path(root), name, int(budget), model, out, mode == "settled")
    else:
        main()
