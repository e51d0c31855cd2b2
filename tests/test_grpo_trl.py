"""On one fixed batch, rlscale's GRPO loss equals TRL 1.x GRPOTrainer's (its own _compute_loss)."""

import pytest
import torch

trl = pytest.importorskip("trl")

from rlscale.grpo import core  # noqa: E402
from rlscale.grpo.logprobs import sequence_logprobs  # noqa: E402


def _tiny(tok):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      intermediate_size=64, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    return Qwen3ForCausalLM(cfg).float()


@pytest.mark.parametrize("loss_type, agg, beta, delta", [
    ("grpo", "seq-mean-token-mean", 0.04, None),  # TRL "grpo": token mean per row, then rows
    ("bnpo", "token-mean", 0.04, None),  # TRL "bnpo": mean over all tokens of the batch
    ("bnpo", "token-mean", 0.0, None),
    # TRL's two-sided clipping (delta > 1 + epsilon_high) is verl's dual clip: rlscale's clip_c
    ("bnpo", "token-mean", 0.04, 1.5),
])
def test_loss_equals_trl(tmp_path, loss_type, agg, beta, delta):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rlscale.models import micro_tokenizer

    tok = micro_tokenizer()
    model = _tiny(tok)
    R, P, C, temp, eps_lo, eps_hi = 8, 6, 7, 0.9, 0.2, 0.28
    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=R, num_generations=4,
                      max_completion_length=C, beta=beta, loss_type=loss_type, epsilon=eps_lo,
                      epsilon_high=eps_hi, temperature=temp, use_cpu=True, report_to=[],
                      use_bias_correction_kl=False, logging_steps=1, delta=delta,
                      bf16=False)  # GRPOConfig autocasts to bf16 by default; CPU runs fp32
    model.save_pretrained(tmp_path / "m")  # TRL builds its reference model from a path
    tok.save_pretrained(tmp_path / "m")
    trainer = GRPOTrainer(model=str(tmp_path / "m"), reward_funcs=lambda completions, **kw: [0.0] * len(completions),
                          args=args, train_dataset=Dataset.from_dict({"prompt": ["a"] * 8}),
                          processing_class=tok)
    model = trainer.model  # the policy TRL trains: score the batch with the very same weights
    g = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(2, len(tok), (R, P), generator=g)  # no padding: positions 0.. in both
    completion_ids = torch.randint(2, len(tok), (R, C), generator=g)
    completion_mask = torch.ones(R, C, dtype=torch.long)
    for i, n in enumerate([7, 3, 5, 1, 7, 6, 2, 4]):  # ragged completions, right-padded
        completion_mask[i, n:] = 0
    ids = torch.cat([prompt_ids, completion_ids], 1)
    attn = torch.cat([torch.ones(R, P, dtype=torch.long), completion_mask], 1)
    pos = torch.arange(P + C)[None].expand(R, -1)
    model.train()
    with torch.no_grad():
        logp = sequence_logprobs(model, ids, attn, pos, completion_mask, temp)
    drift = 2.0 if delta else 0.5  # some ratios outside the clip range (and past delta)
    old = logp + drift * (torch.rand(R, C, generator=g) - 0.5)
    ref = logp + 0.3 * (torch.rand(R, C, generator=g) - 0.5)
    rewards = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1])
    adv, _ = core.group_advantages(rewards, 4)
    inputs = {"prompt_ids": prompt_ids, "prompt_mask": torch.ones(R, P, dtype=torch.long),
              "completion_ids": completion_ids, "completion_mask": completion_mask,
              "advantages": adv, "old_per_token_logps": old, "num_items_in_batch":
              completion_mask.sum()}
    if beta:
        inputs["ref_per_token_logps"] = ref
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop; one update, no accumulation
    trl_loss = trainer._compute_loss(trainer.model, inputs)

    logp = sequence_logprobs(model, ids, attn, pos, completion_mask, temp)
    ours, stats = core.grpo_loss(logp, old, adv, completion_mask, ref_logp=ref if beta else None,
                                 kl_coef=beta, clip_low=eps_lo, clip_high=eps_hi,
                                 clip_c=delta or 0.0, loss_agg=agg)
    assert stats["clipped"].item() > 0  # the clip is exercised
    if delta:  # and the dual clip: negative advantages on ratios past delta
        past = (logp - old).exp() > delta
        assert ((adv[:, None] < 0) & past & completion_mask.bool()).any()
    assert abs(ours.item() - trl_loss.item()) < 1e-6, (ours.item(), trl_loss.item())
