"""TrainConfig: every setting of a GRPO run, named like its `rlscale train` flag.

Each field carries its own help text and valid range in its metadata (`setting(...)`, the
`field(metadata={"help": ...})` style of TRL's configs): the CLI builds its flags from them and
`validate` checks them, naming the first bad field in a one-line UserError before anything is
written to the run directory. A config is resolved in three layers: the defaults below (small,
CPU-sized), then a preset (`paper`: arXiv 2509.25300's GRPO settings; `seed`: the seed
study's), then explicit settings. `TrainConfig.from_dict` is what sweeps use; it rejects
unknown keys.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from rlscale.errors import UserError
from rlscale.files import read_json
from rlscale.models.tokenizer import canonical_template_kwargs, chat_settings_error
from rlscale.rewards import REWARDS

REWARD_NAMES = tuple(REWARDS)
DTYPES = ("", "fp32", "bf16", "fp16", "float32", "bfloat16", "float16")  # as load_model
FP32 = ("", "fp32", "float32")  # the DTYPES that load fp32 weights (the default)
AUTOCASTS = ("", "bf16")  # fp16 autocast would also need a gradient scaler: not offered
_DEVICE = re.compile(r"^(|cpu|mps|cuda(:\d+)?)$")
# Count caps lie far above any run this tool aims at (the paper: 512 prompts x 8, 1k tokens);
# they turn a typo (--batch-size 1000000000) into a one-line error instead of an out-of-memory.
BIG, SEED_MAX = 1 << 20, (1 << 63) - 1


@dataclass(frozen=True)
class Range:
    """Valid values of a numeric setting: lo <= v <= hi (strict where *_open), finite."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v) -> bool:
        if isinstance(v, float) and not math.isfinite(v):  # ints of any size compare exactly
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)

    def __str__(self) -> str:
        lo = f"{'>' if self.lo_open else '>='} {self.lo}" if self.lo is not None else ""
        hi = f"{'<' if self.hi_open else '<='} {self.hi}" if self.hi is not None else ""
        return " and ".join(x for x in (lo, hi) if x) or "finite"


