"""Hand a run to verl: its launch command, Hydra overrides and a reward module.

Training a model larger than one GPU is verl's job; rlscale writes the same run for it:
    OUT/run_verl.sh          python3 -m verl.trainer.main_ppo with Hydra overrides
    OUT/verl_overrides.json  the overrides as a JSON object (key -> value)
    OUT/rlscale_reward.py    compute_score(data_source, solution_str, ground_truth, extra_info):
                             rlscale's answer check (the run's `reward`), standard library only
                             (it is rlscale/rewards.py itself plus a compute_score footer)
    OUT/rlscale_config.json  the resolved TrainConfig as verl runs it (stop_at_question off), so
                             `rlscale import verl LOG --config` can bring the run back with its
                             batch size and group size
    OUT/verl_metrics/        verl's file logger output, one new JSONL file per launch (verl opens
                             its file with "wb": a resumed launch into one file would erase it);
                             `rlscale import verl OUT/verl_metrics` reads them all
verl key names follow verl 0.9's ppo_trainer.yaml (actor_rollout_ref.actor.*, .ref.*, .rollout.*,
data.*, algorithm.*, reward.custom_reward_function.*, trainer.*); tests/test_verl.py composes
them with that config and runs verl's own validate_config. verl counts ppo_mini_batch_size in
prompts, like rlscale's mini_batch_size, and micro-batches in rows (responses) per GPU, like
rlscale's micro_batch_size per process.

What verl then runs, checked against verl's own code in tests/test_verl.py:
- the same prompt tokens: verl renders every prompt with the tokenizer's chat template, which
  rlscale does only with `chat`, so otherwise the launch hands verl a template that writes the
  message as it is;
- the same rewards: the module cuts a completion at rlscale's stop strings (a new "Question:")
  before the check, as rlscale's rollouts end there;
- the same advantages and loss (its GRPO estimator and actor loss on the same tensors);
- the same updates: with several per step, each is a mini-batch of whole groups (verl's
  length balancing, which would slice groups apart, is switched off there);
- the same prompts: with --write-data, data.max_prompt_length is the longest of the run's
  prompts as verl measures them (verl drops longer ones: rlscale.verl_data);
What differs: verl 0.9's rollouts take no stop strings, so a completion runs on to EOS or
max_response_length and verl trains those tokens too (with the reward of the cut text), which
`rlscale train --no-stop-at-question` does as well; and verl cannot run a micro rung (its
Qwen-family prompt builder needs the tokenizer's <|im_end|>).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from rlscale.errors import UserError
from rlscale.files import atomic_write_json, atomic_write_text, read_json
from rlscale.verl_data import (DEFAULT_PROMPT_LENGTH, data_file, measured_length,
                               prompt_rows, template_settings, write_verl_data)

REWARD_FILE = "rlscale_reward.py"
METRICS_DIR = "verl_metrics"
ROLLOUT_ENGINES = ("vllm", "sglang", "trtllm")  # verl 0.9 registers these (async mode) only
# verl's own default token budget per GPU for dynamic micro-batches (actor.yaml)
VERL_MAX_TOKENS_PER_GPU = 16384
VERL_ADV_EPS = 1e-6  # compute_grpo_outcome_advantage's epsilon, which verl's trainer never sets
NO_DUAL_CLIP = 1e10  # clip_ratio_c where rlscale's clip_c is 0: above any ratio verl computes


def load_train_config(spec: str):
    """A preset name (`paper`, `seed`) or a JSON file (a run's config.json or a TrainConfig)."""
    from rlscale.grpo.config import PRESETS, TrainConfig, resolve
    from rlscale.store import train_fields

    if spec in PRESETS:
        return resolve(spec).validate()
    if not spec.endswith(".json") and not Path(spec).is_file():
        raise UserError(f"--config: {spec!r} is neither a preset ({', '.join(PRESETS)}) "
                        "nor a JSON file")
    d = read_json(spec)
    if not isinstance(d, dict):
        raise UserError(f"{spec}: expected a JSON object of train settings")
    if "N" in d:  # a run's config.json: the trainer adds model facts beside the settings
        d = train_fields(d)
    try:
        return TrainConfig.from_dict(d).validate()
    except UserError as e:
        raise UserError(f"{spec}: {e}") from None


def verl_overrides(cfg, reward_path: str, model_path: str | None = None,
                   max_prompt_length: int = DEFAULT_PROMPT_LENGTH, n_gpus_per_node: int = 8,
                   nnodes: int = 1,
                   train_files: str = "$TRAIN_FILES", val_files: str = "$VAL_FILES",
                   rollout_engine: str = "vllm") -> dict:
    """Hydra overrides (dotted key -> value) running `cfg` as verl GRPO."""
    if rollout_engine not in ROLLOUT_ENGINES:
        raise UserError(f"--rollout-engine: {rollout_engine!r} is not a verl rollout; choose "
                        f"one of {', '.join(ROLLOUT_ENGINES)}")
    _check_carried(cfg)
    model = model_path or cfg.model
    if model.startswith("micro:"):
        model = "$MODEL_PATH"  # a micro rung must be saved to a directory first
    actor = "actor_rollout_ref.actor"
    rollout = "actor_rollout_ref.rollout"
    eval_every = cfg.eval_every if cfg.eval_every > 0 else cfg.steps
    o = {
        "algorithm.adv_estimator": "grpo",
        "algorithm.norm_adv_by_std_in_grpo": cfg.adv != "drgrpo",  # Dr. GRPO: no std division
        "algorithm.use_kl_in_reward": False,  # GRPO puts KL in the loss, not in the reward
        "data.train_files": train_files,
        "data.val_files": val_files,
        "data.train_batch_size": cfg.batch_size,
        "data.max_prompt_length": max_prompt_length,
        # rlscale's prompts are raw text unless --chat: then no chat template around them (HF's
        # apply_chat_template takes a template in its kwargs, which verl passes through); with
        # --chat, the template's variables go the same way
        **{f"+data.apply_chat_template_kwargs.{k}": v for k, v in template_settings(cfg).items()},
        "data.max_response_length": cfg.max_new_tokens,
        "data.filter_overlong_prompts": True,
        "data.truncation": "error",
        "actor_rollout_ref.model.path": model,
        "actor_rollout_ref.model.trust_remote_code": False,
        f"{actor}.optim.lr": cfg.lr,
        f"{actor}.optim.lr_warmup_steps_ratio": 0.0,
        f"{actor}.optim.weight_decay": cfg.weight_decay,
        f"{actor}.optim.betas": [cfg.adam_beta1, cfg.adam_beta2],
        f"{actor}.grad_clip": cfg.grad_clip if cfg.grad_clip > 0 else 1e9,
        f"{actor}.ppo_mini_batch_size": _mini_batch(cfg),
        f"{actor}.ppo_epochs": 1,
        f"{actor}.use_kl_loss": cfg.kl_coef > 0,
        f"{actor}.kl_loss_type": "low_var_kl",
        f"{actor}.kl_loss_coef": cfg.kl_coef,
        f"{actor}.clip_ratio_low": cfg.clip_low,
        f"{actor}.clip_ratio_high": cfg.clip_high,
        # verl always applies its dual clip (clip_ratio_c, default 3); rlscale's loss only with
        # clip_c: off, the bound goes above exp(20), the largest ratio verl's log-ratio clamp lets
        # through, so it never binds and verl computes rlscale's loss (tests/test_verl.py)
        f"{actor}.clip_ratio_c": cfg.clip_c if cfg.clip_c > 0 else NO_DUAL_CLIP,
        f"{actor}.loss_agg_mode": cfg.loss_agg,
        f"{actor}.entropy_coeff": 0,
        **_micro_batches(cfg, max_prompt_length, n_gpus_per_node * nnodes),
        **_whole_groups(cfg, n_gpus_per_node * nnodes),
        f"{rollout}.name": rollout_engine,
        f"{rollout}.n": cfg.group_size,
        f"{rollout}.temperature": cfg.temperature,
        f"{rollout}.top_p": cfg.top_p,
        f"{rollout}.val_kwargs.n": cfg.eval_samples,
        f"{rollout}.val_kwargs.temperature": cfg.eval_temperature,
        f"{rollout}.val_kwargs.do_sample": cfg.eval_temperature > 0,
        "reward.custom_reward_function.path": reward_path,
        "reward.custom_reward_function.name": "compute_score",
        "trainer.total_training_steps": cfg.steps,
        "trainer.test_freq": eval_every,
        "trainer.val_before_train": True,
        "trainer.save_freq": cfg.checkpoint_every,
        "trainer.logger": ["console", "file"],  # file: JSONL for `rlscale import verl`
        "trainer.n_gpus_per_node": n_gpus_per_node,
        "trainer.nnodes": nnodes,
        "trainer.project_name": "rlscale",
        "trainer.experiment_name": re.sub(r"[^A-Za-z0-9_.-]+", "_",
                                          f"{cfg.task}-{Path(cfg.model).name}-seed{cfg.seed}"),
    }
    return o


def _check_carried(cfg) -> None:
    """Refuse, in one line, a setting verl 0.9 has no key for, rather than launch another run."""
    if cfg.adv == "grpo" and cfg.adv_eps != VERL_ADV_EPS:
        raise UserError(f"--config: adv_eps {cfg.adv_eps:g} cannot be handed to verl: its GRPO "
                        f"estimator adds {VERL_ADV_EPS:g} to the group std, not a setting")
    if cfg.eval_max_new_tokens not in (0, cfg.max_new_tokens):
        raise UserError(f"--config: eval_max_new_tokens {cfg.eval_max_new_tokens} cannot be "
                        f"handed to verl: its evaluation generates up to data.max_response_length"
                        f" ({cfg.max_new_tokens}, the run's max_new_tokens)")


def _mini_batch(cfg) -> int:
    return cfg.mini_batch_size or cfg.batch_size  # 0 reads as "the whole batch"


def _whole_groups(cfg, n_gpus: int) -> dict:
    """With several updates per step, verl's mini-batches as rlscale's: whole groups. verl's
    balance_batch (on by default) sorts a step's rollouts by length within each rank and its
    mini-batches are then slices of that order, so an update trains on one or two rollouts of
    many groups, short ones or long ones (tests/verl_minibatches.py, verl's own code); with it
    off (and no shuffle) a rank's mini-batches are runs of whole groups in prompt order, drawn
    at random by verl's shuffled prompt loader, as rlscale's seeded permutation draws them. A
    group stays whole only if each rank holds whole groups of every mini-batch."""
    if cfg.updates_per_step() == 1:
        return {}  # one update sees the whole step, in any order: balancing costs nothing
    if _mini_batch(cfg) % n_gpus:
        raise UserError(f"--gpus-per-node/--nnodes: a mini-batch of {_mini_batch(cfg)} prompts "
                        f"does not split into whole groups over {n_gpus} GPUs: verl would "
                        f"update a prompt's rollouts in different mini-batches")
    return {"trainer.balance_batch": False, "actor_rollout_ref.actor.shuffle": False}


def _micro_batches(cfg, max_prompt_length: int, n_gpus: int) -> dict:
    """verl's micro-batch settings (memory only; the update is the same) for actor, reference
    and rollout log-prob passes. rlscale's micro_batch_size (rows per chunk) maps to verl's
    per-GPU micro-batches; 0 (no chunking) maps to verl's dynamic batches, packed by tokens."""
    rows, mini_rows = cfg.batch_size * cfg.group_size, _mini_batch(cfg) * cfg.group_size
    for what, n in (("the batch", rows), ("a mini-batch", mini_rows)):
        if n % n_gpus:  # verl splits both evenly over data-parallel ranks
            raise UserError(f"--gpus-per-node/--nnodes: {what} has {n} rollouts (prompts x "
                            f"group size), which do not split evenly over {n_gpus} GPUs")
    ar = "actor_rollout_ref"
    if cfg.micro_batch_size:
        per_gpu = mini_rows // n_gpus
        if per_gpu % cfg.micro_batch_size:
            raise UserError(f"--micro-batch-size: {cfg.micro_batch_size} does not divide the "
                            f"{per_gpu} rollouts of a mini-batch on each of {n_gpus} GPUs")
        return {f"{ar}.actor.use_dynamic_bsz": False,
                f"{ar}.actor.ppo_micro_batch_size_per_gpu": cfg.micro_batch_size,
                f"{ar}.ref.log_prob_micro_batch_size_per_gpu": cfg.micro_batch_size,
                f"{ar}.rollout.log_prob_micro_batch_size_per_gpu": cfg.micro_batch_size}
    # a packed micro-batch must hold at least one whole sequence; verl's default budget
    # otherwise, and its guidance of room for two sequences when they are longer
    budget = max(VERL_MAX_TOKENS_PER_GPU, 2 * (max_prompt_length + cfg.max_new_tokens))
    return {f"{ar}.actor.use_dynamic_bsz": True,
            f"{ar}.actor.ppo_max_token_len_per_gpu": budget,
            f"{ar}.ref.log_prob_use_dynamic_bsz": True,
            f"{ar}.ref.log_prob_max_token_len_per_gpu": budget,
            f"{ar}.rollout.log_prob_use_dynamic_bsz": True,
            f"{ar}.rollout.log_prob_max_token_len_per_gpu": budget}


_HYDRA_NOT_STR = re.compile(r"(?i)true|false|null|[-+]?(inf|nan)|"
                            r"[-+]?(\d[\d_]*\.?\d*|\.\d+)(e[-+]?\d+)?|")


def _hydra_value(v) -> str:
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, list):
        return "[" + ",".join(json.dumps(x) for x in v) + "]"
    if isinstance(v, str) and (re.search(r"[\s{}\[\](),='\"\\%]", v)  # Hydra's grammar
                               or _HYDRA_NOT_STR.fullmatch(v)):  # it would read another type
        return "'" + v.replace("'", "\\'") + "'"  # a quoted string: only quotes escape
    return str(v)


