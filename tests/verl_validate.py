"""Run verl's own config checks on exported overrides (runs in verl's environment, .venv-verl).

    python verl_validate.py LAUNCHES.jsonl  -> per launch "ok scores=..." or "rejected: <why>"

LAUNCHES.jsonl holds one JSON list of KEY=VALUE overrides per line: tests/test_verl.py runs each
exported run_verl.sh with a recorder standing in for `python3 -m verl.trainer.main_ppo`, so the
overrides arrive exactly as the launch script passes them; one verl process then checks them all
(importing verl takes seconds).

What `python -m verl.trainer.main_ppo` does before it starts anything: Hydra composes verl's
`ppo_trainer` config with the overrides (unknown keys fail here), then
`verl.utils.config.validate_config` judges it with the reference-policy and critic needs that
main_ppo derives from the same config.
"""

import json
import os
import sys


def composed(overrides: list[str]):
    """verl's `ppo_trainer` config composed by Hydra with the overrides, as main_ppo does (the
    other verl_*.py helpers read their configs through it)."""
    from hydra import compose, initialize_config_dir

    import verl

    config_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def check(overrides: list[str]) -> str:
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    try:  # like main_ppo: the composed config, then validate_config
        config = composed(overrides)
        validate_config(config=config, use_reference_policy=need_reference_policy(config),
                        use_critic=need_critic(config))
    except Exception as e:  # verl raises ValueError / AssertionError; Hydra its own errors
        return f"rejected: {type(e).__name__} {' '.join(str(e).split())[:500]}"
    # the reward module as verl's reward workers load it (by path, under a private name)
    from verl.trainer.ppo.reward import get_custom_reward_fn

    score = get_custom_reward_fn(config)
    right = score(data_source="openai/gsm8k", solution_str="so 3 + 4 = 7\n#### 7",
                  ground_truth="7", extra_info={"index": 0})
    wrong = score(data_source="openai/gsm8k", solution_str="#### 8", ground_truth="7")
    return f"ok scores={right},{wrong}"


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        for line in f:
            print(check(json.loads(line)), flush=True)
