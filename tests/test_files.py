"""rlscale.files: atomic writes and the strict, bounded readers; checkpoint integrity."""

import json

import pytest
import torch

from rlscale import files
from rlscale.errors import UserError
from rlscale.files import (atomic_write_text, iter_jsonl, parse_json, read_csv, read_json,
                           read_jsonl, repair_jsonl)
from rlscale.grpo import checkpoint as ck


def write(path, text):
    path.write_text(text)
    return path


# -- atomic writes ----------------------------------------------------------------------------
def test_atomic_write_leaves_no_temp_file_on_failure(tmp_path, monkeypatch):
    atomic_write_text(tmp_path / "a.txt", "old")

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "a.txt", "new")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


# -- CSV --------------------------------------------------------------------------------------
def test_csv_rows_with_their_lines(tmp_path):
    p = write(tmp_path / "t.csv", 'a,b\n1,2\n\n"3,x",4\n')
    assert read_csv(p) == [(2, {"a": "1", "b": "2"}), (4, {"a": "3,x", "b": "4"})]


@pytest.mark.parametrize("text,match", [
    ('a,b\n1,2\n"3,4\n5,6\n', r"t.csv:3: not valid CSV"),  # the quote opens on line 3
    ('a,b\n1,"2"x\n', r"t.csv:2: not valid CSV"),
    ("a,a\n1,2\n", r"t.csv:1: column\(s\) a repeated"),
    ("a,,c\n1,2,3\n", r"t.csv:1: empty column name"),
    ("a,b\n1,2\n3\n", r"t.csv:3: 1 fields, the header has 2"),
    ("a,b\n1,2,3\n", r"t.csv:2: 3 fields, the header has 2"),
    ("", r"t.csv: empty CSV file"),
    ("\n\n", r"t.csv: empty CSV file"),
])
def test_csv_strict(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        read_csv(write(tmp_path / "t.csv", text))


def test_csv_not_utf8_and_missing(tmp_path):
    (tmp_path / "t.csv").write_bytes(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(UserError, match="not UTF-8"):
        read_csv(tmp_path / "t.csv")
    with pytest.raises(UserError, match="no such file"):
        read_csv(tmp_path / "none.csv")


# -- JSON -------------------------------------------------------------------------------------
def test_json_depth_limit():
    ok = "[" * files.MAX_JSON_DEPTH + "]" * files.MAX_JSON_DEPTH
    assert parse_json(ok, "x") is not None
    for text in ("[" * (files.MAX_JSON_DEPTH + 1) + "]" * (files.MAX_JSON_DEPTH + 1),
                 "[" * 200000 + "]" * 200000,  # past the C decoder's own recursion guard
                 '{"a":' * 100 + "1" + "}" * 100):
        with pytest.raises(UserError, match="f.jsonl:3: JSON nested deeper than 64"):
            parse_json(text, "f.jsonl:3")


def test_json_line_length_limit(tmp_path):
    big = '{"q": "' + "1" * (files.MAX_LINE_BYTES + 1) + '"}'
    p = write(tmp_path / "t.jsonl", '{"a": 1}\n' + big + "\n")
    with pytest.raises(UserError, match=r"t.jsonl:2: .* longer than the"):
        read_jsonl(p)


def test_json_file_size_limit(tmp_path, monkeypatch):
    p = write(tmp_path / "c.json", json.dumps({"a": list(range(100))}))
    assert read_json(p)["a"][-1] == 99
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 10)
    with pytest.raises(UserError, match="larger than the 10-byte limit"):
        read_json(p)


def test_json_errors_name_file_and_line(tmp_path):
    with pytest.raises(UserError, match=r"c.json: not valid JSON"):
        read_json(write(tmp_path / "c.json", "{"))
    p = write(tmp_path / "m.jsonl", '{"step": 1}\n{"step": \n{"step": 3}\n')
    with pytest.raises(UserError, match=r"m.jsonl:2: not valid JSON"):
        read_jsonl(p)
    with pytest.raises(UserError, match=r"m.jsonl:1: expected a JSON object"):
        read_jsonl(write(tmp_path / "m.jsonl", "[1]\n"))
    (tmp_path / "u.jsonl").write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(UserError, match=r"u.jsonl:1: not valid JSON"):
        read_jsonl(tmp_path / "u.jsonl")


def test_torn_tail_only_at_the_end(tmp_path):
    p = write(tmp_path / "m.jsonl", '{"step": 1}\n{"step": 2}\n{"ste')
    assert [r["step"] for r in iter_jsonl(p, tolerate_torn_tail=True)] == [1, 2]
    with pytest.raises(UserError, match="m.jsonl:3"):
        read_jsonl(p)
    repair_jsonl(p)
    assert p.read_text() == '{"step": 1}\n{"step": 2}\n'


# -- checkpoints ------------------------------------------------------------------------------
def _model():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    return Qwen3ForCausalLM(Qwen3Config(
        vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, head_dim=8, intermediate_size=32, tie_word_embeddings=True))


def _two_checkpoints(run_dir):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(input_ids=torch.arange(8)[None]).logits.square().mean().backward()
    opt.step()
    ck.save_checkpoint(run_dir, 1, model, opt, {})
    ck.save_checkpoint(run_dir, 2, model, opt, {})
    return model, opt


def test_checkpoint_keeps_two_with_a_completion_marker(tmp_path):
    _two_checkpoints(tmp_path)
    a, b = ck.checkpoints(tmp_path)
    assert (a.name, b.name) == ("step_0000001", "step_0000002")
    marker = json.loads((b / ck.MARKER).read_text())["files"]
    assert marker == {f: (b / f).stat().st_size for f in ck.FILES}
    assert ck.damage(a) is None and ck.damage(b) is None


@pytest.mark.parametrize("how,match", [
    ("truncate_model", "model.safetensors: .*bytes"),
    ("missing_optimizer", "optimizer.safetensors: missing"),
    ("truncate_optimizer_no_marker", "optimizer.safetensors: truncated"),
    ("garbage_state", "state.json"),
])
def test_damaged_last_checkpoint_falls_back_with_one_line(tmp_path, capsys, how, match):
    model, opt = _two_checkpoints(tmp_path)
    last = ck.checkpoints(tmp_path)[-1]
    if how == "truncate_model":
        f = last / "model.safetensors"
        f.write_bytes(f.read_bytes()[:-100])
    elif how == "missing_optimizer":
        (last / "optimizer.safetensors").unlink()
    elif how == "truncate_optimizer_no_marker":  # a checkpoint from before the marker
        (last / ck.MARKER).unlink()
        f = last / "optimizer.safetensors"
        f.write_bytes(f.read_bytes()[:-7])
    else:
        (last / "state.json").write_text("{")
    assert ck.damage(last) is not None
    good = ck.latest_checkpoint(tmp_path)
    assert good.name == "step_0000001"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resuming from the previous good one, step_0000001" in err[0]
    assert __import__("re").search(match, err[0]), err[0]
    assert (tmp_path / ck.CKPT_DIR / "step_0000002.damaged").is_dir()  # set aside, kept
    assert ck.load_checkpoint(good, _model(), torch.optim.AdamW(model.parameters()))["step"] == 1
    # later saves are not shadowed by the damaged one
    ck.save_checkpoint(tmp_path, 3, model, opt, {})
    assert [p.name for p in ck.checkpoints(tmp_path)] == ["step_0000001", "step_0000003"]


def test_no_good_checkpoint_is_one_line_error(tmp_path):
    _two_checkpoints(tmp_path)
    for p in ck.checkpoints(tmp_path):
        (p / "model.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(UserError, match="no earlier good checkpoint"):
        ck.latest_checkpoint(tmp_path)


def test_a_hard_linked_log_is_unshared_before_it_is_cut_or_appended(tmp_path):
    """A study copied with `cp -al` shares its logs' inodes with the original: resuming the
    copy must neither cut the original's torn tail nor append to it."""
    import os

    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text('{"step": 1}\n{"step": 2')  # a torn last line
    os.link(old, new)
    with files.JsonlWriter(new) as log:
        log.write({"step": 2})
    assert old.read_text() == '{"step": 1}\n{"step": 2'  # untouched
    assert [r["step"] for r in iter_jsonl(new)] == [1, 2]
    assert new.stat().st_nlink == 1 and old.stat().st_nlink == 1
    # an unlinked log keeps its inode (appended in place)
    ino = new.stat().st_ino
    with files.JsonlWriter(new) as log:
        log.write({"step": 3})
    assert new.stat().st_ino == ino and [r["step"] for r in iter_jsonl(new)] == [1, 2, 3]
