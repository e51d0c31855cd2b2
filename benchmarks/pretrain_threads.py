"""Two cores, pre-training: one job on two threads, or two jobs on one thread each?

`rlscale study` runs its jobs in worker processes with one thread each (rlscale.scheduler). This
measures what that costs against the alternative, in one run on the same machine: `rlscale
pretrain` of one rung on cpu-edge's task (the default's without number-words), in the study
presets' row shapes (8 x 512-token rows, 128-token rows for the first 70% of the steps), three
ways:

    one_thread   one run alone, OMP_NUM_THREADS=1
    two_threads  one run alone, OMP_NUM_THREADS=2
    two_procs    two runs at once, one thread each (their tokens/s summed)

and prints tokens/s (from each run's pretrain.json) and the ratio two_procs / two_threads
(> 1: the study's one thread per job is the better use of the cores).

    .venv/bin/python benchmarks/pretrain_threads.py [--rung 600k] [--tokens 409600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from rlscale.study_presets import PRESETS

TASK = PRESETS["cpu-edge"].task  # the default's task without the number-words


def start(out: Path, threads: int, rung: str, tokens: int) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "import sys; from rlscale.cli import main; sys.exit(main())",
           "pretrain", "--rung", f"micro:{rung}", "--task", TASK, "--tokens", str(tokens),
           "--lr", "2.5e-3", "--batch-size", "8", "--seq-len", "512", "--short-seq-len", "128",
           "--long-frac", "0.3", "--numbers", "spaced", "--seed", "0", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    # stderr to a file, not a pipe: a pipe nobody reads until the end can fill and stall the run
    with open(f"{out}.err", "w") as err:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)


def tokens_per_s(procs: list[subprocess.Popen], outs: list[Path]) -> float:
    for p, o in zip(procs, outs):
        if p.wait() != 0:
            sys.exit(f"pretrain failed: {Path(f'{o}.err').read_text().strip()[-300:]}")
    return sum(json.loads((o / "pretrain.json").read_text())["tokens_per_s"] for o in outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rung", default="600k")
    ap.add_argument("--tokens", type=int, default=409_600)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        one = tokens_per_s([start(d / "a1", 1, args.rung, args.tokens)], [d / "a1"])
        two = tokens_per_s([start(d / "a2", 2, args.rung, args.tokens)], [d / "a2"])
        outs = [d / "c1", d / "c2"]
        procs = tokens_per_s([start(o, 1, args.rung, args.tokens) for o in outs], outs)
    print(f"pretrain_threads rung={args.rung} tokens={args.tokens} one_thread_tok_s={one:.0f} "
          f"two_threads_tok_s={two:.0f} two_procs_tok_s={procs:.0f} "
          f"threads_speedup={two / one:.2f} procs_vs_threads={procs / two:.2f}")


if __name__ == "__main__":
    main()
