"""Rollout: the compact forward equals HF's, batched = unbatched, EOS / stop / clipping, sampling,
and sequence log-probs equal to those of the policy that sampled."""

from __future__ import annotations

import math
import random

import pytest
import torch

from rlscale.models import build_micro, fast, fast_train, micro_tokenizer, native
from rlscale.models.ladder import MicroRung
from rlscale.grpo.logprobs import batch_for_logprobs, sequence_logprobs
from rlscale.rollout import SamplingParams, generate, left_pad, sample

PROMPTS = ["Question: Ann has 3 cards", "Q", "Question: Ann has 12 cards and finds 7 more. How",
           "Answer: 5 + 7 =", "Question:"]


def corpus(n=300, seed=0):
    r = random.Random(seed)
    return [f"Question: Ann has {a} cards and finds {b} more. How many cards?\n"
            f"Answer: {a} + {b} = {a + b}\n#### {a + b}"
            for a, b in ((r.randint(0, 99), r.randint(0, 99)) for _ in range(n))]


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return micro_tokenizer(corpus=corpus(), cache=tmp_path_factory.mktemp("cache"))


def perturbed(model, seed=0, lively=False):
    """Random norm weights, so every term of the forward matters; lively: also larger matrices
    (a random-init model's greedy text is one token repeated; a lively one's varies)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if lively and p.dim() == 2:
                p.copy_(3 * torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
            if "norm" in n:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
            if "bias" in n:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def qwen3(tok, kv_heads=2, seed=0, lively=False):
    from transformers import Qwen3ForCausalLM

    cfg = MicroRung(hidden=64, layers=2, heads=4, intermediate=96, kv_heads=kv_heads).config(tok)
    torch.manual_seed(seed)
    return perturbed(Qwen3ForCausalLM(cfg), seed, lively)


def lively_qwen3(tok, seed=0):
    return qwen3(tok, seed=seed, lively=True)


def qwen2(tok, seed=0, lively=False):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, intermediate_size=96,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    return perturbed(Qwen2ForCausalLM(cfg), seed, lively)


def lively_qwen2(tok, seed=0):
    return qwen2(tok, seed=seed, lively=True)


def llama(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=64,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    return perturbed(LlamaForCausalLM(cfg), 0, lively=True)


def decode_path(monkeypatch, path: str) -> None:
    """Select a decoding path: "native" (C kernels), or torch's "grouped" (the G rows of a
    prompt share one prompt cache) or "per_row" (one cache per row)."""
    if path == "native":
        if native.library() is None:
            pytest.skip("no C compiler: the native kernels cannot be built here")
        return
    monkeypatch.setattr(native, "library", lambda: None)
    monkeypatch.setattr(fast, "GROUP_MIN_PROMPT", 0 if path == "grouped" else 10**9)


@pytest.mark.parametrize("path", ["grouped", "per_row", "native"])
@pytest.mark.parametrize("make", [qwen3, qwen2, lambda t: qwen3(t, kv_heads=4)])
def test_fast_forward_matches_hf_logits(tok, make, path, monkeypatch):
    decode_path(monkeypatch, path)
    model = make(tok)
    assert fast.supports(model)
    seqs = [tok(p)["input_ids"] for p in PROMPTS]
    ids, valid, pos = left_pad(seqs, tok.pad_token_id)
    dec = fast.FastDecoder(model)
    rope = dec.rope_tables(ids.shape[1] + 4)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=valid.long(), position_ids=pos).logits
        got, cache = dec.prefill(ids, pos, valid, rope, last_only=False)
        assert (got - ref)[valid].abs().max() < 1e-5
        # decode: each prompt shared by G = 2 rows, three steps, against HF's full forward
        G = 2
        state = dec.start_decode(cache, valid, G, 4)
        assert isinstance(state, native.NativeState) == (path == "native")
        if path != "native":
            assert (state.prompt is not None) == (path == "grouped")
        g = torch.Generator().manual_seed(1)
        new = torch.randint(2, len(tok), (len(seqs) * G, 3), generator=g)
        next_pos = (pos[:, -1] + 1).repeat_interleave(G)
        for t in range(3):
            if t == 2:  # drop rows (finished sequences leave the batch)
                keep = torch.tensor([0, 3, 4, 9])
                state.keep(keep)
                new, next_pos = new[keep], next_pos[keep]
                rows = keep
            else:
                rows = torch.arange(len(seqs) * G)
            got = dec.decode(new[:, t], next_pos + t, state, rope)
            full_ids = torch.cat([ids.repeat_interleave(G, 0)[rows], new[:, : t + 1]], 1)
            full_mask = torch.cat([valid.repeat_interleave(G, 0)[rows],
                                   torch.ones(len(rows), t + 1, dtype=torch.bool)], 1)
            full_pos = (full_mask.long().cumsum(1) - 1).clamp(min=0)
            ref = model(input_ids=full_ids, attention_mask=full_mask.long(),
                        position_ids=full_pos).logits[:, -1]
            assert (got - ref).abs().max() < 1e-5


@pytest.mark.parametrize("make", [lively_qwen3, lively_qwen2, lambda t: qwen3(t, kv_heads=4)])
def test_causal_logits_and_grads_match_hf(tok, make):
    """The pre-training forward (full rows, SDPA's causal kernel, no cache) gives HF's logits
    and, through the fused weights, HF's gradients."""
    model = make(tok).train()
    ids = torch.randint(2, len(tok), (3, 21), generator=torch.Generator().manual_seed(0))
    w = torch.randn(3, 21, len(tok), generator=torch.Generator().manual_seed(1))
    ref = model(input_ids=ids, use_cache=False).logits
    (ref * w).sum().backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    dec = fast.FastDecoder(model, grad=True)
    with torch.no_grad():
        rope = dec.rope_tables(21)
    got = dec.causal_logits(ids, rope)
    assert (got - ref).abs().max() < 1e-5 * (1 + ref.abs().max())
    (got * w).sum().backward()
    for n, p in model.named_parameters():
        assert (p.grad - want[n]).abs().max() < 1e-4 * (1 + want[n].abs().max()), n


@pytest.mark.parametrize("make", [qwen3, lively_qwen3, qwen2, lambda t: qwen3(t, kv_heads=4)])
def test_causal_logits_with_bf16_products(tok, make, monkeypatch):
    """products=bf16 (pre-training's matmul_precision "bf16"): the linear layers compute in bf16
    as under bf16 autocast, everything else in fp32 on the fused kernels where they apply;
    gradients reach the fp32 parameters, near fp32's but not equal to them."""
    from rlscale.models import native_train

    model = make(tok).train()
    ids = torch.randint(2, len(tok), (3, 21), generator=torch.Generator().manual_seed(0))
    w = torch.randn(3, 21, len(tok), generator=torch.Generator().manual_seed(1))
    grads = {}
    for products in (None, torch.bfloat16):
        model.zero_grad(set_to_none=True)
        dec = fast.FastDecoder(model, grad=True, products=products)
        assert all(L["wqkv"].dtype == (products or torch.float32) for L in dec.layers)
        with torch.no_grad():
            rope = dec.rope_tables(21)
        seen = []
        real = native_train.rms_norm
        monkeypatch.setattr(native_train, "rms_norm", lambda x, e: seen.append(x.dtype) or real(x, e))
        out = dec.causal_logits(ids, rope)
        monkeypatch.setattr(native_train, "rms_norm", real)
        assert out.dtype == torch.float32 and set(seen) <= {torch.float32}
        assert bool(seen) == (native_train.usable(out))  # the fused kernels still serve the rest
        (out * w).sum().backward()
        grads[products] = (out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = model(input_ids=ids, use_cache=False).logits.float()
    (ref * w).sum().backward()
    g_ref = {n: p.grad for n, p in model.named_parameters()}
    (fp32, g32), (bf16, g16) = grads[None], grads[torch.bfloat16]
    assert (bf16 - fp32).abs().max() > 1e-4 * (1 + fp32.abs().max())  # rounded: not fp32's

    def off(g: dict) -> float:  # relative distance of all gradients from fp32's
        return float(sum(((g[n] - g32[n]) ** 2).sum() for n in g32) ** 0.5 /
                     sum((g32[n] ** 2).sum() for n in g32) ** 0.5)
    # no further from fp32 than bf16 autocast of the HF forward, which rounds more (attention
    # and the element-wise parts in bf16 too). Not lively_qwen2: its amplified biases put both
    # 15-20% off fp32's gradients, a comparison of noise
    assert (bf16 - fp32).abs().mean() < (ref - fp32).abs().mean()
    assert all(g.dtype == torch.float32 for g in g16.values())
    assert 0 < off(g16) < off(g_ref)


def test_fast_path_not_used_where_it_would_differ(tok):
    assert not fast.supports(llama(tok))
    m = qwen3(tok)
    m.config.rope_parameters = {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0}
    assert not fast.supports(m)


def hf_greedy(model, tok, prompt, n):
    ids = tok(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                         do_sample=False, eos_token_id=None, pad_token_id=tok.pad_token_id,
                         suppress_tokens=[tok.eos_token_id])
    return out[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("make", [lively_qwen3, lively_qwen2, llama])
def test_greedy_batched_left_padded_equals_unbatched_and_hf(tok, make):
    model = make(tok)
    p = SamplingParams(max_new_tokens=12, temperature=0, suppress_eos=True)
    batched = generate(model, tok, PROMPTS, p)
    for i, prompt in enumerate(PROMPTS):
        alone = generate(model, tok, [prompt], p)
        assert alone.completion_ids[0] == batched.completion_ids[i]
        assert batched.completion_ids[i] == hf_greedy(model, tok, prompt, 12)
    assert batched.prompt_ids == [tok(x)["input_ids"] for x in PROMPTS]
    chunked = generate(model, tok, PROMPTS, p, batch_size=2)
    assert chunked.completion_ids == batched.completion_ids
    assert batched.clipped == [True] * 5 and batched.n_clipped == 5
    assert batched.n_completion_tokens == 60
    assert batched.n_prompt_tokens == sum(len(tok(x)["input_ids"]) for x in PROMPTS)


def test_generic_path_passes_the_cache_by_the_name_the_forward_takes(tok):
    """transformers 5.24 renamed the KV cache keyword `past_key_values` to `cache` (the old
    name warns and goes in 5.40): the generic path asks the forward which it takes."""
    import warnings

    from rlscale.rollout import cache_keyword

    model = llama(tok)
    p = SamplingParams(max_new_tokens=6, temperature=0, suppress_eos=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # a deprecated keyword would raise here
        got = generate(model, tok, PROMPTS[:2], p)
    assert got.completion_ids == [hf_greedy(model, tok, x, 6) for x in PROMPTS[:2]]

    class OldNames(torch.nn.Module):  # a forward of the earlier releases (or remote code)
        def forward(self, input_ids, past_key_values=None, **kwargs):
            return input_ids

    class KwargsOnly(torch.nn.Module):
        def forward(self, **kwargs):
            return kwargs

    from transformers.modeling_outputs import CausalLMOutputWithPast

    assert cache_keyword(OldNames()) == "past_key_values"
    assert cache_keyword(model) in ("cache", "past_key_values")
    assert cache_keyword(KwargsOnly()) == (
        "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values")


@pytest.mark.parametrize("path", ["grouped", "per_row", "native"])
def test_fast_and_generic_paths_agree(tok, monkeypatch, path):
    decode_path(monkeypatch, path)
    model = lively_qwen3(tok)
    p = SamplingParams(max_new_tokens=10, temperature=0, suppress_eos=True)
    prompts = [x for x in PROMPTS[:3] for _ in range(3)]  # groups of 3 share a prompt cache
    a = generate(model, tok, prompts, p)
    monkeypatch.setattr(fast, "supports", lambda m: False)
    b = generate(model, tok, prompts, p)
    assert a.completion_ids == b.completion_ids


def test_sampling_seeded_and_grouped_rows_independent(tok):
    model = build_micro("tiny", tok, seed=0)
    p = SamplingParams(max_new_tokens=8, temperature=1.0, suppress_eos=True)
    prompts = [PROMPTS[0]] * 8 + [PROMPTS[2]] * 8
    a = generate(model, tok, prompts, p, seed=0)
    b = generate(model, tok, prompts, p, seed=0)
    c = generate(model, tok, prompts, p, seed=1)
    assert a.completion_ids == b.completion_ids != c.completion_ids
    assert len({tuple(x) for x in a.completion_ids[:8]}) > 1  # the G samples differ
    assert all(len(x) == 8 for x in a.completion_ids)
    assert tok.eos_token_id not in sum(a.completion_ids, [])


@pytest.mark.parametrize("path", ["torch", "native"])
def test_sample_distribution_top_p_and_greedy(path, monkeypatch):
    decode_path(monkeypatch, "per_row" if path == "torch" else "native")
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0]]).repeat(40000, 1)
    g = torch.Generator().manual_seed(0)
    draws = sample(logits.clone(), SamplingParams(temperature=1.0), g)
    freq = torch.bincount(draws, minlength=5).float() / len(draws)
    assert torch.allclose(freq, logits[0].softmax(-1), atol=0.01)
    hot = sample(logits.clone(), SamplingParams(temperature=2.0), g)
    freq2 = torch.bincount(hot, minlength=5).float() / len(hot)
    assert torch.allclose(freq2, (logits[0] / 2).softmax(-1), atol=0.01)
    # top_p 0.8: the two most likely tokens (0.64 + 0.24 crosses 0.8) renormalised
    top = sample(logits.clone(), SamplingParams(top_p=0.8), g)
    assert set(top.tolist()) == {0, 1}
    p01 = logits[0, :2].softmax(-1)
    assert abs((top == 0).float().mean() - p01[0]) < 0.01
    assert sample(logits[:3].clone(), SamplingParams(temperature=0)).tolist() == [0, 0, 0]
    banned = sample(logits[:1000].clone(), SamplingParams(temperature=1), g, torch.tensor([0]))
    assert 0 not in banned.tolist()
    bad = logits[:2].clone()
    bad[1, 2] = float("nan")
    with pytest.raises(RuntimeError, match="inf or nan"):  # diverged weights are reported
        sample(bad, SamplingParams(temperature=1), g)


def test_native_sampling_draws_what_torch_draws():
    """Same uniforms, same inverse CDF: the kernel picks torch's token but where rounding of
    the cumulative sums puts a uniform on the other side of a boundary (very rarely)."""
    if native.library() is None:
        pytest.skip("no C compiler: the native kernels cannot be built here")
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(4000, 300, generator=g)
    for t, banned in ((1.0, None), (0.7, torch.tensor([3, 299])), (0.0, torch.tensor([0]))):
        ours = native.sample(logits, t, torch.Generator().manual_seed(5), banned)
        p = SamplingParams(temperature=t)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(native, "library", lambda: None)
            theirs = sample(logits, p, torch.Generator().manual_seed(5), banned)
        assert (ours == theirs).float().mean() > 0.999
    inf = logits[:3].clone()
    inf[2, 7] = float("inf")
    with pytest.raises(RuntimeError, match="inf or nan"):
        native.sample(inf, 1.0, g, None)


def test_sampled_entropy_is_token_entropy_on_every_path(monkeypatch):
    """The entropy the sampler hands back is token_entropy of the logits (the whole
    vocabulary, banned tokens included) from the kernel's own pass, from torch, with banned
    tokens and with top-p; the kernel refuses what its pass cannot give."""
    from rlscale.rollout import token_entropy

    g = torch.Generator().manual_seed(1)
    logits = 4 * torch.randn(300, 512, generator=g)
    logits[0, :500] = -float("inf")  # a row with little mass left
    for t, top_p, banned in ((1.0, 1.0, None), (0.7, 1.0, None), (1.3, 1.0, torch.tensor([3])),
                             (0.9, 1.0, torch.tensor([7, 0, 7, 511])), (1.0, 0.9, None),
                             (0.0, 1.0, None)):
        ref = token_entropy(logits, t)
        for lib in ((native.library,) if native.library() is not None else ()) + (lambda: None,):
            monkeypatch.setattr(native, "library", lib)
            h = torch.full((300,), float("nan"))
            sample(logits, SamplingParams(temperature=t, top_p=top_p), g, banned, h)
            assert torch.allclose(h, ref, rtol=1e-5, atol=1e-5), (t, top_p, banned)
    assert torch.isfinite(ref).all() and ref.max() > 3 and 0 < ref[0] <= math.log(12) + 1e-6
    if native.library() is not None:
        with pytest.raises(ValueError, match="entropy needs"):
            native.sample(logits, 0.0, g, None, torch.empty(300))


def test_eos_stop_strings_and_clipping(tok):
    model = lively_qwen3(tok, seed=3)
    p = SamplingParams(max_new_tokens=16, temperature=0, suppress_eos=True)
    base = generate(model, tok, PROMPTS, p)
    # EOS: declare the 5th generated token of row 0 an end-of-sequence token
    eos_tok = base.completion_ids[0][4]
    first = base.completion_ids[0].index(eos_tok)
    model.generation_config.eos_token_id = [tok.eos_token_id, eos_tok]
    g = generate(model, tok, PROMPTS[:1], SamplingParams(max_new_tokens=16, temperature=0))
    assert g.completion_ids[0] == base.completion_ids[0][: first + 1]  # EOS kept in the ids
    assert g.finish == ["eos"] and g.clipped == [False]
    assert g.texts[0] == tok.decode(base.completion_ids[0][:first + 1], skip_special_tokens=True)
    model.generation_config.eos_token_id = tok.eos_token_id
    # stop string: a piece of row 1's greedy text, not at its start
    text = base.texts[1]
    stop = text[3:6]
    cut_at = text.find(stop)
    g = generate(model, tok, PROMPTS, SamplingParams(max_new_tokens=16, temperature=0,
                                                     stop_strings=(stop, "never-seen-xyz")))
    assert g.texts[1] == text[:cut_at] and g.finish[1] == "stop" and not g.clipped[1]
    ids = g.completion_ids[1]
    assert ids == base.completion_ids[1][: len(ids)]
    assert stop in tok.decode(ids) and stop not in tok.decode(ids[:-1])[cut_at:]
    for i in range(len(PROMPTS)):  # rows without the stop string run to the length limit
        if stop not in base.texts[i]:
            assert g.clipped[i] and g.completion_ids[i] == base.completion_ids[i]
            assert g.texts[i] == base.texts[i]
        else:
            assert g.texts[i] == base.texts[i][: base.texts[i].find(stop)]
    assert g.n_clipped == sum(g.clipped)


@pytest.mark.parametrize("path", ["native", "generic"])
def test_stop_check_decodes_only_rows_whose_new_token_can_end_a_stop(tok, monkeypatch, path):
    """The stop-string check decodes a row's tail only at a step whose new token holds a stop
    string's last character (models.tokenizer.stop_end_tokens); sampled rows of raw bytes
    (byte pieces that are no whole character included) stop at the same tokens with the same
    texts as when every live row is decoded at every step."""
    from rlscale import rollout
    from rlscale.models.tokenizer import stop_end_tokens

    if path == "generic":
        monkeypatch.setattr(fast, "supports", lambda m: False)
    model = lively_qwen3(tok, seed=7)
    stops = ("\n\nQuestion:", "Question:", "s ", "7", "\xe9:")
    p = SamplingParams(max_new_tokens=24, temperature=1.3, stop_strings=stops, suppress_eos=True)
    prompts = [x for x in PROMPTS for _ in range(8)]
    ends = stop_end_tokens(tok, stops)
    texts = tok.batch_decode([[i] for i in range(len(tok))], skip_special_tokens=True)
    assert ends.tolist() == [any(c in t for c in ": 7") for t in texts]
    assert 0 < int(ends.sum()) < len(tok)
    raw, run_batch = [], rollout._run_batch  # the rows as the loop ended them, before the cut
    monkeypatch.setattr(rollout, "_run_batch", lambda *a, **k: raw.append(run_batch(*a, **k))
                        or raw[-1])
    a = generate(model, tok, prompts, p, seed=3)
    monkeypatch.setattr(rollout, "stop_end_tokens", lambda t, s: None)  # every row, every step
    b = generate(model, tok, prompts, p, seed=3)
    assert (a.completion_ids, a.texts, a.finish) == (b.completion_ids, b.texts, b.finish)
    assert raw[0] == raw[1]  # each row ended at the same step
    assert 0 < a.finish.count("stop") < len(prompts)
    assert any("\ufffd" in tok.decode(c) for c in a.completion_ids)  # byte pieces were drawn


def test_stop_end_tokens_only_where_the_prefilter_is_exact(tok):
    """None (every live row is decoded) for a stop string ending in a non-ASCII character, a
    tokenizer that cleans up spaces, and a decoder that is not byte-level; one mask per
    tokenizer and last characters."""
    from types import SimpleNamespace

    from rlscale.models.tokenizer import stop_end_tokens

    assert stop_end_tokens(tok, ("Question:",)) is stop_end_tokens(tok, ("Answer:", ":"))
    assert stop_end_tokens(tok, ()) is None
    assert stop_end_tokens(tok, ("Question:", "caf\u00e9")) is None
    cleaning = SimpleNamespace(backend_tokenizer=tok.backend_tokenizer,
                               clean_up_tokenization_spaces=True)
    assert stop_end_tokens(cleaning, ("Question:",)) is None
    other = SimpleNamespace(backend_tokenizer=SimpleNamespace(decoder=object()),
                            clean_up_tokenization_spaces=False)
    assert stop_end_tokens(other, ("Question:",)) is None


def test_sequence_logprobs_are_the_sampling_policy(tok):
    """log-probs of sampled completions in one left-padded forward = those of each sequence
    alone: the trained policy is the sampled one."""
    model = qwen3(tok, seed=1)
    p = SamplingParams(max_new_tokens=6, temperature=1.0, stop_strings=("a",))
    g = generate(model, tok, PROMPTS, p, seed=0)
    batch = batch_for_logprobs(g.prompt_ids, g.completion_ids, tok.pad_token_id)
    input_ids, attn, pos, cmask = batch
    with torch.no_grad():
        lp, ent = sequence_logprobs(model, *batch, temperature=0.7, return_entropy=True)
    assert lp.shape == cmask.shape and (lp[cmask == 0] == 0).all()
    for i, (pr, co) in enumerate(zip(g.prompt_ids, g.completion_ids)):
        ids = torch.tensor([pr + co])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(pr) - 1: -1] / 0.7
        ref = logits.log_softmax(-1).gather(-1, torch.tensor(co)[:, None]).squeeze(-1)
        assert torch.allclose(lp[i, : len(co)], ref, atol=1e-5)
        ref_ent = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
        assert torch.allclose(ent[i, : len(co)], ref_ent, atol=1e-5)
    # gradients flow when the caller enables them
    lp = sequence_logprobs(model, *batch)
    lp.sum().backward()
    assert model.lm_head.weight.grad is not None


