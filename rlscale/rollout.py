"""Batched sampling with a KV cache: the hot path of GRPO training and of evaluation.

`generate` left-pads the prompts of a batch, gives every forward pass explicit position ids
(a padded row computes exactly what it would compute alone, so the sampled policy is the trained
one), and samples all rows with torch ops (no per-row Python per token). Qwen3/Qwen2 models run
on `rlscale.models.fast` (compact forward, static cache, prompts shared by the G samples of a
group stored once); any other HF causal LM runs on its own forward with a DynamicCache.

Completions end at EOS (kept in completion_ids, left out of the text), at a stop string (text
cut before it, completion_ids cut after the token that completes it), or at max_new_tokens
(`clipped`). The GRPO update scores the completions with the same padding and positions
(`rlscale.grpo.logprobs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rlscale.models.tokenizer import batch_decoder, encode_ids, stop_end_tokens


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    stop_strings: tuple[str, ...] = ()
    suppress_eos: bool = False  # never end early (GRPO benchmarks: every row makes max tokens)

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in (0, 1]")
        object.__setattr__(self, "stop_strings", tuple(s for s in self.stop_strings if s))


@dataclass
class Generation:
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]
    clipped: list[bool]
    finish: list[str] = field(default_factory=list)  # "eos" | "stop" | "length"
    # with generate(entropy=True): per completion token, the entropy of the distribution it
    # was sampled from (softmax of logits / temperature over the whole vocabulary)
    entropies: list[list[float]] | None = None

    @property
    def n_prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompt_ids)

    @property
    def n_completion_tokens(self) -> int:
        return sum(len(c) for c in self.completion_ids)

    @property
    def n_clipped(self) -> int:
        return sum(self.clipped)


def eos_ids(model, tokenizer) -> list[int]:
    ids = set()
    for src in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(src, int):
            ids.add(src)
        elif src:
            ids.update(src)
    return sorted(ids)


def left_pad(seqs: list[list[int]], pad_id: int, device="cpu"):
    """(ids [B, P], valid [B, P] bool, positions [B, P]) with padding on the left."""
    P = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), P), pad_id, dtype=torch.long)
    valid = torch.zeros((len(seqs), P), dtype=torch.bool)
    for i, s in enumerate(seqs):
        if s:
            ids[i, P - len(s):] = torch.tensor(s)
            valid[i, P - len(s):] = True
    pos = (valid.long().cumsum(1) - 1).clamp(min=0)
    return ids.to(device), valid.to(device), pos.to(device)


def sample(logits, params: SamplingParams, generator=None, banned=None, entropy=None):
    """Next tokens [B] from logits [B, V]: greedy (temperature 0), else temperature + top-p.
    entropy: None, or a [B] fp32 tensor that receives each row's `token_entropy`."""
    if params.top_p == 1:  # fp32 on the CPU: one kernel call (rlscale.models.native)
        from rlscale.models import native

        fused = params.temperature > 0  # the kernel's entropy: from its own pass
        tok = native.sample(logits, params.temperature, generator, banned,
                            entropy if fused else None)
        if tok is not None:
            if entropy is not None and not fused:
                entropy.copy_(token_entropy(logits, params.temperature))
            return tok
    if entropy is not None:
        entropy.copy_(token_entropy(logits, params.temperature))
    logits = logits.float()
    if banned is not None:
        logits = logits.index_fill(1, banned, float("-inf"))
    if params.temperature == 0:
        return logits.argmax(-1)
    if params.temperature != 1.0:
        logits = logits / params.temperature
    if params.top_p < 1:
        sorted_logits, order = logits.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= params.top_p  # keep the token crossing top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    # inverse-CDF sampling: one uniform per row (torch.multinomial draws one per vocabulary
    # entry, which costs more than the forward pass of a micro model)
    cdf = logits.softmax(-1).cumsum_(-1)
    if not bool(torch.isfinite(cdf[:, -1]).all()):  # as torch.multinomial would, say so
        raise RuntimeError("sampling: probability tensor contains inf or nan (diverged weights?)")
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(-1).clamp_(max=cdf.shape[1] - 1)


