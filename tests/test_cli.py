"""rlscale.cli and rlscale.checks: dispatch, one-line errors, the checks at the door."""

import argparse
import os

import pytest

from rlscale import checks
from rlscale.cli import COMMANDS, build_parser, main
from rlscale.errors import UserError


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_every_command_is_registered_and_has_help(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(name in text for name in COMMANDS)
    for name in COMMANDS:
        assert main([name, "--help"]) == 0, name
        assert capsys.readouterr().out.strip()


def test_bad_flag_returns_2_with_one_line(capsys):
    assert main(["eval", "--samples", "x"]) == 2
    assert "--samples" in one_line(capsys)
    assert main(["no-such-command"]) == 2
    assert "invalid choice" in one_line(capsys)
    assert main([]) == 2  # no command: the help, exit 2


def test_user_error_is_one_line_with_the_command(capsys, tmp_path):
    assert main(["runs", "list", "--db", str(tmp_path / "none.sqlite")]) == 2
    line = one_line(capsys)
    assert line.startswith("rlscale runs: error:") and "none.sqlite" in line


def test_os_error_is_one_line(capsys, tmp_path):
    from rlscale.store import Store

    db = tmp_path / "r.sqlite"
    Store(db).close()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # --out under a path whose parent is a file: the OS refuses, the CLI says so in one line
    assert main(["runs", "export", "--db", str(db), "--out", str(blocker / "x.csv")]) == 2
    assert "rlscale runs: error:" in one_line(capsys)


def _ns(**kw):
    return argparse.Namespace(**kw)


def test_check_every_flag_for_64_bits_and_finite():
    with pytest.raises(UserError, match=r"--seed: .*more than 64 bits"):
        checks.check("fit", _ns(seed=1 << 64))
    with pytest.raises(UserError, match=r"--delta: nan: not a finite number"):
        checks.check("fit", _ns(delta=float("nan")))
    with pytest.raises(UserError, match=r"--shots: .*64 bits"):
        checks.check("fit", _ns(shots=(0, 1 << 70)))
    checks.check("fit", _ns(seed=(1 << 63) - 1, delta=1e-3, flag=True))


def test_check_ranges_and_out(tmp_path):
    with pytest.raises(UserError, match=r"--vocab-size: 1: must be in \[258, "):
        checks.check("pretrain", _ns(vocab_size=1))
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="--out: .*existing file"):
        checks.check("fit", _ns(out=str(tmp_path / "f")))
    checks.check("runs", _ns(out=str(tmp_path / "f")))  # runs export writes a file: fine


def test_device_checks(monkeypatch):
    checks.device("")
    checks.device("cpu")
    checks.device("auto")
    for bad in ("tpu", "cuda:x", "mps:1", "gpu"):
        with pytest.raises(UserError, match="unknown device"):
            checks.device(bad)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA device on this machine"):
        checks.device("cuda")


def test_memory_estimate():
    checks.fits(8, 64, 512, "cpu", "x")
    with pytest.raises(UserError, match=r"--batch-size x --seq-len: .* GiB"):
        checks.fits(1 << 20, 1 << 20, 512, "cpu", "--batch-size x --seq-len")
    assert checks.memory_bytes("cpu") == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_vocab_of_reads_a_local_config(tmp_path):
    (tmp_path / "config.json").write_text('{"vocab_size": 151936}')
    assert checks.vocab_of(str(tmp_path)) == 151936
    assert checks.vocab_of("micro:tiny") == 258


def test_training_width_is_the_hidden_size_where_logits_are_chunked(tmp_path):
    """A plain output head (logits = states x embedding): training holds the final states, not
    the whole logits, so the door checks [rows, tokens, hidden]; soft-capped or scaled logits
    (Gemma's, Cohere's) and unknown models keep the logits bound."""
    cfg = tmp_path / "config.json"
    cfg.write_text('{"vocab_size": 151936, "hidden_size": 1024}')
    assert checks.training_width(str(tmp_path)) == (1024, "final hidden states")
    cfg.write_text('{"vocab_size": 256000, "hidden_size": 2304, "final_logit_softcapping": 30}')
    assert checks.training_width(str(tmp_path)) == (256000, "logits")
    cfg.write_text('{"vocab_size": 256000, "hidden_size": 8192, "logit_scale": 0.0625}')
    assert checks.training_width(str(tmp_path)) == (256000, "logits")
    assert checks.training_width("org/hub-name") == (258, "logits")
    with pytest.raises(UserError, match="final hidden states alone"):
        checks.fits(1 << 20, 1 << 20, 1024, "cpu", "x", "final hidden states")