@pytest.mark.parametrize("make,layout", [(qwen3, "scattered"), (qwen2, "scattered"),
                                         (qwen3, "groups")])
def test_shared_prompt_logprobs_and_grads_equal_hf(tok, make, layout, monkeypatch):
    """The compact training forward (a prompt shared by its G rows computed once, rows in
    buckets of similar length) gives the HF forward's log-probs and parameter gradients:
    prompts scattered over 6 rows (one bucket), or the trainer's 4 groups of 8 rows with
    lengths 1..14 (four buckets)."""
    model = make(tok)
    if layout == "scattered":
        prompts = [PROMPTS[2], PROMPTS[0], PROMPTS[3], PROMPTS[0], PROMPTS[3], PROMPTS[2]]
    else:
        prompts = [p for p in PROMPTS[:4] for _ in range(8)]
    g = generate(model, tok, prompts, SamplingParams(max_new_tokens=14, suppress_eos=True),
                 seed=2)
    ragged = [c[: 1 + (5 * i) % 14] for i, c in enumerate(g.completion_ids)]
    if layout == "groups":
        assert len(fast_train.length_buckets(torch.tensor([len(c) for c in ragged]), 8)) == 4
    batch = batch_for_logprobs(g.prompt_ids, ragged, tok.pad_token_id)
    w = torch.randn(batch[3].shape, generator=torch.Generator().manual_seed(0))

    def run():
        model.zero_grad()
        lp, ent = sequence_logprobs(model, *batch, temperature=0.9, return_entropy=True)
        ((lp * w).sum() + ent.sum()).backward()
        return lp.detach(), ent.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    lp, ent, grads = run()
    monkeypatch.setattr(fast, "supports", lambda m: False)
    lp_ref, ent_ref, grads_ref = run()
    assert torch.allclose(lp, lp_ref, atol=1e-5) and torch.allclose(ent, ent_ref, atol=1e-5)
    for n in grads:
        # fp32 rounding of sums over every token scales with the gradient's size (the fused
        # CPU training kernels round differently from torch's ops: ~1e-6 of the largest entry)
        atol = 1e-5 * max(1.0, float(grads_ref[n].abs().max()))
        assert torch.allclose(grads[n], grads_ref[n], atol=atol, rtol=1e-4), n


