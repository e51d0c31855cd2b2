"""The standard error of a test accuracy measured on n problems x s samples, by resampling one
evaluation's completions (docs/study.md, session 9: why the cpu preset's test loss is 800 x 1).

Problems are drawn with replacement, samples within a problem without; each line of the output
is one completions.jsonl (an `rlscale eval` with at least 4 samples per problem).

    .venv/bin/python experiments/se_resample.py OUT/t07/completions.jsonl [...]
"""

from __future__ import annotations

import argparse
import math
import random

from rlscale.files import read_jsonl

DESIGNS = ((200, 4), (400, 2), (400, 4), (800, 1))


def resampled_se(scores: list[list[float]], n: int, s: int, reps: int = 1000, seed: int = 0):
    """SD over reps of the mean accuracy of n problems x s samples drawn from scores."""
    rng = random.Random(seed)
    means = []
    for _ in range(reps):
        total = 0.0
        for _ in range(n):
            total += sum(rng.sample(scores[rng.randrange(len(scores))], s)) / s
        means.append(total / n)
    m = sum(means) / reps
    return math.sqrt(sum((x - m) ** 2 for x in means) / reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("completions", nargs="+")
    ap.add_argument("--check", default="custom_flexible")
    args = ap.parse_args()
    for path in args.completions:
        scores = [r["scores"][args.check] for r in read_jsonl(path)]
        s_max = min(len(x) for x in scores)
        print(path, {f"{n}x{s}": round(resampled_se(scores, n, s), 4)
                     for n, s in DESIGNS if s <= s_max})


if __name__ == "__main__":
    main()
