"""Checks at the door: every flag of every subcommand is checked before any work starts.

`rlscale.cli` calls `check(command, args)` after parsing and before the command runs, so a bad
value costs milliseconds and writes nothing. Three layers (docs/reliability.md):
  1. every flag: an int beyond 64 bits or a float that is NaN/inf; an --out that names an
     existing file where a directory is meant;
  2. the ranges in RANGES, per command and flag (train's own ranges live with its settings in
     rlscale.grpo.config and are checked here too; the fitter and the importers check their
     flags in their own modules, before any work);
  3. the combination against the machine: the device named is present, the batch x group x
     length of the largest forward fits in memory, optional packages are installed.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

from rlscale.errors import UserError

INT64 = (1 << 63) - 1
BIG = 1 << 20  # caps far above any real run; they turn a typo into an error, not a hang
# (command, flag dest) -> (lo, hi), inclusive; None is "no bound" (a None value is a default)
RANGES: dict[tuple[str, str], tuple[float | None, float | None]] = {
    ("eval", "samples"): (1, 1 << 14), ("eval", "max_new_tokens"): (1, BIG),
    ("eval", "n_problems"): (1, 1 << 24), ("eval", "batch_size"): (1, BIG),
    ("eval", "temperature"): (0, 100), ("eval", "top_p"): (1e-9, 1), ("eval", "seed"): (0, INT64),
    ("pretrain", "vocab_size"): (258, BIG),  # 256 bytes + EOS + PAD: the byte-level floor
    ("pretrain", "seed"): (0, INT64), ("pretrain", "data_seed"): (0, INT64),
    ("pretrain", "batch_size"): (1, BIG), ("pretrain", "seq_len"): (1, BIG),
    ("pretrain", "tokens"): (1, 1 << 50), ("pretrain", "n_problems"): (0, 1 << 24),
    ("pretrain", "checkpoint_every"): (1, None), ("pretrain", "log_every"): (1, None),
    ("study", "workers"): (1, 256),
    ("sweep", "workers"): (1, 1 << 16), ("sweep", "max_retries"): (0, 100),
    ("export-verl", "max_prompt_length"): (1, BIG), ("export-verl", "gpus_per_node"): (1, 1024),
    ("export-verl", "nnodes"): (1, 1 << 16), ("plan", "bootstrap"): (0, 100_000),
    ("predict", "seed"): (0, INT64),
}
# commands whose --out is a directory (runs export writes a file)
DIR_OUT = ("study", "eval", "train", "pretrain", "fit", "sweep", "export-verl")
# optional package -> the pip extra that installs it
EXTRAS = {"ray": "sweep", "tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check(command: str, args) -> None:
    """Raise a one-line UserError for the first bad flag of `command`."""
    for dest, v in sorted(vars(args).items()):
        if not dest.startswith("_"):
            _number(dest, v)
            span = RANGES.get((command, dest))
            if span is not None and v is not None:
                _in_range(dest, v, *span)
    out = getattr(args, "out", None)
    if command in DIR_OUT and out and Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"--out: {out}: is an existing file; name a directory")
    door = DOORS.get(command)
    if door is not None:
        door(args)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _number(dest: str, v) -> None:
    for x in (v if isinstance(v, (tuple, list)) else (v,)):
        if isinstance(x, bool):
            continue
        if isinstance(x, int) and abs(x) > INT64:
            raise UserError(f"{_flag(dest)}: {x}: out of range (more than 64 bits)")
        if isinstance(x, float) and not math.isfinite(x):
            raise UserError(f"{_flag(dest)}: {x}: not a finite number")


def _in_range(dest: str, v, lo, hi) -> None:
    for x in (v if isinstance(v, (tuple, list)) else (v,)):
        if (lo is not None and x < lo) or (hi is not None and x > hi):
            span = f"[{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
            raise UserError(f"{_flag(dest)}: {x:g}: must be in {span}")


# -- the machine ------------------------------------------------------------------------------
def device(name: str | None, flag: str = "--device") -> None:
    """The device named is one torch knows and is present here ('' / 'auto': pick one)."""
    name = (name or "").strip()
    if name in ("", "auto", "cpu"):
        return
    kind, _, index = name.partition(":")
    if kind not in ("cuda", "mps") or (index and not index.isdigit()) or (index and kind != "cuda"):
        raise UserError(f"{flag}: {name!r}: unknown device (use cpu, cuda, cuda:N or mps)")
    import torch

    if kind == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UserError(f"{flag}: mps: not available on this machine")
        return
    if not torch.cuda.is_available():
        raise UserError(f"{flag}: {name}: no CUDA device on this machine (torch "
                        f"{torch.__version__}); use --device cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise UserError(f"{flag}: {name}: this machine has {torch.cuda.device_count()} CUDA "
                        "device(s)")


def memory_bytes(device_name: str | None) -> int:
    """Memory of the device that will hold the activations: GPU 0's or the machine's RAM."""
    if (device_name or "").startswith("cuda"):
        import torch

        index = int(device_name.partition(":")[2] or 0)
        return int(torch.cuda.get_device_properties(index).total_memory)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def fits(rows: int, length: int, width: int, device_name: str | None, flags: str,
         what: str = "logits") -> None:
    """One forward of rows x length tokens must hold at least one [rows, length, width] fp32
    tensor, `what` it is: the logits (width = the vocabulary), whatever the model, unless the
    caller knows they are chunked; refuse what cannot fit before loading anything."""
    need = rows * length * width * 4
    have = memory_bytes(device_name)
    if need > have:
        raise UserError(f"{flags}: {rows:,} rows x {length:,} tokens need at least "
                        f"{need / 2**30:,.1f} GiB for their {what} alone; this machine has "
                        f"{have / 2**30:,.1f} GiB")


def _local_config(model: str) -> dict:
    """A local model directory's config.json when cheap to read, else {}."""
    cfg = Path(model) / "config.json"
    if cfg.is_file() and cfg.stat().st_size < (1 << 20):
        from rlscale.files import read_json

        c = read_json(cfg)
        return c if isinstance(c, dict) else {}
    return {}


