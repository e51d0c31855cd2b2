"""The study's job scheduler: jobs in a pool of spawned worker processes, dependencies first,
longest first, one progress bar per running job (read from the job's own log), resumable
(a finished job is skipped; a killed one resumes from its checkpoint)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from rlscale.errors import UserError
from rlscale.files import read_json
from rlscale.study_evals import run_evals
from rlscale.study_plan import Job

def run_job(kind: str, out: str, params: dict, threads: int) -> dict:
    """Run one job in a worker process (resumable: a finished job returns at once)."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the study draws its own bars
    if threads:
        torch.set_num_threads(threads)
    if threads == 1:  # one core per worker: the tokenizer's thread pool too (its threads would
        # run every batch encode and decode on the other worker's core; docs/benchmarks.md)
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
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
            # a wsd run logs its decay into OUT/branches/<tokens>/, counting on from the trunk
            logs = [Path(job.out) / "loss.jsonl", *Path(job.out).glob("branches/*/loss.jsonl")]
            return max(_last_int(p, "step") for p in logs)
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
                fut = pool.submit(_run_in_worker, job.kind, job.out, job.params, threads)
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


_BUSY = False  # in a worker process: a job is running


def _run_in_worker(kind: str, out: str, params: dict, threads: int) -> dict:
    global _BUSY
    _BUSY = True
    try:
        return run_job(kind, out, params, threads)
    finally:
        _BUSY = False


def _on_sigint(signum, frame) -> None:
    """Ctrl-C or _interrupt_workers in a worker: a running job gets KeyboardInterrupt (it saves
    and stops); an idle worker ignores it and leaves at the pool's shutdown, instead of printing
    the traceback of its interrupted queue read (the study's error is the parent's one line)."""
    if _BUSY:
        raise KeyboardInterrupt


def _worker_init() -> None:
    # a worker started from a non-interactive shell inherits SIGINT ignored; make Ctrl-C (and
    # _interrupt_workers) reach _on_sigint there
    import multiprocessing
    import signal

    from rlscale.procs import die_with_parent, freeze_imports, keep_freed_memory

    signal.signal(signal.SIGINT, _on_sigint)
    die_with_parent(multiprocessing.parent_process().pid)  # no orphan computing if we are killed
    keep_freed_memory()
    try:  # what the jobs import, once per worker, then out of the collector's reach
        import rlscale.evaluate  # noqa: F401
        import rlscale.grpo.trainer  # noqa: F401  (torch)
        import rlscale.pretrain_loop  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:  # a job's own import then raises it, where the study reports errors
        pass
    freeze_imports()


def _interrupt_workers(pool) -> None:
    import os
    import signal

    for proc in list(getattr(pool, "_processes", {}).values()):
        if proc.is_alive():
            try:
                os.kill(proc.pid, signal.SIGINT)
            except OSError:
                pass