def setting(default, help: str, lo=None, hi=None, *, lo_open=False, hi_open=False,
            why: str = "", resumable: bool = False):
    """A TrainConfig field with its flag's help, its valid range (numbers), the reason given
    when a value is out of range, and whether --resume may change it (it does not change what
    finished steps did)."""
    meta = {"help": help, "why": why, "resumable": resumable}
    if lo is not None or hi is not None:
        meta["range"] = Range(lo, hi, lo_open, hi_open)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    model: str = setting("micro:tiny", "model: a local HF directory (safetensors), a hub name, "
                         "micro:<rung>, or a run's policy directory RUN/policy")
    task: str = setting("arith", "task spec: arith[:easy|medium|hard], gsm_symbolic, gsm8k, "
                        "math, or a file")
    preset: str | None = setting(None, "recorded for the record; its values are already applied")
    # GRPO
    lr: float = setting(1e-5, "learning rate (constant)", 0, lo_open=True, resumable=True)
    batch_size: int = setting(16, "prompts per step (B)", 1, BIG)
    group_size: int = setting(8, "completions per prompt (G >= 2)", 2, 1 << 12,
                              why="GRPO needs at least 2 completions per prompt (advantages "
                              "compare completions of the same prompt)")
    mini_batch_size: int = setting(0, "prompts per optimizer update, dividing --batch-size (0: "
                                   "the batch size, one update per step)", 0, BIG)
    micro_batch_size: int = setting(0, "rows per forward/backward chunk, memory only (0: whole "
                                    "mini-batch)", 0, 1 << 24, resumable=True)
    activation_checkpointing: bool = setting(
        False, "recompute each layer's activations in the backward pass instead of keeping them: "
        "memory only, one more forward of the update (counted in C_itemized); as TRL's "
        "gradient_checkpointing (verl launches keep verl's own, on by default)", resumable=True)
    kl_coef: float = setting(0.0, "beta of the low_var_kl penalty (0: no reference model)", 0)
    skip_zero_advantage: bool = setting(
        True, "leave the groups whose every advantage is exactly 0 out of the update's "
        "forward-backward when the loss has no KL term: their gradient is exactly zero, so the "
        "update is the same up to rounding (the entropy metric, read by the sampler, still "
        "covers them; C_paper and C_itemized still count them, as the algorithm's compute)",
        resumable=True)
    clip_low: float = setting(0.2, "PPO clip below: ratio >= 1 - clip_low", 0, 1, hi_open=True,
                              why="the ratio is clipped at 1 - clip_low")
    clip_high: float = setting(0.2, "PPO clip above: ratio <= 1 + clip_high", 0)
    clip_c: float = setting(0.0, "dual-clip PPO: where the advantage A < 0 the token loss is at "
                            "most -A x clip_c (verl's clip_ratio_c; 0: off, as TRL)", 0)
    loss_agg: str = setting("token-mean", "token-mean | seq-mean-token-mean (rlscale.grpo.core)")
    adv: str = setting("grpo", "advantage: grpo divides by the group std, drgrpo does not")
    adv_eps: float = setting(1e-6, "added to the group std before dividing", 0)
    weight_decay: float = setting(0.0, "AdamW weight decay", 0)
    grad_clip: float = setting(1.0, "max global gradient norm (0: no clipping)", 0)
    adam_beta1: float = setting(0.9, "AdamW beta1", 0, 1, hi_open=True)
    adam_beta2: float = setting(0.999, "AdamW beta2", 0, 1, hi_open=True)
    # data and rollout
    reward: str = setting("custom_flexible", "strict | flexible | custom_flexible | boxed")
    fewshot: int = setting(0, "exemplars from the train split in each prompt", 0, 256)
    max_new_tokens: int = setting(64, "completion length limit", 1, 1 << 17)
    temperature: float = setting(1.0, "rollout temperature", 0, lo_open=True)
    top_p: float = setting(1.0, "rollout nucleus sampling", 0, 1, lo_open=True)
    chat: bool = setting(False, "each prompt as one user message in the model's chat template, "
                         "with the generation prompt (instruct models; verl renders it so); off: "
                         "the raw 'Question: ... Answer:' text (base models, micro rungs)")
    fewshot_as_multiturn: bool = setting(
        False, "with --chat and --fewshot: each exemplar as a user turn (its question) and an "
        "assistant turn (its solution), as lm-eval's fewshot_as_multiturn (its default under "
        "--apply_chat_template); off: the exemplars inside the one user message")
    system_prompt: str = setting("", "with --chat: a system message before the prompt (lm-eval's "
                                 "system_instruction), e.g. Qwen2.5-Math's 'Please reason step "
                                 "by step, and put your final answer within \\boxed{}.'")
    chat_template_kwargs: str = setting(
        "", "with --chat: the template's extra variables as a JSON object, e.g. "
        "'{\"enable_thinking\": false}' for Qwen3 (TRL's chat_template_kwargs, verl's "
        "data.apply_chat_template_kwargs); stored with sorted keys")
    suppress_eos: bool = setting(False, "never stop early (no EOS, no stop strings): for "
                                 "benchmarks; every row is max_new_tokens long")
    stop_at_question: bool = setting(
        True, "end a training rollout where it begins a new 'Question:' (a base model goes on "
        "with one); off: only at EOS or max_new_tokens, as verl 0.9's rollouts, the continuation "
        "trained too, the reward read off the text before the new question (as the exported "
        "verl reward module reads it); evaluation always stops there")
    steps: int = setting(100, "training steps", 0, 10**9, resumable=True)
    reuse: int = setting(1, "data reuse tau: steps x B / tau unique prompts, each seen tau "
                         "times", 1, 10**6)
    data_seed: int = setting(0, "seed of the task split and held-out set (fixed across "
                             "training seeds)", 0, SEED_MAX)
    # evaluation
    eval_every: int = setting(10, "evaluate every K steps (and at steps 0 and the last; 0: only "
                              "those)", 0, 10**9, resumable=True)
    heldout: int = setting(200, "held-out problems for the test loss", 1, 10**7)
    eval_samples: int = setting(1, "samples per held-out problem", 1, 1 << 16)
    eval_temperature: float = setting(0.7, "evaluation temperature (0: greedy)", 0)
    eval_max_new_tokens: int = setting(0, "evaluation completion length limit (0: "
                                       "--max-new-tokens)", 0, 1 << 17)
    # run
    seed: int = setting(0, "training seed (sampling, mini-batch order, data order)", 0, SEED_MAX)
    checkpoint_every: int = setting(10, "checkpoint every K steps (and at exit)", 1, 10**9,
                                    resumable=True)
    log_samples: int = setting(0, "each step, its first N prompts as the model saw them, with "
                               "their completions, rewards, advantages and endings, in "
                               "RUN/samples.jsonl (0: none)", 0, BIG, resumable=True)
    checkpoint_policy: bool = setting(False, "also write each checkpoint's policy as an HF "
                                      "directory, RUN/policies/step_N (the final policy is "
                                      "always written to RUN/policy)", resumable=True)
    device: str = setting("", "cuda | cuda:N | cpu | mps (default: cuda if available)",
                          resumable=True)
    dtype: str = setting("", "fp32 | bf16 | fp16: the weights' dtype (default: fp32). Pure "
                         "bf16 weights round away every AdamW update below ~1/256 of its weight "
                         "(at lr 1e-6, 99 in 100 of them): train in bf16 with --autocast instead")
    autocast: str = setting("", "bf16: mixed precision. Rollouts, evaluation and the loss's "
                            "forward passes run under torch.autocast in bf16 while the weights, "
                            "their gradients and AdamW's state stay fp32 (what TRL's bf16=True "
                            "and verl's FSDP mixed precision do); needs fp32 weights")
    rollout_batch_size: int = setting(0, "rows per generate() call (0: all)", 0, 1 << 24,
                                      resumable=True)

    def __post_init__(self):
        if self.mini_batch_size == 0:  # the default: one update per step, whatever the batch
            self.mini_batch_size = self.batch_size
        try:  # one text per setting, so one run id (a bad one is named by validate)
            self.chat_template_kwargs = canonical_template_kwargs(self.chat_template_kwargs)
        except (UserError, TypeError):
            pass

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise UserError(f"unknown train config key(s): {', '.join(unknown)}")
        return cls(**{k: _coerce(k, v) for k, v in d.items()})

    @classmethod
    def settings_of(cls, config: dict) -> dict:
        """The TrainConfig settings of a run's config.json (model facts the trainer adds,
        such as N, dropped)."""
        names = {f.name for f in fields(cls)}
        return {k: v for k, v in config.items() if k in names}

    @staticmethod
    def resumable() -> tuple[str, ...]:
        """Settings --resume may change: they do not change what the finished steps did."""
        return tuple(f.name for f in fields(TrainConfig) if f.metadata["resumable"])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def updates_per_step(self) -> int:
        return self.batch_size // self.mini_batch_size

    def unique_prompts(self) -> int:
        """Distinct training prompts of the run: ceil(D_total / tau)."""
        return math.ceil(self.steps * self.batch_size / self.reuse)

    def validate(self) -> "TrainConfig":
        from rlscale.grpo.core import ADV_METHODS, LOSS_AGGS  # torch: not at CLI start-up

        def bad(name: str, why: str):
            raise UserError(f"--{name.replace('_', '-')}: {why}")

        for f in fields(self):
            v, rng = getattr(self, f.name), f.metadata.get("range")
            if rng is not None and v not in rng:
                why = f" ({f.metadata['why']})" if f.metadata["why"] else ""
                bad(f.name, f"{v}: must be {rng}{why}")
        if self.batch_size % self.mini_batch_size:
            bad("mini_batch_size", f"batch size {self.batch_size} is not divisible by mini-batch "
                                   f"size {self.mini_batch_size}")
        for name, value, allowed in (("reward", self.reward, REWARD_NAMES),
                                     ("adv", self.adv, ADV_METHODS),
                                     ("loss_agg", self.loss_agg, LOSS_AGGS),
                                     ("dtype", self.dtype, DTYPES),
                                     ("autocast", self.autocast, AUTOCASTS)):
            if value not in allowed:
                bad(name, f"unknown {name.replace('_', ' ')} {value!r}; choose one of "
                          f"{', '.join(a for a in allowed if a)}")
        if self.autocast and self.dtype not in FP32:
            bad("autocast", f"{self.autocast} autocast keeps fp32 master weights; it cannot run "
                            f"on --dtype {self.dtype} weights (drop --dtype)")
        if 0 < self.clip_c <= 1:  # as verl asserts: a bound at 1 or below is no dual clip
            bad("clip_c", f"{self.clip_c}: dual-clip needs a bound above 1 (0: off)")
        wrong = chat_settings_error(self)
        if wrong:
            bad(*wrong)
        if not _DEVICE.match(self.device):
            bad("device", f"unknown device {self.device!r}; choose cpu, cuda, cuda:N or mps")
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
# (4 updates per step), KL 0.001, evaluation every step with one sample at temperature 0.7. It
# names no dual clip, so its runs had verl's default (actor.yaml clip_ratio_c: 3.0).
PAPER = dict(
    lr=1e-6, batch_size=512, group_size=8, mini_batch_size=128, kl_coef=0.001, clip_low=0.2,
    clip_high=0.2, clip_c=3.0, weight_decay=0.1, grad_clip=1.0, temperature=1.0,
    eval_temperature=0.7, eval_samples=1, eval_every=1, loss_agg="token-mean", adv="grpo",
)
# The seed study: `./train.sh SIZE 1e-6 512`, 3 rollouts per prompt, 512-token responses,
# custom_flexible answers, greedy evaluation, "~56 RL training steps". Its mini-batch is not
# stated: one update per step. "GRPO via Verl": verl's default dual clip too (it binds only with
# several updates per step).
SEED = dict(
    lr=1e-6, batch_size=512, group_size=3, max_new_tokens=512, clip_c=3.0, steps=56,
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


CLI_SKIP = ("preset",)  # fields that are not flags of `rlscale train`


def config_from_args(args):
    """The TrainConfig these flags ask for (with --resume: the saved one, changed by flags)."""
    names = [f.name for f in fields(TrainConfig) if f.name not in CLI_SKIP]
    given = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    saved_path = Path(args.out) / "config.json"
    if args.resume and saved_path.exists():
        saved = read_json(saved_path)
        known = {k: saved[k] for k in names + ["preset"] if k in saved}
        return TrainConfig.from_dict({**known, **given})
    return resolve(args.preset, given)
