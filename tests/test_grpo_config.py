"""TrainConfig: presets, overrides, dict round trip, and one-line errors naming the field."""

import pytest

from rlscale.errors import UserError
from rlscale.grpo.config import PRESETS, TrainConfig, resolve


def test_resolve_layers_defaults_preset_overrides():
    cfg = resolve("paper", {"lr": 3e-6, "steps": 5, "group_size": None})
    assert cfg.lr == 3e-6 and cfg.steps == 5  # explicit flags win
    assert cfg.group_size == 8 and cfg.batch_size == 512 and cfg.kl_coef == 0.001  # preset
    assert cfg.mini_batch_size == 128 and cfg.eval_temperature == 0.7 and cfg.weight_decay == 0.1
    assert cfg.preset == "paper" and cfg.updates_per_step() == 4
    assert cfg.clip_c == resolve("seed").clip_c == 3.0  # both ran verl, whose dual clip is on
    assert resolve(None).clip_c == 0.0  # off, as TRL's GRPO
    seed = resolve("seed")
    assert (seed.group_size, seed.max_new_tokens, seed.reward, seed.steps) == \
        (3, 512, "custom_flexible", 56)
    assert resolve(None).preset is None
    for name in PRESETS:
        resolve(name).validate()


def test_from_dict_round_trip_and_unknown_keys():
    cfg = resolve("seed", {"model": "micro:1m"})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(UserError, match="unknown train config key.*bogus"):
        TrainConfig.from_dict({"lr": 1e-5, "bogus": 1})
    with pytest.raises(UserError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": "eight"})
    assert TrainConfig.from_dict({"lr": 1}).lr == 1.0  # an int is a fine float


@pytest.mark.parametrize("change, flag", [
    ({"group_size": 1}, "--group-size"),
    ({"batch_size": 10, "mini_batch_size": 4}, "--mini-batch-size"),
    ({"reward": "exact"}, "--reward"),
    ({"loss_agg": "sum"}, "--loss-agg"),
    ({"adv": "ppo"}, "--adv"),
    ({"lr": float("nan")}, "--lr"),
    ({"clip_low": 1.5}, "--clip-low"),
    ({"clip_c": 1.0}, "--clip-c"),
    ({"clip_c": 0.5}, "--clip-c"),
    ({"clip_c": -3.0}, "--clip-c"),
    ({"steps": -1}, "--steps"),
    ({"reuse": 0}, "--reuse"),
])
def test_validate_names_the_flag(change, flag):
    with pytest.raises(UserError) as e:
        TrainConfig.from_dict(change).validate()
    msg = str(e.value)
    assert msg.startswith(flag) and "\n" not in msg


def test_unique_prompts_with_reuse():
    cfg = TrainConfig(steps=10, batch_size=8, reuse=4)
    assert cfg.unique_prompts() == 20
    assert TrainConfig(steps=3, batch_size=5, reuse=2).unique_prompts() == 8  # ceil(15 / 2)


def test_unknown_preset():
    with pytest.raises(UserError, match="preset"):
        resolve("verl")


@pytest.mark.parametrize("change, flag", [
    ({"batch_size": 10**9}, "--batch-size"),
    ({"group_size": 10**7}, "--group-size"),
    ({"eval_max_new_tokens": 10**8}, "--eval-max-new-tokens"),
    ({"max_new_tokens": 10**8}, "--max-new-tokens"),
    ({"seed": 2**64}, "--seed"),
    ({"seed": -1}, "--seed"),
    ({"data_seed": 10**400}, "--data-seed"),
    ({"device": "tpu"}, "--device"),
    ({"dtype": "int8"}, "--dtype"),
    ({"top_p": 1.5}, "--top-p"),
    ({"adam_beta2": 1.0}, "--adam-beta2"),
    ({"temperature": float("inf")}, "--temperature"),
])
def test_ranges_from_field_metadata(change, flag):
    with pytest.raises(UserError) as e:
        TrainConfig.from_dict(change).validate()
    msg = str(e.value)
    assert msg.startswith(flag) and "\n" not in msg and ("must be" in msg or "unknown" in msg)


def test_every_field_carries_help_and_numbers_a_range():
    import dataclasses

    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"], f.name
        if str(f.type) in ("int", "float"):
            assert "range" in f.metadata, f.name  # every number says what it may be
    assert set(TrainConfig.resumable()) == {"steps", "eval_every", "checkpoint_every", "lr",
                                            "device", "rollout_batch_size", "micro_batch_size",
                                            "activation_checkpointing", "checkpoint_policy",
                                            "skip_zero_advantage", "log_samples"}
    saved = {**TrainConfig().to_dict(), "N": 123, "device_used": "cpu"}
    assert TrainConfig.settings_of(saved) == TrainConfig().to_dict()


def test_mini_batch_defaults_to_the_batch():
    assert TrainConfig(batch_size=4).mini_batch_size == 4  # one update per step
    assert TrainConfig(batch_size=4).updates_per_step() == 1
    assert resolve(None, {"batch_size": 6}).validate().mini_batch_size == 6
    assert resolve("paper").mini_batch_size == 128  # a preset's own mini-batch stays
    assert resolve("paper", {"mini_batch_size": 256}).updates_per_step() == 2
