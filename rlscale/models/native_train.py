"""Training on the CPU in fp32: a layer's element-wise parts and causal attention as fused C
kernels (kernels.c, attention.c).

Why: at the micro rungs' widths (32-96) a training step is as much element-wise passes over
the activations as matrix products (the 600k rung on 32 x 128 rows, one thread: ~40% of the
step in products and attention, the rest in ~40 small ops per layer and their backward). Each
function here is one pass forward and one backward where torch's chain makes 3-12:

    rms_norm(x, eps)                  RMSNorm without weight (folded into the next matrix)
    swiglu(gu)                        silu(gate) * up of the fused [gate | up] projection
    qk_norm_rope(qk, w, cos, sin, eps)  Qwen3's per-head q/k RMSNorm with weight, then RoPE
    causal_attention(q, k, v)         causal softmax attention over the keys j <= i only
                                      (attention.c: torch's CPU flash kernel computes the
                                      masked half too); the pre-training forward's
    cross_entropy(logits, y, w)       the pre-training loss, its gradient written in the
                                      forward's one pass over the logits

They compute what rlscale.models.fast's torch path computes (tests/test_native.py checks values
and gradients against it; causal_attention against SDPA, cross_entropy against F.cross_entropy).
`usable(t)` says where they apply: fp32 CPU tensors with the kernel library built
(rlscale.models.native: no compiler, or RLSCALE_NATIVE=0, leaves training on the torch path).
The kernels' pointers are checked here first (`native._check`).
"""

from __future__ import annotations

import torch

from rlscale.models import native
from rlscale.models.native import _check, _p


def usable(t: torch.Tensor) -> bool:
    return t.dtype == torch.float32 and t.device.type == "cpu" and native.library() is not None


