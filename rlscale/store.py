"""Results database: one SQLite file per study indexing every run and its per-step metrics.

Tables
    runs(run_id, config JSON, status pending|running|done|failed, attempts, run_dir, N, source
         rlscale|verl|trl, error, created, updated)
    metrics(run_id, step, D, C_paper, test_loss, row JSON)  -- one row per logged step

Several processes (Ray workers, a sweep driver, an importer) write at once: the file runs in WAL
mode with a busy timeout, every write is one short `BEGIN IMMEDIATE` transaction, and a
transaction that still meets a lock is retried with backoff, so no writer loses a row.

The fitter reads `fit_rows(db)`: one dict per step with N, step, D, C_paper, test_loss, ...
CLI: `rlscale runs` (rlscale.runs); run directories are indexed by `rlscale import run RUN_DIR...`
(rlscale.importers).

Which database: one rule for every command (`default_db`): --db, else $RLSCALE_DB, else
results.sqlite in the working directory. A database is created only by a command that writes,
only after its inputs are valid, and in one step (built aside, then linked into place); an
existing file that is not an rlscale database (empty, not SQLite, another program's SQLite) is
refused and never altered.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from rlscale.errors import UserError
from rlscale.finite import finite_float
from rlscale.files import dumps
from rlscale.rundir import read_run

DEFAULT_DB = "results.sqlite"
DB_ENV = "RLSCALE_DB"
STATUSES = ("pending", "running", "done", "failed")
SOURCES = ("rlscale", "verl", "trl")
# Keys a run writes into config.json that are results of the run, not choices: left out of the
# hash so that the id computed before a run equals the one computed from its config.json after.
DERIVED_KEYS = frozenset({"N", "run_id", "n_params", "non_embedding_params", "rlscale_version",
                          "created", "model_info", "source", "n_layer", "d_attn", "device_used"})
INDEXED = ("D", "C_paper", "test_loss")
_SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id   TEXT PRIMARY KEY,
    config   TEXT NOT NULL,
    status   TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    run_dir  TEXT,
    N        REAL,
    source   TEXT NOT NULL DEFAULT 'rlscale',
    error    TEXT,
    created  REAL NOT NULL,
    updated  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id    TEXT NOT NULL REFERENCES runs(run_id),
    step      INTEGER NOT NULL,
    D         REAL,
    C_paper   REAL,
    test_loss REAL,
    row       TEXT NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE INDEX IF NOT EXISTS metrics_step ON metrics(step);
CREATE INDEX IF NOT EXISTS metrics_c ON metrics(C_paper);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
"""
_COLUMNS = {"runs": {"run_id", "config", "status", "attempts", "run_dir", "N", "source"},
            "metrics": {"run_id", "step", "row"}}


# TrainConfig fields added after run ids were first handed out, each with the value that means
# "as before": at that value a field is left out of the hash, so a run keeps its id across the
# upgrade (a sweep resumes instead of rerunning every run; a study's database gains no twins).
# A new field whose default changes nothing goes here with that default.
NEUTRAL_DEFAULTS = {"clip_c": 0.0, "stop_at_question": True, "chat": False,
                    "fewshot_as_multiturn": False, "chat_template_kwargs": "",
                    "log_samples": 0, "system_prompt": ""}


def config_hash(config: dict) -> str:
    """Run id: sha256 of the canonical JSON of the resolved config (derived keys, and fields
    added later at their neutral value, left out)."""
    clean = {k: v for k, v in config.items() if k not in DERIVED_KEYS
             and not (k in NEUTRAL_DEFAULTS and v == NEUTRAL_DEFAULTS[k])}
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def train_fields(config: dict) -> dict:
    """The TrainConfig settings of a run's config.json (TrainConfig.settings_of)."""
    from rlscale.grpo.config import TrainConfig

    return TrainConfig.settings_of(config)


def default_db() -> str:
    """The results database when no --db is given: $RLSCALE_DB, else ./results.sqlite."""
    return os.environ.get(DB_ENV) or DEFAULT_DB


def add_db_flag(parser) -> None:
    """The --db flag of every command that reads or writes a results database."""
    parser.add_argument("--db", default=None, help=f"results database (default: ${DB_ENV}, "
                        f"else {DEFAULT_DB} in the working directory)")


