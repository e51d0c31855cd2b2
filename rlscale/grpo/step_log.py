"""A GRPO step's record: the batch it trained on (`Rollout`) and its scores (`score`: rewards
of every answer check, advantages), the run's counters it advances (`advance`), its metrics
row (`metrics_row`) and, with log_samples, what the model was shown and wrote
(`sample_rows`). Pure bookkeeping: no model, no optimizer.

Metric rows: step, D (prompts consumed), unique_prompts, prompt_tokens / completion_tokens
(cumulative; step_* for this step; prompts counted once per rollout), C_paper / C_itemized
(cumulative FLOPs, rlscale.flops), reward_mean, acc_<check> for every answer check, frac_zero_std,
completion_len_mean, clipped_share, clip_frac, kl (to the reference; null without one), entropy
(mean per completion token of the distribution it was sampled from, at the rollout temperature,
read by the sampler), grad_norm (before clipping, mean over updates), lr, updates, time_rollout /
time_reward / time_logprobs / time_update / time_step (s; time_step excludes evaluation),
tokens_per_s, mfu; on eval steps (rlscale.grpo.trainer adds them) test_loss, test_loss_se,
test_problems, test_samples, eval_temperature, test_clipped_share, test_acc_<check>, test_right
({check: right samples per held-out problem, in the task's order}), time_eval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rlscale.flops import ModelShape, attention_forward_flops, c_itemized, c_paper, mfu
from rlscale.rollout import Generation


@dataclass
class Rollout:
    """One step's batch from the generator: B prompts x G completions (rows group by group),
    the reward of every answer check per row, the training reward, advantages, and the batch
    laid out for the log-prob forward."""

    gen: Generation
    acc: dict[str, list[float]]
    rewards: list[float]
    adv: torch.Tensor  # [R]
    zero_std: torch.Tensor  # [B]
    batch: tuple  # (input_ids, attention_mask, position_ids, completion_mask)
    t_sampled: float  # time.perf_counter() when sampling ended
    t_rewarded: float  # ... and when rewards and advantages were done
    prompts: list[str] = field(default_factory=list)  # [R] the text each row was prompted with
    answers: list[str] = field(default_factory=list)  # [R] its problem's answer


def score(texts: list[str], answers: list[str], checks: tuple[str, ...], cfg):
    """A rollout's scores: (accuracy per check [R] for every check in `checks`, the training
    reward [R] under cfg.reward, group advantages [R], zero_std [B]). Without
    cfg.stop_at_question the reward reads each text before a new question (as the exported
    verl reward module does), rlscale.rewards.before_stop."""
    from rlscale.grpo import core
    from rlscale.rewards import REWARDS, before_stop
    from rlscale.tasks import STOP_STRINGS

    if not cfg.stop_at_question:
        texts = [before_stop(t, STOP_STRINGS) for t in texts]
    names = checks + ((cfg.reward,) if cfg.reward not in checks else ())
    scores = {name: [REWARDS[name](t, a) for t, a in zip(texts, answers)] for name in names}
    rewards = scores[cfg.reward]
    adv, zero_std = core.group_advantages(torch.tensor(rewards, dtype=torch.float32),
                                          cfg.group_size, cfg.adv, cfg.adv_eps)
    return {name: scores[name] for name in checks}, rewards, adv, zero_std


def advance(state: dict, gen: Generation, shape: ModelShape, batch_size: int,
            extra_forwards: int) -> tuple[float, int]:
    """Advance the run's counters (`state`, in place) by one step of `batch_size` prompts
    whose rollout is `gen`; returns (the step's C_itemized FLOPs, its tokens). `extra_forwards`
    counts the forward passes beyond the policy's (old / reference log-probs, recompute)."""
    n, p_tok, c_tok = shape.n_params, gen.n_prompt_tokens, gen.n_completion_tokens
    lens = [len(p) + len(c) for p, c in zip(gen.prompt_ids, gen.completion_ids)]
    attn = attention_forward_flops(shape.n_layer, shape.d_attn, lens)
    flops = c_itemized(n, p_tok + c_tok, p_tok + c_tok, extra_forwards, attn)
    state.update(step=state["step"] + 1, D=state["D"] + batch_size,
                 prompt_tokens=state["prompt_tokens"] + p_tok,
                 completion_tokens=state["completion_tokens"] + c_tok,
                 C_paper=state["C_paper"] + c_paper(n, p_tok + c_tok),
                 C_itemized=state["C_itemized"] + flops)
    return flops, p_tok + c_tok


def metrics_row(state: dict, ro: Rollout, sums: dict, flops: float, tokens: int, has_ref: bool,
                times: dict, *, unique_prompts: int, lr: float, peak: float) -> dict:
    """The step's row: the counters after `advance`, the rollout's rewards and lengths, the
    step's summed token statistics (`sums`: tokens, clipped, kl, entropy, grad_norms), the
    phase times (s) and the throughput against the matmul peak `peak` (FLOP/s)."""
    gen, R = ro.gen, len(ro.rewards)
    n_tok, t_step = max(sums["tokens"], 1.0), sum(times.values())
    return {"step": state["step"], "D": state["D"], "unique_prompts": unique_prompts,
            "prompt_tokens": state["prompt_tokens"],
            "completion_tokens": state["completion_tokens"],
            "step_prompt_tokens": gen.n_prompt_tokens,
            "step_completion_tokens": gen.n_completion_tokens,
            "C_paper": state["C_paper"], "C_itemized": state["C_itemized"],
            "reward_mean": sum(ro.rewards) / R,
            **{f"acc_{k}": sum(v) / len(v) for k, v in ro.acc.items()},
            "frac_zero_std": float(ro.zero_std.float().mean()),
            "completion_len_mean": gen.n_completion_tokens / R,
            "clipped_share": gen.n_clipped / R,
            "clip_frac": sums["clipped"] / n_tok,
            "kl": sums["kl"] / n_tok if has_ref else None,
            "entropy": sums["entropy"] / n_tok,
            "grad_norm": sum(sums["grad_norms"]) / len(sums["grad_norms"]),
            "lr": lr, "updates": len(sums["grad_norms"]), **times, "time_step": t_step,
            "tokens_per_s": tokens / t_step if t_step > 0 else 0.0,
            "mfu": mfu(flops, t_step, peak),
            # the machine's speed as this run measured it at start: wall times across runs and
            # machines compare through it (summary.json `machine`)
            "matmul_peak_flops": peak}


def sample_rows(step: int, ro: Rollout, n: int, group_size: int) -> list[dict]:
    """samples.jsonl's rows for a step: its first n prompts, each with the text the model was
    shown, its answer, and per completion the text, the reward, the advantage and how it
    ended (eos | stop | length): what to read when a reward or a loss looks wrong."""
    G, gen = group_size, ro.gen
    rows = []
    for i in range(min(n, len(ro.rewards) // G)):
        r = slice(i * G, (i + 1) * G)
        rows.append({"step": step, "prompt": ro.prompts[i * G], "answer": ro.answers[i * G],
                     "completions": gen.texts[r], "rewards": ro.rewards[r],
                     "advantages": [round(float(a), 6) for a in ro.adv[r]],
                     "finish": gen.finish[r] if gen.finish else None})
    return rows
