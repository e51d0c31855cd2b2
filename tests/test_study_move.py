"""A moved study's recorded paths follow it (rlscale.study_move), on a synthetic study directory:
paths inside the study are rewritten, paths outside it and model directories are not, a rerun
rewrites nothing, an interrupted rewrite is finished by the next one, and an older study (no
recorded root) is recognised by its jobs' task path. A real smoke study moved end to end:
tests/test_study.py."""

import json
import os
from pathlib import Path

import pytest

from rlscale import study_move
from rlscale.study_move import relocate


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _study(root, recorded=True):
    """A study's recorded paths, as its jobs write them: str(root / ...)."""
    (root / "task").mkdir(parents=True)
    _write(root / "study.json", {"preset": {"task": "arith:ladder"},
                                 **({"root": str(root)} if recorded else {})})
    model = str(root / "pretrain" / "20k" / "model")
    _write(root / "pretrain" / "20k" / "pretrain.json",
           {"config": {"task": str(root / "task")}, "model_dir": model})
    _write(root / "runs" / "20k" / "config.json", {"model": model, "task": str(root / "task")})
    _write(root / "evals" / "20k" / "20k" / "passk" / "config.json",
           {"model": str(root / "runs" / "20k" / "policy"), "task": str(root / "task"),
            "out": str(root / "evals" / "20k" / "20k" / "passk")})
    # outside the study: an external model, a task spec, a sibling sharing the root's prefix
    _write(root / "evals" / "20k" / "base" / "transfer" / "config.json",
           {"model": "/data/qwen", "task": "arith:ladder,min_terms=6",
            "out": f"{root}-other/task"})
    _write(root / "pretrain" / "20k" / "model" / "tokenizer.json", {"x": str(root / "task")})
    (root / "pretrain" / "20k" / "model" / "model.safetensors").write_bytes(b"weights")
    (root / "results.sqlite").write_bytes(b"derived")


def _read(root):
    return {str(p.relative_to(root)): json.loads(p.read_text()) for p in root.rglob("*.json")}


def _points_inside(files, root):
    """The recorded paths inside the study all name `root`."""
    assert files["runs/20k/config.json"] == {"model": str(root / "pretrain/20k/model"),
                                             "task": str(root / "task")}
    assert files["pretrain/20k/pretrain.json"] == {"config": {"task": str(root / "task")},
                                                   "model_dir": str(root / "pretrain/20k/model")}
    assert files["evals/20k/20k/passk/config.json"] == {
        "model": str(root / "runs/20k/policy"), "task": str(root / "task"),
        "out": str(root / "evals/20k/20k/passk")}


@pytest.mark.parametrize("recorded", [True, False])
def test_paths_inside_the_study_follow_it_and_nothing_else_moves(tmp_path, capsys, recorded):
    old, new = tmp_path / "old", tmp_path / "new"
    _study(old, recorded)
    was = _read(old)
    os.rename(old, new)
    assert relocate(new, str(old) if recorded else None) == 3
    assert capsys.readouterr().out == f"study moved from {old} to {new}: 3 files updated\n"
    now = _read(new)
    _points_inside(now, new)
    for same in ("evals/20k/base/transfer/config.json", "pretrain/20k/model/tokenizer.json",
                 "study.json"):  # outside the study; a model's own files; the caller's root
        assert now[same] == was[same], same
    assert not (new / "results.sqlite").exists()  # the report rebuilds it
    assert not old.exists()
    # done: a rerun before the new root was recorded (killed just after) rewrites nothing
    assert relocate(new, str(old) if recorded else None) == 0
    assert _read(new) == now
    assert capsys.readouterr().out == ("" if not recorded else
                                       f"study moved from {old} to {new}: 0 files updated\n")
    assert relocate(new, str(new)) == 0 and capsys.readouterr().out == ""


def test_an_interrupted_move_is_finished_by_the_next(tmp_path, monkeypatch, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    _study(old, recorded=False)  # the harder case: the old root is found from the files left
    os.rename(old, new)
    writes = []
    real = study_move.atomic_write_json

    def killed_at_the_second(path, obj):
        if writes:
            raise KeyboardInterrupt
        writes.append(path)
        real(path, obj)

    monkeypatch.setattr(study_move, "atomic_write_json", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        relocate(new, None)
    monkeypatch.undo()
    assert len(writes) == 1
    assert relocate(new, None) == 2
    _points_inside(_read(new), new)


def test_relative_roots_and_a_study_in_place(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _study(Path("studies") / "a", recorded=False)  # written with a relative --out
    assert relocate(Path("studies") / "a", None) == 0  # in place: nothing to do, nothing said
    assert capsys.readouterr().out == ""
    os.rename("studies", "elsewhere")
    new = tmp_path / "elsewhere" / "a"
    assert relocate(new, None) == 3
    assert capsys.readouterr().out == f"study moved from studies/a to {new}: 3 files updated\n"
    _points_inside(_read(new), new)
    # `--out .` from inside it records paths as "task", "runs/...": those move too, and specs
    # ("arith:...") and outside paths still do not
    monkeypatch.chdir(new)
    assert relocate(Path("."), str(new)) == 3
    assert _read(Path("."))["runs/20k/config.json"] == {"model": "pretrain/20k/model",
                                                        "task": "task"}
    monkeypatch.chdir(tmp_path)
    assert relocate(new, ".") == 3
    _points_inside(_read(new), new)
    assert _read(new)["evals/20k/base/transfer/config.json"]["task"] == "arith:ladder,min_terms=6"