def token_entropy(logits, temperature: float):
    """Entropy [B] of softmax(logits / temperature) [B, V] over the whole vocabulary, in fp32
    (before any banned token or top-p cut: the policy's own distribution, as the GRPO update's
    forward scores it; temperature 0 reads as 1; a -inf logit adds 0, not 0 x -inf)."""
    logp = (logits.float() / (temperature or 1.0)).log_softmax(-1)
    return -(logp.exp() * logp.clamp_min(torch.finfo(logp.dtype).min)).sum(-1)


def cache_keyword(model) -> str:
    """The name an HF forward takes its KV cache by, and returns it under: `cache` since
    transformers 5.24 (where `past_key_values` is deprecated, to be removed in 5.40), else
    `past_key_values` (earlier 5.x releases, and remote-code models whose forward still says so).
    A forward that names neither (**kwargs only) gets the name its output class has."""
    import inspect

    try:
        names = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        names = {}
    for kw in ("cache", "past_key_values"):
        if kw in names:
            return kw
    from transformers.modeling_outputs import CausalLMOutputWithPast

    fields = getattr(CausalLMOutputWithPast, "__dataclass_fields__", {})
    return "cache" if "cache" in fields else "past_key_values"


def _groups(prompts: list):
    """(order, G): rows ordered so equal prompts are contiguous, G rows each, when every
    distinct prompt occurs equally often; else (identity, 1)."""
    first: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        first.setdefault(p, []).append(i)
    sizes = {len(v) for v in first.values()}
    if len(sizes) == 1 and (G := sizes.pop()) > 1:
        return [i for v in first.values() for i in v], G
    return list(range(len(prompts))), 1


class _Stopper:
    """Finds stop strings in the decoded tails of rows, in one batched decode call."""

    def __init__(self, tokenizer, stops: tuple[str, ...]):
        self.tok, self.stops = tokenizer, stops
        self.window = max(len(s) for s in stops) + 8 if stops else 0
        self.decode_batch = batch_decoder(tokenizer)
        self.ends = stop_end_tokens(tokenizer, stops)  # None: every live row is checked

    def may_end(self, tok: torch.Tensor) -> torch.Tensor:
        """Which new tokens can complete a stop string (ids past the tokenizer's: all)."""
        if self.ends.device != tok.device:
            self.ends = self.ends.to(tok.device)  # once per batch: the cached mask stays put
        n = len(self.ends)
        return (tok >= n) | self.ends[tok.clamp(max=n - 1)]

    def hits(self, tails: list[list[int]], rows: list[int]) -> list[int]:
        """The rows whose tail (last `window` tokens) holds a stop string."""
        texts = self.decode_batch(tails)
        return [r for r, t in zip(rows, texts) if any(s in t for s in self.stops)]

    def cut(self, ids: list[int], text: str):
        """(ids, text, stopped): text before the first stop string, ids up to its end."""
        at = [(text.find(s), s) for s in self.stops if s in text]
        if not at:
            return ids, text, False
        i, s = min(at)
        lo, hi = 1, len(ids)  # smallest prefix whose text holds the stop string at i
        while lo < hi:
            mid = (lo + hi) // 2
            if self.decode_batch([ids[:mid]])[0].find(s, i) == i:
                hi = mid
            else:
                lo = mid + 1
        return ids[:lo], text[:i], True


