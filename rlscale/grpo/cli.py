"""`rlscale train`: GRPO post-training of a model on a task, resumable.

Every TrainConfig field is a flag (`batch_size` -> `--batch-size`). Settings resolve as
defaults <- --preset <- explicit flags; with --resume the run's saved config.json is the base
and explicit flags may change only what resuming allows (TrainConfig.resumable()). Each flag's help
and range come from its TrainConfig field.
"""

from __future__ import annotations

import dataclasses


def _plain(text: str) -> str:
    """A field's help as argparse shows it verbatim (argparse %-formats help strings)."""
    return text.replace("%", "%%")


def configure(p) -> None:
    from rlscale.grpo.config import CLI_SKIP as SKIP
    from rlscale.grpo.config import PRESETS, TrainConfig

    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="paper (arXiv 2509.25300) or seed (the seed study); flags override it")
    types = {"int": int, "float": float, "str": str, "str | None": str}
    for f in dataclasses.fields(TrainConfig):
        if f.name in SKIP:
            continue
        flag = "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":
            p.add_argument(flag, action=argparse_bool(), default=None,
                           help=_plain(f"{f.metadata['help']} (default: {f.default})"))
            continue
        rng = f" ({f.metadata['range']})" if "range" in f.metadata else ""
        p.add_argument(flag, type=types[str(f.type)], default=None, metavar=f.name.upper(),
                       help=_plain(f"{f.metadata['help']}{rng} (default: {f.default!r})"))
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR")
    p.add_argument("--tracker", default="", metavar="NAMES",
                   help="also log to tensorboard,wandb,mlflow (comma list; off by default)")
    p.add_argument("--progress", action=argparse_bool(), default=None,
                   help="show a progress bar (default: when stderr is a terminal)")


def argparse_bool():
    import argparse

    return argparse.BooleanOptionalAction


def run(args) -> int:
    from rlscale.files import dumps
    from rlscale.grpo.trainer import train

    from rlscale.grpo.config import config_from_args

    cfg = config_from_args(args)
    from rlscale.trackers import parse_names

    result = train(cfg, args.out, resume=args.resume, progress=args.progress,
                   trackers=tuple(parse_names(args.tracker)))
    keep = ("steps", "D", "reward_mean", "test_loss", "C_paper", "C_itemized", "policy")
    print(dumps({"run_dir": result["run_dir"], **{k: result[k] for k in keep if k in result}}))
    return 0
