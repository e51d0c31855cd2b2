"""GRPO as pure tensor functions (the style of verl's core_algos.py): no model, no state.

Shapes: rewards [R] with R = B * G rows ordered group by group (the G completions of prompt 0,
then of prompt 1, ...); per-token tensors [R, T] over completion tokens with a 0/1 mask [R, T].

    advantage   A_i = (r_i - mean(r)) / (std(r) + eps)     ("grpo"; std unbiased, as verl and TRL)
                A_i = r_i - mean(r)                          ("drgrpo": no division by std)
    ratio       rho_t = exp(logp_t - logp_old_t)
    surrogate   l_t = max(-A rho_t, -A clip(rho_t, 1 - eps_low, 1 + eps_high))
                and with dual-clip c > 1 where A < 0: l_t = min(l_t, -A c)  (verl's clip_ratio_c;
                0 = off, TRL's GRPO has none)
    low_var_kl  k3 = exp(d) - d - 1, d = ref - logp clamped to [-20, 20], k3 clamped to [-10, 10]
    loss        agg(l_t + beta * k3_t)
with agg "token-mean" (mean over all completion tokens of the mini-batch, verl's default) or
"seq-mean-token-mean" (mean over tokens within each sequence, then over sequences; TRL's "grpo").
Aggregation is linear, so agg(pg) + beta * agg(kl) == agg(pg + beta * kl), as in both frameworks.
"""

from __future__ import annotations

import torch

# The core is the lower room: the config imports these names from here, never the other way.
ADV_METHODS = ("grpo", "drgrpo")
LOSS_AGGS = ("token-mean", "seq-mean-token-mean")
KL_CLAMP = 10.0
LOG_RATIO_CLAMP = 20.0  # as verl: keeps exp() finite when a policy drifts far from another