@torch.no_grad()
def _run_batch(model, tokenizer, prompt_ids, params, generator, progress_bar,
               entropy: bool = False):
    """Sample completions for one batch of tokenized prompts; returns per-row token lists and,
    with entropy, per-row lists of each token's `token_entropy` (else None).

    One function on purpose (~75 lines): the decode loop shares a dozen per-batch locals
    (caches, token buffer, live rows, lengths) between the compact and the generic path; split
    up, they would travel as a state object through the per-token hot loop."""
    from rlscale.models import fast

    device = next(model.parameters()).device
    B = len(prompt_ids)
    eos = eos_ids(model, tokenizer)
    eos_t = torch.tensor(eos or [-1], device=device)
    banned = eos_t if (params.suppress_eos and eos) else None
    stopper = _Stopper(tokenizer, params.stop_strings)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or [0])[0]
    rows = torch.arange(B, device=device)  # original row of each active batch row
    use_fast = fast.supports(model)
    if use_fast:
        order, G = _groups([tuple(p) for p in prompt_ids])
        uniq = [prompt_ids[i] for i in order[::G]]
        ids, valid, pos = left_pad(uniq, pad, device)
        dec = fast.FastDecoder(model)
        rope = dec.rope_tables(ids.shape[1] + params.max_new_tokens)
        logits, cache = dec.prefill(ids, pos, valid, rope)
        logits = logits.repeat_interleave(G, 0)
        state = dec.start_decode(cache, valid, G, params.max_new_tokens)
        rows = torch.tensor(order, device=device)
        next_pos = (pos[:, -1] + 1).repeat_interleave(G, 0)
    else:
        from transformers import DynamicCache

        ids, valid, pos = left_pad(prompt_ids, pad, device)
        mask = valid.long()
        kv = cache_keyword(model)
        o = model(input_ids=ids, attention_mask=mask, position_ids=pos,
                  **{kv: DynamicCache(config=model.config)}, use_cache=True, logits_to_keep=1)
        logits, past = o.logits[:, -1], o[kv]
        next_pos = pos[:, -1] + 1
    out: list[list[int]] = [[] for _ in range(B)]
    T = params.max_new_tokens
    buf = torch.full((B, T), pad, dtype=torch.long, device=device)  # tokens of active rows
    hbuf = torch.zeros((B, T) if entropy else (B, 0), device=device)  # and their entropies
    ents: list[list[float]] = [[] for _ in range(B)]
    length = torch.full((B,), T, dtype=torch.long, device=device)  # final length once done
    done = torch.zeros(B, dtype=torch.bool, device=device)
    # with EOS suppressed and no stop strings every row runs to the end: no per-step checks
    can_finish = bool(params.stop_strings) or (banned is None and bool(eos))

    def flush(sel):  # hand the rows `sel` of the active batch over to `out`
        for r, b, h, n in zip(rows[sel].tolist(), buf[sel].cpu(), hbuf[sel].cpu(),
                              length[sel].tolist()):
            out[r], ents[r] = b[:n].tolist(), h[:n].tolist()

    for step in range(T):
        h = torch.empty(logits.shape[0], device=device) if entropy else None
        tok = sample(logits, params, generator, banned, h)
        if entropy:
            hbuf[:, step] = h
        if not use_fast:
            tok = tok.masked_fill(done, pad)  # finished rows stop being extended
        buf[:, step] = tok
        if progress_bar is not None:
            progress_bar.update(1)
        if step == T - 1:
            break
        if can_finish:
            done = _finish_step(tok, done, step, eos_t if banned is None and eos else None,
                                stopper, buf, length)
            if bool(done.all()):
                break
        if use_fast:
            if can_finish and int((~done).sum()) <= 0.75 * done.shape[0] - 1:
                flush(done)  # compact: finished rows leave the compute
                keep = (~done).nonzero().squeeze(1)
                state.keep(keep)
                tok, next_pos, rows = tok[keep], next_pos[keep], rows[keep]
                buf, hbuf, length, done = buf[keep], hbuf[keep], length[keep], done[keep]
            logits = dec.decode(tok, next_pos, state, rope)
        else:
            mask = torch.cat([mask, (~done).long()[:, None]], 1)
            o = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None],
                      **{kv: past}, use_cache=True)
            logits, past = o.logits[:, -1], o[kv]
        next_pos = next_pos + 1
    flush(torch.ones_like(done))
    return out, (ents if entropy else None)


def _finish_step(tok, done, step, eos_t, stopper, buf, length):
    """Mark rows that just produced EOS or completed a stop string; record their lengths."""
    fin = torch.isin(tok, eos_t) & ~done if eos_t is not None else torch.zeros_like(done)
    if stopper.stops:
        live = ~done if stopper.ends is None else ~done & stopper.may_end(tok)
        live = live.nonzero().squeeze(1).tolist()
        if live:
            tails = buf[live, max(0, step + 1 - stopper.window): step + 1].tolist()
            hit = stopper.hits(tails, live)
            if hit:
                fin[hit] = True
    length.masked_fill_(fin, step + 1)
    return done | fin


