"""greedy_split.py MODEL VAL OUT (session 14): greedy 0-shot accuracy of MODEL on the 800
problems of the validation task VAL (written to OUT by `rlscale eval`, reused if there), split
by style, with the greedy ceiling and the step-by-step shares of rlscale.chains.chain_stats.
For models that rung_pilot.sh did not train (a study's pretrain/*/model, an RL policy)."""
import subprocess
import sys
from pathlib import Path

from rlscale.arith import question_style
from rlscale.chains import accuracy, chain_stats
from rlscale.files import read_jsonl

model, val, out = sys.argv[1:4]
if not (Path(out) / "completions.jsonl").is_file():
    subprocess.run([".venv/bin/rlscale", "eval", "--model", model, "--task", val, "--shots", "0",
                    "--samples", "1", "--temperature", "0", "--n-problems", "800",
                    "--max-new-tokens", "96", "--batch-size", "512", "--out", out],
                   check=True, capture_output=True)
rows = read_jsonl(Path(out) / "completions.jsonl")


def acc(rs):
    return "{:.3f} ± {:.3f} (n={})".format(*accuracy(rs))


stories = [r for r in rows if question_style(r["question"]) != "expr"]
exprs = [r for r in rows if question_style(r["question"]) == "expr"]
stats = chain_stats(rows)
print(f"{model}: all {acc(rows)}, stories {acc(stories)}, expressions {acc(exprs)}, "
      f"ceiling {stats['ceiling']:.3f}")
print({k: round(v, 3) for k, v in stats.items() if isinstance(v, float)})
