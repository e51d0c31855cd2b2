"""`rlscale sweep SPEC.toml`: a grid of training runs, one Ray task per run.

SPEC.toml
    [base]       train options (names of `rlscale train`'s flags, with underscores; `preset` too)
    [grid]       lists; every combination is one run (grid values override [base])
    [resources]  per-run Ray resource request: num_cpus (default 1), num_gpus (default 0), memory

A run is identified by the hash of its resolved TrainConfig (rlscale.store.config_hash) and
lives in OUT/runs/<run_id>. The results database (--db; default as every command's, see
rlscale.store.default_db, so `rlscale runs list` finds it) holds each run's
status, attempts and metrics, so a second invocation skips finished runs and runs nothing when
all are done. Failures: a worker that dies (killed, out of memory) is retried by Ray
(max_retries); an exception in a run is retried by the driver; together at most --max-retries
retries per run and invocation (a rerun gives failed runs a fresh budget). Every attempt resumes
from the run's latest checkpoint when one exists; a failed run keeps its finished steps in the DB.
Local Ray by default (`ray.init(num_cpus=--workers)`), a cluster with --address.

Nothing is written before the whole spec is valid: every grid point resolves to a valid config
naming a model and task that exist, the grid has at most MAX_RUNS points, Ray is installed, and
the database is an rlscale one. One sweep at a time per OUT (rlscale.procs.dir_lock); Ray's
local processes share the driver's fate, and a task's worker dies with its raylet.
"""

from __future__ import annotations

import itertools
import math
import os
import tomllib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rlscale.checks import model_spec, require, task_spec
from rlscale.errors import UserError
from rlscale.procs import die_with_parent, dir_lock, keep_freed_memory
from rlscale.store import STATUSES, Store, add_db_flag, check_db, config_hash, default_db, import_run_dir

MAX_RUNS = 10_000  # grid points: far above a sweep one would run, far below a hang
RESOURCE_KEYS = {"num_cpus": 1, "num_gpus": 0, "memory": None}
# test hook: "RUN_ID" SIGKILLs the worker of that run's 1st attempt after its first checkpoint;
# "RUN_ID:always" every attempt's (a run that can never finish)
TEST_KILL_ENV = "RLSCALE_SWEEP_TEST_KILL"


@dataclass
class Run:
    run_id: str
    config: dict  # resolved TrainConfig as a dict
    point: dict  # the grid values of this run (for the summary)


@dataclass
class Spec:
    path: Path
    base: dict
    grid: dict[str, list]
    resources: dict = field(default_factory=dict)


def load_spec(path: str | Path) -> Spec:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such sweep spec")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    unknown = sorted(set(data) - {"base", "grid", "resources"})
    if unknown:
        raise UserError(f"{path}: unknown table(s) {', '.join(unknown)} "
                        "(expected [base], [grid], [resources])")
    base, grid, res = data.get("base", {}), data.get("grid", {}), data.get("resources", {})
    for name, t in (("base", base), ("grid", grid), ("resources", res)):
        if not isinstance(t, dict):
            raise UserError(f"{path}: [{name}] must be a table")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise UserError(f"{path}: [grid] {k}: expected a non-empty list of values")
    points = math.prod(len(v) for v in grid.values())
    if points > MAX_RUNS:
        raise UserError(f"{path}: [grid] has {points:,} points; at most {MAX_RUNS:,} per sweep")
    both = sorted(set(base) & set(grid))
    if both:
        raise UserError(f"{path}: {', '.join(both)} in both [base] and [grid]")
    resources = dict(RESOURCE_KEYS)
    for k, v in res.items():
        if k not in RESOURCE_KEYS:
            raise UserError(f"{path}: [resources] {k}: unknown (use num_cpus, num_gpus, memory)")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise UserError(f"{path}: [resources] {k}: expected a number >= 0, got {v!r}")
        resources[k] = v
    if not base and not grid:
        raise UserError(f"{path}: empty sweep spec: give train options in [base] and lists to "
                        "sweep in [grid]")
    return Spec(path, base, grid, resources)


def expand(spec: Spec) -> list[Run]:
    """Every grid point resolved to a validated TrainConfig; identical configs merged."""
    from rlscale.grpo.config import resolve

    keys = list(spec.grid)
    runs: dict[str, Run] = {}
    for values in itertools.product(*(spec.grid[k] for k in keys)):
        point = dict(zip(keys, values))
        opts = {**spec.base, **point}
        preset = opts.pop("preset", None)
        try:
            cfg = resolve(preset, opts).validate().to_dict()
            model_spec(cfg["model"], "model")
            task_spec(cfg["task"], "task")
        except UserError as e:
            raise UserError(f"{spec.path}: grid point {point}: {e}") from None
        rid = config_hash(cfg)
        runs.setdefault(rid, Run(rid, cfg, point))
    return list(runs.values())