def test_require_names_the_extra(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(UserError, match=r"pip install 'rlscale\[sweep\]'"):
        checks.require("ray", "rlscale sweep")
    with pytest.raises(UserError, match=r"pip install some-pkg"):
        checks.require("some_pkg", "x")


def test_task_and_model_specs(tmp_path):
    checks.task_spec("arith")
    checks.task_spec("arith:easy")
    checks.task_spec("gsm8k")
    (tmp_path / "t.jsonl").write_text("{}\n")
    checks.task_spec(str(tmp_path / "t.jsonl"))
    with pytest.raises(UserError, match="--task: 'nope.jsonl': no such file"):
        checks.task_spec("nope.jsonl")
    checks.task_spec("arith:ladder,heldout=validation")
    checks.task_spec("gsm_symbolic:heldout=validation")
    with pytest.raises(UserError, match="heldout must be one of test, validation, got 'dev'"):
        checks.task_spec("arith:ladder,heldout=dev")
    with pytest.raises(UserError, match="not a task name"):
        checks.task_spec("gsm_symbolic:max_value=9")
    checks.model_spec("micro:tiny")
    checks.model_spec("Qwen/Qwen2.5-0.5B")  # a hub name: checked when loaded
    with pytest.raises(UserError, match="unknown micro rung"):
        checks.model_spec("micro:nope")
    with pytest.raises(UserError, match="--model: .*no such model directory"):
        checks.model_spec("./no/such/dir")


def test_parser_is_built_once():
    assert build_parser() is build_parser()


@pytest.mark.slow
def test_train_resumes_from_previous_checkpoint_when_the_last_is_truncated(tmp_path, capsys):
    from rlscale.files import read_jsonl
    from rlscale.grpo import checkpoint as ck

    flags = ["train", "--model", "micro:tiny", "--task", "arith:easy", "--batch-size", "2",
             "--group-size", "2", "--mini-batch-size", "2", "--max-new-tokens", "4",
             "--heldout", "2", "--eval-every", "0", "--checkpoint-every", "1", "--steps", "3",
             "--out", str(tmp_path / "run")]
    assert main(flags[:-4] + ["--steps", "2", "--out", str(tmp_path / "run")]) == 0
    last = ck.checkpoints(tmp_path / "run")[-1]
    assert last.name == "step_0000002"
    f = last / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    capsys.readouterr()
    assert main(flags + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "resuming from the previous good one, step_0000001" in err
    steps = [r["step"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 3  # nothing twice, nothing lost


@pytest.mark.parametrize("change, says", [
    ({"intermediate_size": 2}, "do not have the shapes config.json describes"),  # x2: wrong shapes
    ({"model_type": "nosuchtype"}, "nosuchtype"),
])
def test_broken_model_directory_is_one_line(tmp_path, capsys, change, says):
    import json

    from rlscale.models import load_model, save_model

    model, tok = load_model("micro:tiny")
    d = save_model(model, tok, tmp_path / "model")
    cfg = json.loads((d / "config.json").read_text())
    cfg.update({k: cfg[k] * v if k == "intermediate_size" else v for k, v in change.items()})
    (d / "config.json").write_text(json.dumps(cfg))
    capsys.readouterr()
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(d), "--task", "arith", "--shots", "0",
                 "--n-problems", "2", "--out", str(out)]) == 2
    err = one_line(capsys)
    assert says in err and "Traceback" not in err
    assert not out.exists()  # nothing written


def test_study_seed_is_a_replicate_for_the_study_and_the_allocation(tmp_path, monkeypatch):
    import rlscale.allocation as alloc_mod
    import rlscale.study as study_mod

    seen = {}
    monkeypatch.setattr(study_mod, "study", lambda preset, *a: seen.setdefault("p", preset) and
                        {"wall_s": 0.0})
    assert main(["study", "--preset", "smoke", "--seed", "3", "--out", str(tmp_path / "a")]) == 0
    assert seen["p"].seed == 3 and seen["p"].rungs == study_mod.PRESETS["smoke"].rungs
    monkeypatch.setattr(alloc_mod, "allocate", lambda p, *a: seen.setdefault("a", p) and
                        {"wall_s": 0.0})
    assert main(["study", "--preset", "allocate-smoke", "--seed", "3", "--out",
                 str(tmp_path / "b")]) == 0
    p = seen["a"]
    assert p.seed == 3 and alloc_mod.base_preset(p)[0].seed == 3
    assert alloc_mod.base_preset(alloc_mod.PRESETS["allocate-smoke"])[0].seed == 0
    # every job of the replicate runs on its seed
    jobs = alloc_mod.plan_jobs(p, tmp_path / "b")
    assert {j.params["seed"] for j in jobs} == {3}
    assert {j.params["data_seed"] for j in jobs if j.kind == "rl"} == {3}
