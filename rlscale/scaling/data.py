"""Points to fit: loading from tables, rlscale runs, verl / TRL logs, and selecting subsets.

`Points` holds one row per (curve, step): x (compute or data), y (test loss, gain, reward), the
model size N, the step, and a curve id (one curve = one run; in a table, one size, or one value
of --curve-col). Every reader turns bad input into a UserError naming the file and column.

Inputs `load_points` understands:
    table.csv / .jsonl / .parquet       columns chosen by x / y / size_col / step_col
    RUN_DIR (metrics.jsonl + config.json with N)      or a directory of such run directories
    results.db (rlscale.store)          every run's eval rows
    trainer_state.json / TRL output dir, verl log      through rlscale.importers (need n_params)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rlscale.errors import UserError
from rlscale.files import iter_jsonl, read_csv
from rlscale.finite import finite_float
from rlscale.rundir import read_run

# C_flops (the paper's CSV) and C_paper (rlscale runs) are the same quantity: sum of 6 N T.
ALIASES = {"C_flops": "C_paper", "C_paper": "C_flops"}


@dataclass
class Points:
    x: np.ndarray
    y: np.ndarray
    size: np.ndarray
    step: np.ndarray
    curve: np.ndarray  # int curve id per point
    curve_names: list[str] = field(default_factory=list)
    x_name: str = "x"
    y_name: str = "y"
    source: str = ""

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask) -> "Points":
        m = np.asarray(mask)
        return replace(self, x=self.x[m], y=self.y[m], size=self.size[m], step=self.step[m],
                       curve=self.curve[m])

    @property
    def sizes(self) -> np.ndarray:
        return np.unique(self.size)

    def rank_in_curve(self) -> np.ndarray:
        """0 for each curve's first step, 1 for its second... (points need not be sorted)."""
        order = np.lexsort((self.step, self.curve))
        rank = np.empty(len(self), dtype=int)
        c = self.curve[order]
        start = np.r_[0, np.flatnonzero(np.diff(c)) + 1]
        counts = np.diff(np.r_[start, len(c)])
        rank[order] = np.arange(len(c)) - np.repeat(start, counts)
        return rank


def select_mask(pts: Points, warmup_clip: int = 0, first_steps: int | None = None,
                max_size: float | None = None, min_size: float | None = None,
                sizes=None) -> np.ndarray:
    """Mask of the points `select` keeps."""
    rank = pts.rank_in_curve()
    keep = rank >= warmup_clip
    if first_steps is not None:
        keep &= rank < warmup_clip + first_steps
    if max_size is not None:
        keep &= pts.size <= max_size * (1 + 1e-9)
    if min_size is not None:
        keep &= pts.size >= min_size * (1 - 1e-9)
    if sizes is not None:
        keep &= np.isin(pts.size, np.asarray(sizes, float))
    return keep


def select(pts: Points, warmup_clip: int = 0, first_steps: int | None = None,
           max_size: float | None = None, min_size: float | None = None,
           sizes=None) -> Points:
    """Drop the first `warmup_clip` points of every curve, keep the next `first_steps`, and keep
    the sizes in [min_size, max_size] (and in `sizes` when given)."""
    out = pts.subset(select_mask(pts, warmup_clip, first_steps, max_size, min_size, sizes))
    if len(out) == 0:
        raise UserError(f"{pts.source or 'data'}: no points left after selection "
                        f"(warmup_clip={warmup_clip}, first_steps={first_steps}, "
                        f"max_size={max_size})")
    return out


def from_rows(rows: list[dict], x: str, y: str, size_col: str = "N", step_col: str = "step",
              curve_col: str | None = None, source: str = "", n_params: float | None = None,
              where=None) -> Points:
    """Points from row dicts. Rows whose y is missing (no eval at that step) are skipped.

    where(i) names row i in error messages (file:line); curve ids come from curve_col, else
    from the size. n_params supplies the size when the rows have no size column.
    """
    where = where or (lambda i: f"{source}: row {i + 1}")
    if not rows:
        raise UserError(f"{source}: no rows")
    cols = set().union(*(r.keys() for r in rows[:50]))

    def col(name: str, flag: str, optional: bool = False) -> str | None:
        if name in cols:
            return name
        if name in ALIASES and ALIASES[name] in cols:
            return ALIASES[name]
        if optional:
            return None
        raise UserError(f"{source}: no column '{name}' ({flag}; columns: {', '.join(sorted(cols))})")

    cx, cy = col(x, "--x"), col(y, "--y")
    cs = col(size_col, "--size-col", optional=n_params is not None)
    ct = col(step_col, "--step-col", optional=True)
    cc = col(curve_col, "--curve-col") if curve_col else None
    vals = {k: [] for k in ("x", "y", "size", "step")}
    names: list[str] = []
    keys: dict[str, int] = {}
    curve: list[int] = []
    for i, r in enumerate(rows):
        if _missing(r.get(cy)):
            continue
        for key, c in (("x", cx), ("y", cy), ("size", cs), ("step", ct)):
            if c is None:
                v = n_params if key == "size" else float(i)
            else:
                v = _number(r.get(c), c, where(i))
            vals[key].append(v)
        label = str(r.get(cc)) if cc else f"{vals['size'][-1]:.4g}"
        if cc is None and "run_id" in r:
            label = str(r["run_id"])
        if label not in keys:
            keys[label] = len(names)
            names.append(label)
        curve.append(keys[label])
    if not curve:
        raise UserError(f"{source}: no rows with a value in column '{cy}'")
    arr = {k: np.asarray(v, dtype=float) for k, v in vals.items()}
    return Points(arr["x"], arr["y"], arr["size"], arr["step"], np.asarray(curve), names,
                  x_name=cx, y_name=cy, source=source)


