"""TrainConfig: every setting of a GRPO run, named like its `rlscale train` flag.

A config is resolved in three layers: the defaults below (small, CPU-sized), then a preset
(`paper`: arXiv 2509.25300's GRPO settings; `seed`: the seed study's), then explicit settings.
`TrainConfig.from_dict` is what sweeps use; it rejects unknown keys. `validate` names the first
bad field in a one-line UserError, before anything is written to the run directory.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields

from rlscale.errors import UserError

REWARD_NAMES = ("strict", "flexible", "custom_flexible", "boxed")
ADV_METHODS = ("grpo", "drgrpo")
LOSS_AGGS = ("token-mean", "seq-mean-token-mean")


@dataclass
class TrainConfig:
    model: str = "micro:tiny"  # local dir, hub name or micro:<rung>
    task: str = "arith"
    preset: str | None = None  # recorded for the record; its values are already applied
    # GRPO
    lr: float = 1e-5
    batch_size: int = 16  # prompts per step (B)
    group_size: int = 8  # completions per prompt (G)
    mini_batch_size: int = 16  # prompts per optimizer update; B / mini-batch updates per step
    micro_batch_size: int = 0  # rows per forward/backward chunk (memory only); 0 = whole mini-batch
    kl_coef: float = 0.0  # beta; 0 disables the reference model
    clip_low: float = 0.2
    clip_high: float = 0.2
    loss_agg: str = "token-mean"
    adv: str = "grpo"
    adv_eps: float = 1e-6
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    # data and rollout
    reward: str = "custom_flexible"
    fewshot: int = 0  # exemplars from the train split in each prompt
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    suppress_eos: bool = False  # benchmarks: no EOS, no stop strings; every row is max_new_tokens
    steps: int = 100
    reuse: int = 1  # tau: D_total / tau unique prompts, each seen tau times
    data_seed: int = 0  # task split and held-out set: fixed across training seeds
    # evaluation
    eval_every: int = 10  # steps; 0 = only at step 0 and at the end
    heldout: int = 200  # held-out problems
    eval_samples: int = 1  # samples per held-out problem
    eval_temperature: float = 0.7  # 0 = greedy
    eval_max_new_tokens: int = 0  # 0 = max_new_tokens
    # run
    seed: int = 0
    checkpoint_every: int = 10
    device: str = ""  # "" = cuda if available else cpu
    dtype: str = ""  # "" = fp32 on CPU, bf16 on CUDA
    rollout_batch_size: int = 0  # rows per generate() call; 0 = all

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"unknown train config key(s): {', '.join(unknown)}")
        cfg = cls(**{k: _coerce(k, v) for k, v in d.items()})
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def updates_per_step(self) -> int:
        return self.batch_size // self.mini_batch_size

    def unique_prompts(self) -> int:
        """Distinct training prompts of the run: ceil(D_total / tau)."""
        return math.ceil(self.steps * self.batch_size / self.reuse)

    def validate(self) -> "TrainConfig":
        def bad(field: str, why: str):
            raise UserError(f"--{field.replace('_', '-')}: {why}")

        if self.group_size < 2:
            bad("group_size", f"{self.group_size}: GRPO needs at least 2 completions per prompt "
                              "(advantages compare completions of the same prompt)")
        for name in ("batch_size", "mini_batch_size", "max_new_tokens", "heldout", "eval_samples",
                     "reuse", "checkpoint_every"):
            if getattr(self, name) < 1:
                bad(name, f"{getattr(self, name)}: must be >= 1")
        for name in ("steps", "eval_every", "fewshot", "micro_batch_size", "rollout_batch_size",
                     "eval_max_new_tokens"):
            if getattr(self, name) < 0:
                bad(name, f"{getattr(self, name)}: must be >= 0")
        if self.batch_size % self.mini_batch_size:
            bad("mini_batch_size", f"batch size {self.batch_size} is not divisible by mini-batch "
                                   f"size {self.mini_batch_size}")
        if self.reward not in REWARD_NAMES:
            bad("reward", f"unknown reward {self.reward!r}; choose one of {', '.join(REWARD_NAMES)}")
        if self.adv not in ADV_METHODS:
            bad("adv", f"unknown advantage {self.adv!r}; choose one of {', '.join(ADV_METHODS)}")
        if self.loss_agg not in LOSS_AGGS:
            bad("loss_agg", f"unknown aggregation {self.loss_agg!r}; choose one of "
                            f"{', '.join(LOSS_AGGS)}")
        for name in ("lr", "temperature", "top_p"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                bad(name, f"{v}: must be a positive number")
        if self.top_p > 1:
            bad("top_p", f"{self.top_p}: must be <= 1")
        for name in ("kl_coef", "clip_low", "clip_high", "weight_decay", "grad_clip",
                     "eval_temperature", "adv_eps"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                bad(name, f"{v}: must be a finite number >= 0")
        if self.clip_low >= 1:
            bad("clip_low", f"{self.clip_low}: must be < 1 (the ratio is clipped at 1 - clip_low)")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                bad(name, f"{getattr(self, name)}: must be in [0, 1)")
        if self.preset is not None and self.preset not in PRESETS:
            bad("preset", f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if not str(self.model).strip():
            bad("model", "empty model spec")
        return self


def _coerce(name: str, value):
    """Accept JSON/CLI values of the right kind (an int for a float field); name bad ones."""
    ftype = {f.name: f.type for f in fields(TrainConfig)}[name]
    kinds = {"float": (int, float), "int": (int,), "str": (str,), "str | None": (str, type(None)),
             "bool": (bool,)}
    ok = kinds.get(str(ftype), (object,))
    if (isinstance(value, bool) and str(ftype) != "bool") or not isinstance(value, ok):
        raise UserError(f"train config {name}: expected {ftype}, got {value!r}")
    return float(value) if str(ftype) == "float" else value


# The paper (arXiv 2509.25300) trains with verl: mini-batch 128 prompts of a 512-prompt step
# (4 updates per step), KL 0.001, evaluation every step with one sample at temperature 0.7.
PAPER = dict(
    lr=1e-6, batch_size=512, group_size=8, mini_batch_size=128, kl_coef=0.001, clip_low=0.2,
    clip_high=0.2, weight_decay=0.1, grad_clip=1.0, temperature=1.0, eval_temperature=0.7,
    eval_samples=1, eval_every=1, loss_agg="token-mean", adv="grpo",
)
# The seed study: `./train.sh SIZE 1e-6 512`, 3 rollouts per prompt, 512-token responses,
# custom_flexible answers, greedy evaluation. Its mini-batch is not stated: one update per step.
SEED = dict(
    lr=1e-6, batch_size=512, group_size=3, mini_batch_size=512, max_new_tokens=512,
    reward="custom_flexible", eval_temperature=0.0, eval_samples=1,
)
PRESETS: dict[str, dict] = {"paper": PAPER, "seed": SEED}


def resolve(preset: str | None, overrides: dict | None = None) -> TrainConfig:
    """Defaults <- preset <- overrides (keys named like the fields; None values are ignored)."""
    if preset is not None and preset not in PRESETS:
        raise UserError(f"--preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    d = dict(PRESETS[preset]) if preset else {}
    d.update({k: v for k, v in (overrides or {}).items() if v is not None})
    d["preset"] = preset
    return TrainConfig.from_dict(d)