@pytest.mark.parametrize("compact", [True, False])
def test_activation_checkpointing_same_logprobs_and_grads_fewer_saved_bytes(tok, compact,
                                                                            monkeypatch):
    """checkpoint=True (the compact forward's own recompute; for any other model transformers'
    gradient checkpointing, as the trainer turns it on): the same log-probs and gradients, and
    the backward keeps less than half the bytes (counted by a saved-tensors hook)."""
    from rlscale.models import set_activation_checkpointing

    model = qwen3(tok, seed=5).train()
    if not compact:
        monkeypatch.setattr(fast, "supports", lambda m: False)
    prompts = [p for p in PROMPTS[:4] for _ in range(8)]
    g = generate(model, tok, prompts, SamplingParams(max_new_tokens=24, suppress_eos=True),
                 seed=6)
    batch = batch_for_logprobs(g.prompt_ids, g.completion_ids, tok.pad_token_id)

    def run(checkpoint):
        if not compact and checkpoint:
            set_activation_checkpointing(model)
        model.zero_grad()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
            lp = sequence_logprobs(model, *batch, checkpoint=checkpoint and compact)
        lp.sum().backward()
        set_activation_checkpointing(model, False)
        return lp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, sum(saved)

    lp, grads, kept = run(False)
    lp_c, grads_c, kept_c = run(True)
    assert torch.allclose(lp, lp_c, atol=1e-6)
    for n in grads:
        assert torch.allclose(grads[n], grads_c[n], atol=1e-6, rtol=1e-5), n
    assert kept_c < 0.5 * kept, (kept_c, kept)


