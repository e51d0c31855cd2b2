"""`rlscale` command line: one subcommand per stage of the loop.

Each subcommand lives in its stage's module, which exposes `configure(parser)` (flags only, no
heavy imports) and `run(args) -> int`. This file dispatches: it parses, runs the checks at the
door (rlscale.checks: ranges, files, the machine) before the command does any work, and turns
bad input (UserError, bad flags) into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys

from rlscale import __version__
from rlscale.checks import check
from rlscale.errors import UserError
from rlscale.procs import keep_freed_memory

# name -> (module exposing configure/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "study": ("rlscale.study", "run the embedded micro-ladder scaling study end to end"),
    "replicates": ("rlscale.replicates", "how a study's findings hold across seeds (several study directories)"),
    "eval": ("rlscale.evaluate", "k-shot accuracy, pass@k and test loss of a model on a task"),
    "train": ("rlscale.grpo.cli", "GRPO post-training with compute accounting (resumable)"),
    "pretrain": ("rlscale.pretrain", "build and pre-train a micro-ladder rung"),
    "fit": ("rlscale.scaling.cli", "fit a scaling law, with intervals and prediction protocols"),
    "plan": ("rlscale.plan", "split a compute budget between pre-training and RL from a joint fit"),
    "predict": ("rlscale.scaling.predict", "predicted test loss of a planned run from a fit, with its interval"),
    "sweep": ("rlscale.sweep", "run a grid of training runs as Ray tasks"),
    "runs": ("rlscale.runs", "list / show / export the runs of a results database"),
    "export-verl": ("rlscale.verl", "write the verl launch command and reward module for a run"),
    "import": ("rlscale.importers", "import verl logs or TRL runs into a results database"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (not usage + error) and exits 2."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(2)


@functools.lru_cache(maxsize=1)
def build_parser() -> argparse.ArgumentParser:
    """The whole command tree (built once per process: parsing does not change it)."""
    parser = OneLineParser(prog="rlscale", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rlscale {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad flag (one line already written), --help, --version
        return e.code if isinstance(e.code, int) else 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    keep_freed_memory()  # train, pretrain, eval: a step's freed memory serves the next one
    try:
        check(args.command, args)
        return int(args._run(args) or 0)
    except UserError as e:
        sys.stderr.write(f"rlscale {args.command}: error: {e}\n")
        return e.exit_code
    except OSError as e:  # the disk, not the code: full, read-only, no permission
        where = f": {e.filename}" if e.filename else ""
        sys.stderr.write(f"rlscale {args.command}: error: {e.strerror or e}{where}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"rlscale {args.command}: interrupted; the run is resumable (rerun it; `train` takes --resume)\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