def is_db(path: str | os.PathLike) -> bool:
    """True when the file is an SQLite database (lets `rlscale fit --data` accept one)."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


def check_db(path: str | os.PathLike, create: bool = False) -> Path:
    """Refuse a --db that is not ours, without touching it; a missing one is fine if create."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a results database")
    if not path.exists():
        if create:
            return path
        raise UserError(f"{path}: no such results database")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: an empty file, not a results database; refusing to write "
                        "into it (remove it or choose another --db)")
    if not is_db(path):
        raise UserError(f"{path}: not an SQLite results database")
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=60)
        try:
            cols = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")}
                    for t in ("runs", "metrics")}
            n_tables = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        raise UserError(f"{path}: unreadable SQLite file ({e})") from None
    if n_tables and not (_COLUMNS["runs"] <= cols["runs"] and _COLUMNS["metrics"] <= cols["metrics"]):
        raise UserError(f"{path}: an SQLite database of another program (no rlscale runs/metrics "
                        "tables); refusing to alter it (choose another --db)")
    return path


def _create(path: Path) -> None:
    """Build a new database aside and link it into place: no half-made file, no clobbering."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        conn = sqlite3.connect(str(tmp), isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")  # stored in the file: every opener uses WAL
        conn.executescript(_SCHEMA)
        conn.close()
        try:
            os.link(tmp, path)  # fails if another process created it first: theirs stands
        except FileExistsError:
            pass
    finally:
        for f in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            f.unlink(missing_ok=True)


class Store:
    """A results database. Cheap to open; open one per process (connections are not shared).

    create=False (readers) requires an existing database; create=True makes a new one.
    """

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0, create: bool = True):
        self.path = check_db(path, create)
        if not self.path.exists():
            _create(self.path)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the lock
        # up front instead of failing on upgrade from a read lock halfway through.
        self.conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._retry(lambda c: c.execute("PRAGMA journal_mode = WAL"), transaction=False)
        self.conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable at checkpoint
        self._retry(lambda c: c.executescript(_SCHEMA), transaction=False)

    # -- plumbing ---------------------------------------------------------------------------
    def _retry(self, fn: Callable[[sqlite3.Connection], Any], transaction: bool = True,
               tries: int = 50) -> Any:
        """Run fn in one write transaction; retry while another process holds the lock."""
        delay = 0.01
        for attempt in range(tries):
            try:
                if not transaction:
                    return fn(self.conn)
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    out = fn(self.conn)
                    self.conn.execute("COMMIT")
                    return out
                except BaseException:
                    if self.conn.in_transaction:
                        self.conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                busy = "locked" in str(e) or "busy" in str(e)
                if not busy or attempt == tries - 1:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- runs -------------------------------------------------------------------------------
    def add_run(self, config: dict, run_id: str | None = None, run_dir: str | None = None,
                N: float | None = None, source: str = "rlscale", status: str = "pending") -> str:
        """Insert a run if absent (config, run_dir, N updated when given); returns its id."""
        if source not in SOURCES:
            raise UserError(f"source: {source!r} is not one of {', '.join(SOURCES)}")
        if status not in STATUSES:
            raise UserError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
        run_id = run_id or config_hash(config)
        now = time.time()
        N = N if N is not None else config.get("N")

        def tx(c):
            c.execute("INSERT OR IGNORE INTO runs (run_id, config, status, run_dir, N, source,"
                      " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (run_id, dumps(config), status, run_dir, N, source, now, now))
            c.execute("UPDATE runs SET config = ?, run_dir = COALESCE(?, run_dir),"
                      " N = COALESCE(?, N), source = ?, updated = ? WHERE run_id = ?",
                      (dumps(config), run_dir, N, source, now, run_id))
        self._retry(tx)
        return run_id

    def set_status(self, run_id: str, status: str, error: str | None = None,
                   new_attempt: bool = False) -> int:
        """Set a run's status; new_attempt counts one more attempt. Returns the attempt count."""
        if status not in STATUSES:
            raise UserError(f"status: {status!r} is not one of {', '.join(STATUSES)}")

        def tx(c):
            c.execute("UPDATE runs SET status = ?, error = ?, updated = ?,"
                      " attempts = attempts + ? WHERE run_id = ?",
                      (status, error, time.time(), int(new_attempt), run_id))
            row = c.execute("SELECT attempts FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise UserError(f"run {run_id}: not in the database")
            return int(row[0])
        return self._retry(tx)

    def run(self, run_id: str) -> dict:
        """One run by id or unique id prefix."""
        rows = self.conn.execute("SELECT * FROM runs WHERE run_id LIKE ? ORDER BY run_id",
                                 (run_id.replace("%", "") + "%",)).fetchall()
        if not rows:
            raise UserError(f"run {run_id}: not in {self.path}")
        if len(rows) > 1:
            raise UserError(f"run {run_id}: ambiguous prefix ({len(rows)} runs match)")
        return _run_dict(rows[0])

    def runs(self, status: str | None = None) -> list[dict]:
        q, args = "SELECT * FROM runs", ()
        if status:
            q, args = q + " WHERE status = ?", (status,)
        return [_run_dict(r) for r in self.conn.execute(q + " ORDER BY created, run_id", args)]

    def status_counts(self, run_ids: Iterable[str] | None = None) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        wanted = set(run_ids) if run_ids is not None else None
        for r in self.conn.execute("SELECT run_id, status FROM runs"):
            if wanted is None or r["run_id"] in wanted:
                counts[r["status"]] += 1
        return counts

    # -- metrics ----------------------------------------------------------------------------
    def add_metrics(self, run_id: str, rows: Iterable[dict]) -> int:
        """Upsert per-step rows (key: run_id, step): importing the same log twice is a no-op."""
        recs = []
        for i, r in enumerate(rows):
            if not isinstance(r.get("step"), (int, float)) or isinstance(r.get("step"), bool):
                raise UserError(f"run {run_id}: metrics row {i + 1} has no numeric 'step'")
            recs.append((run_id, int(r["step"]), *(_num(r.get(k)) for k in INDEXED), dumps(r)))

        def tx(c):
            c.executemany("INSERT OR REPLACE INTO metrics (run_id, step, D, C_paper, test_loss,"
                          " row) VALUES (?, ?, ?, ?, ?, ?)", recs)
            c.execute("UPDATE runs SET updated = ? WHERE run_id = ?", (time.time(), run_id))
        self._retry(tx)
        return len(recs)

    def metrics(self, run_id: str) -> list[dict]:
        cur = self.conn.execute("SELECT row FROM metrics WHERE run_id = ? ORDER BY step",
                                (run_id,))
        return [json.loads(r[0]) for r in cur]


def _num(v: Any) -> float | None:
    return finite_float(v)  # NaN/inf read as "not measured" (rlscale.finite)


def _run_dict(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    return d


def import_run_dir(db: Store | str | os.PathLike, run_dir: str | os.PathLike,
                   run_id: str | None = None, status: str | None = None) -> str:
    """Index a training run directory (config.json + metrics.jsonl). Idempotent.

    status defaults to 'done' when the run wrote its final step (config `steps`), else 'running'
    for a run that is still going / was interrupted.
    """
    run = read_run(run_dir, need_metrics=False)  # bad files raise before the store is opened
    store = db if isinstance(db, Store) else Store(db)
    run_dir, config, rows = run.path, run.config, run.rows
    if status is None:
        status = "done" if run.finished else "running"
    run_id = store.add_run(config, run_id=run_id or config_hash(train_fields(config)),
                           run_dir=str(run_dir.resolve()),
                           N=_num(config.get("N")))
    store.add_metrics(run_id, rows)
    store.set_status(run_id, status)
    if store is not db:
        store.close()
    return run_id


# Config fields copied beside every metric row for the fitter / exports (absent ones are None).
RUN_COLUMNS = ("model", "task", "reward", "lr", "batch_size", "group_size", "reuse", "seed")


def fit_rows(db: str | os.PathLike, status: tuple[str, ...] | None = None,
             eval_only: bool = True) -> list[dict]:
    """Rows for the scaling fitter: run_id, source, N, model..., step, D, C_paper, test_loss...

    One dict per (run, step), sorted by run then step; eval_only keeps the steps that have a
    test_loss. status limits the runs (e.g. ('done',)); None takes every run.
    """
    with Store(db, create=False) as store:
        out = []
        for run in store.runs():
            if status and run["status"] not in status:
                continue
            base = {"run_id": run["run_id"], "source": run["source"], "N": run["N"]}
            base.update({k: run["config"].get(k) for k in RUN_COLUMNS})
            for m in store.metrics(run["run_id"]):
                if eval_only and m.get("test_loss") is None:
                    continue
                out.append({**base, **m})
    return out
