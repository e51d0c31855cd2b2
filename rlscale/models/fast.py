"""A compact decoder forward for Qwen3 / Qwen2 models, written in plain torch.

Why: at micro scale a decoding step is a few hundred tiny ops, and transformers' generic forward
(mask builders, cache objects, hooks, per-layer dispatch) costs more than the arithmetic. This
forward reads the HF module's weights (fusing q/k/v and gate/up into one matrix each, with the
RMSNorm weights folded in; the fusion is a copy, so build a FastDecoder after every weight
update: it takes about a millisecond) and runs the same math: RMSNorm, per-head q/k RMSNorm
(Qwen3), RoPE, grouped-query attention, SwiGLU. tests/test_rollout.py checks its logits and
gradients against the HF forward to 1e-5. A training forward in fp32 on the CPU runs its
element-wise parts as fused C kernels with their backward (rlscale.models.native_train).

- `prefill` + `decode`: sampling with a preallocated KV cache. Rows are left-padded so every row
  writes the same cache column; a bias marks pad columns; position ids are explicit, so a padded
  row computes exactly what it would compute alone. The G samples of a prompt (GRPO groups)
  share one prompt cache: their queries attend to it in one matmul.
- the training forward of prompt + completion rows (GRPO's log-probs) is built on these
  weights in `rlscale.models.fast_train`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlscale.models import native, native_train

SUPPORTED = ("Qwen3ForCausalLM", "Qwen2ForCausalLM")
MATRICES = ("wqkv", "bqkv", "wo", "bo", "wgu", "wd")  # a layer's products: `products` casts them


def supports(model) -> bool:
    """True when the compact forward reproduces this model exactly."""
    if type(model).__name__ not in SUPPORTED:
        return False
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or {}
    return (
        all(t == "full_attention" for t in getattr(cfg, "layer_types", ["full_attention"]))
        and rope.get("rope_type", "default") == "default"
        and getattr(cfg, "hidden_act", "silu") == "silu"
        and not getattr(model.model, "gradient_checkpointing", False)
    )


def _softmax(s):
    """Softmax in fp32 whatever the compute dtype (as HF's attention does)."""
    return s.softmax(-1) if s.dtype == torch.float32 else s.float().softmax(-1).to(s.dtype)


class _RMSNorm(torch.autograd.Function):
    """y = x * rsqrt(mean(x^2) + eps) with its backward written out, dx = r (g - y mean(g y)):
    autograd's chain through pow / mean / rsqrt makes more passes over the activations (1
    thread, fwd + bwd: [2048, 128] 1.8 -> 1.3 ms; per-head q/k norm [32, 64, 12, 32] 9.6 ->
    5.8 ms)."""

    @staticmethod
    def forward(ctx, x, eps):
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        y = x * r
        ctx.save_for_backward(y, r)
        return y

    @staticmethod
    def backward(ctx, g):
        y, r = ctx.saved_tensors
        return (g - y * (g * y).mean(-1, keepdim=True)) * r, None


class FastDecoder:
    """Weights of an HF Qwen3/Qwen2 causal LM, laid out for a fast batched forward."""

    def __init__(self, model, grad: bool = False, products: torch.dtype | None = None):
        """grad: build the fused weights inside autograd, so that a forward through this
        decoder back-propagates into the model's parameters (training); else without.
        products: the dtype of the linear layers' products (bf16: their inputs and outputs are
        rounded to bf16 as under bf16 autocast, while the weights, norms, attention and
        residual stream stay in the model's dtype; None: the model's dtype throughout)."""
        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        inner = model.model
        self.embed = inner.embed_tokens.weight
        # as nn.Embedding: a pad token taken as input sends no gradient to its row (HF builds
        # Qwen's embedding with padding_idx = pad_token_id; a sampled pad token is an input)
        self.padding_idx = inner.embed_tokens.padding_idx
        self.lm_head = model.lm_head.weight
        self.norm = inner.norm.weight
        self.dtype = self.embed.dtype
        self.device = self.embed.device
        self.inv_freq = inner.rotary_emb.inv_freq.float()
        self.rope_scale = float(getattr(inner.rotary_emb, "attention_scaling", 1.0))
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            self.layers = [self._layer(layer) for layer in inner.layers]
            if products is not None and products != self.dtype:  # cast once per build
                for L in self.layers:
                    for key in MATRICES:
                        L[key] = None if L[key] is None else L[key].to(products)
                self.lm_head = self.lm_head.to(products)

    def _layer(self, layer) -> dict:
        """Fused weights of one layer. RMSNorm weights are folded into the next projection
        (W (w * n) = (W * w) n) and the attention scale 1/sqrt(hd) into q (RoPE is linear):
        fewer ops per step, same math up to rounding."""
        a, m = layer.self_attn, layer.mlp
        nq, scale = self.n_heads * self.head_dim, self.head_dim**-0.5
        wqkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])
        bqkv = None
        if a.q_proj.bias is not None:
            bqkv = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
        qk_norm = None
        if hasattr(a, "q_norm"):  # Qwen3: RMSNorm per head on q and k; one weight row per head
            qk_norm = torch.cat([(a.q_norm.weight * scale).expand(self.n_heads, -1),
                                 a.k_norm.weight.expand(self.n_kv, -1)])
        else:  # Qwen2: scale q's projection rows (and bias)
            rows = torch.ones(wqkv.shape[0], dtype=wqkv.dtype, device=wqkv.device)
            rows[:nq] = scale
            wqkv = wqkv * rows[:, None]
            bqkv = bqkv * rows if bqkv is not None else None
        return {
            "wqkv": wqkv * layer.input_layernorm.weight,
            "bqkv": bqkv,
            "qk_norm": qk_norm,
            "wo": a.o_proj.weight,
            "bo": a.o_proj.bias,
            "wgu": torch.cat([m.gate_proj.weight, m.up_proj.weight])
            * layer.post_attention_layernorm.weight,
            "wd": m.down_proj.weight,
        }

    def _embed(self, ids):
        return F.embedding(ids, self.embed, self.padding_idx)

    def _rms(self, x):
        """RMSNorm without weight (weights are folded into the next matrix), in fp32 as HF."""
        if x.dtype != torch.float32:
            return self._rms(x.float()).to(x.dtype)
        if self._train_native(x):  # one pass forward and backward (native_train says why)
            return native_train.rms_norm(x, self.eps)
        if torch.is_grad_enabled() and x.requires_grad:
            return _RMSNorm.apply(x, self.eps)
        # one call (torch 2.13's rms_norm, bitwise equal to x * rsqrt(mean(x^2) + eps)): a
        # decoding step is dominated by the number of ops, not by their arithmetic
        return F.rms_norm(x, x.shape[-1:], None, self.eps)

    def rope_tables(self, max_pos: int):
        """(cos, signed sin) for positions 0..max_pos-1: rope(x) = x cos + roll(x, hd/2) sin'."""
        t = torch.arange(max_pos, device=self.device, dtype=torch.float32)
        freqs = t[:, None] * self.inv_freq.to(self.device)[None, :]
        cos = freqs.cos() * self.rope_scale
        sin = freqs.sin() * self.rope_scale
        cos = torch.cat([cos, cos], -1).to(self.dtype)
        sin = torch.cat([-sin, sin], -1).to(self.dtype)  # rotate_half(x) = roll(x) * [-1, 1]
        return cos, sin

    def _qkv(self, L, x, B, S, cos, sin):
        """q [B, S, nh, hd] (scaled by 1/sqrt(hd)), k, v [B, S, nkv, hd] after norms and RoPE."""
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        qkv = self._lin(self._rms(x), L["wqkv"], L["bqkv"]).view(B, S, nh + 2 * nkv, hd)
        # split, not slices: in the backward a split is one cat of the parts' gradients, where
        # each slice zero-fills a whole-size gradient and adds them (same values)
        qk, v = qkv.split([nh + nkv, nkv], 2)
        if L["qk_norm"] is not None and self._train_native(qk) and native_train.qk_usable(qk):
            q, k = native_train.qk_norm_rope(qk, L["qk_norm"], cos, sin, self.eps).split(
                [nh, nkv], 2)
            return q, k, v
        if L["qk_norm"] is not None:
            qk = self._rms(qk) * L["qk_norm"]
        qk = torch.addcmul(qk * cos, qk.roll(hd // 2, -1), sin)
        q, k = qk.split([nh, nkv], 2)
        return q, k, v

    def _mlp_out(self, L, x, o):
        """Residual stream after the attention output o [T, nh*hd] and the SwiGLU MLP."""
        if L["bo"] is None:
            x = self._addmm(x, o, L["wo"])
        else:
            x = x + self._lin(o, L["wo"], L["bo"])
        gu = self._lin(self._rms(x), L["wgu"])
        if self._train_native(gu):
            act = native_train.swiglu(gu)
        else:
            g, u = gu.chunk(2, -1)
            act = F.silu(g) * u
        return self._addmm(x, act, L["wd"])

    @staticmethod
    def _lin(x, w, b=None):
        """x w^T + b in the weights' dtype, returned in x's (`products`: bf16 weights, fp32
        activations)."""
        if w.dtype == x.dtype:
            return F.linear(x, w, b)
        return F.linear(x.to(w.dtype), w, b).to(x.dtype)

    @staticmethod
    def _addmm(x, a, w):
        """x + a w^T, as `_lin` for the dtypes."""
        if w.dtype == x.dtype:  # addmm: the residual add rides along with the matmul
            return torch.addmm(x, a, w.t())
        return x + F.linear(a.to(w.dtype), w).to(x.dtype)

    @staticmethod
    def _train_native(t) -> bool:
        """A training forward (t needs a gradient) that the fused C kernels serve."""
        return torch.is_grad_enabled() and t.requires_grad and native_train.usable(t)

    def final_norm(self, x):
        return self._rms(x) * self.norm

    def _logits(self, x):
        return self._lin(self.final_norm(x), self.lm_head)

    def prefill(self, ids, pos, valid, rope, last_only: bool = True):
        """Forward of left-padded prompts ids [U, P] at positions pos, pad mask valid [U, P].

        Returns (logits of the last column [U, V], or of every column [U, P, V]; the prompt
        cache: one [2, U, nkv, P, hd] tensor per layer).
        """
        U, P = ids.shape
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        cos, sin = rope[0][pos].unsqueeze(2), rope[1][pos].unsqueeze(2)
        eye = torch.eye(P, dtype=torch.bool, device=ids.device)
        causal = torch.ones(P, P, dtype=torch.bool, device=ids.device).tril()
        mask = (valid[:, None, None, :] & causal) | eye  # a pad row sees itself: no NaN rows
        x = self._embed(ids).reshape(U * P, -1)
        cache = []
        for L in self.layers:
            q, k, v = self._qkv(L, x, U, P, cos, sin)
            k, v = k.transpose(1, 2), v.transpose(1, 2)
            cache.append(torch.stack([k, v]))
            o = F.scaled_dot_product_attention(
                q.transpose(1, 2), k, v, attn_mask=mask, scale=1.0, enable_gqa=nh != nkv
            )
            x = self._mlp_out(L, x, o.transpose(1, 2).reshape(U * P, nh * hd))
        x = x.view(U, P, -1)
        return self._logits(x[:, -1] if last_only else x), cache

    def causal_logits(self, ids, rope):
        """Logits [B, S, V] of full rows ids [B, S] (no padding, positions 0..S-1): the
        pre-training forward. No cache and no mask tensor: the causal kernel of attention.c in
        fp32 on the CPU, else SDPA's; the RoPE tables broadcast over rows."""
        B, S = ids.shape
        nh, hd = self.n_heads, self.head_dim
        cos, sin = rope[0][:S, None], rope[1][:S, None]  # [S, 1, hd]
        x = self._embed(ids).reshape(B * S, -1)
        for L in self.layers:
            q, k, v = self._qkv(L, x, B, S, cos, sin)
            if native_train.attention_usable(q, k, v):  # only the keys j <= i (attention.c)
                o = native_train.causal_attention(q, k, v)
            else:
                o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                   v.transpose(1, 2), is_causal=True, scale=1.0,
                                                   enable_gqa=nh != self.n_kv).transpose(1, 2)
            x = self._mlp_out(L, x, o.reshape(B * S, nh * hd))
        return self._logits(x.view(B, S, -1))

    def decode(self, tok, pos, state: "DecodeState", rope):
        """One new token per row: tok, pos [B] -> logits [B, V]; appends to state's cache."""
        if isinstance(state, native.NativeState):
            return native.decode(self, tok, pos, state, rope)
        B = tok.shape[0]
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        r, col = nh // nkv, state.col
        cos, sin = rope[0][pos][:, None, None], rope[1][pos][:, None, None]  # [B, 1, 1, hd]
        x = self._embed(tok)
        prompts = state.prompt or [None] * len(self.layers)
        for L, kv, pkv in zip(self.layers, state.kv, prompts):
            q, k, v = self._qkv(L, x, B, 1, cos, sin)
            if pkv is None:  # one cache per row: [prompt | completion so far]
                kv[0, :, :, col] = k[:, 0]
                kv[1, :, :, col] = v[:, 0]
                # 3-d batched matmuls over (row, kv head), the pad bias added inside baddbmm:
                # three ops where 4-d matmul + add + softmax + matmul made copies of their own
                t = col + 1
                s = torch.baddbmm(state.bias_rows[..., :t], q.reshape(B * nkv, r, hd),
                                  kv[0, :, :, :t].reshape(B * nkv, t, hd).transpose(1, 2))
                o = torch.bmm(_softmax(s), kv[1, :, :, :t].reshape(B * nkv, t, hd))
                o = o.view(B, nh * hd)
            else:
                o = self._grouped_attention(q, k, v, kv, pkv, state)
            x = self._mlp_out(L, x, o)
        state.col += 1
        return self._logits(x)

    def _grouped_attention(self, q, k, v, kv, pkv, state):
        """Rows come in groups of G sharing one prompt (GRPO's G samples of a prompt): each
        group's G queries attend to the prompt's keys/values in one matmul, instead of G copies
        of the prompt cache being read every step (memory traffic is what a decoding step
        costs); then to the row's own completion. Everything is laid out (prompt, kv head,
        sample, query head in the kv group): the completion cache kv is [2, U, nkv, G, T, hd],
        so every matmul is a 3-d batched one over views, and the two parts of the softmax are
        two slices of one tensor. Returns [B, nh * hd]."""
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        B, U, G, r = q.shape[0], pkv.shape[1], state.group, nh // nkv
        P, t, col = pkv.shape[3], state.col + 1, state.col
        kv[0, :, :, :, col] = k.view(U, G, nkv, hd).transpose(1, 2)
        kv[1, :, :, :, col] = v.view(U, G, nkv, hd).transpose(1, 2)
        qg = q.reshape(U, G, nkv, r, hd).transpose(1, 2).reshape(U * nkv, G * r, hd)
        sp = torch.baddbmm(state.bias_rows, qg, pkv[0].reshape(U * nkv, P, hd).transpose(1, 2))
        kc = kv[0, :, :, :, :t].reshape(U * nkv * G, t, hd)
        sc = torch.bmm(qg.reshape(U * nkv * G, r, hd), kc.transpose(1, 2))
        p = _softmax(torch.cat([sp.view(U * nkv * G, r, P), sc], -1))  # [U*nkv*G, r, P + t]
        op = torch.bmm(p[..., :P].view(U * nkv, G * r, P), pkv[1].reshape(U * nkv, P, hd))
        o = torch.baddbmm(op.view(U * nkv * G, r, hd), p[..., P:],
                          kv[1, :, :, :, :t].reshape(U * nkv * G, t, hd))
        return o.view(U, nkv, G, r, hd).transpose(1, 2).reshape(B, nh * hd)

    def start_decode(self, prompt_cache, prompt_valid, group: int, max_new: int):
        """Decoding state after `prefill`: rows are `group` consecutive copies of each prompt.

        fp32 on the CPU: a native.NativeState (fused C kernels, rlscale.models.native); else a
        DecodeState for the torch path below.

        The prompt cache stays shared when that pays (groups of G > 1 with long prompts); else
        every row gets its own contiguous cache, the fastest layout for short prompts."""
        U, P = prompt_valid.shape
        if native.usable(self, P, max_new):
            return native.NativeState(self, prompt_cache, prompt_valid, group, max_new)
        bias = torch.zeros((U, 1, 1, P), dtype=self.dtype, device=self.device)
        bias.masked_fill_(~prompt_valid[:, None, None, :], float("-inf"))
        shape = (2, U, self.n_kv, group, max_new, self.head_dim)
        kv = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        state = DecodeState(prompt_cache, bias, group, kv, 0)
        if group == 1 or P < GROUP_MIN_PROMPT:
            state.keep(torch.arange(U * group, device=self.device))
        else:
            state.bias_rows = bias.expand(U, self.n_kv, 1, P).reshape(U * self.n_kv, 1, P)
        return state


# below this prompt length one contiguous cache per row is as fast as a shared prompt cache.
# With the grouped layout of `_grouped_attention` (1m rung, 4 prompts x 8 rows, 26-token
# prompts, 64 tokens, 1 thread, CPU time): shared 0.165 s, per row 0.184 s; at 6m 0.99 vs 1.10 s.
GROUP_MIN_PROMPT = 16


class DecodeState:
    """The caches of a batch being decoded. Grouped: `prompt` (one [2, U, nkv, P, hd] per layer,
    shared by G consecutive rows), `bias` [U, 1, 1, P] (-inf on pads) and `kv` (completions,
    [2, U, nkv, G, T, hd]); ungrouped: prompt None, `kv` [2, B, nkv, P + T, hd] holds both."""

    def __init__(self, prompt, bias, group, kv, col):
        self.prompt, self.bias, self.group, self.kv, self.col = prompt, bias, group, kv, col
        # bias in the layout baddbmm adds: [U * nkv, 1, P] grouped, [B * nkv, 1, P + T] per row
        self.bias_rows = None

    def _bias_rows(self) -> None:
        B, nkv = self.kv[0].shape[1], self.kv[0].shape[2]
        self.bias_rows = self.bias.expand(B, nkv, 1, -1).reshape(B * nkv, 1, -1)

    def keep(self, rows: torch.Tensor) -> None:
        """Per-row contiguous caches for `rows` only (finished rows leave the compute); a
        grouped cache becomes per-row caches here."""
        if self.prompt is None:
            self.kv = [kv.index_select(1, rows) for kv in self.kv]
            self.bias = self.bias.index_select(0, rows)
            self._bias_rows()
            return
        owner = torch.div(rows, self.group, rounding_mode="floor")
        P = self.bias.shape[-1]
        # grouped completion caches [2, U, nkv, G, T, hd] -> per row [2, U * G, nkv, T, hd]
        self.kv = [kv.transpose(2, 3).flatten(1, 2) for kv in self.kv]
        self.kv = [torch.cat([p.index_select(1, owner), kv.index_select(1, rows)], 3)
                   for p, kv in zip(self.prompt, self.kv)]
        tail = torch.zeros((len(rows), 1, 1, self.kv[0].shape[3] - P), dtype=self.bias.dtype,
                           device=self.bias.device)
        self.bias = torch.cat([self.bias.index_select(0, owner), tail], -1)
        self.prompt, self.group, self.col = None, 1, self.col + P
        self._bias_rows()
