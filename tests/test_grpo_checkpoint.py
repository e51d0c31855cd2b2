"""Checkpoints: exact round trip of weights (tied), optimizer and RNG; atomic; only the newest kept."""

import torch

from rlscale.grpo import checkpoint as ck
from rlscale.grpo.data import PromptStream


def _model():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, head_dim=8, intermediate_size=32,
                      tie_word_embeddings=True)
    return Qwen3ForCausalLM(cfg)


def _step(model, opt):
    opt.zero_grad()
    model(input_ids=torch.arange(8)[None]).logits.square().mean().backward()
    opt.step()


def test_round_trip_is_exact(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    _step(model, opt)
    ck.save_checkpoint(tmp_path, 1, model, opt, {"D": 16})
    rng_after_save = torch.rand(3)
    _step(model, opt)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    model2 = _model()  # fresh weights, fresh optimizer
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2, weight_decay=0.1)
    state = ck.load_checkpoint(ck.latest_checkpoint(tmp_path), model2, opt2)
    assert state["step"] == 1 and state["D"] == 16
    assert torch.equal(torch.rand(3), rng_after_save)  # RNG restored
    assert model2.lm_head.weight is model2.model.embed_tokens.weight  # still tied
    _step(model2, opt2)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, reference[k]), k


def test_atomic_and_keep_latest(tmp_path):
    model = _model()
    opt = torch.optim.AdamW(model.parameters())
    (tmp_path / ck.CKPT_DIR / ".step_0000009.tmp").mkdir(parents=True)  # a killed save
    assert ck.latest_checkpoint(tmp_path) is None
    ck.save_checkpoint(tmp_path, 2, model, opt, {}, keep=1)
    ck.save_checkpoint(tmp_path, 4, model, opt, {}, keep=1)
    assert [p.name for p in ck.checkpoints(tmp_path)] == ["step_0000004"]
    half = tmp_path / ck.CKPT_DIR / "step_0000006"  # no state.json: not a checkpoint
    half.mkdir()
    assert ck.latest_checkpoint(tmp_path).name == "step_0000004"


def test_prompt_stream_reuse():
    s = PromptStream(n_items=100, unique=6, seed=1)
    first, second = s.take(0, 6), s.take(6, 6)
    assert sorted(first) == sorted(second) == list(range(6))  # each cycle: every unique prompt once
    assert s.take(3, 5) == (first + second)[3:8]  # a pure function of the cursor
    assert s.unique_seen(4) == 4 and s.unique_seen(50) == 6
    assert PromptStream(100, 6, seed=1).take(0, 12) == first + second
