"""Results database: one SQLite file per study indexing every run and its per-step metrics.

Tables
    runs(run_id, config JSON, status pending|running|done|failed, attempts, run_dir, N, source
         rlscale|verl|trl, error, created, updated)
    metrics(run_id, step, D, C_paper, test_loss, row JSON)  -- one row per logged step

Several processes (Ray workers, a sweep driver, an importer) write at once: the file runs in WAL
mode with a busy timeout, every write is one short `BEGIN IMMEDIATE` transaction, and a
transaction that still meets a lock is retried with backoff, so no writer loses a row.

The fitter reads `fit_rows(db)`: one dict per step with N, step, D, C_paper, test_loss, ...
CLI: `rlscale runs list|show RUN|export --format csv|parquet --out FILE [--db DB]`; run
directories are indexed by `rlscale import run RUN_DIR...` (rlscale.importers).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from rlscale.errors import UserError
from rlscale.files import atomic_write_bytes, atomic_write_text, dumps
from rlscale.rundir import read_run

DEFAULT_DB = "results.sqlite"
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


def config_hash(config: dict) -> str:
    """Run id: sha256 of the canonical JSON of the resolved config (derived keys left out)."""
    clean = {k: v for k, v in config.items() if k not in DERIVED_KEYS}
    text = json.dumps(clean, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def train_fields(config: dict) -> dict:
    """The TrainConfig settings of a run's config.json (TrainConfig.settings_of)."""
    from rlscale.grpo.config import TrainConfig

    return TrainConfig.settings_of(config)


def is_db(path: str | os.PathLike) -> bool:
    """True when the file is an SQLite database (lets `rlscale fit --data` accept one)."""
    try:
        with open(path, "rb") as f:
            return f.read(16) == _SQLITE_MAGIC
    except OSError:
        return False


class Store:
    """A results database. Cheap to open; open one per process (connections are not shared)."""

    def __init__(self, path: str | os.PathLike, timeout: float = 60.0):
        self.path = Path(path)
        if self.path.exists() and self.path.stat().st_size > 0 and not is_db(self.path):
            raise UserError(f"{self.path}: not an SQLite results database")
        self.path.parent.mkdir(parents=True, exist_ok=True)
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

    def metric_count(self, run_id: str | None = None) -> int:
        if run_id is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = ?",
                                     (run_id,)).fetchone()[0])


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _run_dict(row: sqlite3.Row) -> dict:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    return d


def open_store(path: str | os.PathLike | None) -> Store:
    return Store(path or DEFAULT_DB)


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
    if not Path(db).is_file():
        raise UserError(f"{db}: no such results database")
    with Store(db) as store:
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


# -- export -----------------------------------------------------------------------------------
def table(db: str | os.PathLike) -> tuple[list[str], list[dict]]:
    rows = fit_rows(db, eval_only=False)
    first = ["run_id", "source", "N", *RUN_COLUMNS, "step", "D", "C_paper", "test_loss"]
    extra = sorted({k for r in rows for k in r if k not in first})
    cols = first + [k for k in extra if not isinstance(_first(rows, k), (dict, list))]
    return cols, rows


def _first(rows: list[dict], key: str) -> Any:
    return next((r[key] for r in rows if r.get(key) is not None), None)


def export(db: str | os.PathLike, out: str | os.PathLike, fmt: str) -> int:
    cols, rows = table(db)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(out, buf.getvalue())
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = {c: [_scalar(r.get(c)) for r in rows] for c in cols}
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({c: _column(v) for c, v in data.items()}), sink)
        atomic_write_bytes(out, sink.getvalue().to_pybytes())
    else:
        raise UserError(f"--format: {fmt!r} is not csv or parquet")
    return len(rows)


def _scalar(v: Any) -> Any:
    return v if v is None or isinstance(v, (int, float, str, bool)) else dumps(v)


def _column(values: list) -> Any:
    import pyarrow as pa

    kinds = {type(v) for v in values if v is not None}
    if kinds <= {int, float} and kinds:  # one numeric type per column (ints widen to float)
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if kinds <= {bool} or kinds <= {str}:
        return pa.array(values)
    return pa.array([None if v is None else str(v) for v in values], pa.string())


# -- CLI ----------------------------------------------------------------------------------------
def configure(parser) -> None:
    sub = parser.add_subparsers(dest="runs_cmd", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="one line per run")
    p.add_argument("--status", choices=STATUSES)
    p = sub.add_parser("show", help="a run's config and its per-step metrics")
    p.add_argument("run", help="run id or unique prefix")
    p = sub.add_parser("export", help="every run's per-step metrics as CSV or Parquet")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv")
    p.add_argument("--out", required=True)
    for p in sub.choices.values():
        p.add_argument("--db", default=DEFAULT_DB, help=f"results database (default {DEFAULT_DB})")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def run(args) -> int:
    if not Path(args.db).is_file():
        raise UserError(f"--db: {args.db}: no such results database")
    if args.runs_cmd == "export":
        n = export(args.db, args.out, args.format)
        print(f"wrote {n} rows to {args.out}")
        return 0
    with Store(args.db) as store:
        if args.runs_cmd == "list":
            head = ("run_id", "status", "tries", "source", "model", "N", "steps", "test_loss")
            lines = [head]
            for r in store.runs(args.status):
                ms = store.metrics(r["run_id"])
                last_loss = next((m["test_loss"] for m in reversed(ms)
                                  if m.get("test_loss") is not None), None)
                lines.append((r["run_id"], r["status"], r["attempts"], r["source"],
                              r["config"].get("model"), r["N"],
                              ms[-1]["step"] if ms else 0, last_loss))
            _print_table(lines)
        else:
            r = store.run(args.run)
            print(dumps({k: v for k, v in r.items()}, indent=2))
            ms = store.metrics(r["run_id"])
            if ms:
                keys = ["step", *(k for k in ("D", "C_paper", "reward_mean", "test_loss")
                                  if any(k in m for m in ms))]
                _print_table([keys] + [[m.get(k) for k in keys] for m in ms])
    return 0


def _print_table(lines: list, file=None) -> None:
    cells = [[_fmt(v) for v in line] for line in lines]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip(), file=file or sys.stdout)