def _shell_arg(key: str, v) -> str:
    text = f"{key}={_hydra_value(v)}"
    if "$" in text:  # leave shell variables to the shell: double quotes, nothing else special
        return '"' + text.replace('"', '\\"') + '"'
    return shlex.quote(text)


def reward_module_source(reward: str, stops: tuple[str, ...] = ()) -> str:
    """The exported reward module: rlscale/rewards.py verbatim (standard library only, so it
    runs on a verl worker without rlscale) with a header naming the check and, appended,
    verl's entry point, which first cuts the completion before the first of `stops` (the
    trainer's stop strings: rlscale's rollouts end there, verl's run on). One home for the
    answer checks: this file is generated, never edited."""
    from rlscale import rewards

    body = Path(rewards.__file__).read_text(encoding="utf-8")
    head = (f"# verl reward module written by `rlscale export-verl`: rlscale's {reward!r} answer\n"
            "# check, 1.0 for a correct answer, else 0.0. Generated from rlscale/rewards.py; it\n"
            "# needs only the Python standard library (and math-verify for `boxed` answers that\n"
            "# differ as text). verl loads it by path: reward.custom_reward_function.path.\n")
    foot = f'''

# ---------------------------------------------------------------- verl's entry point
REWARD = {reward!r}
STOPS = {tuple(stops)!r}  # where rlscale's rollouts end; verl 0.9's run on to EOS


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return float(REWARDS[REWARD](before_stop(str(solution_str), STOPS), str(ground_truth)))
'''
    return head + body.rstrip("\n") + "\n" + foot