def _threads() -> int:
    return torch.get_num_threads()


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, eps):
        rows, dim = x.shape
        y, s = torch.empty_like(x), torch.empty(rows)
        native.library().rms_train_fwd(_p(x), _p(y), _p(s), rows, dim, eps, _threads())
        ctx.save_for_backward(y, s)
        return y

    @staticmethod
    def backward(ctx, g):
        y, s = ctx.saved_tensors
        g = g.contiguous()
        _check("rms grad", g, tuple(y.shape))
        dx = torch.empty_like(y)
        native.library().rms_train_bwd(_p(g), _p(y), _p(s), _p(dx), *y.shape, _threads())
        return dx, None


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x * rsqrt(mean(x^2, -1) + eps) for x [..., d]."""
    x2 = x.reshape(-1, x.shape[-1]).contiguous()
    return _RMSNorm.apply(x2, float(eps)).view(x.shape)


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gu):
        rows, two = gu.shape
        act = torch.empty(rows, two // 2)
        native.library().swiglu_rows(_p(gu), _p(act), rows, two // 2, _threads())
        ctx.save_for_backward(gu)
        return act

    @staticmethod
    def backward(ctx, g):
        (gu,) = ctx.saved_tensors
        g = g.contiguous()
        _check("swiglu grad", g, (gu.shape[0], gu.shape[1] // 2))
        dgu = torch.empty_like(gu)
        native.library().swiglu_train_bwd(_p(gu), _p(g), _p(dgu), gu.shape[0], gu.shape[1] // 2,
                                          _threads())
        return dgu


def swiglu(gu: torch.Tensor) -> torch.Tensor:
    """silu(gu[:, :I]) * gu[:, I:] for gu [T, 2I]."""
    if gu.shape[-1] % 2:
        raise ValueError(f"swiglu: the fused projection's width {gu.shape[-1]} is odd")
    return _SwiGLU.apply(gu.contiguous())


class _QKNormRope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, cos, sin, eps):
        B, S, H, hd = x.shape
        T, xs = B * S, x.stride(1)
        y, s = torch.empty(B, S, H, hd), torch.empty(T, H)
        rc = native.library().qknorm_rope_fwd(_p(x), xs, _p(w), _p(cos), _p(sin), _p(y), _p(s),
                                              T, cos.shape[0], H, hd, eps, _threads())
        if rc:
            raise ValueError(f"native kernels: q/k norm refused head_dim {hd}")
        ctx.save_for_backward(x, w, cos, sin, s)
        return y

    @staticmethod
    def backward(ctx, g):
        x, w, cos, sin, s = ctx.saved_tensors
        B, S, H, hd = x.shape
        g = g.contiguous()
        _check("q/k norm grad", g, (B, S, H, hd))
        nt = _threads()
        dx, dw = torch.empty(B, S, H, hd), torch.zeros(nt, H, hd)
        rc = native.library().qknorm_rope_bwd(_p(g), _p(x), x.stride(1), _p(w), _p(cos),
                                              _p(sin), _p(s), _p(dx), _p(dw), B * S,
                                              cos.shape[0], H, hd, nt)
        if rc:
            raise ValueError(f"native kernels: q/k norm refused head_dim {hd}")
        return dx, dw.sum(0), None, None, None


def qk_usable(qk: torch.Tensor) -> bool:
    """Where qk_norm_rope applies: usable(qk), and a head dim the kernel's per-head stack
    buffers hold (even, at most native.MAX_HEAD_DIM; the kernel refuses others)."""
    hd = qk.shape[-1]
    return usable(qk) and hd % 2 == 0 and hd <= native.MAX_HEAD_DIM


def qk_norm_rope(qk: torch.Tensor, w: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                 eps: float) -> torch.Tensor:
    """RoPE(rms(qk) * w) per head: qk [B, S, H, hd] (a view into the fused qkv: rows may be
    strided), w [H, hd], cos/sin the RoPE rows of the tokens, broadcast as [S, 1, hd] (row s
    for every b) or [B, S, 1, hd] (one per token). Returns a contiguous [B, S, H, hd]."""
    B, S, H, hd = qk.shape
    cos2, sin2 = cos.reshape(-1, hd).contiguous(), sin.reshape(-1, hd).contiguous()
    if cos2.shape[0] not in (S, B * S):
        raise ValueError(f"q/k norm: RoPE rows {tuple(cos.shape)} do not fit {B} x {S} tokens")
    # the kernel reads token t's H * hd floats at t * stride(1): rows of one layout, fp32, CPU
    if (qk.dtype != torch.float32 or qk.device.type != "cpu" or qk.stride(3) != 1
            or qk.stride(2) != hd or qk.stride(0) != S * qk.stride(1) or qk.stride(1) < H * hd):
        qk = qk.contiguous()
    if qk.dtype != torch.float32 or qk.device.type != "cpu":
        raise ValueError(f"q/k norm: native kernels take fp32 CPU tensors, got {qk.dtype} on "
                         f"{qk.device}")
    w = w.contiguous()
    _check("q/k norm weight", w, (H, hd), qk.dtype)
    _check("rope cos", cos2, (cos2.shape[0], hd), qk.dtype)
    _check("rope sin", sin2, (cos2.shape[0], hd), qk.dtype)
    return _QKNormRope.apply(qk, w, cos2, sin2, float(eps))


class _CausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v):
        B, S, nh, hd = q.shape
        o, lse = torch.empty(B, S, nh, hd), torch.empty(B, nh, S)
        rc = native.library().causal_attn_fwd(_p(q), q.stride(1), _p(k), k.stride(1), _p(v),
                                              v.stride(1), _p(o), _p(lse), B, S, nh, k.shape[2],
                                              hd, _threads())
        if rc:
            raise ValueError(f"native kernels: causal attention refused (code {rc}) "
                             f"q {tuple(q.shape)}, k {tuple(k.shape)}")
        ctx.save_for_backward(q, k, v, o, lse)
        return o

    @staticmethod
    def backward(ctx, g):
        q, k, v, o, lse = ctx.saved_tensors
        B, S, nh, hd = q.shape
        g = g.contiguous()
        _check("attention grad", g, (B, S, nh, hd))
        dq, dk, dv = torch.empty_like(o), torch.empty(k.shape), torch.empty(v.shape)
        rc = native.library().causal_attn_bwd(_p(q), q.stride(1), _p(k), k.stride(1), _p(v),
                                              v.stride(1), _p(o), _p(g), _p(lse), _p(dq),
                                              _p(dk), _p(dv), B, S, nh, k.shape[2], hd,
                                              _threads())
        if rc:
            raise ValueError(f"native kernels: causal attention backward refused (code {rc})")
        return dq, dk, dv


def attention_usable(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    """Where causal_attention applies: q, k and v all fp32 on the CPU (under bf16 autocast v
    comes out of its projection in bf16 while q and k are promoted by their norm weights),
    head_dim a multiple of the kernel's 16-float tile, whole groups of query heads per kv
    head, the library built."""
    return (all(usable(t) for t in (q, k, v)) and q.shape[-1] % 16 == 0
            and q.shape[2] % k.shape[2] == 0)


def _rows(t: torch.Tensor) -> torch.Tensor:
    """t [B, S, H, hd] as the kernel reads it (a token's heads contiguous, tokens evenly
    strided), copied only when it is not."""
    B, S, H, hd = t.shape
    if t.stride(3) == 1 and t.stride(2) == hd and t.stride(0) == S * t.stride(1) \
            and t.stride(1) >= H * hd:
        return t
    return t.contiguous()


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T + causal mask) v per head, q already scaled: q [B, S, nh, hd], k and v
    [B, S, nkv, hd] (views into a fused projection are read in place). Returns o [B, S, nh, hd]
    contiguous: what SDPA computes with is_causal=True, scale=1.0 on [B, heads, S, hd]
    (attention.c says why this is faster)."""
    B, S, nh, hd = q.shape
    if k.shape != v.shape or k.shape[:2] != (B, S) or k.shape[3] != hd:
        raise ValueError(f"causal attention: q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)} do not fit")
    if not attention_usable(q, k, v):
        raise ValueError(f"causal attention: native kernels take fp32 CPU tensors with head_dim "
                         f"a multiple of 16, got {q.dtype} head_dim {hd} on {q.device}")
    return _CausalAttention.apply(_rows(q), _rows(k), _rows(v))