def group_advantages(
    rewards: torch.Tensor, group_size: int, method: str = "grpo", eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row advantages [R] and a per-group flag [R / G]: all rewards of the group equal."""
    if method not in ADV_METHODS:
        raise ValueError(f"unknown advantage method {method!r}; choose one of {ADV_METHODS}")
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size} >= 2")
    r = rewards.float().view(-1, group_size)
    centred = r - r.mean(dim=1, keepdim=True)
    zero_std = r.amax(dim=1) == r.amin(dim=1)  # exact: no signal in this group
    if method == "grpo":
        centred = centred / (r.std(dim=1, keepdim=True) + eps)
        centred = torch.where(zero_std[:, None], 0.0, centred)  # no 0/0 when eps is 0
    return centred.reshape(-1), zero_std


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor, entropy: bool = False,
                         entropy_grad: bool = True):
    """log softmax(logits)[label] per position; with entropy=True also the entropy of
    softmax(logits) per position (computed outside autograd when entropy_grad is False: a
    metric only). Through the full log-softmax on purpose: its backward is one fused pass,
    where gather - logsumexp backs through two [..., V] tensors (CPU, 1 thread, [32, 64, 2048]
    forward + backward: 72 vs 160 ms)."""
    logp_all = logits.log_softmax(-1)
    logp = logp_all.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    if not entropy:
        return logp
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        ent = -(logp_all.exp() * logp_all).sum(-1)
    return logp, ent


class _LinearLogprobs(torch.autograd.Function):
    """logprobs_from_logits of logits = (h @ w.T) / temperature, computed `chunk` rows at a
    time: the [T, V] logits are never held whole, in the forward or the backward (which
    recomputes each chunk's logits from h and w). Gradients: d logp / dz = onehot - p and
    d H / dz = -p (log p + H), z the logits."""

    @staticmethod
    def forward(ctx, h, w, labels, temperature: float, chunk: int):
        T = h.shape[0]
        logp, ent, lse = (torch.empty(T, dtype=torch.float32, device=h.device) for _ in range(3))
        for i in range(0, T, chunk):
            z = _chunk_logits(h[i:i + chunk], w, temperature)
            lse[i:i + chunk] = lz = torch.logsumexp(z, -1)
            logp[i:i + chunk] = z.gather(-1, labels[i:i + chunk, None]).squeeze(-1) - lz
            la = z.sub_(lz[:, None])  # log-softmax, in place
            ent[i:i + chunk] = -(la.exp() * la).sum(-1)
        ctx.save_for_backward(h, w, labels, lse, ent)
        ctx.temperature, ctx.chunk = temperature, chunk
        return logp, ent

    @staticmethod
    def backward(ctx, g_logp, g_ent):
        h, w, labels, lse, ent = ctx.saved_tensors
        gh = torch.empty_like(h) if ctx.needs_input_grad[0] else None
        gw = torch.zeros(w.shape, dtype=torch.float32, device=w.device)
        for i in range(0, h.shape[0], ctx.chunk):
            c = slice(i, i + ctx.chunk)
            logp_all = _chunk_logits(h[c], w, ctx.temperature).sub_(lse[c, None])
            p = logp_all.exp()
            dz = p.mul_(-g_logp[c, None] - g_ent[c, None] * (logp_all + ent[c, None]))
            dz.scatter_add_(-1, labels[c, None], g_logp[c, None])
            dz = (dz / ctx.temperature).to(h.dtype)
            if gh is not None:
                gh[c] = dz @ w
            gw += (dz.t() @ h[c]).float()
        gw = gw.to(w.dtype) if ctx.needs_input_grad[1] else None
        return gh, gw, None, None, None


def _chunk_logits(h, w, temperature: float):
    z = torch.nn.functional.linear(h, w).float()
    return z / temperature if temperature != 1.0 else z


def linear_logprobs(h: torch.Tensor, w: torch.Tensor, labels: torch.Tensor,
                    temperature: float = 1.0, chunk: int = 1024):
    """(log-probs [T], entropies [T]) of labels [T] under softmax((h @ w.T) / temperature), with
    h [T, d] the final hidden states and w [V, d] the output embedding: logprobs_from_logits
    without the [T, V] logits. For vocabularies of ~150k (Qwen) the fp32 logits of a GRPO batch
    and their log-softmax are tens of GB; here at most chunk x V are held at a time. Both outputs
    carry gradients (the entropy's is exact; the trainer uses it as a metric only)."""
    return _LinearLogprobs.apply(h, w, labels, float(temperature), max(1, int(chunk)))


def masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum()


def aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, mode: str, normalizer: float | None = None
) -> torch.Tensor:
    """Reduce a per-token loss [R, T] to a scalar.

    normalizer: the denominator of the whole mini-batch (its token count for token-mean, its
    sequence count for seq-mean-token-mean) when [R, T] is one chunk of it, so that chunk losses
    add up to exactly the mini-batch loss. Default: this chunk's own count.
    """
    mask = mask.to(per_token.dtype)
    if mode == "token-mean":
        denom = mask.sum().clamp(min=1.0) if normalizer is None else normalizer
        return (per_token * mask).sum() / denom
    if mode == "seq-mean-token-mean":
        seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)
        denom = seq.numel() if normalizer is None else normalizer
        return seq.sum() / denom
    raise ValueError(f"unknown loss aggregation {mode!r}; choose one of {LOSS_AGGS}")


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate per token: (loss [R, T], ratio [R, T], clipped [R, T] bool).

    advantages: [R] (one per sequence) or [R, T]. `clipped` marks tokens where the clipped term
    is the active one (its gradient is zero): verl's pg_clipfrac, TRL's clip_ratio/region.
    clip_c > 1: dual-clip PPO (arXiv 1912.09729) as verl computes it: where A < 0 the loss is
    at most -A x clip_c, so a ratio far above 1 on a token the policy should drop cannot pull
    the update without bound (its gradient there is zero). 0: off.
    """
    adv = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    log_ratio = (logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    if clip_c > 0:
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * clip_c), loss)
    return loss, ratio, clipped > unclipped


def low_var_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || ref) per token (Schulman), as verl computes it: the log-ratio
    clamped to [-20, 20] before exp (an overflow would be inf, and its gradient NaN, before the
    trainer's divergence check could name it), the result clamped to [-10, 10]."""
    d = (ref_logp - logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return (torch.exp(d) - d - 1.0).clamp(-KL_CLAMP, KL_CLAMP)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float = 0.0,
    loss_agg: str = "token-mean",
    normalizer: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss of a (chunk of a) mini-batch and detached per-token sums for the metrics.

    Returns (loss, stats) where stats holds sums over masked tokens (`clipped`, `kl`) and the
    token count `tokens`, so callers can add them across chunks before dividing.
    """
    per_token, _, clipped = clipped_surrogate(logp, old_logp, advantages, clip_low, clip_high,
                                              clip_c)
    kl = None
    if kl_coef != 0.0:
        if ref_logp is None:
            raise ValueError("kl_coef != 0 needs reference log-probs")
        kl = low_var_kl(logp, ref_logp)
        per_token = per_token + kl_coef * kl
    loss = aggregate(per_token, mask, loss_agg, normalizer)
    m = mask.to(logp.dtype)
    with torch.no_grad():
        stats = {
            "tokens": m.sum(),
            "clipped": masked_sum(clipped.to(m.dtype), m),
            "kl": masked_sum(kl, m) if kl is not None else torch.zeros((), dtype=m.dtype),
        }
    return loss, stats
