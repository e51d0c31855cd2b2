"""The sparser-eval twin of a finished study (session 44's paired draws): the same study as if
its GRPO runs had evaluated the held-out test loss every EVERY steps instead of every 10.

The in-run evals are seeded by the run's seed alone and the rollouts by step, so a run with a
sparser eval_every trains the same policy and logs the same rows at the steps both grids share
(tests/test_grpo_train.py::test_eval_every_only_subsamples_the_curve). The twin is therefore a
copy whose metrics.jsonl rows keep their test keys only on the sparser grid, with study.json's
preset renamed, then re-summarised by `rlscale study` (no job runs: ~25 s). Checked on seeds 0,
27 and 28: the twin of a cpu-words-10m study equals the real cpu-words-10m-e20 study of that
seed in all 15 findings, every key (docs/study.md, session 44).

    python experiments/eval_grid_twin.py STUDY_E10 TWIN_OUT [--every 20] \
        [--preset cpu-words-10m-e20]
    rlscale study --preset cpu-words-10m-e20 --seed S --out TWIN_OUT
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TEST_KEYS = ("test_", "eval_")  # what an in-run evaluation adds to a step's row, with time_eval


def strip_rows(metrics: Path, every: int) -> int:
    """Drop the test keys of rows off the `every` grid (step 0 and the last step are on it in
    the study's presets: 120 steps); returns how many rows lost them."""
    out, n = [], 0
    for line in metrics.read_text().splitlines():
        row = json.loads(line)
        if "test_loss" in row and row["step"] % every:
            row = {k: v for k, v in row.items()
                   if not k.startswith(TEST_KEYS) and k != "time_eval"}
            line, n = json.dumps(row), n + 1
        out.append(line)
    metrics.write_text("\n".join(out) + "\n")
    return n


def twin(study: Path, out: Path, every: int, preset: str) -> int:
    if out.exists():
        raise SystemExit(f"{out}: exists; give a new directory")
    if not (study / "study.json").is_file():
        raise SystemExit(f"{study}: no study.json (not a finished study)")
    shutil.copytree(study, out, symlinks=True)
    n = sum(strip_rows(m, every) for m in sorted((out / "runs").glob("*/metrics.jsonl")))
    meta = json.loads((out / "study.json").read_text())
    meta["preset"].update(name=preset, eval_every=every)
    (out / "study.json").write_text(json.dumps(meta, indent=2))
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("study", type=Path, help="a finished study (evals every 10 steps)")
    p.add_argument("out", type=Path, help="the twin's directory (must not exist)")
    p.add_argument("--every", type=int, default=20, help="the sparser grid (default 20)")
    p.add_argument("--preset", default="cpu-words-10m-e20", help="the twin's preset name")
    a = p.parse_args()
    n = twin(a.study, a.out, a.every, a.preset)
    print(f"{a.out}: test keys dropped from {n} rows; now run "
          f"`rlscale study --preset {a.preset} --seed SEED --out {a.out}`")


if __name__ == "__main__":
    main()