class _CrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, w):
        T, V = x.shape
        d, loss = torch.empty(T, V), torch.empty(())
        if native.library().ce_train_fwd(_p(x), _p(y), _p(w), _p(d), _p(loss), T, V,
                                         _threads()):
            raise ValueError(f"cross entropy: a target outside the vocabulary [0, {V})")
        ctx.save_for_backward(d)
        return loss

    @staticmethod
    def backward(ctx, g):
        (d,) = ctx.saved_tensors
        # the forward's gradient is the loss's; a backward from the loss itself (g = 1) takes
        # it as it is (x 1 is exact), anything else scales a copy (d stays the forward's)
        return (d if bool(g == 1) else d * g), None, None


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                  weights: torch.Tensor) -> torch.Tensor:
    """sum_t weights[t] * (logsumexp(logits[t]) - logits[t, targets[t]]) for logits [T, V] fp32
    on the CPU, targets [T] (int64), weights [T] (no gradient): F.cross_entropy(reduction="none")
    weighted and summed, with the gradient computed in the forward's pass (kernels.c,
    ce_train_fwd). The pre-training loss (rlscale.pretrain_loop) with weights = mask / tokens."""
    T, V = logits.shape
    if not usable(logits):
        raise ValueError(f"cross entropy: native kernels take fp32 CPU logits, got "
                         f"{logits.dtype} on {logits.device}")
    if weights.requires_grad:
        raise ValueError("cross entropy: the weights take no gradient here")
    y = targets.reshape(T).to(torch.int64).contiguous()
    w = weights.reshape(T).to(torch.float32).contiguous()
    return _CrossEntropy.apply(logits.contiguous(), y, w)
