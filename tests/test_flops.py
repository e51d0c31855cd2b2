"""FLOP formulas against hand-computed values; the measured peak is positive and cached."""

import pytest

from rlscale import flops


def test_paper_and_pretrain():
    assert flops.c_paper(1_000_000, 100) == 6e8
    assert flops.pretrain_flops(2, 10) == 120


def test_attention_term():
    # one sequence of 3 tokens attends 1 + 2 + 3 = 6 keys; 4 FLOPs per key per d_attn per layer
    assert flops.attention_forward_flops(2, 4, [3]) == 4 * 2 * 4 * 6
    assert flops.attention_forward_flops(1, 1, [1, 2]) == 4 * (1 + 3)


def test_itemized():
    # generation 2*10*5, one extra forward 2*10*5, training 6*10*5, attention 7 x (1 + 1 + 3)
    assert flops.c_itemized(10, 5, 5, extra_forwards=1, attention_fwd=7) == 100 + 100 + 300 + 35
    # no extra forward, no attention: itemized is 8/6 of the paper's convention
    assert flops.c_itemized(10, 5, 5) == pytest.approx(flops.c_paper(10, 5) * 8 / 6)


def test_model_shape():
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=8, intermediate_size=64,
                      tie_word_embeddings=True)
    model = Qwen3ForCausalLM(cfg)
    shape = flops.ModelShape.of(model)
    assert shape.n_layer == 2 and shape.d_attn == 32
    total = sum(p.numel() for p in model.parameters())
    assert shape.n_params == total - 50 * 32


def test_matmul_peak_cached_and_mfu():
    p1 = flops.matmul_peak_flops("cpu", size=128, repeats=2)
    assert p1 > 1e6
    assert flops.matmul_peak_flops("cpu", size=128) is p1 or flops.matmul_peak_flops("cpu", size=128) == p1
    assert flops.mfu(50.0, 1.0, 100.0) == 0.5
    assert flops.mfu(50.0, 0.0, 100.0) == 0.0