def _missing(v) -> bool:
    return v is None or (isinstance(v, str) and v.strip() == "") or (
        isinstance(v, float) and math.isnan(v))


def _number(v, column: str, where: str) -> float:
    if _missing(v):
        raise UserError(f"{where}: column '{column}': missing value")
    if isinstance(v, bool):
        raise UserError(f"{where}: column '{column}': not a number: {v!r}")
    try:
        out = float(v)
    except (TypeError, ValueError):
        raise UserError(f"{where}: column '{column}': not a number: {v!r}") from None
    if finite_float(out) is None:
        raise UserError(f"{where}: column '{column}': not finite: {v!r}")
    return out


# -- readers ------------------------------------------------------------------------------------
def read_table(path: Path) -> tuple[list[dict], callable]:
    """Rows of a CSV / JSONL / Parquet file and a function naming row i (file:line)."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        numbered = read_csv(path)  # strict: quotes, header, row lengths (rlscale.files)
        return [r for _, r in numbered], lambda i: f"{path}:{numbered[i][0]}"
    if suffix in (".jsonl", ".ndjson"):
        return list(iter_jsonl(path, tolerate_torn_tail=True)), lambda i: f"{path}:{i + 1}"
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except Exception as e:  # pyarrow raises several types for a bad file
            raise UserError(f"{path}: not a readable Parquet file ({type(e).__name__})") from None
        return rows, lambda i: f"{path}: row {i + 1}"
    raise UserError(f"{path}: unknown table format '{suffix}' (use .csv, .jsonl or .parquet)")


def read_run_dir(run: Path) -> list[dict]:
    """Eval rows of an rlscale run directory, each with the run's N (config.json) and run_id."""
    r = read_run(run)
    n = r.size()
    return [{**row, "N": n, "run_id": r.name} for row in r.rows]


def load_points(path, x: str = "C_flops", y: str = "test_loss", size_col: str = "N",
                step_col: str = "step", curve_col: str | None = None, fmt: str = "auto",
                n_params: float | None = None, batch_size: int | None = None) -> Points:
    """Read points from any supported input (see the module docstring)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p}: no such file or directory")
    fmt = _detect(p) if fmt == "auto" else fmt
    kw = dict(x=x, y=y, size_col=size_col, step_col=step_col, curve_col=curve_col, source=str(p))
    if fmt == "table":
        rows, where = read_table(p)
        return from_rows(rows, where=where, n_params=n_params, **kw)
    if fmt == "runs":
        runs = [p] if (p / "metrics.jsonl").exists() else sorted(
            d for d in p.iterdir() if (d / "metrics.jsonl").is_file())
        if not runs:
            raise UserError(f"{p}: no metrics.jsonl here nor in its subdirectories")
        rows = [r for run in runs for r in read_run_dir(run)]
        return from_rows(rows, **kw)
    if fmt == "db":
        from rlscale.store import fit_rows

        return from_rows(fit_rows(p), **kw)
    if fmt in ("verl", "trl"):
        if n_params is None:
            raise UserError(f"{p}: --n-params is required for {fmt} inputs (C = 6 N T)")
        from rlscale import importers

        if fmt == "verl":
            rows = importers.verl_rows(importers.read_verl_log(p), n_params, batch_size,
                                       where=str(p))
        else:
            rows = importers.read_trl_run(p, n_params, batch_size)
        return from_rows(rows, n_params=n_params, **{**kw, "size_col": "__none__"})
    raise UserError(f"--format: unknown format '{fmt}' (auto, table, runs, db, verl, trl)")


def _detect(p: Path) -> str:
    if p.is_dir():
        if (p / "trainer_state.json").exists() or any(p.glob("checkpoint-*/trainer_state.json")):
            return "trl"
        return "runs"
    if p.name == "trainer_state.json":
        return "trl"
    if p.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return "db"
    if p.suffix.lower() in (".log", ".txt", ".out"):
        return "verl"
    return "table"