# -- the Ray task -------------------------------------------------------------------------------
def _kill_after_first_checkpoint(run_dir: Path) -> threading.Event:
    """Test hook: SIGKILL this worker once the run has written a checkpoint (as a crash would).

    Returns an event that disarms the hook: Ray reuses worker processes, so a hook outliving its
    task must not kill a later task.
    """
    from rlscale.grpo.checkpoint import checkpoints

    stop = threading.Event()

    def watch():
        while not stop.wait(0.01):
            if checkpoints(run_dir):
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    return stop


def run_task(run_id: str, config: dict, run_dir: str, db_path: str, kill_hook: str = "",
             max_attempts: int = 0) -> dict:
    """Train one run (resuming from its checkpoint if any) and index it in the database.

    max_attempts (0 = no limit) caps the attempts of a run over Ray's retries of dead workers
    and the driver's retries of exceptions together: an attempt over the cap fails at once.
    """
    import contextlib

    from rlscale.files import JsonlWriter
    from rlscale.grpo.checkpoint import latest_checkpoint
    from rlscale.grpo.config import TrainConfig
    from rlscale.grpo.trainer import train

    die_with_parent()  # a worker outlives neither its raylet nor a killed local driver
    keep_freed_memory()
    run_dir_p = Path(run_dir)
    run_dir_p.mkdir(parents=True, exist_ok=True)
    with Store(db_path) as store:
        info = store.run(run_id)
        if max_attempts and info["attempts"] >= max_attempts:
            msg = (f"no attempts left ({info['attempts']} of {max_attempts} used; "
                   f"last error: {info['error'] or 'worker died'})")
            store.set_status(run_id, "failed", error=msg)
            raise RuntimeError(msg)
        attempt = store.set_status(run_id, "running", new_attempt=True)
    ckpt = latest_checkpoint(run_dir_p)
    resumed_from = int(ckpt.name.split("_")[-1]) if ckpt else None
    log = JsonlWriter(run_dir_p / "sweep_attempts.jsonl")
    log.write({"attempt": attempt, "pid": os.getpid(), "start": time.time(),
               "resumed_from_step": resumed_from})
    hook = None
    victim, _, mode = kill_hook.partition(":")
    if victim and run_id.startswith(victim) and (attempt == 1 or mode == "always"):
        hook = _kill_after_first_checkpoint(run_dir_p)
    try:
        with open(run_dir_p / "sweep.log", "a") as out, contextlib.redirect_stdout(out), \
                contextlib.redirect_stderr(out):
            # resume=True also for a dir without a checkpoint: a worker killed before its first
            # checkpoint leaves config.json / metrics.jsonl, which a fresh start would refuse
            summary = train(TrainConfig.from_dict(config), run_dir_p, resume=True)
    except BaseException as e:
        msg = f"{type(e).__name__}: {e}".splitlines()[0][:500]
        log.write({"attempt": attempt, "end": time.time(), "outcome": "error", "error": msg})
        log.close()
        with Store(db_path) as store:
            store.set_status(run_id, "failed", error=msg)
        raise
    finally:
        if hook is not None:
            hook.set()
    with Store(db_path) as store:
        import_run_dir(store, run_dir_p, run_id=run_id, status="done")
    log.write({"attempt": attempt, "end": time.time(), "outcome": "done"})
    log.close()
    return {"run_id": run_id, "attempt": attempt, "summary": _small(summary)}


def _small(d) -> dict:
    if not isinstance(d, dict):
        return {}
    return {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool, type(None)))}


# -- the driver ---------------------------------------------------------------------------------
def _init_ray(address: str | None, workers: int):
    import ray

    if ray.is_initialized():
        return ray, False
    if address:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    else:
        # local workers are forked by the raylet, which inherits this environment: make the
        # rlscale package importable there even when it is not pip-installed
        root = str(Path(__file__).resolve().parents[1])
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + [p for p in paths if p != root])
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 configure_logging=True, logging_level="warning")
    return ray, True


class StatusTable:
    """pending / running / done / failed counts, redrawn in place on a terminal."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = None
        self.t0 = time.time()

    def update(self, counts: dict) -> None:
        line = "  ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES)
        if line == self.last:
            return
        self.last = line
        stamp = f"[{time.time() - self.t0:6.1f}s] "
        if self.tty:
            self.stream.write("\r\x1b[2K" + stamp + line)
        else:
            self.stream.write(stamp + line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")


def sweep(spec_path: str | Path, out: str | Path | None = None, db: str | Path | None = None,
          address: str | None = None, max_retries: int = 2, workers: int = 2,
          stream=None) -> dict:
    """Run every grid point not yet done; returns {run_id: status} of this sweep's runs."""
    if max_retries < 0:
        raise UserError(f"--max-retries: {max_retries}: must be >= 0")
    if workers < 1:
        raise UserError(f"--workers: {workers}: must be >= 1")
    spec = load_spec(spec_path)
    runs = expand(spec)
    out = Path(out) if out else spec.path.with_suffix("")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out}: is an existing file; name a directory")
    db = check_db(db or default_db(), create=True)
    require("ray", "rlscale sweep")
    with dir_lock(out, "sweep"):
        return _sweep(spec, runs, out, db, address, max_retries, workers, stream)


