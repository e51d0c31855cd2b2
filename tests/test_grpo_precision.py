"""Mixed precision (`--autocast bf16`) against pure low-precision weights (`--dtype bf16`).

Pure bf16 weights keep 8 bits of mantissa, so an AdamW update smaller than ~1/256 of its weight
rounds back to the weight: at the learning rates of LLM RL (1e-6) nearly every update is lost.
Autocast computes the forward passes in bf16 and keeps the weights, gradients and optimizer
state fp32. CPU autocast is the same mechanism as CUDA's (the op lists differ), so the wiring and
the learning are checked here; speed and memory need a GPU (benchmarks/gpu_device.sh).
"""

import pytest
import torch

from rlscale.cli import main
from rlscale.files import read_jsonl
from rlscale.grpo import core
from rlscale.grpo import trainer as trainer_mod
from rlscale.grpo.config import TrainConfig
from rlscale.grpo.logprobs import batch_for_logprobs, sequence_logprobs
from rlscale.grpo.trainer import train
from rlscale.models import load_model
from rlscale.rollout import SamplingParams, generate
from test_grpo_learning import _copy_task
from test_grpo_train import TINY, _flags


def _one_update(dtype: str, autocast: bool, lr: float) -> float:
    """Share of the weights one AdamW step at `lr` changes, from a fixed GRPO loss."""
    torch.manual_seed(0)
    model, tok = load_model("micro:60k", "cpu", dtype, seed=0)
    gen = generate(model, tok, ["What is 3 + 4?", "Sam has 5 pens. He gets 2 more."] * 4,
                   SamplingParams(16, 1.0, 1.0, (), True), seed=0)
    batch = batch_for_logprobs(gen.prompt_ids, gen.completion_ids, tok.pad_token_id or 0, "cpu")
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logp = sequence_logprobs(model, *batch)
    adv = torch.tensor([1.0, -1.0] * 4)  # a fixed advantage per row: every weight gets a gradient
    loss, _ = core.grpo_loss(logp, logp.detach(), adv.to(logp.dtype), batch[3])
    loss.backward()
    opt.step()
    changed = sum(int((p.detach() != b).sum()) for p, b in zip(model.parameters(), before))
    return changed / sum(b.numel() for b in before)


def test_pure_bf16_rounds_small_updates_away_autocast_keeps_them():
    pure, mixed = _one_update("bf16", False, 1e-6), _one_update("fp32", True, 1e-6)
    assert pure < 0.05, pure  # the help text's claim: at lr 1e-6 nearly every update is lost
    assert mixed > 0.95, mixed
    assert _one_update("bf16", False, 1e-2) > 0.9  # large updates do land in bf16


def test_autocast_reaches_every_forward_and_keeps_fp32_weights(tmp_path, monkeypatch):
    seen = {}

    def spy(name, fn):
        def wrapped(*a, **k):
            seen.setdefault(name, set()).add(torch.is_autocast_enabled("cpu"))
            return fn(*a, **k)
        monkeypatch.setattr(trainer_mod, name, wrapped)

    for name in ("generate", "sequence_logprobs", "heldout_test_loss"):
        spy(name, getattr(trainer_mod, name))
    cfg = TrainConfig.from_dict({**TINY, "steps": 2, "kl_coef": 0.01, "autocast": "bf16"})
    train(cfg, tmp_path / "run")
    assert seen == {"generate": {True}, "sequence_logprobs": {True},
                    "heldout_test_loss": {True}}
    model, _ = load_model(str(tmp_path / "run" / "policy"), "cpu", "fp32")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    seen.clear()
    # every row through the update (a random model's groups are all idle): each forward runs
    train(TrainConfig.from_dict({**TINY, "steps": 1, "skip_zero_advantage": False}),
          tmp_path / "plain")
    assert all(v == {False} for v in seen.values()) and len(seen) == 3


def test_autocast_learns(tmp_path):
    """The learning test of test_grpo_learning, under bf16 autocast."""
    _copy_task(tmp_path / "copy.jsonl")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = TrainConfig.from_dict(dict(
            model="micro:tiny", task=str(tmp_path / "copy.jsonl"), reward="flexible",
            batch_size=8, group_size=8, mini_batch_size=8, max_new_tokens=3, steps=60, lr=1e-2,
            heldout=50, eval_samples=2, eval_every=1000, checkpoint_every=1000, seed=0,
            autocast="bf16"))
        train(cfg, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    reward = [r["reward_mean"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")[1:]]
    early, late = sum(reward[:10]) / 10, sum(reward[-20:]) / 20
    assert late > 0.15 and late > 3 * early, reward


@pytest.mark.parametrize("flags, words", [
    (["--autocast", "fp16"], "--autocast: unknown autocast 'fp16'"),
    (["--autocast", "bf16", "--dtype", "bf16"], "--autocast: bf16 autocast keeps fp32"),
])
def test_bad_autocast_one_line_exit_2(tmp_path, capsys, flags, words):
    assert main(["train", *_flags(TINY), *flags, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err
    assert not (tmp_path / "r").exists()


def test_pure_low_precision_says_what_it_costs(tmp_path, capsys):
    assert main(["train", *_flags({**TINY, "steps": 1}), "--dtype", "bf16",
                 "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert "warning: --dtype bf16" in err and "--autocast bf16" in err
