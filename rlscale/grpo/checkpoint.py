"""Checkpoints of a run: RUN_DIR/checkpoints/step_<N>/ with

    model.safetensors      weights (tied tensors stored once)
    optimizer.safetensors  optimizer tensors (Adam moments, step counts), no pickle
    state.json             optimizer hyper-parameters, RNG states, data cursor, counters
    complete.json          written last: the size of every file above (the completion marker)

A checkpoint is written into a hidden temporary directory and renamed into place, so a
killed process leaves either the previous checkpoint or the new one, never half of one; the
rename is the commit. The two newest are kept: if the newest is damaged after the fact (a
truncated or missing file, seen by the marker's sizes and the safetensors headers),
`latest_checkpoint` sets it aside as step_<N>.damaged, says so in one line and resumes from
the one before.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import sys
from pathlib import Path

from rlscale.errors import UserError
from rlscale.files import atomic_write_json, read_json

CKPT_DIR = "checkpoints"
MARKER = "complete.json"
FILES = ("model.safetensors", "optimizer.safetensors", "state.json")
_NAME = re.compile(r"^step_(\d+)$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def optimizer_to_flat(optimizer) -> tuple[dict, dict]:
    """(tensors, json) of an optimizer's state_dict: tensors by 'state.<param>.<key>'."""
    import torch

    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = val.detach().contiguous().cpu()
            else:
                scalars[f"state.{pid}.{key}"] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(tensors: dict, meta: dict) -> dict:
    """The inverse of optimizer_to_flat: a state_dict for optimizer.load_state_dict."""
    state: dict[int, dict] = {}
    for name, val in list(tensors.items()) + list(meta.get("scalars", {}).items()):
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = val
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> dict:
    import torch

    out = {"torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        out["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return out


def set_rng_state(state: dict) -> None:
    import torch

    if "torch" in state:
        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def save_checkpoint(run_dir, step: int, model, optimizer, state: dict, keep: int = 2) -> Path:
    """Write checkpoint `step` atomically and keep only the newest `keep` checkpoints."""
    from safetensors.torch import save_file, save_model

    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:07d}"
    tmp = root / f".step_{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a killed save
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    tensors, meta = optimizer_to_flat(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    atomic_write_json(tmp / "state.json", {**state, "step": step, "optimizer": meta,
                                           "rng": rng_state()})
    atomic_write_json(tmp / MARKER, {"files": {f: (tmp / f).stat().st_size for f in FILES}})
    for f in tmp.iterdir():  # weights reach the disk before the rename commits them
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # re-saving the same step (e.g. at exit right after a periodic save)
        shutil.rmtree(final)
    os.rename(tmp, final)
    _fsync_dir(root)
    for old in checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoints(run_dir) -> list[Path]:
    """Committed checkpoints of a run (step_<N> directories), oldest first."""
    root = Path(run_dir) / CKPT_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def damage(path) -> str | None:
    """Why checkpoint `path` cannot be loaded (a missing or truncated file), or None."""
    path = Path(path)
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        return f"{path / missing[0]}: missing"
    sizes = {f: (path / f).stat().st_size for f in FILES}
    if (path / MARKER).is_file():  # absent in checkpoints written before the marker existed
        try:
            want = json.loads((path / MARKER).read_text())["files"]
        except (ValueError, KeyError, TypeError):
            return f"{path / MARKER}: unreadable"
        for f in FILES:
            if want.get(f) != sizes[f]:
                return f"{path / f}: {sizes[f]:,} bytes, {want.get(f)} written"
    for f in FILES[:2]:
        why = _safetensors_damage(path / f, sizes[f])
        if why:
            return f"{path / f}: {why}"
    try:
        json.loads((path / "state.json").read_text())
    except (ValueError, UnicodeDecodeError):
        return f"{path / 'state.json'}: not valid JSON"
    return None


def _safetensors_damage(path: Path, size: int) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensor bytes the
    header's data_offsets span: a truncated file is shorter than the header says."""
    if size < 8:
        return f"truncated ({size} bytes)"
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8 or n > 100 << 20:
            return "truncated or not safetensors (header runs past the end)"
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items()
                       if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "not a safetensors file (unreadable header)"
    if 8 + n + end != size:
        return f"truncated ({size:,} bytes, the header says {8 + n + end:,})"
    return None


def latest_checkpoint(run_dir) -> Path | None:
    """The newest loadable checkpoint. A damaged newer one is renamed step_<N>.damaged (kept
    for inspection, out of the way of later saves) with one line on stderr; UserError when
    checkpoints exist but none is loadable."""
    found = checkpoints(run_dir)
    bad = []
    while found and (why := damage(found[-1])):
        bad.append(why)
        path = found.pop()
        os.replace(path, path.with_name(path.name + ".damaged"))
    if bad and not found:
        raise UserError(f"{bad[0]}; no earlier good checkpoint to resume from (remove "
                        f"{Path(run_dir) / CKPT_DIR} to start the run over)")
    if bad:
        sys.stderr.write(f"checkpoint damaged ({bad[0]}); resuming from the previous good one, "
                         f"{found[-1].name}\n")
    return found[-1] if found else None


def load_checkpoint(path, model, optimizer=None) -> dict:
    """Load weights (and optimizer state) in place; returns state.json (RNG restored too)."""
    from safetensors.torch import load_file, load_model

    path = Path(path)
    state = read_json(path / "state.json")
    try:
        load_model(model, str(path / "model.safetensors"), strict=True,
                   device=str(next(model.parameters()).device))
    except (RuntimeError, KeyError, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"{path}/model.safetensors: does not fit the model ({first[:200]})") from None
    if optimizer is not None:
        try:
            tensors = load_file(str(path / "optimizer.safetensors"))
            optimizer.load_state_dict(optimizer_from_flat(tensors, state["optimizer"]))
        except (RuntimeError, KeyError, ValueError, OSError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise UserError(f"{path}/optimizer.safetensors: does not fit the optimizer "
                            f"({first[:200]})") from None
    set_rng_state(state.get("rng", {}))
    return state


def check_resume(saved: dict, now: dict, resumable, path, defaults: dict | None = None) -> None:
    """Resuming continues the same run: every setting in `now` except the `resumable` ones
    (those that do not change what finished steps did) must equal the `saved` one; a setting
    the saved run predates counts as its default (`defaults`: a later version added it, and the
    default is what that run did). Shared by `rlscale train` and `rlscale pretrain`."""
    defaults = defaults or {}
    diff = [k for k in now if k not in resumable and saved.get(k, defaults.get(k)) != now[k]]
    if diff:
        k = diff[0]
        raise UserError(f"{path}: --resume with a different {k} ({saved.get(k)!r} -> "
                        f"{now[k]!r}); resume with the run's own settings or start a new --out")