def ragged_groups(model, tok, rows: int, new_tokens: int, stride: int, seed: int):
    """(a log-prob batch of 4 prompts x `rows` sampled completions cut to ragged lengths 1 +
    (stride * i) % new_tokens, seeded weights [B, C] for a loss over its tokens)."""
    prompts = [p for p in PROMPTS[:4] for _ in range(rows)]
    g = generate(model, tok, prompts,
                 SamplingParams(max_new_tokens=new_tokens, suppress_eos=True), seed=seed)
    ragged = [c[: 1 + (stride * i) % new_tokens] for i, c in enumerate(g.completion_ids)]
    batch = batch_for_logprobs(g.prompt_ids, ragged, tok.pad_token_id)
    return batch, torch.randn(batch[3].shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("make,checkpoint", [(qwen3, False), (qwen3, True), (llama, False)])
def test_chunked_logprobs_from_hidden_states_equal_whole_logits(tok, monkeypatch, make,
                                                                checkpoint):
    """A batch whose logits would be large (a Qwen vocabulary) is scored from the final hidden
    states a few rows at a time (core.linear_logprobs), by the compact forward (Qwen3) or the
    model's own (Llama): the same log-probs, entropies and parameter gradients as through the
    whole logits, with ragged rows and a temperature, and the backward keeps no [B, C, V]
    tensor (counted by a saved-tensors hook), nor more than a chunk's logits. Without chunks,
    the compact forward keeps one length bucket's logits at a time (it scores each bucket as
    it comes), the model's own forward the whole [B, C, V]."""
    from rlscale.grpo import logprobs as L

    model = (make(tok, seed=7) if make is qwen3 else make(tok)).train()
    batch, w = ragged_groups(model, tok, rows=4, new_tokens=12, stride=3, seed=3)
    B, C, V = *batch[3].shape, model.config.vocab_size

    def run():
        model.zero_grad()
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: saved.append(t.numel()) or t, lambda t: t):
            lp, ent = sequence_logprobs(model, *batch, temperature=0.8, return_entropy=True,
                                        checkpoint=checkpoint)
        ((lp * w).sum() + 0.5 * ent.sum()).backward()
        return lp.detach(), ent.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                           }, max(saved)

    lp, ent, grads, biggest = run()
    assert (biggest < B * C * V) == (make is qwen3)
    monkeypatch.setattr(L, "LOGITS_WHOLE_BYTES", 0)
    monkeypatch.setattr(L, "LOGITS_CHUNK_BYTES", 4 * V * 5)  # 5 tokens a chunk
    lp_c, ent_c, grads_c, biggest_c = run()
    assert biggest_c < min(biggest, B * C * V)
    assert torch.allclose(lp, lp_c, atol=1e-5) and torch.allclose(ent, ent_c, atol=1e-5)
    assert (lp_c[batch[3] == 0] == 0).all()
    for n in grads:
        # fp32 rounding relative to the tensor's scale (the lively Llama's gradients reach ~100)
        assert (grads[n] - grads_c[n]).abs().max() <= 1e-5 * (1 + grads[n].abs().max()), n


