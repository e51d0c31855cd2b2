"""Published architectures as random-init models: the full-size path without downloading weights.

`build_random("qwen2.5-0.5b", tokenizer)` is a transformers model with exactly the shapes of
the released checkpoint (from its config.json: hidden, layers, heads, KV heads, MLP width,
vocabulary, tied embeddings; Qwen2 has q/k/v biases, Qwen3 q/k RMSNorm instead) and random
weights. Speed and memory of a forward, a rollout or a GRPO step depend on the shapes only, so
tests and benchmarks measure the real-size path with these (tests/test_fullsize.py,
benchmarks/gpu_check.py). The tokenizer may be smaller than the vocabulary, as Qwen's own is.
"""

from __future__ import annotations

from rlscale.errors import UserError

# name -> (config class, its settings); values from each model's published config.json
ARCHS: dict[str, tuple[str, dict]] = {
    "qwen2.5-0.5b": ("Qwen2Config", dict(
        hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True,
        max_position_embeddings=32768, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    "qwen3-0.6b": ("Qwen3Config", dict(
        hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
        head_dim=128, intermediate_size=3072, vocab_size=151936, tie_word_embeddings=True,
        max_position_embeddings=40960, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
}


def arch_config(name: str, tokenizer):
    """The transformers config of architecture `name`, with `tokenizer`'s special tokens."""
    import transformers

    if name not in ARCHS:
        raise UserError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHS)}")
    cls, settings = ARCHS[name]
    if len(tokenizer) > settings["vocab_size"]:
        raise UserError(f"{name}: tokenizer has {len(tokenizer)} tokens, the architecture "
                        f"{settings['vocab_size']}")
    return getattr(transformers, cls)(
        **settings, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None, use_cache=True)


def build_random(name: str, tokenizer, seed: int = 0, dtype=None):
    """A random-init model of architecture `name` (transformers' own init, seeded), eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(arch_config(name, tokenizer),
                                             dtype=dtype or torch.float32)
    return model.eval()
