"""A study directory that was copied or moved: its recorded paths follow it.

The jobs of a study record where their inputs and outputs are, as `str(OUT / ...)` with OUT as
the study was given it: the evals' and the baseline's config.json and summary.json (model, task,
out), each run's config.json (model, task), pre-training's pretrain.json (config.task,
model_dir; a wsd branch's model_dir is read back to copy the final model), the study's own
summary.json. After `cp -a OLD NEW` a resume compares the plan's NEW paths with the recorded OLD
ones and refuses ("holds an eval with other settings (model, task)"), or a reader follows a
recorded path back into OLD.

The design: the study records the root it wrote those paths under (study.json's `root`; an
allocation study's allocation_settings.json), and on resume, when that root is not --out,
`relocate` rewrites every recorded path inside OLD to the same path inside NEW, then the caller
records the new root. Why this and not paths recorded relative to the study: the files stay
true for every reader that does not know about studies (`rlscale eval --out` / `rlscale train
--resume` on one job's directory, `rlscale runs`, the report), nothing in evaluate, pretrain or
the trainer changes, and studies written before this keep working (the old root is then read
from the task path every job records, as OLD/task). A relative path would mean something else
to each of those readers, and an older study would still need this rewrite.

What is rewritten: string values in the JSON files under NEW that name a path inside OLD, i.e.
OLD/<an entry of the study's top level>[/...], so a task spec ("arith:ladder") or a model
outside the study ("/data/qwen", "Qwen/Qwen2.5-0.5B") stays as it is. Model directories
(weights, HF configs, tokenizers: no study paths, and a tokenizer's strings are not paths) and
checkpoints are skipped. Each file is rewritten atomically (rlscale.files: a hard-linked copy's
twin is left alone), and the root is recorded only after the last file, so an interrupted move
is finished by the next resume and a finished one rewrites nothing (a rewritten value names NEW,
which no OLD prefix matches). results.sqlite is removed instead: the report rebuilds it from the
runs, and its run ids hash each run's config, paths included (rlscale.store.config_hash), so the
moved runs would sit beside stale copies of themselves.
"""

from __future__ import annotations

import os
from pathlib import Path

from rlscale.files import MAX_FILE_BYTES, atomic_write_json, parse_json

DERIVED = ("results.sqlite", "results.sqlite-wal", "results.sqlite-shm")  # rebuilt by the report


def relocate(out: Path, recorded: str | None) -> int:
    """Rewrite the study's recorded paths from the root it was written under (`recorded`, or
    for a study that predates recording it, the root of its jobs' OLD/task) to `out`; prints one
    line and returns the number of files rewritten (0 when it has not moved)."""
    new = str(out)
    old = recorded if recorded is not None else _task_root(out, new)
    if old is None or old == new:
        return 0
    prefixes = [(str(Path(old) / e.name), str(Path(new) / e.name)) for e in out.iterdir()]
    n = 0
    for path in _json_files(out):
        text = path.read_text(encoding="utf-8")
        if not any(_json_str(p) in text for p, _ in prefixes):
            continue
        obj = parse_json(text, str(path), MAX_FILE_BYTES)
        moved = _moved(obj, prefixes)
        if moved != obj:
            atomic_write_json(path, moved)
            n += 1
    for name in DERIVED:
        (out / name).unlink(missing_ok=True)
    print(f"study moved from {old} to {new}: {n} files updated")
    return n


def _moved(obj, prefixes: list[tuple[str, str]]):
    """obj with every string naming a path under an old prefix moved to the new one."""
    if isinstance(obj, dict):
        return {k: _moved(v, prefixes) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_moved(v, prefixes) for v in obj]
    if isinstance(obj, str):
        for old, new in prefixes:
            if obj == old or obj.startswith(old + os.sep):
                return new + obj[len(old):]
    return obj


def _task_root(out: Path, new: str) -> str | None:
    """The root an older study (no recorded root) wrote its paths under: every job records the
    study's task as ROOT/task. One other than `new`'s, if any file still holds one (after an
    interrupted rewrite, some do and some do not)."""
    mine = str(Path(new) / "task")
    for path in _json_files(out):
        text = path.read_text(encoding="utf-8")
        if '"task"' not in text:
            continue
        for value in _values(parse_json(text, str(path), MAX_FILE_BYTES), "task"):
            if isinstance(value, str) and Path(value).name == "task" and value != mine:
                return str(Path(value).parent)
    return None


def _values(obj, key: str):
    """Every value of `key` in a JSON document, at any depth."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == key:
                yield v
            yield from _values(v, key)
    elif isinstance(obj, list):
        for v in obj:
            yield from _values(v, key)


def _json_files(out: Path):
    """The study's own JSON files: everything but model directories and checkpoints (a
    directory holding weights)."""
    for d, dirs, files in os.walk(out):
        dirs.sort()
        if any(f.endswith(".safetensors") for f in files):
            continue
        for f in sorted(files):
            if f.endswith(".json"):
                yield Path(d) / f


def _json_str(s: str) -> str:
    """s as it appears inside a JSON string (rlscale.files.dumps escapes non-ASCII)."""
    import json

    return json.dumps(s)[1:-1]
