"""The trained policy as a model: RUN/policy is an HF directory that `rlscale eval`,
`rlscale train --model` and transformers load; bad settings write nothing."""

import pytest
import torch

from rlscale.cli import main
from rlscale.files import read_jsonl

FAST = ["--task", "arith:easy", "--max-new-tokens", "6", "--heldout", "4", "--lr", "1e-3"]


def test_policy_dir_loads_in_eval_train_and_transformers(tmp_path, capsys):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path / "run"
    # no --mini-batch-size: it defaults to the batch size (one update per step)
    assert main(["train", "--model", "micro:tiny", "--batch-size", "4", "--group-size", "4",
                 "--steps", "2", *FAST, "--checkpoint-every", "1", "--checkpoint-policy",
                 "--out", str(run)]) == 0
    assert [r["updates"] for r in read_jsonl(run / "metrics.jsonl")[1:]] == [1, 1]
    policy = run / "policy"
    for name in ("config.json", "model.safetensors", "generation_config.json",
                 "tokenizer.json", "tokenizer_config.json"):
        assert (policy / name).is_file(), name
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temp dir left
    # the policy is the trained weights: those of the last checkpoint
    model = AutoModelForCausalLM.from_pretrained(policy)
    AutoTokenizer.from_pretrained(policy)
    ckpt = load_file(str(run / "checkpoints" / "step_0000002" / "model.safetensors"))
    for name, p in model.state_dict().items():
        if name in ckpt:
            assert torch.equal(p, ckpt[name]), name
    assert sorted(p.name for p in (run / "policies").iterdir()) == ["step_0000001",
                                                                   "step_0000002"]
    capsys.readouterr()
    assert main(["eval", "--model", str(policy), "--task", "arith:easy", "--shots", "0",
                 "--n-problems", "4", "--max-new-tokens", "6", "--out",
                 str(tmp_path / "ev")]) == 0
    assert main(["train", "--model", str(policy), "--batch-size", "2", "--group-size", "2",
                 "--steps", "1", *FAST, "--out", str(tmp_path / "run2")]) == 0
    assert (tmp_path / "run2" / "policy" / "model.safetensors").is_file()


@pytest.mark.parametrize("flags, words", [
    (["--batch-size", "1000000000"], "--batch-size"),
    (["--group-size", "10000000"], "--group-size"),
    (["--eval-max-new-tokens", "100000000"], "--eval-max-new-tokens"),
    (["--seed", str(2**64)], "--seed"),
    (["--device", "tpu"], "--device"),
])
def test_out_of_range_flags_one_line_exit_2_nothing_written(tmp_path, capsys, flags, words):
    out = tmp_path / "run"
    assert main(["train", "--model", "micro:tiny", *FAST, *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "micro:tiny", *FAST, "--device", "cuda",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--device" in err and "cuda" in err and len(err.splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_train_api_refuses_a_missing_device_before_writing(tmp_path):
    from rlscale.errors import UserError
    from rlscale.grpo.config import TrainConfig
    from rlscale.grpo.trainer import train

    with pytest.raises(UserError, match="--device.*cuda:1"):
        train(TrainConfig(device="cuda:1", steps=1), tmp_path / "run")
    assert not (tmp_path / "run").exists()