def export_verl(cfg, out: str | Path, model_path: str | None = None, write_data: bool = False,
                **kw) -> dict:
    """Write the launch script, overrides JSON, reward module and config into out."""
    from rlscale.rewards import REWARDS
    from rlscale.tasks import STOP_STRINGS

    if cfg.reward not in REWARDS:
        raise UserError(f"--config: reward {cfg.reward!r} is not one of {', '.join(REWARDS)}")
    out = Path(out)
    reward_path = (out / REWARD_FILE).resolve()
    rows = prompt_rows(cfg) if write_data else None
    if rows:  # the prompts are known: verl's prompt budget must hold every one
        kw["max_prompt_length"] = measured_length(cfg, rows, model_path,
                                                   kw.get("max_prompt_length"))
        kw.update(train_files=str(data_file(out, "train").resolve()),
                  val_files=str(data_file(out, "test").resolve()))
    elif kw.get("max_prompt_length") is None:
        kw["max_prompt_length"] = DEFAULT_PROMPT_LENGTH
    o = verl_overrides(cfg, str(reward_path), model_path, **kw)  # refused: nothing written
    if rows:  # the writes make the directory
        write_verl_data(cfg, out, rows)
    if write_data:
        o["trainer.total_epochs"] = cfg.reuse  # the train file holds U = D / tau problems
    stops = () if cfg.suppress_eos else STOP_STRINGS  # as the trainer's rollouts
    atomic_write_text(reward_path, reward_module_source(cfg.reward, stops))
    atomic_write_json(out / "verl_overrides.json", o)
    # the run as verl runs it: its rollouts take no stop strings
    atomic_write_json(out / "rlscale_config.json", {**cfg.to_dict(), "stop_at_question": False})
    needs_model = o["actor_rollout_ref.model.path"] == "$MODEL_PATH"
    lines = [
        "#!/usr/bin/env bash",
        "# verl GRPO launch for an rlscale run (written by `rlscale export-verl`).",
        "# Needs: " + ", ".join(
            [v for v, need in (("TRAIN_FILES / VAL_FILES (verl parquet)", not write_data),
                               ("MODEL_PATH (a Hugging Face model directory or name: verl "
                                "0.9 cannot run a micro rung, whose tokenizer lacks the "
                                "<|im_end|> its Qwen-family prompt builder needs)", needs_model))
             if need]
            or ["nothing else"]) + ".",
        "# Extra Hydra overrides may follow on the command line. Afterwards:",
        f"#   rlscale import verl $OUT/{METRICS_DIR} --config $OUT/rlscale_config.json "
        "--n-params N --db results.sqlite",
        "set -euo pipefail",
        'OUT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"',
        "# verl's file logger truncates its file: each launch (a resume too) gets a new one",
        f'mkdir -p "$OUT/{METRICS_DIR}"',
        f'export VERL_FILE_LOGGER_PATH="$OUT/{METRICS_DIR}/launch-$(date -u +%Y%m%dT%H%M%SZ)-$$.jsonl"',
        "python3 -m verl.trainer.main_ppo \\",
    ]
    for k, v in o.items():
        if k == "reward.custom_reward_function.path":
            lines.append(f'    "{k}=$OUT/{REWARD_FILE}" \\')
        else:
            lines.append(f"    {_shell_arg(k, v)} \\")
    lines.append('    "$@"')
    script = out / "run_verl.sh"
    atomic_write_text(script, "\n".join(lines) + "\n")
    script.chmod(0o755)
    return o


