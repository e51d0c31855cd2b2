"""Crash-safe file primitives and the strict readers of every file rlscale reads.

A write either lands whole or not at all (temp file + fsync + rename). JSONL logs are appended
one flushed line at a time; a reader tolerates (and a writer truncates) a torn last line left by a
killed process, so a log is never corrupt and never holds a half record.

Reading is strict and bounded (docs/reliability.md): JSON values nest at most MAX_JSON_DEPTH
deep, a JSON line is at most MAX_LINE_BYTES, a JSON file at most MAX_FILE_BYTES; CSV is read in
the csv module's strict mode with a unique header and every row as long as it. Every error is a
UserError naming the file and line.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from rlscale.errors import UserError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null so every reader can parse the file."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _jsonable(obj.item())
    return obj


def dumps(obj: Any, indent: int | None = None) -> str:
    return json.dumps(_jsonable(obj), indent=indent, allow_nan=False)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps(obj, indent=2) + "\n")


MAX_JSON_DEPTH = 64  # our configs nest 3 deep; a deeper value is not ours (and recursion kills)
MAX_LINE_BYTES = 4 << 20  # one JSONL record / CSV row: a problem or a metrics row is < 100 kB
MAX_FILE_BYTES = 1 << 30  # a whole JSON document (a TRL trainer_state.json is a few MB)
_DEEP = object()


def _too_deep(obj: Any) -> bool:
    """Nesting deeper than MAX_JSON_DEPTH (iterative: a deep value must not recurse here)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            if d > MAX_JSON_DEPTH:
                return True
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return False


def parse_json(text: str | bytes, where: str, max_bytes: int = MAX_LINE_BYTES) -> Any:
    """json.loads with the size and depth limits above; errors name `where` (file:line)."""
    if len(text) > max_bytes:
        raise UserError(f"{where}: {len(text):,} bytes is longer than the {max_bytes:,}-byte "
                        "limit for one JSON value")
    try:
        obj = json.loads(text)
    except RecursionError:  # the C decoder's own depth guard: report it as too deep below
        obj = _DEEP
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{where}: not valid JSON ({e})") from None
    # depth <= the number of opening brackets (those in strings only add to it): most values
    # have too few to be deep, and counting them is far cheaper than walking the value
    opening = text.count("[") + text.count("{") if isinstance(text, str) else \
        text.count(b"[") + text.count(b"{")
    if obj is _DEEP or (opening > MAX_JSON_DEPTH and _too_deep(obj)):
        raise UserError(f"{where}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return obj


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UserError(f"{path}: {size:,} bytes is larger than the {MAX_FILE_BYTES:,}-byte limit "
                        "for a JSON file")
    return parse_json(path.read_bytes(), str(path), MAX_FILE_BYTES)


def read_csv(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(line, row) pairs of a CSV file with a header, read strictly.

    Strict: an unterminated quote or a stray character after a closing quote is an error (the
    lenient default would swallow the rest of the file into one field), as are an empty or
    repeated column name and a row whose length differs from the header's. Blank lines are
    skipped. `line` is where the row starts, for error messages.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    csv.field_size_limit(MAX_LINE_BYTES)
    out: list[tuple[int, dict]] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, strict=True)
        header, line = None, 1
        try:
            for fields in reader:
                if fields and any(x.strip() for x in fields):
                    if header is None:
                        header = _csv_header(fields, f"{path}:{line}")
                    elif len(fields) != len(header):
                        raise UserError(f"{path}:{line}: {len(fields)} fields, the header has "
                                        f"{len(header)}")
                    else:
                        out.append((line, dict(zip(header, fields))))
                line = reader.line_num + 1
        except csv.Error as e:
            raise UserError(f"{path}:{line}: not valid CSV ({e})") from None
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason})") from None
    if header is None:
        raise UserError(f"{path}: empty CSV file (no header)")
    return out


def _csv_header(fields: list[str], where: str) -> list[str]:
    names = [x.strip() for x in fields]
    if not all(names):
        raise UserError(f"{where}: empty column name in the header")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"{where}: column(s) {', '.join(dup)} repeated in the header")
    return names


def iter_jsonl(path: str | os.PathLike, tolerate_torn_tail: bool = False) -> Iterator[dict]:
    """Yield the objects of a JSONL file; a malformed line is a UserError naming file and line.

    tolerate_torn_tail: skip a last line without its newline that does not parse (what a killed
    writer leaves behind); our own logs are read this way.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    last = len(lines) - 1
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            obj = parse_json(raw, f"{path}:{i + 1}")
        except UserError:
            if tolerate_torn_tail and i == last:
                return
            raise
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{i + 1}: expected a JSON object, got {type(obj).__name__}")
        yield obj


def read_jsonl(path: str | os.PathLike, tolerate_torn_tail: bool = False) -> list[dict]:
    return list(iter_jsonl(path, tolerate_torn_tail))


def repair_jsonl(path: str | os.PathLike) -> None:
    """Cut a torn last line (no trailing newline) left by a killed writer. A log hard-linked
    elsewhere (a study copied with `cp -al`) is first made this path's own file, so neither the
    cut nor later appends reach the other copy."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
    if path.stat().st_nlink > 1:
        atomic_write_bytes(path, data)  # a new inode here; the other name keeps the old one
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())


def truncate_jsonl(path: str | os.PathLike, keep) -> int:
    """Atomically rewrite a log keeping the records for which keep(record) is true."""
    path = Path(path)
    if not path.exists():
        return 0
    rows = [r for r in read_jsonl(path, tolerate_torn_tail=True) if keep(r)]
    atomic_write_text(path, "".join(dumps(r) + "\n" for r in rows))
    return len(rows)


class JsonlWriter:
    """Append-only JSONL log: one line per record, flushed and fsynced."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_jsonl(self.path)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._f.write(dumps(record) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def write_many(self, records: Iterable[dict]) -> None:
        self._f.write("".join(dumps(r) + "\n" for r in records))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
