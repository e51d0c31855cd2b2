"""The compact training forward: logits (or final states) of prompt + completion rows, for GRPO.

Built on `rlscale.models.fast.FastDecoder` (the same fused weights, norms, RoPE and MLP as its
decoding path): a prompt shared by the G rows of a group is computed once and attended to by
its G completions, and the completions run in buckets of similar length. Differentiable;
optionally recomputing each layer in the backward (activation checkpointing) and, on CUDA,
with the completion attention as one fused SDPA call. tests/test_rollout.py checks it against
transformers' forward (log-probs and gradients).

    completion_logits(dec, ...)   [B, C, V] logits predicting each completion token
    completion_hidden(dec, ...)   [B, C, d] the final states those logits are made from
    completion_states(dec, ..., head=f)   [B, C, *]: f applied to each bucket's last-layer
                                  states (e.g. its log-probs, so no [B, C, V] is ever built)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

from rlscale.models.fast import _softmax

# the completion attention through one fused SDPA call (None: on CUDA only; `_fused_attention`
# says why)
FUSED_ATTENTION: bool | None = None


def completion_logits(dec, *args, **kwargs):
    """[B, C, V]: `completion_states` through the output embedding."""
    return completion_states(dec, *args, head=lambda x, rows: dec._logits(x), **kwargs)


def completion_hidden(dec, *args, **kwargs):
    """[B, C, d]: `completion_states` through the final norm only, the states the output
    embedding turns into logits (zeros past a row's length)."""
    return completion_states(dec, *args, head=lambda x, rows: dec.final_norm(x), **kwargs)


def completion_states(dec, prompt_ids, prompt_valid, prompt_pos, comp_ids, comp_pos, owner,
                      lengths, max_buckets: int = 8, checkpoint: bool = False, head=None):
    """The output predicting each completion token, every prompt computed once.

    prompt_ids/valid/pos [U, P] (left-padded); comp_ids/pos [B, C] (right-padded), row b
    continuing prompt owner[b] with lengths[b] real tokens. Returns head's output on the last
    layer's states, [B, C, V] for the logits (the default head): row b, column j predicts
    comp_ids[b, j] (zeros past the row's length). head(x, rows) maps one bucket's states x
    [R, n, d] (position j: the state predicting token j of rows [R]) to [R, n, *], row-wise; a
    head that reduces the logits of a bucket (its log-probs) never holds more than one
    bucket's. Differentiable (build the
    decoder with grad=True). Two savings over a plain forward of [B, P + C]: a prompt shared
    by G rows (GRPO's group) is computed once, and rows are computed in up to max_buckets
    buckets of similar length, each only as long as its longest row: GRPO completions are
    ragged (mean ~half of the longest), and the padding would otherwise cost as much as the
    tokens. checkpoint: keep only each layer's inputs and recompute the layer in the
    backward pass (torch.utils.checkpoint): activation memory of one layer instead of all,
    for one more forward's compute; the same values and gradients.
    """
    U, P = prompt_ids.shape
    B, C = comp_ids.shape
    rope = dec.rope_tables(int(max(prompt_pos.max(), comp_pos.max())) + 1)
    eye = torch.eye(P, dtype=torch.bool, device=dec.device)
    causal = torch.ones(P, P, dtype=torch.bool, device=dec.device).tril()
    pmask = (prompt_valid[:, None, None, :] & causal) | eye
    pbias = torch.zeros((U, 1, 1, P), dtype=dec.dtype, device=dec.device)
    pbias = pbias.masked_fill(~prompt_valid[:, None, None, :], float("-inf"))
    pcs = [t[prompt_pos].unsqueeze(2) for t in rope]
    parts = [(rows, n, owner[rows], [t[comp_pos[rows, :n]].unsqueeze(2) for t in rope])
             for rows, n in length_buckets(lengths, max_buckets)]
    fused = dec.device.type == "cuda" if FUSED_ATTENTION is None else FUSED_ATTENTION
    xp = dec._embed(prompt_ids).reshape(U * P, -1)
    xs = [dec._embed(comp_ids[rows, :n]).reshape(len(rows) * n, -1)
          for rows, n, _, _ in parts]

    def layer(L, xp, *xs):  # prompts, then the completions attending to them
        q, kp, vp = dec._qkv(L, xp, U, P, *pcs)
        kp, vp = kp.transpose(1, 2), vp.transpose(1, 2)  # [U, nkv, P, hd]
        o = F.scaled_dot_product_attention(q.transpose(1, 2), kp, vp, attn_mask=pmask,
                                           scale=1.0, enable_gqa=dec.n_heads != dec.n_kv)
        xp = dec._mlp_out(L, xp, o.transpose(1, 2).reshape(U * P, -1))
        return xp, *(_completion_layer(dec, fused, L, x, kp, vp, pbias, own, cs, n)
                     for x, (_, n, own, cs) in zip(xs, parts))

    recompute = checkpoint and torch.is_grad_enabled()
    for L in dec.layers:
        if recompute:
            xp, *xs = torch.utils.checkpoint.checkpoint(layer, L, xp, *xs, use_reentrant=False)
        else:
            xp, *xs = layer(L, xp, *xs)
    head = head or (lambda x, rows: dec._logits(x))
    last = xp.view(U, P, -1)[:, -1]  # [U, d]: the states predicting each first token
    out = [F.pad(head(torch.cat([last[own][:, None], x.view(len(rows), n, -1)[:, :-1]], 1),
                      rows), (0, 0, 0, C - n))
           for x, (rows, n, own, _) in zip(xs, parts)]
    order = torch.cat([rows for rows, _, _, _ in parts])
    return torch.cat(out)[torch.argsort(order)]


def _completion_layer(dec, fused: bool, L, x, kp, vp, pbias, own, cs, n: int):
    """One layer for completion rows x [R * n, d] continuing prompts own [R]: attention to
    their prompt's keys/values kp, vp [U, nkv, P, hd] (pad bias pbias [U, 1, 1, P]) and,
    causally, to their own n tokens; then the MLP."""
    R = own.shape[0]
    nh, nkv, hd = dec.n_heads, dec.n_kv, dec.head_dim
    r = nh // nkv
    q, kc, vc = dec._qkv(L, x, R, n, *cs)
    kc, vc = kc.transpose(1, 2), vc.transpose(1, 2)  # [R, nkv, n, hd]
    if fused:
        o = _fused_attention(dec, q.transpose(1, 2), kc, vc, kp, vp, pbias, own)
        return dec._mlp_out(L, x, o.transpose(1, 2).reshape(R * n, nh * hd))
    q = q.transpose(1, 2).reshape(R, nkv, r * n, hd)  # rows: (head in kv group, position)
    cbias = torch.full((n, n), float("-inf"), dtype=dec.dtype, device=dec.device)
    cbias = cbias.triu(1).repeat(r, 1)
    sp = torch.matmul(q, kp[own].transpose(-1, -2)) + pbias[own]  # [R, nkv, r*n, P]
    sc = torch.matmul(q, kc.transpose(-1, -2)) + cbias
    pp, pc = _softmax(torch.cat([sp, sc], -1)).split([kp.shape[2], n], -1)
    o = torch.matmul(pp, vp[own]) + torch.matmul(pc, vc)  # [R, nkv, r*n, hd]
    return dec._mlp_out(L, x, o.view(R, nh, n, hd).transpose(1, 2).reshape(R * n, nh * hd))


def _fused_attention(dec, q, kc, vc, kp, vp, pbias, own):
    """The same attention through one scaled_dot_product_attention over [prompt | own
    tokens]: q [R, nh, n, hd], kc, vc [R, nkv, n, hd] -> [R, nh, n, hd]. On CUDA its fused
    kernels keep no [R, nh, n, P + n] scores for the backward (at Qwen3-0.6B's size, 64
    rows of 256 tokens, those are ~1 GB a layer in fp32); the explicit path above is faster
    on the CPU and is what the micro study runs."""
    R, n, r = q.shape[0], q.shape[2], dec.n_heads // dec.n_kv
    # each query head's kv head repeated (HF's repeat_kv): SDPA's memory-efficient kernel
    # takes a mask but not enable_gqa, and the math fallback would keep the scores again
    k = torch.cat([kp[own], kc], 2).repeat_interleave(r, 1)  # [R, nh, P + n, hd]
    v = torch.cat([vp[own], vc], 2).repeat_interleave(r, 1)
    cbias = torch.full((n, n), float("-inf"), dtype=dec.dtype, device=dec.device).triu(1)
    bias = torch.cat([pbias[own].expand(-1, -1, n, -1), cbias.expand(R, 1, n, n)], -1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)


def length_buckets(lengths: torch.Tensor, max_buckets: int) -> list[tuple[torch.Tensor, int]]:
    """Rows [B] split by length into up to max_buckets buckets of about equal size: [(rows,
    columns)], each bucket computed over its longest row's columns (at least 1). Buckets of
    equal length merge."""
    B = lengths.shape[0]
    k = max(1, min(max_buckets, B // 8))  # a bucket of fewer rows costs more in ops than it saves
    order = torch.argsort(lengths, stable=True)
    parts: list[tuple[torch.Tensor, int]] = []
    for rows in order.tensor_split(k):  # k <= B / 8: no chunk is empty
        n = max(1, int(lengths[rows].max()))
        if parts and parts[-1][1] == n:
            parts[-1] = (torch.cat([parts[-1][0], rows]), n)
        else:
            parts.append((rows, n))
    return parts