def test_chunking_is_decided_on_the_whole_batch(tok, monkeypatch):
    """The compact forward scores bucket by bucket, but keeps every bucket's log-softmax for
    the backward: whether the logits go in chunks is decided on the whole batch's [B, C, V]
    bytes, so a batch over LOGITS_WHOLE_BYTES is chunked even where each bucket is under it."""
    from rlscale.grpo import logprobs as L

    model = qwen3(tok, seed=7).train()
    batch, _ = ragged_groups(model, tok, rows=4, new_tokens=12, stride=3, seed=3)
    B, C, V = *batch[3].shape, model.config.vocab_size

    def biggest_saved(limit: int) -> int:
        monkeypatch.setattr(L, "LOGITS_WHOLE_BYTES", limit)
        monkeypatch.setattr(L, "LOGITS_CHUNK_BYTES", 4 * V * 5)  # 5 tokens a chunk
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: saved.append(t.numel()) or t, lambda t: t):
            sequence_logprobs(model, *batch, return_entropy=True)
        return max(saved)

    whole, chunked = biggest_saved(B * C * V * 4), biggest_saved(B * C * V * 4 - 1)
    # whole: a bucket's logits (the largest saved tensor); chunked: no logits kept at all
    assert whole >= (B // 2) * V and chunked < whole


def test_fused_completion_attention_same_logprobs_and_grads(tok, monkeypatch):
    """The training forward's completion attention as one SDPA call (CUDA's default, forced here
    on the CPU): the explicit path's log-probs and gradients, with ragged rows in four buckets,
    left-padded prompts and grouped-query attention."""
    model = qwen3(tok, seed=8).train()
    batch, w = ragged_groups(model, tok, rows=8, new_tokens=14, stride=5, seed=4)

    def run(fused):
        monkeypatch.setattr(fast_train, "FUSED_ATTENTION", fused)
        model.zero_grad()
        lp = sequence_logprobs(model, *batch, temperature=0.9)
        (lp * w).sum().backward()
        return lp.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    lp, grads = run(False)
    lp_f, grads_f = run(True)
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    assert torch.allclose(lp, lp_f, atol=1e-5)
    for n in grads:
        assert torch.allclose(grads[n], grads_f[n], atol=1e-5, rtol=1e-4), n


def test_any_model_scores_ragged_completions_in_buckets_as_each_alone(tok, monkeypatch):
    """The model's own forward (any causal LM: the compact one switched off), four length
    buckets of 32 ragged rows: each row's log-probs equal its sequence scored alone, unpadded,
    and positions past a row's end are 0."""
    model = qwen3(tok, seed=3)
    monkeypatch.setattr(fast, "supports", lambda m: False)
    prompts = [p for p in PROMPTS[:4] for _ in range(8)]
    g = generate(model, tok, prompts, SamplingParams(max_new_tokens=12, suppress_eos=True), seed=4)
    ragged = [c[: 1 + (7 * i) % 12] for i, c in enumerate(g.completion_ids)]
    assert len(fast_train.length_buckets(torch.tensor([len(c) for c in ragged]), 8)) == 4
    batch = batch_for_logprobs(g.prompt_ids, ragged, tok.pad_token_id)
    with torch.no_grad():
        lp = sequence_logprobs(model, *batch)
        for i, (pr, co) in enumerate(zip(g.prompt_ids, ragged)):
            logits = model(input_ids=torch.tensor([pr + co])).logits[0, len(pr) - 1: -1]
            ref = logits.log_softmax(-1).gather(-1, torch.tensor(co)[:, None]).squeeze(-1)
            assert torch.allclose(lp[i, : len(co)], ref, atol=1e-5), i
            assert (lp[i, len(co):] == 0).all()


def test_generate_edge_cases(tok):
    model = build_micro("tiny", tok)
    empty = generate(model, tok, [], SamplingParams(max_new_tokens=3))
    assert empty.completion_ids == [] and empty.n_clipped == 0
    with pytest.raises(ValueError, match="no tokens"):
        generate(model, tok, ["ok", ""], SamplingParams(max_new_tokens=3))
    with pytest.raises(ValueError):
        SamplingParams(max_new_tokens=0)
    one = generate(model, tok, ["Q"], SamplingParams(max_new_tokens=1, suppress_eos=True))
    assert len(one.completion_ids[0]) == 1 and one.clipped == [True]


@pytest.mark.parametrize("batch_size", [None, 4])
def test_rows_finishing_at_different_steps_leave_the_batch(tok, batch_size):
    """Rows end at different steps (EOS), the batch shrinks to the live rows (down to one),
    and every row still equals its unbatched greedy generation."""
    model = lively_qwen3(tok, seed=5)
    prompts = PROMPTS + ["Answer: 12 - 3 =", "Question: Ann has 40"]
    p = SamplingParams(max_new_tokens=12, temperature=0, suppress_eos=True)
    base = generate(model, tok, prompts, p).completion_ids
    def lengths(ends):
        return [next((j + 1 for j, t in enumerate(r) if t in ends), 12) for r in base]

    ends: set[int] = set()
    for row in base:  # declare EOS tokens that make rows end at many different steps
        for t in row:
            if len(set(lengths(ends | {t}))) > len(set(lengths(ends))):
                ends.add(t)
                break
    assert len(set(lengths(ends))) >= 3
    model.generation_config.eos_token_id = sorted(ends)
    q = SamplingParams(max_new_tokens=12, temperature=0)
    g = generate(model, tok, prompts, q, batch_size=batch_size)
    assert len({len(c) for c in g.completion_ids}) >= 3  # (the tokenizer's EOS also ends rows)
    for i, prompt in enumerate(prompts):
        assert g.completion_ids[i] == generate(model, tok, [prompt], q).completion_ids[0]
        ended = g.completion_ids[i][-1] in ends | {tok.eos_token_id}
        assert g.finish[i] == ("eos" if ended else "length")


@pytest.mark.parametrize("make", [lively_qwen3, llama])
def test_rollout_entropies_are_the_update_forwards(tok, make):
    """generate(entropy=True) reads each sampled token's entropy (the trainer's metric) while
    sampling: the same values as the update's forward at the rollout temperature, on the
    compact path (groups, rows leaving the batch at a stop string) and the generic one; the
    samples are those drawn without it."""
    model = make(tok)
    prompts = [p for p in PROMPTS[:3] for _ in range(4)]
    params = SamplingParams(max_new_tokens=10, temperature=0.9, stop_strings=("1", "a"))
    g = generate(model, tok, prompts, params, seed=3, entropy=True)
    assert generate(model, tok, prompts, params, seed=3).completion_ids == g.completion_ids
    assert len({len(c) for c in g.completion_ids}) >= 3 and g.entropies is not None
    assert [len(h) for h in g.entropies] == [len(c) for c in g.completion_ids]
    batch = batch_for_logprobs(g.prompt_ids, g.completion_ids, tok.pad_token_id)
    with torch.no_grad():
        _, ent = sequence_logprobs(model, *batch, temperature=0.9, return_entropy=True)
    for i, h in enumerate(g.entropies):
        assert torch.allclose(torch.tensor(h), ent[i, :len(h)], atol=1e-4), i
    assert generate(model, tok, prompts[:2], params, seed=3).entropies is None


def test_entropy_outside_autograd_same_values(tok):
    """entropy_grad=False (the trainer's metric): same entropies, no graph behind them, and the
    log-probs still carry gradients."""
    model = qwen3(tok, seed=4)
    prompts = [PROMPTS[0]] * 3 + [PROMPTS[1]] * 3
    g = generate(model, tok, prompts, SamplingParams(max_new_tokens=5, suppress_eos=True), seed=1)
    batch = batch_for_logprobs(g.prompt_ids, g.completion_ids, tok.pad_token_id)
    lp, ent = sequence_logprobs(model, *batch, temperature=0.8, return_entropy=True)
    lp2, ent2 = sequence_logprobs(model, *batch, temperature=0.8, return_entropy=True,
                                  entropy_grad=False)
    assert ent.requires_grad and not ent2.requires_grad and lp2.requires_grad
    assert torch.equal(ent.detach(), ent2) and torch.equal(lp.detach(), lp2.detach())


@pytest.mark.parametrize("path", ["grouped", "native"])
def test_grouped_cache_compaction_matches_generic(tok, monkeypatch, path):
    """Rows of shared-prompt groups that stop early leave the batch (the grouped cache is
    turned into per-row caches mid-decode; the native caches drop rows); the rest decode
    exactly as the generic path."""
    decode_path(monkeypatch, path)
    model = lively_qwen3(tok, seed=6)
    greedy = SamplingParams(max_new_tokens=14, temperature=0, suppress_eos=True)
    base = generate(model, tok, PROMPTS[:3], greedy)
    stop = base.texts[0][2:4]  # row 0's group stops early, the others (mostly) run on
    p = SamplingParams(max_new_tokens=14, temperature=0, stop_strings=(stop,), suppress_eos=True)
    prompts = [x for x in PROMPTS[:3] for _ in range(4)]
    a = generate(model, tok, prompts, p)
    monkeypatch.setattr(fast, "supports", lambda m: False)
    b = generate(model, tok, prompts, p)
    assert a.completion_ids == b.completion_ids and a.texts == b.texts
    assert a.finish[0] == "stop" and len(a.completion_ids[0]) < 14


def test_auto_rows_caps_the_cpu_kv_cache(tok, monkeypatch):
    """On the CPU generate() splits a large batch so the KV cache (all layers, prompt +
    completion) stays within rollout.CPU_KV_BYTES; the split is the one an explicit
    batch_size of that many rows gives (same seed, same draws)."""
    from rlscale import rollout

    model = build_micro("tiny", tok, seed=0)  # 2 layers x 2 kv heads x head_dim 16, fp32
    per_row = 2 * 4 * 2 * 2 * 16 * (10 + 6)
    monkeypatch.setattr(rollout, "CPU_KV_BYTES", 40 * per_row)
    assert rollout.auto_rows(model, 10, 6, 1000) == 40
    assert rollout.auto_rows(model, 10, 6, 30) == 30
    monkeypatch.setattr(rollout, "CPU_KV_BYTES", 1)
    assert rollout.auto_rows(model, 10, 6, 1000) == 16  # a floor: tiny calls cost more
    assert rollout.auto_rows(torch.nn.Linear(2, 2), 10, 6, 1000) == 1000  # no config: all
    prompts = [f"Question: Ann has {i} cards" for i in range(40)]
    ps = SamplingParams(max_new_tokens=6, temperature=1.0, suppress_eos=True)
    rows = rollout.auto_rows(model, max(len(tok(p)["input_ids"]) for p in prompts), 6, 40)
    assert rows == 16
    auto = generate(model, tok, prompts, ps, seed=3)
    assert auto.completion_ids == generate(model, tok, prompts, ps, seed=3,
                                           batch_size=rows).completion_ids
    assert auto.completion_ids != generate(model, tok, prompts, ps, seed=3,
                                           batch_size=40).completion_ids


def test_batch_decoder_and_encode_ids_agree_with_transformers(tok):
    """The stop-string check's decoder (the Rust backend, called directly) gives the texts
    batch_decode gives, special tokens and byte pieces that are not whole characters included;
    a tokenizer that cleans up spaces keeps transformers' decode. encode_ids = input_ids."""
    from rlscale.models.tokenizer import batch_decoder, encode_ids

    rng = random.Random(0)
    V = len(tok)
    seqs = [[rng.randrange(V) for _ in range(rng.randrange(0, 24))] for _ in range(200)]
    seqs.append([tok.eos_token_id, tok.pad_token_id, 5])
    want = tok.batch_decode(seqs, skip_special_tokens=True)
    assert tok.clean_up_tokenization_spaces is False  # the micro tokenizer takes the fast path
    assert batch_decoder(tok)(seqs) == want
    texts = ["Question: Ann has 3 apples.\nAnswer:", "", "12 + 7 = 19 ####"]
    assert encode_ids(tok, texts) == tok(texts)["input_ids"]
    assert encode_ids(tok, texts, add_special_tokens=False) == tok(
        texts, add_special_tokens=False)["input_ids"]

    class Cleaning:  # transformers' cleanup would change the text: no backend shortcut
        clean_up_tokenization_spaces = True
        backend_tokenizer = tok.backend_tokenizer

        def batch_decode(self, s, skip_special_tokens):
            return ["cleaned"] * len(s)

    assert batch_decoder(Cleaning())(seqs[:2]) == ["cleaned", "cleaned"]
