"""The native CPU kernels (rlscale.models.native): sizes are checked in C and in the wrappers
(never a write past a buffer), and the library degrades to the torch path when it cannot be
built. Decoding and sampling against torch: tests/test_rollout.py."""

from __future__ import annotations

import pytest
import torch

from rlscale.models import native


@pytest.fixture
def lib():
    if native.library() is None:
        pytest.skip("no C compiler: the native kernels cannot be built here")
    return native.library()


def test_kernels_off_or_unbuildable_mean_torch_path(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setenv("RLSCALE_NATIVE", "0")
    assert native.library() is None
    assert native.sample(torch.zeros(2, 5), 1.0, None, None) is None  # caller uses torch
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.delenv("RLSCALE_NATIVE")
    monkeypatch.setenv("RLSCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(native.shutil, "which", lambda name: None)  # no compiler on PATH
    assert native.library() is None
    assert not (tmp_path / "native").exists() or not any((tmp_path / "native").iterdir())


def test_broken_compiler_warns_and_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_lib", None)
    monkeypatch.setenv("RLSCALE_CACHE", str(tmp_path))
    monkeypatch.setattr(native.shutil, "which", lambda name: "/bin/false")
    with pytest.warns(UserWarning, match="did not compile"):
        assert native.library() is None
    assert not list((tmp_path / "native").glob("*.so"))  # nothing half-written left behind


def _state(lib, tok_len=5, max_new=4, head_dim=None):
    from rlscale.models import build_micro, fast, micro_tokenizer
    from rlscale.rollout import left_pad

    tok = micro_tokenizer()
    model = build_micro("tiny", tok, seed=0)
    dec = fast.FastDecoder(model)
    ids, valid, pos = left_pad([list(range(2, 2 + tok_len))], tok.pad_token_id)
    rope = dec.rope_tables(ids.shape[1] + max_new)
    _, cache = dec.prefill(ids, pos, valid, rope)
    return dec, cache, valid, pos, rope


@torch.no_grad()
def test_limits_are_compiled_in_and_checked_in_c(lib):
    """The C side refuses sizes past its buffers (error code, nothing written) and the checked
    wrapper raises: a state whose key count went past MAX_KEYS cannot reach the kernel."""
    dec, cache, valid, pos, rope = _state(lib)
    state = native.NativeState(dec, cache, valid, 2, 4)
    tok = torch.tensor([3, 4])
    next_pos = (pos[:, -1] + 1).repeat_interleave(2)
    native.decode(dec, tok, next_pos, state, rope)  # fits: runs
    state.P = native.MAX_KEYS  # as if the prompt filled the key buffer: C must refuse
    before = [c.clone() for c in state.ck]
    with pytest.raises(ValueError, match="refused"):
        state.attend(0, dec.eps, rope[0].contiguous(), rope[1].contiguous(), next_pos + 1, 1)
    assert all(torch.equal(a.view(torch.int32), b.view(torch.int32))  # nothing written (bits:
               for a, b in zip(before, state.ck))  # the unwritten cache may hold NaNs)
    with pytest.raises(ValueError, match="too large"):
        native.NativeState(dec, cache, valid, 2, native.MAX_KEYS)


@torch.no_grad()
def test_wrappers_check_what_ctypes_cannot(lib):
    dec, cache, valid, pos, rope = _state(lib)
    state = native.NativeState(dec, cache, valid, 2, 2)
    tok = torch.tensor([3, 4])
    far = torch.full((2,), rope[0].shape[0])  # a position past the RoPE tables
    with pytest.raises(ValueError, match="positions"):
        native.decode(dec, tok, far, state, rope)
    with pytest.raises(ValueError, match="positions"):  # int32 positions: wrong dtype
        native.decode(dec, tok, torch.tensor([5, 5], dtype=torch.int32), state, rope)
    for _ in range(2):
        native.decode(dec, tok, torch.tensor([5, 5]), state, rope)
    with pytest.raises(ValueError, match="cache full"):  # the completion cache has 2 columns
        native.decode(dec, tok, torch.tensor([5, 5]), state, rope)
    with pytest.raises(ValueError, match="banned"):
        native.sample(torch.zeros(2, 5), 1.0, None, torch.tensor([7]))


@torch.no_grad()
@pytest.mark.parametrize("hidden,heads,kv,group", [(48, 2, 1, 10), (64, 4, 2, 9), (40, 2, 2, 1)])
def test_native_decode_matches_the_torch_path(lib, monkeypatch, hidden, heads, kv, group):
    """attend_decode against the torch path's decode, logits over five steps: many samples
    per prompt (10, 9) or one, head dims that are no multiple of a vector (24, 20), grouped kv
    heads, left-padded prompts of two lengths, rows that leave the batch mid-way."""
    from transformers import Qwen3ForCausalLM

    from rlscale.models import fast, micro_tokenizer
    from rlscale.models.ladder import MicroRung
    from rlscale.rollout import left_pad

    tok = micro_tokenizer()
    torch.manual_seed(0)
    cfg = MicroRung(hidden=hidden, layers=2, heads=heads, intermediate=64,
                    kv_heads=kv).config(tok)
    model = Qwen3ForCausalLM(cfg).eval()
    for p in model.parameters():  # lively weights: attention far from uniform
        p.add_(torch.randn(p.shape) * 0.2)
    ids, valid, pos = left_pad([list(range(2, 9)), list(range(3, 22))], tok.pad_token_id)
    steps, U = 5, 2
    new = torch.randint(2, len(tok), (U * group, steps), generator=torch.Generator().manual_seed(1))
    logits = {}
    for path in ("native", "torch"):
        if path == "torch":
            monkeypatch.setattr(native, "library", lambda: None)
        dec = fast.FastDecoder(model)
        rope = dec.rope_tables(ids.shape[1] + steps)
        _, cache = dec.prefill(ids, pos, valid, rope)
        state = dec.start_decode(cache, valid, group, steps)
        assert isinstance(state, native.NativeState) == (path == "native")
        rows, nxt, out = torch.arange(U * group), (pos[:, -1] + 1).repeat_interleave(group), []
        for t in range(steps):
            if t == 3 and group > 1:  # every third row leaves: ragged runs of owners
                keep = torch.arange(len(rows))[torch.arange(len(rows)) % 3 != 0]
                state.keep(keep)
                rows, nxt = rows[keep], nxt[keep]
            out.append(dec.decode(new[rows, t], nxt + t, state, rope).clone())
        logits[path] = out
    for a, b in zip(logits["native"], logits["torch"]):
        assert (a - b).abs().max() < 1e-5 * (1 + b.abs().max())


# ---- training kernels (rlscale.models.native_train) against the torch path's math


def _torch_qk(qk, w, cos, sin, eps):
    hd = qk.shape[-1]
    y = qk * torch.rsqrt(qk.pow(2).mean(-1, keepdim=True) + eps) * w
    return torch.addcmul(y * cos, y.roll(hd // 2, -1), sin)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("per_token", [False, True])
def test_training_kernels_match_torch_values_and_grads(lib, threads, per_token, monkeypatch):
    """rms_norm, swiglu and qk_norm_rope give torch's values and gradients: q/k read as a
    strided view into the fused qkv (as FastDecoder._qkv hands it over), RoPE rows per
    position or per token, widths that are not a multiple of the vector width, and the
    weight's gradient summed over per-thread slices."""
    from rlscale.models import native_train as nt

    monkeypatch.setattr(nt, "_threads", lambda: threads)
    g = torch.Generator().manual_seed(0)
    B, S, H, hd, eps = 3, 70, 3, 10, 1e-6  # T * H * hd above the kernels' parallel threshold
    qkv = torch.randn(B, S, H + 2, hd, generator=g, requires_grad=True)
    w = (1 + 0.3 * torch.randn(H, hd, generator=g)).requires_grad_()
    rows = B * S if per_token else S
    cos, sin = torch.randn(rows, hd, generator=g), torch.randn(rows, hd, generator=g)
    shape = (B, S, 1, hd) if per_token else (S, 1, hd)
    x = torch.randn(B * S, 37, generator=g, requires_grad=True)
    gu = torch.randn(B * S, 2 * 45, generator=g, requires_grad=True)
    outs = {}
    for side in ("native", "torch"):
        qk = qkv.split([H, 2], 2)[0]
        if side == "native":
            y = (nt.qk_norm_rope(qk, w, cos.view(shape), sin.view(shape), eps), nt.rms_norm(x, eps),
                 nt.swiglu(gu))
        else:
            gg, uu = gu.chunk(2, -1)
            y = (_torch_qk(qk, w, cos.view(shape), sin.view(shape), eps),
                 x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps),
                 torch.nn.functional.silu(gg) * uu)
        loss = sum((t * torch.randn(t.shape, generator=torch.Generator().manual_seed(i))).sum()
                   for i, t in enumerate(y))
        grads = torch.autograd.grad(loss, (qkv, w, x, gu))
        outs[side] = [t.detach() for t in y] + list(grads)
    for a, b in zip(outs["native"], outs["torch"]):
        assert a.shape == b.shape
        assert (a - b).abs().max() < 1e-5 * (1 + b.abs().max())


def test_training_kernels_refuse_bad_layouts(lib):
    from rlscale.models import native_train as nt

    with pytest.raises(ValueError, match="odd"):
        nt.swiglu(torch.zeros(4, 7))
    qk = torch.zeros(2, 5, 3, 8)
    with pytest.raises(ValueError, match="do not fit"):
        nt.qk_norm_rope(qk, torch.ones(3, 8), torch.ones(4, 1, 8), torch.ones(4, 1, 8), 1e-6)
    with pytest.raises(ValueError, match="shape"):  # weight rows must match the heads
        nt.qk_norm_rope(qk, torch.ones(2, 8), torch.ones(5, 1, 8), torch.ones(5, 1, 8), 1e-6)
    assert nt.qk_usable(torch.zeros(2, 5, 3, 8))  # the decoder asks first: odd or too wide
    assert not nt.qk_usable(torch.zeros(2, 5, 3, 7))  # head dims take the torch path
    assert not nt.qk_usable(torch.zeros(1, 1, 1, native.MAX_HEAD_DIM + 2))
    with pytest.raises(ValueError, match="refused head_dim"):  # odd head_dim: C says no
        nt.qk_norm_rope(torch.zeros(2, 5, 3, 7), torch.ones(3, 7), torch.ones(5, 1, 7),
                        torch.ones(5, 1, 7), 1e-6)


def _sdpa_causal(q, k, v):
    o = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True, scale=1.0,
        enable_gqa=q.shape[2] != k.shape[2])
    return o.transpose(1, 2)


@pytest.mark.parametrize("B,S,nh,nkv,hd", [(3, 37, 4, 2, 16), (2, 70, 3, 3, 32),
                                           (1, 5, 2, 1, 64), (2, 129, 1, 1, 16),
                                           (4, 130, 4, 2, 32)])  # the last: past the kernels'
# parallel threshold (B S nh hd >= 65536), so two threads really split the work
def test_causal_attention_matches_sdpa_values_and_grads(lib, monkeypatch, B, S, nh, nkv, hd):
    """attention.c's forward and backward give SDPA's causal attention: q, k, v read as strided
    views into one fused projection (as FastDecoder._qkv hands them over), grouped kv heads,
    rows that fill neither a query tile (8) nor a key tile (16), one row; the same bits on
    one thread or two (a unit's results never depend on the others; the last shape is large
    enough for the kernels to go parallel)."""
    from rlscale.models import native_train as nt

    g = torch.Generator().manual_seed(S)
    qkv = (torch.randn(B, S, nh + 2 * nkv, hd, generator=g) * 0.7).requires_grad_()
    dout = torch.randn(B, S, nh, hd, generator=g)
    got = {}
    for side, threads in (("torch", 1), ("native", 1), ("native", 2)):
        monkeypatch.setattr(nt, "_threads", lambda: threads)
        q, k, v = qkv.split([nh, nkv, nkv], 2)
        o = nt.causal_attention(q, k, v) if side == "native" else _sdpa_causal(q, k, v)
        (grad,) = torch.autograd.grad((o * dout).sum(), (qkv,))
        got[side, threads] = (o.detach(), grad)
    for a, b in zip(got["native", 1], got["torch", 1]):
        assert a.shape == b.shape
        assert (a - b).abs().max() < 1e-5 * (1 + b.abs().max())
    for a, b in zip(got["native", 1], got["native", 2]):
        assert torch.equal(a, b)


def test_causal_attention_refuses_what_it_cannot_compute(lib):
    from rlscale.models import native_train as nt

    q = torch.zeros(2, 6, 2, 8)  # head_dim 8: not a whole 16-float tile
    assert not nt.attention_usable(q, q, q)
    with pytest.raises(ValueError, match="multiple of 16"):
        nt.causal_attention(q, q, q)
    q16 = torch.zeros(2, 6, 3, 16)
    kv2 = torch.zeros(2, 6, 2, 16)
    assert not nt.attention_usable(q16, kv2, kv2)  # 3 heads over 2 kv heads
    assert not nt.attention_usable(q16, q16, q16.bfloat16())  # v of a bf16 projection
    with pytest.raises(ValueError, match="fp32"):
        nt.causal_attention(q16, q16, q16.bfloat16())
    with pytest.raises(ValueError, match="do not fit"):
        nt.causal_attention(q16, q16, torch.zeros(2, 5, 3, 16))
    o, lse = torch.empty(2, 6, 3, 24), torch.empty(2, 3, 6)
    x = torch.zeros(2, 6, 3, 24)
    for hd in (24, 8):  # C checks the tile width itself: nothing written
        assert lib.causal_attn_fwd(x.data_ptr(), 72, x.data_ptr(), 72, x.data_ptr(), 72,
                                   o.data_ptr(), lse.data_ptr(), 2, 6, 3, 3, hd, 1) == 1


def test_pretraining_forward_runs_the_training_kernels(lib, monkeypatch):
    """The pre-training step goes through the fused kernels where they apply (fp32 CPU) and
    through torch with RLSCALE_NATIVE=0, with the same loss to rounding."""
    from rlscale.models import build_micro, fast, micro_tokenizer, native_train

    tok = micro_tokenizer(corpus=["Question: 1 + 2 = 3\n#### 3"])
    model = build_micro("20k", tok, seed=0).train()
    ids = torch.randint(2, len(tok), (2, 16), generator=torch.Generator().manual_seed(0))
    calls, attends = [], []
    real, real_attention = native_train.swiglu, native_train.causal_attention
    monkeypatch.setattr(native_train, "swiglu", lambda gu: calls.append(1) or real(gu))
    monkeypatch.setattr(native_train, "causal_attention",
                        lambda *a: attends.append(1) or real_attention(*a))

    def loss():
        dec = fast.FastDecoder(model, grad=True)
        with torch.no_grad():
            rope = dec.rope_tables(16)
        return dec.causal_logits(ids, rope).logsumexp(-1).mean()

    a = loss()
    assert calls and attends  # the native path ran, attention included
    monkeypatch.setattr(native_train, "usable", lambda t: False)
    n, m = len(calls), len(attends)
    b = loss()
    assert len(calls) == n and len(attends) == m and abs(float(a - b)) < 1e-5


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("T,V,scale", [(7, 13, 1.0), (300, 512, 30.0), (200, 1000, 3.0)])
def test_cross_entropy_matches_torch_values_and_grads(lib, monkeypatch, threads, T, V, scale):
    """native_train.cross_entropy is F.cross_entropy(reduction="none") weighted and summed: the
    loss and the logits' gradient, masked tokens (weight 0) included, targets on the first and
    last column, logits spread wide (softmax far from uniform), vocabularies that are not a
    multiple of the vector width, a backward from the loss (the forward's gradient as it is)
    and from 3 x the loss (a scaled copy), one thread or two (T V >= 65536 goes parallel)."""
    from rlscale.models import native_train as nt

    monkeypatch.setattr(nt, "_threads", lambda: threads)
    g = torch.Generator().manual_seed(T)
    x = (torch.randn(T, V, generator=g) * scale).requires_grad_()
    y = torch.randint(0, V, (T,), generator=g)
    y[0], y[-1] = 0, V - 1
    m = (torch.rand(T, generator=g) > 0.3).float()
    m[0] = 0.0
    want = (torch.nn.functional.cross_entropy(x, y, reduction="none") * m).sum() / m.sum()
    (want_grad,) = torch.autograd.grad(3 * want, (x,))
    for k in (1, 3):
        got = nt.cross_entropy(x, y, m / m.sum())
        (grad,) = torch.autograd.grad(k * got, (x,))
        assert abs(float(got - want)) < 1e-5 * (1 + abs(float(want)))
        assert (grad * 3 / k - want_grad).abs().max() < 1e-6 * (1 + want_grad.abs().max())
        assert float(grad[0].abs().max()) == 0.0  # a masked token sends nothing back


def test_cross_entropy_refuses_what_it_cannot_compute(lib):
    from rlscale.models import native_train as nt

    x = torch.zeros(4, 5)
    w = torch.full((4,), 0.25)
    for bad in (5, -1):  # C checks every target before it writes
        with pytest.raises(ValueError, match="outside the vocabulary"):
            nt.cross_entropy(x, torch.tensor([0, 1, bad, 2]), w)
    with pytest.raises(ValueError, match="fp32"):
        nt.cross_entropy(x.double(), torch.zeros(4, dtype=torch.long), w)
    with pytest.raises(ValueError, match="no gradient"):
        nt.cross_entropy(x, torch.zeros(4, dtype=torch.long), w.clone().requires_grad_())


def test_pretraining_step_takes_the_fused_loss(lib, monkeypatch):
    """pretrain_loop.Loop's step computes its loss with native_train.cross_entropy where it
    applies, and with torch's elsewhere: the same loss and gradients (a step at lr 0), to
    rounding."""
    from types import SimpleNamespace

    from rlscale.models import build_micro, micro_tokenizer, native_train
    from rlscale.pretrain_loop import Loop

    tok = micro_tokenizer(corpus=["Question: 1 + 2 = 3\n#### 3"])
    rows = torch.randint(2, len(tok), (4, 17), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(4, 16)
    mask[1, :5] = 0.0

    class Corpus:
        def batch(self, step):
            return rows[:, :-1], rows[:, 1:], mask

    cfg = SimpleNamespace(weight_decay=0.1, lr=1e-2, grad_clip=0.0, matmul_precision="highest")
    calls, real = [], native_train.cross_entropy
    monkeypatch.setattr(native_train, "cross_entropy", lambda *a: calls.append(1) or real(*a))
    out = {}
    for side in ("native", "torch"):
        if side == "torch":
            monkeypatch.setattr(native_train, "usable", lambda t: False)
        model = build_micro("20k", tok, seed=0).train()
        loop = Loop(cfg, Corpus(), model, "cpu", None)
        loss = loop.step(0, 0.0)  # lr 0: the weights stay, the gradients are the step's
        out[side] = (loss, [p.grad.clone() for p in model.parameters()])
        if side == "native":
            assert len(calls) == 1
    assert len(calls) == 1  # the torch side never called it
    (la, ga), (lb, gb) = out["native"], out["torch"]
    assert abs(la - lb) < 1e-5
    assert all((a - b).abs().max() < 1e-5 * (1 + b.abs().max()) for a, b in zip(ga, gb))
