"""verl's own GRPO advantage and actor loss on given tensors (in verl's environment, .venv-verl).

    python verl_losses.py CASES.json  -> one JSON line per case: {"adv": [...], "loss": x}

CASES.json is a list of {"overrides": [KEY=VALUE, ...] (an exported launch's), "rewards": [R],
"index": [R] (the prompt of each row), "mask", "logp", "old_logp", "ref_logp": [R][T]}.
Hydra composes verl's `ppo_trainer` config with the overrides, as main_ppo does; the advantage is
verl's GRPO estimator with the composed algorithm settings (the reward on each row's last token),
and the loss is what verl's actor loss (verl.workers.utils.losses.ppo_loss) adds up for one
micro-batch that is the whole mini-batch on one rank: the policy loss of the configured
loss_mode, minus entropy_coeff x entropy (0 here), plus kl_loss_coef x the aggregated kl_penalty.
"""

import json
import sys

import numpy as np
import torch

from verl_validate import composed


def run(case: dict) -> dict:
    from verl.trainer.ppo.core_algos import (agg_loss, compute_grpo_outcome_advantage,
                                             get_policy_loss_fn, kl_penalty)
    from verl.utils.config import omega_conf_to_dataclass

    config = composed(case["overrides"])
    actor = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    mask = torch.tensor(case["mask"], dtype=torch.float32)
    logp, old, ref = (torch.tensor(case[k], dtype=torch.float32)
                      for k in ("logp", "old_logp", "ref_logp"))
    last = mask.cumsum(-1) == mask.sum(-1, keepdim=True)  # each row's last response token
    rewards = torch.where(last & mask.bool(), torch.tensor(case["rewards"])[:, None], 0.0)
    adv, _ = compute_grpo_outcome_advantage(
        rewards, mask, np.array(case["index"]),
        norm_adv_by_std_in_grpo=config.algorithm.norm_adv_by_std_in_grpo)
    # as ppo_loss sets it: one rank, this micro-batch's tokens and sequences
    actor.global_batch_info.update(dp_size=1, batch_num_tokens=mask.sum(),
                                   global_batch_size=mask.shape[0],
                                   loss_scale_factor=actor.loss_scale_factor)
    loss_fn = get_policy_loss_fn(actor.policy_loss.get("loss_mode", "vanilla"))
    loss, _ = loss_fn(old_log_prob=old, log_prob=logp, advantages=adv, response_mask=mask.bool(),
                      loss_agg_mode=actor.loss_agg_mode, config=actor)
    assert actor.entropy_coeff == 0  # the export's; its term would need the logits
    if actor.use_kl_loss:
        kld = kl_penalty(logprob=logp, ref_logprob=ref, kl_penalty=actor.kl_loss_type)
        loss = loss + actor.kl_loss_coef * agg_loss(loss_mat=kld, loss_mask=mask.bool(),
                                                    loss_agg_mode=actor.loss_agg_mode,
                                                    **actor.global_batch_info)
    return {"adv": adv[:, 0].tolist(), "loss": float(loss),
            "clip_ratio_c": float(actor.clip_ratio_c)}


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        for case in json.load(f):
            print(json.dumps(run(case)), flush=True)
