"""A compact decoder forward for Qwen3 / Qwen2 models, written in plain torch.

Why: at micro scale a decoding step is a few hundred tiny matmuls, and transformers' generic
forward (mask builders, cache objects, hooks, per-layer dispatch) costs more than the arithmetic.
This forward reads the HF module's weights (fusing q/k/v and gate/up into one matrix each; the
fusion is a copy, so build a FastDecoder after every weight update: it takes about a millisecond)
and runs the same math with a preallocated KV cache and explicit positions: RMSNorm, per-head
q/k RMSNorm (Qwen3), RoPE, grouped-query attention, SwiGLU. tests/test_rollout.py checks its
logits against the HF forward to 1e-5.

The cache is static: keys/values of all rows sit at the same column index (left padding), a
boolean mask marks which columns are real tokens of each row, and position ids are explicit,
so a padded row computes exactly what it would compute alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SUPPORTED = ("Qwen3ForCausalLM", "Qwen2ForCausalLM")


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


class FastDecoder:
    """Weights of an HF Qwen3/Qwen2 causal LM, laid out for a fast batched forward."""

    def __init__(self, model):
        cfg = model.config
        self.n_heads = cfg.num_attention_heads
        self.n_kv = cfg.num_key_value_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        inner = model.model
        self.embed = inner.embed_tokens.weight
        self.lm_head = model.lm_head.weight
        self.norm = inner.norm.weight
        self.dtype = self.embed.dtype
        self.device = self.embed.device
        self.inv_freq = inner.rotary_emb.inv_freq.float()
        self.rope_scale = float(getattr(inner.rotary_emb, "attention_scaling", 1.0))
        with torch.no_grad():
            self.layers = [self._layer(layer) for layer in inner.layers]

    def _layer(self, layer) -> dict:
        a, m = layer.self_attn, layer.mlp
        d = {
            "ln1": layer.input_layernorm.weight,
            "ln2": layer.post_attention_layernorm.weight,
            "wqkv": torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]),
            "bqkv": None,
            "wo": a.o_proj.weight,
            "bo": a.o_proj.bias,
            "wgu": torch.cat([m.gate_proj.weight, m.up_proj.weight]),
            "wd": m.down_proj.weight,
            "qk_norm": None,
        }
        if a.q_proj.bias is not None:
            d["bqkv"] = torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias])
        if hasattr(a, "q_norm"):  # Qwen3: RMSNorm per head on q and k; one weight row per head
            d["qk_norm"] = torch.cat(
                [a.q_norm.weight.expand(self.n_heads, -1), a.k_norm.weight.expand(self.n_kv, -1)]
            )
        return d

    def _rms(self, x, w):
        if x.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), w, self.eps)
        # like HF: normalise in fp32, cast back, then scale
        y = F.rms_norm(x.float(), (x.shape[-1],), None, self.eps).to(x.dtype)
        return y if w is None else w * y

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
        qkv = F.linear(self._rms(x, L["ln1"]), L["wqkv"], L["bqkv"]).view(B, S, nh + 2 * nkv, hd)
        qk, v = qkv[:, :, : nh + nkv], qkv[:, :, nh + nkv :]
        if L["qk_norm"] is not None:
            qk = self._rms(qk, None) * L["qk_norm"]
        qk = qk * cos + qk.roll(hd // 2, -1) * sin
        return qk[:, :, :nh] * hd**-0.5, qk[:, :, nh:], v

    def _mlp_out(self, L, x, o):
        """Residual stream after the attention output o [T, nh*hd] and the SwiGLU MLP."""
        x = x + F.linear(o, L["wo"], L["bo"])
        g, u = F.linear(self._rms(x, L["ln2"]), L["wgu"]).chunk(2, -1)
        return x + F.linear(F.silu(g) * u, L["wd"])

    def _logits(self, x):
        return F.linear(self._rms(x, self.norm), self.lm_head)

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
        x = F.embedding(ids, self.embed).reshape(U * P, -1)
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

    def decode(self, tok, pos, state: "DecodeState", rope):
        """One new token per row: tok, pos [B]; appends to state's completion cache. -> [B, V].

        Rows come in groups of G that share one prompt (GRPO's G samples of a prompt): the
        prompt's keys/values are stored once and each group's G queries attend to them in one
        matmul, instead of G copies of the prompt cache being read every step.
        """
        B, U, G, t = tok.shape[0], state.prompt_bias.shape[0], state.group, state.length
        nh, nkv, hd = self.n_heads, self.n_kv, self.head_dim
        r = nh // nkv
        cos, sin = rope[0][pos].unsqueeze(1), rope[1][pos].unsqueeze(1)  # [B, 1, hd]
        x = F.embedding(tok, self.embed)
        for L, pkv, ckv in zip(self.layers, state.prompt, state.completion):
            q, k, v = self._qkv(L, x, B, 1, cos.unsqueeze(1), sin.unsqueeze(1))
            ckv[0, :, :, t] = k[:, 0]
            ckv[1, :, :, t] = v[:, 0]
            # scores against the shared prompt: [U, nkv, G*r, P]
            qg = q.view(U, G, nkv, r, hd).transpose(1, 2).reshape(U, nkv, G * r, hd)
            sp = torch.matmul(qg, pkv[0].transpose(-1, -2)) + state.prompt_bias
            sp = sp.view(U, nkv, G, r, -1).transpose(1, 2).reshape(B, nkv, r, -1)
            # scores against the row's own completion so far: [B, nkv, r, t+1]
            qc = q.view(B, nkv, r, hd)
            sc = torch.matmul(qc, ckv[0, :, :, : t + 1].transpose(-1, -2))
            p = torch.cat([sp, sc], -1).softmax(-1)
            pp, pc = p.split([sp.shape[-1], t + 1], -1)
            pp = pp.reshape(U, G, nkv, r, -1).transpose(1, 2).reshape(U, nkv, G * r, -1)
            op = torch.matmul(pp, pkv[1]).view(U, nkv, G, r, hd).transpose(1, 2)
            o = op.reshape(B, nkv, r, hd) + torch.matmul(pc, ckv[1, :, :, : t + 1])
            x = self._mlp_out(L, x, o.view(B, nh * hd))
        state.length += 1
        return self._logits(x)

    def start_decode(self, prompt_cache, prompt_valid, group: int, max_new: int) -> "DecodeState":
        U = prompt_valid.shape[0]
        B = U * group
        bias = torch.zeros(prompt_valid.shape, dtype=self.dtype, device=self.device)
        bias = bias.masked_fill(~prompt_valid, float("-inf"))[:, None, None, :]
        shape = (2, B, self.n_kv, max_new, self.head_dim)
        completion = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        return DecodeState(prompt_cache, bias, group, completion, 0)


class DecodeState:
    """The caches of a batch being decoded: shared prompt part + per-row completion part."""

    def __init__(self, prompt, prompt_bias, group, completion, length):
        self.prompt, self.prompt_bias, self.group = prompt, prompt_bias, group
        self.completion, self.length = completion, length

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only `rows` (finished rows leave the compute); prompts become per-row (G=1)."""
        prompt_rows = torch.div(rows, self.group, rounding_mode="floor")
        self.prompt = [kv.index_select(1, prompt_rows) for kv in self.prompt]
        self.prompt_bias = self.prompt_bias.index_select(0, prompt_rows)
        self.completion = [kv.index_select(1, rows) for kv in self.completion]
        self.group = 1
