"""Crash-safe file primitives: atomic writes and append-only JSONL logs.

A write either lands whole or not at all (temp file + fsync + rename). JSONL logs are appended
one flushed line at a time; a reader tolerates (and a writer truncates) a torn last line left by a
killed process, so a log is never corrupt and never holds a half record.
"""

from __future__ import annotations

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


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


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
            obj = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            if tolerate_torn_tail and i == last:
                return
            raise UserError(f"{path}:{i + 1}: not valid JSON ({e})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path}:{i + 1}: expected a JSON object, got {type(obj).__name__}")
        yield obj


def read_jsonl(path: str | os.PathLike, tolerate_torn_tail: bool = False) -> list[dict]:
    return list(iter_jsonl(path, tolerate_torn_tail))


def repair_jsonl(path: str | os.PathLike) -> None:
    """Cut a torn last line (no trailing newline) left by a killed writer."""
    path = Path(path)
    if not path.exists():
        return
    data = path.read_bytes()
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