# A CPU decoding step reads every row's KV cache once per layer; past ~64 MB of cache over all
# layers the steps slow down. Measured on the study's 600k rung (docs/benchmarks.md, session 31):
# 800 held-out prompts x 96 new tokens, all rows in one call 4.46 s, 128 rows a call 2.09 s;
# 400 five-shot prompts x 48 tokens, 400 rows 11.6 s, 32 rows 4.8 s.
CPU_KV_BYTES = 64 << 20


def auto_rows(model, prompt_len: int, max_new: int, n: int) -> int:
    """Rows per generate() batch when the caller gives none: all n on an accelerator; on the
    CPU as many as keep the KV cache (all layers, prompt + completion) within CPU_KV_BYTES, at
    least 16. Models without the usual config fields get all n."""
    n = max(n, 1)
    p = next(model.parameters())
    cfg = getattr(model, "config", None)
    try:
        heads = cfg.num_attention_heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        per_row = (2 * p.element_size() * cfg.num_hidden_layers
                   * (getattr(cfg, "num_key_value_heads", None) or heads) * hd
                   * (prompt_len + max_new))
    except (AttributeError, TypeError, ZeroDivisionError):
        return n
    if p.device.type != "cpu" or per_row <= 0:
        return n
    return min(n, max(16, CPU_KV_BYTES // per_row))


def generate(model, tokenizer, prompts: list[str], params: SamplingParams | None = None,
             seed: int | None = None, batch_size: int | None = None,
             progress: bool = False, entropy: bool = False) -> Generation:
    """Sample one completion per prompt (repeat a prompt G times for G samples); with entropy,
    also each completion token's `token_entropy` (Generation.entropies: the GRPO update's
    entropy metric, read here, where the logits already are).

    Deterministic given seed. batch_size: rows per forward batch (default: `auto_rows`: all
    rows on an accelerator, a KV-cache budget's worth on the CPU); prompts are batched by length
    so padding stays small, and the results come back in input order.
    """
    from tqdm.auto import tqdm

    params = params or SamplingParams()
    device = next(model.parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    enc = encode_ids(tokenizer, prompts) if prompts else []
    if any(not e for e in enc):
        raise ValueError("generate: a prompt encodes to no tokens; give every prompt some text")
    n = len(enc)
    bs = batch_size or auto_rows(model, max(map(len, enc), default=0), params.max_new_tokens, n)
    first: dict[str, int] = {}
    order = sorted(range(n), key=lambda i: (len(enc[i]), first.setdefault(prompts[i], i)))
    bar = tqdm(total=params.max_new_tokens * -(-n // bs), disable=not progress, unit="tok",
               desc="generate", leave=False)
    completions: list[list[int]] = [[] for _ in range(n)]
    ents: list[list[float]] = [[] for _ in range(n)]
    for s in range(0, n, bs):
        chunk = order[s:s + bs]
        outs, hs = _run_batch(model, tokenizer, [enc[i] for i in chunk], params, generator, bar,
                              entropy)
        for j, (i, o) in enumerate(zip(chunk, outs)):
            completions[i] = o
            if hs is not None:
                ents[i] = hs[j]
    bar.close()
    stopper = _Stopper(tokenizer, params.stop_strings)
    eos = set(eos_ids(model, tokenizer))
    gen = Generation(prompt_ids=enc, completion_ids=[], texts=[], clipped=[], finish=[],
                     entropies=[] if entropy else None)
    for ids, h, text in zip(completions, ents, stopper.decode_batch(completions)):
        ids, text, stopped = stopper.cut(ids, text)
        if stopped:
            reason = "stop"
        elif ids and ids[-1] in eos:
            reason = "eos"
        elif len(ids) >= params.max_new_tokens:
            reason = "length"
        else:  # the batched tail check saw a stop string the full text places differently
            reason = "stop"
        gen.completion_ids.append(ids)
        if entropy:
            gen.entropies.append(h[:len(ids)])  # a stop string cuts both
        gen.texts.append(text)
        gen.clipped.append(reason == "length")
        gen.finish.append(reason)
    return gen
