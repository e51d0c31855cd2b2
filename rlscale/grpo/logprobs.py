"""The GRPO log-prob forward: per-token log-probs (and entropies) of sampled completions.

`batch_for_logprobs` lays a rollout out as one batch (prompts left-padded, completions
right-padded, positions as during generation, so a padded row computes what it computed while
sampling), and `sequence_logprobs` scores it, rows in buckets of similar completion length
(each computed only as long as its longest row). Qwen3/Qwen2 models run the compact forward of
`rlscale.models.fast`, which computes a prompt shared by the G rows of a group once; any other
causal LM runs its own forward, once per bucket.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlscale.grpo import core
from rlscale.models import fast, fast_train
from rlscale.rollout import left_pad


# A forward whose fp32 logits would pass this size (a Qwen vocabulary of ~150k: 64 rows x 256
# tokens are 10 GB, and their log-softmax as much again) is scored from its final hidden states
# in chunks of about LOGITS_CHUNK_BYTES (core.linear_logprobs); below it, as one [B, C, V] tensor.
LOGITS_WHOLE_BYTES = 1 << 30
LOGITS_CHUNK_BYTES = 1 << 28


def sequence_logprobs(model, input_ids, attention_mask, position_ids, completion_mask,
                      temperature: float = 1.0, return_entropy: bool = False,
                      entropy_grad: bool = True, checkpoint: bool = False):
    """Per-token log-probs of the completion tokens, in one forward pass.

    input_ids [B, P + C]: left-padded prompts followed by right-padded completions (see
    `batch_for_logprobs`); attention_mask / position_ids [B, P + C] (positions as during
    generation); completion_mask [B, C] (1 on real completion tokens). Returns [B, C] log-probs
    of each completion token under logits / temperature (0 where masked), and with
    return_entropy also the [B, C] entropies. Gradients flow when enabled by the caller
    (entropy_grad=False: the entropies are a metric only, computed outside autograd).
    Qwen3/Qwen2 models run the compact forward, which computes a prompt shared by G rows once
    and scores each length bucket as it comes (`_bucket_scorer`); checkpoint: its layers
    recompute their activations in the backward pass (any other model: the trainer turns on
    transformers' gradient checkpointing instead). Any other model's logits are made whole
    ([B, C, V]); a batch whose fp32 logits would pass LOGITS_WHOLE_BYTES is scored from the
    final hidden states a chunk at a time (core.linear_logprobs) where the logits are the
    output embedding of those states.
    """
    (B, C), labels = completion_mask.shape, input_ids[:, -completion_mask.shape[1]:]
    # decided on the whole batch: every bucket's log-softmax is kept for the backward
    chunked = B * C * model.get_output_embeddings().weight.shape[0] * 4 > LOGITS_WHOLE_BYTES
    if _compact(model, input_ids, C):
        score = _bucket_scorer(labels, temperature, return_entropy, entropy_grad, chunked)
        out = _compact_forward(model, input_ids, attention_mask, position_ids, C, checkpoint,
                               head=score)
        lp, ent = out[..., 0], (out[..., 1] if return_entropy else None)
        if return_entropy and not entropy_grad:  # no graph behind it (stack joined lp's)
            ent = ent.detach()
    else:
        lp, ent = _whole_logprobs(model, input_ids, attention_mask, position_ids, C, labels,
                                  temperature, return_entropy, entropy_grad, checkpoint,
                                  chunked)
    if not return_entropy:
        return lp * completion_mask
    return lp * completion_mask, ent * completion_mask


def _from_logits(logits, labels, temperature: float, entropy: bool, entropy_grad: bool):
    """(log-probs, entropies or None) of labels [...] under logits [..., V] / temperature."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    out = core.logprobs_from_logits(logits, labels, entropy, entropy_grad)
    return out if entropy else (out, None)


def _scores(h, w, labels, temperature: float, entropy: bool, entropy_grad: bool, chunked: bool):
    """`_from_logits` of logits = h @ w.T, h [..., d]: made whole, or with chunked a few rows
    at a time (core.linear_logprobs: the logits are never held whole, in the forward or the
    backward)."""
    if not chunked:
        return _from_logits(F.linear(h, w), labels, temperature, entropy, entropy_grad)
    shape = labels.shape
    lp, ent = core.linear_logprobs(h.flatten(0, -2), w, labels.flatten(), temperature,
                                   chunk=LOGITS_CHUNK_BYTES // (4 * w.shape[0]))
    ent = (ent if entropy_grad else ent.detach()).view(shape)
    return lp.view(shape), (ent if entropy else None)


def _bucket_scorer(labels, temperature: float, entropy: bool, entropy_grad: bool,
                   chunked: bool):
    """The compact forward's head for log-probs: a bucket's states x [R, n, d] of rows [R] ->
    [R, n, 1 or 2] (log-prob, entropy). A bucket's logits are made, scored and dropped, so the
    [B, C, V] logits and their padding (GRPO completions are ragged: about half of it) are never
    built, normalised or copied."""
    def score(dec, x, rows):
        lp, ent = _scores(dec.final_norm(x), dec.lm_head, labels[rows, :x.shape[1]],
                          temperature, entropy, entropy_grad, chunked)
        return torch.stack([lp, ent], -1) if entropy else lp[..., None]
    return score


def _whole_logprobs(model, input_ids, attention_mask, position_ids, C: int, labels,
                    temperature: float, entropy: bool, entropy_grad: bool, checkpoint: bool,
                    chunked: bool):
    """`sequence_logprobs` of a model the compact forward does not run: from its [B, C, V]
    logits, or with chunked from its final hidden states (where the logits are their output
    embedding: `_plain_head`)."""
    if chunked and _plain_head(model):
        h = completion_hidden(model, input_ids, attention_mask, position_ids, C, checkpoint)
        return _scores(h, model.get_output_embeddings().weight, labels, temperature, entropy,
                       entropy_grad, True)
    logits = completion_logits(model, input_ids, attention_mask, position_ids, C, checkpoint)
    return _from_logits(logits, labels, temperature, entropy, entropy_grad)


def completion_logits(model, input_ids, attention_mask, position_ids, C: int,
                      checkpoint: bool = False):
    """[B, C, V] logits predicting the last C tokens of each row (see `sequence_logprobs`);
    zeros past a row's last completion token. Rows run in buckets of similar completion length
    (`fast_train.length_buckets`), each cut to its longest row: GRPO completions are ragged."""
    if not _compact(model, input_ids, C):
        return _model_logits(model, input_ids, attention_mask, position_ids, C,
                             _lengths(attention_mask, C))
    return _compact_forward(model, input_ids, attention_mask, position_ids, C, checkpoint)


def completion_hidden(model, input_ids, attention_mask, position_ids, C: int,
                      checkpoint: bool = False):
    """[B, C, d]: the final hidden states whose output embedding gives `completion_logits`
    (after the final norm; zeros past a row's last completion token)."""
    if _compact(model, input_ids, C):
        return _compact_forward(model, input_ids, attention_mask, position_ids, C, checkpoint,
                                hidden=True)
    return _model_logits(model, input_ids, attention_mask, position_ids, C,
                         _lengths(attention_mask, C), hidden=True)


def _plain_head(model) -> bool:
    """Whether logits are exactly the output embedding of the last hidden state (no bias, no
    soft-capping or scaling of the logits, as some families have): then they can be computed
    from those states a chunk at a time."""
    from rlscale.checks import plain_logits

    head = model.get_output_embeddings()
    return (isinstance(head, torch.nn.Linear) and head.bias is None
            and plain_logits(model.config.to_dict()))


def _compact(model, input_ids, C: int) -> bool:
    """Whether the compact forward (rlscale.models.fast) scores this model and batch."""
    return (input_ids.shape[1] > C and fast.supports(model)
            and not model.config.attention_dropout)


def _lengths(attention_mask, C: int):
    cols = torch.arange(1, C + 1, device=attention_mask.device)
    return (attention_mask[:, -C:].bool() * cols).amax(1)  # through each row's last token


def _compact_forward(model, input_ids, attention_mask, position_ids, C: int, checkpoint: bool,
                     hidden: bool = False, head=None):
    """The compact forward's [B, C, V] logits, with hidden its [B, C, d] final states, or with
    head(dec, x, rows) its bucket-wise output (fast_train.completion_states)."""
    B, P = input_ids.shape[0], input_ids.shape[1] - C
    # rows with the same prompt (GRPO's G samples) share one prompt forward
    key = torch.cat([input_ids[:, :P], attention_mask[:, :P].long()], 1)
    G = _consecutive_group_size(key)
    if G > 1:  # the trainer's layout: runs of G rows
        first = torch.arange(0, B, G, device=key.device)
        owner = torch.arange(B, device=key.device) // G
    else:  # any layout (torch.unique costs ~10 ms)
        _, owner = torch.unique(key, dim=0, return_inverse=True)
        first = torch.full((int(owner.max()) + 1,), B, device=key.device)
        first = first.scatter_reduce(0, owner, torch.arange(B, device=key.device), "amin")
    mask = attention_mask.bool()
    dec = fast.FastDecoder(model, grad=True)
    args = (dec, input_ids[first, :P], mask[first, :P], position_ids[first, :P],
            input_ids[:, P:], position_ids[:, P:], owner, _lengths(attention_mask, C))
    if head is not None:
        return fast_train.completion_states(*args, checkpoint=checkpoint,
                                            head=lambda x, rows: head(dec, x, rows))
    run = fast_train.completion_hidden if hidden else fast_train.completion_logits
    return run(*args, checkpoint=checkpoint)


def _model_logits(model, input_ids, attention_mask, position_ids, C: int, lengths,
                  hidden: bool = False):
    """The model's own forward (any causal LM), one call per length bucket; hidden: the final
    hidden states (transformers' last `hidden_states`, after the final norm) instead of logits."""
    P, parts, out = input_ids.shape[1] - C, fast_train.length_buckets(lengths, 8), []
    for rows, n in parts:
        cut = slice(0, P + n)
        res = model(input_ids=input_ids[rows, cut], attention_mask=attention_mask[rows, cut],
                    position_ids=position_ids[rows, cut], logits_to_keep=1 if hidden else n + 1,
                    output_hidden_states=hidden, use_cache=False)
        x = res.hidden_states[-1][:, -(n + 1):-1] if hidden else res.logits[:, :-1]
        out.append(F.pad(x, (0, 0, 0, C - n)))
    order = torch.cat([rows for rows, _ in parts])
    return torch.cat(out)[torch.argsort(order)]


def _consecutive_group_size(key: torch.Tensor) -> int:
    """G when the rows of key [B, K] come in runs of G equal rows, each run a different prompt
    (the trainer's layout); else 1."""
    B = key.shape[0]
    same = (key[1:] == key[:-1]).all(1).tolist()
    G = same.index(False) + 1 if False in same else B
    if G > 1 and B % G == 0 and all(s == ((i + 1) % G != 0) for i, s in enumerate(same)):
        return G
    return 1


def batch_for_logprobs(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int,
                       device="cpu"):
    """(input_ids, attention_mask, position_ids, completion_mask) for `sequence_logprobs`:
    prompts left-padded, completions right-padded, positions as during generation."""
    ids_p, valid_p, pos_p = left_pad(prompt_ids, pad_id)
    C = max(1, max(len(c) for c in completion_ids))
    ids_c = torch.full((len(completion_ids), C), pad_id, dtype=torch.long)
    cmask = torch.zeros((len(completion_ids), C), dtype=torch.long)
    for i, c in enumerate(completion_ids):
        ids_c[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        cmask[i, : len(c)] = 1
    pos_c = pos_p[:, -1:] + 1 + torch.arange(C)[None, :]
    input_ids = torch.cat([ids_p, ids_c], 1)
    attn = torch.cat([valid_p.long(), cmask], 1)
    pos = torch.cat([pos_p, pos_c], 1)
    return (input_ids.to(device), attn.to(device), pos.to(device), cmask.to(device))