def vocab_of(model: str) -> int:
    """The model's vocabulary when cheap to know (a local config.json), else a floor of 258."""
    v = _local_config(model).get("vocab_size")
    return v if isinstance(v, int) and v > 0 else 258


def training_width(model: str) -> tuple[int, str]:
    """(width, name) of the [rows, tokens, width] fp32 tensor a training forward must hold at
    least: the logits; or, where a local config.json shows logits that are the plain output
    embedding of the last state (no soft-capping or scaling), the final hidden states, since
    rlscale.grpo.logprobs then scores large batches a chunk of logits at a time."""
    c = _local_config(model)
    d = c.get("hidden_size")
    if isinstance(d, int) and 0 < d < vocab_of(model) and plain_logits(c):
        return d, "final hidden states"
    return vocab_of(model), "logits"


def plain_logits(config: dict) -> bool:
    """Whether a transformers config (as a dict) leaves the logits as the output embedding of
    the last hidden state: no soft-capping (Gemma) or scaling (Cohere's logit_scale, Granite's
    logits_scaling). Shared by this door and rlscale.grpo.logprobs' chunked path."""
    return not (config.get("final_logit_softcapping")
                or config.get("logit_scale") not in (None, 1, 1.0)
                or config.get("logits_scaling") not in (None, 1, 1.0))


def require(module: str, what: str) -> None:
    """A missing optional package is one line naming the extra that installs it."""
    if importlib.util.find_spec(module) is None:
        how = f"'rlscale[{EXTRAS[module]}]'" if module in EXTRAS else module.replace("_", "-")
        raise UserError(f"{what} needs the {module.replace('_', '-')} package, not installed "
                        f"here: pip install {how}")


def model_spec(spec: str, flag: str = "--model") -> None:
    """micro:<rung> is a known rung; a local path is a model directory (a hub name is checked
    when it is loaded)."""
    spec = str(spec).strip()
    if spec.startswith("micro:"):
        from rlscale.models.ladder import rung_name

        rung_name(spec)
        return
    path = Path(spec).expanduser()
    if path.exists() or spec.startswith(("/", ".", "~")) or spec.count("/") > 1:
        from rlscale.models.loading import check_model_dir

        try:
            check_model_dir(path)
        except UserError as e:
            raise UserError(f"{flag}: {e}") from None


def task_spec(spec: str, flag: str = "--task") -> None:
    """A task name the loader knows (arith options parsed) or an existing file / directory."""
    spec = str(spec).strip()
    if Path(spec).expanduser().exists() or spec in ("gsm8k", "math"):
        return
    head = spec.split(":", 1)[0]
    if head in ("arith", "gsm_symbolic"):
        from rlscale.arith import parse_arith_spec
        from rlscale.tasks import heldout_option

        gen_spec, _ = heldout_option(spec)  # ",heldout=validation": rlscale.tasks
        if head == "arith":
            parse_arith_spec(gen_spec)
            return
        if gen_spec == "gsm_symbolic":
            return
    raise UserError(f"{flag}: {spec!r}: no such file, and not a task name (arith[:options], "
                    "gsm_symbolic, gsm8k, math)")


# -- per-command combinations -----------------------------------------------------------------
def _eval(args) -> None:
    if args.checks is not None and not args.checks:
        raise UserError("--checks: empty list; name one or more answer checks, e.g. strict")
    if not args.shots:
        raise UserError("--shots: empty list; e.g. 0 or 0,1,2")
    _in_range("shots", args.shots, 0, 64)
    model_spec(args.model)
    task_spec(args.task)
    device(args.device)
    fits(args.batch_size, args.max_new_tokens, vocab_of(args.model), args.device,
         "--batch-size x --max-new-tokens")


def _pretrain(args) -> None:
    model_spec(args.rung if str(args.rung).startswith("micro:") else f"micro:{args.rung}",
               "--rung")
    task_spec(args.task)
    device(args.device)
    fits(args.batch_size, args.seq_len, args.vocab_size, args.device, "--batch-size x --seq-len")


def _train(args) -> None:
    from rlscale.grpo.config import config_from_args

    cfg = config_from_args(args).validate()
    model_spec(cfg.model)
    task_spec(cfg.task)
    device(cfg.device)
    # the largest forward: one micro-batch (default: a whole mini-batch of groups) of prompt +
    # completion rows; the rollout of a whole step, and the evaluation, decode one token a time
    rows = cfg.micro_batch_size or (cfg.mini_batch_size or cfg.batch_size) * cfg.group_size
    width, what = training_width(cfg.model)
    fits(rows, cfg.max_new_tokens, width, cfg.device,
         "--mini-batch-size x --group-size x --max-new-tokens", what)
    for name in (args.tracker or "").split(","):
        if name.strip() in ("tensorboard", "wandb", "mlflow"):
            require(name.strip(), f"--tracker {name.strip()}")


DOORS = {"eval": _eval, "pretrain": _pretrain, "train": _train}
