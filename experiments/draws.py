"""draws.py DIR RUNG=EV[,EV...] ... (session 15): how a ladder's greedy baselines vary with the
pre-training draw. Each EV names DIR/ev-EV/greedy (one pre-trained draw of RUNG, evaluated by
rung_pilot.sh or evaluated alone), draws listed in the same order for every rung (the i-th of
each rung is pre-training seed i); an EV holding a "/" is a directory with completions.jsonl
(a study's baseline/RUNG: its 0-shot rows are read). Prints, per rung, each draw's greedy
0-shot accuracy and stories, the mean and the spread between draws (sample SD); per step between adjacent rungs,
the step in each draw against its combined SE (as summary.json's baseline_order), how many
draws order it, and the expected step (difference of the draws' means) with its SE from the
spread. An expected step near zero cannot be ordered in one run by any SE: docs/study.md,
session 15.

    .venv/bin/python experiments/draws.py /tmp/s14/v 20k=base20k-5m-s0,base20k-5m-s1 ...
"""
import math
import statistics
import sys
from pathlib import Path

from rlscale.chains import accuracy, chain_stats
from rlscale.errors import UserError
from rlscale.files import read_jsonl


def greedy(path: Path) -> tuple[float, float, float]:
    """(accuracy, its SE, stories right) of one draw's 0-shot greedy completions."""
    rows = [r for r in read_jsonl(path) if r.get("shots", 0) == 0]
    p, se, _ = accuracy(rows)
    return p, se, chain_stats(rows)["stories_right"]


def main(root: Path, specs: list[str]) -> None:
    where = lambda e: Path(e) / "completions.jsonl" if "/" in e else (  # noqa: E731
        root / f"ev-{e}" / "greedy" / "completions.jsonl")
    rungs = [(s.split("=", 1)[0], [greedy(where(e)) for e in s.split("=", 1)[1].split(",")])
             for s in specs]
    print("| rung | greedy per draw (stories) | mean | SD between draws |\n|---|---|---|---|")
    for name, ds in rungs:
        acc = [d[0] for d in ds]
        sd = statistics.stdev(acc) if len(acc) > 1 else float("nan")
        cells = " / ".join(f"{a:.3f} ({st:.3f})" for a, _, st in ds)
        print(f"| {name} | {cells} | {statistics.mean(acc):.3f} | {sd:.3f} |")
    print("\n| step | per draw: step / combined SE | draws ordered | expected step (SE) |\n|---|---|---|---|")
    for (lo, a), (hi, b) in zip(rungs, rungs[1:]):
        pairs = list(zip(a, b))
        steps = [(y[0] - x[0], math.hypot(x[1], y[1])) for x, y in pairs]
        ordered = sum(s > se for s, se in steps)
        xa, xb = [d[0] for d in a], [d[0] for d in b]
        var = sum(statistics.variance(v) / len(v) for v in (xa, xb) if len(v) > 1)
        cells = ", ".join(f"{s:+.3f} / {se:.3f}" for s, se in steps)
        print(f"| {lo} -> {hi} | {cells} | {ordered} of {len(steps)} | "
              f"{statistics.mean(xb) - statistics.mean(xa):+.3f} ({math.sqrt(var):.3f}) |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    try:
        main(Path(sys.argv[1]), sys.argv[2:])
    except UserError as e:  # a missing or malformed file: one line, exit code 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