def configure(parser) -> None:
    parser.add_argument("--config", required=True,
                        help="a preset name (paper, seed) or a run's config.json")
    parser.add_argument("--out", default="verl_run", help="output directory (default verl_run)")
    parser.add_argument("--model-path", help="model dir or hub name for verl (default: the "
                        "config's model; micro rungs become $MODEL_PATH)")
    parser.add_argument("--max-prompt-length", type=int, default=None,
                        help="verl's data.max_prompt_length (verl drops longer prompts); "
                        f"default: with --write-data the longest prompt in the model's tokens, "
                        f"else {DEFAULT_PROMPT_LENGTH}")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--write-data", action="store_true",
                        help="also write the run's prompts as OUT/train.parquet, test.parquet")
    parser.add_argument("--rollout-engine", default="vllm", choices=ROLLOUT_ENGINES,
                        help="verl's rollout engine (default vllm)")


def run(args) -> int:
    for flag in ("max_prompt_length", "gpus_per_node", "nnodes"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')}: must be >= 1")
    cfg = load_train_config(args.config)
    export_verl(cfg, args.out, args.model_path, args.write_data,
                max_prompt_length=args.max_prompt_length,
                n_gpus_per_node=args.gpus_per_node, nnodes=args.nnodes,
                rollout_engine=args.rollout_engine)
    print(f"wrote {args.out}/run_verl.sh, verl_overrides.json, {REWARD_FILE}, "
          "rlscale_config.json")
    return 0
