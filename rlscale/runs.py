"""`rlscale runs list|show RUN|export --format csv|parquet --out FILE [--db DB]`.

A view of a results database (rlscale.store): one line per run, one run's config and per-step
metrics, or every run's per-step metrics as a table. Reads only: a --db that does not exist or
is not an rlscale database is a one-line error and is never created or altered.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import Any

from rlscale.errors import UserError
from rlscale.files import atomic_write_bytes, atomic_write_text, dumps
from rlscale.store import RUN_COLUMNS, STATUSES, Store, add_db_flag, check_db, default_db, fit_rows


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
    if fmt not in ("csv", "parquet"):
        raise UserError(f"--format: {fmt!r} is not csv or parquet")
    cols, rows = table(db)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(out, buf.getvalue())
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = {c: [_scalar(r.get(c)) for r in rows] for c in cols}
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({c: _column(v) for c, v in data.items()}), sink)
        atomic_write_bytes(out, sink.getvalue().to_pybytes())
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
        add_db_flag(p)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def run(args) -> int:
    db = check_db(args.db or default_db())
    if args.runs_cmd == "export":
        out = Path(args.out)
        if out.is_dir() or out.resolve() == db.resolve():
            raise UserError(f"--out: {out}: is a directory or the database itself; name a file")
        n = export(db, out, args.format)
        print(f"wrote {n} rows to {out}")
        return 0
    with Store(db, create=False) as store:
        if args.runs_cmd == "list":
            _list(store, args.status)
        else:
            r = store.run(args.run)
            print(dumps({k: v for k, v in r.items()}, indent=2))
            ms = store.metrics(r["run_id"])
            if ms:
                keys = ["step", *(k for k in ("D", "C_paper", "reward_mean", "test_loss")
                                  if any(k in m for m in ms))]
                print_table([keys] + [[m.get(k) for k in keys] for m in ms])
    return 0


def _list(store: Store, status: str | None) -> None:
    head = ("run_id", "status", "tries", "source", "model", "N", "steps", "test_loss")
    lines = [head]
    for r in store.runs(status):
        ms = store.metrics(r["run_id"])
        last_loss = next((m["test_loss"] for m in reversed(ms)
                          if m.get("test_loss") is not None), None)
        lines.append((r["run_id"], r["status"], r["attempts"], r["source"],
                      r["config"].get("model"), r["N"], ms[-1]["step"] if ms else 0, last_loss))
    print_table(lines)


def print_table(lines: list, file=None) -> None:
    cells = [[_fmt(v) for v in line] for line in lines]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip(), file=file or sys.stdout)