def _sweep(spec, runs, out, db, address, max_retries, workers, stream) -> dict:
    run_dirs = {r.run_id: str((out / "runs" / r.run_id).resolve()) for r in runs}
    kill_hook = os.environ.get(TEST_KILL_ENV, "")

    todo, budget = [], {}
    with Store(db) as store:
        for r in runs:
            store.add_run(r.config, run_id=r.run_id, run_dir=run_dirs[r.run_id])
            info = store.run(r.run_id)
            if info["status"] != "done":
                store.set_status(r.run_id, "pending")
                todo.append(r)
                # every invocation gives a run K + 1 attempts (a failed run gets a fresh budget)
                budget[r.run_id] = info["attempts"] + max_retries + 1
    stream = stream or sys.stderr
    stream.write(f"sweep {spec.path}: {len(runs)} runs, {len(runs) - len(todo)} already done, "
                 f"{len(todo)} to run; database {db}\n")
    if todo:
        _drive(todo, budget, spec.resources, run_dirs, str(db.resolve()), address, max_retries,
               workers, kill_hook, stream)
    with Store(db) as store:
        result = {r.run_id: store.run(r.run_id)["status"] for r in runs}
        _summary(store, runs, stream)
    return result


def _drive(todo, budget, resources, run_dirs, db, address, max_retries, workers, kill_hook,
           stream):
    ray, owned = _init_ray(address, workers)
    opts = {k: v for k, v in resources.items() if v is not None}
    # Ray retries a task whose worker died (system failure) on its own; exceptions raised by a
    # run come back to us (retry_exceptions=False) and are retried below.
    task = ray.remote(run_task).options(max_retries=max_retries, retry_exceptions=False, **opts)
    by_id = {r.run_id: r for r in todo}
    in_flight = {}

    def submit(r):
        ref = task.remote(r.run_id, r.config, run_dirs[r.run_id], db, kill_hook, budget[r.run_id])
        in_flight[ref] = r.run_id

    table = StatusTable(stream)
    try:
        for r in todo:
            submit(r)
        with Store(db) as store:
            while in_flight:
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                for ref in ready:
                    rid = in_flight.pop(ref)
                    try:
                        ray.get(ref)
                    except Exception as e:  # RayTaskError, WorkerCrashedError, ...
                        msg = (str(e).strip().splitlines() or [type(e).__name__])[-1][:500]
                        # attempts counts Ray's own retries of dead workers too: K + 1 in all
                        if store.run(rid)["attempts"] < budget[rid]:
                            stream.write(f"run {rid}: attempt failed ({msg}); retrying\n")
                            store.set_status(rid, "pending", error=msg)
                            submit(by_id[rid])
                        else:
                            stream.write(f"run {rid}: failed ({msg})\n")
                            _index_partial(store, rid, run_dirs[rid])
                            store.set_status(rid, "failed", error=msg)
                table.update(store.status_counts(run_dirs))
    except KeyboardInterrupt:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        with Store(db) as store:
            for rid in in_flight.values():
                store.set_status(rid, "pending", error="interrupted")
        raise
    finally:
        table.close()
        if owned:
            ray.shutdown()


def _index_partial(store: Store, run_id: str, run_dir: str) -> None:
    """Keep the steps a failed run did finish in the database (a rerun replaces them)."""
    if (Path(run_dir) / "config.json").is_file():
        try:
            import_run_dir(store, run_dir, run_id=run_id, status="failed")
        except UserError:  # a damaged run dir must not stop the sweep; its error is recorded
            pass


def _summary(store: Store, runs: list[Run], stream) -> None:
    from rlscale.runs import print_table

    keys = sorted({k for r in runs for k in r.point})
    lines = [("run_id", *keys, "status", "tries", "steps", "test_loss")]
    counts = dict.fromkeys(STATUSES, 0)
    for r in runs:
        info = store.run(r.run_id)
        counts[info["status"]] += 1
        ms = store.metrics(r.run_id)
        loss = next((m["test_loss"] for m in reversed(ms) if m.get("test_loss") is not None), None)
        lines.append((r.run_id, *(r.point.get(k) for k in keys), info["status"],
                      info["attempts"], ms[-1]["step"] if ms else 0, loss))
    print_table(lines, file=stream)
    stream.write("summary: " + ", ".join(f"{v} {k}" for k, v in counts.items()) + "\n")


# -- CLI ----------------------------------------------------------------------------------------
def configure(parser) -> None:
    parser.add_argument("spec", metavar="SPEC.toml")
    parser.add_argument("--address", help="Ray cluster address (default: start local Ray)")
    parser.add_argument("--max-retries", type=int, default=2,
                        help="retries per run after a failure or a dead worker (default 2)")
    parser.add_argument("--workers", type=int, default=2,
                        help="local Ray CPUs, i.e. parallel runs of num_cpus=1 (default 2)")
    parser.add_argument("--out", help="sweep directory (default: SPEC path without .toml)")
    add_db_flag(parser)


def run(args) -> int:
    result = sweep(args.spec, args.out, args.db, args.address, args.max_retries, args.workers)
    return 0 if all(s == "done" for s in result.values()) else 1
