"""fact_coverage.py TRAIN EV... (session 15): the story steps of greedy completions, by how often
their fact (a op b) occurs in the worked steps of the training problems TRAIN (a train.jsonl),
and how often each bucket is computed wrong. Each EV is a completions.jsonl or a directory of
rung_pilot.sh's (its greedy/completions.jsonl). Why the top rungs' held-out accuracy stops
growing: docs/study.md, session 15.

    .venv/bin/python experiments/fact_coverage.py /tmp/s14/v/task/train.jsonl /tmp/s14/v/ev-200k-5e-3-9000000
"""
import collections
import sys
from pathlib import Path

from rlscale.arith import question_style
from rlscale.chains import parse_step
from rlscale.files import read_jsonl

BUCKETS = ((0, 0, "0"), (1, 2, "1-2"), (3, 9, "3-9"), (10, 10**9, "10+"))


def main(train: str, evs: list[str]) -> None:
    seen: collections.Counter = collections.Counter()
    for r in read_jsonl(train):
        for f in filter(None, map(parse_step, r["answer"].split("\n"))):
            seen[f[:3]] += 1
    print("| model | " + " | ".join(f"fact seen {b[2]} times: wrong / steps" for b in BUCKETS) + " |")
    print("|---|" + "---|" * len(BUCKETS))
    for ev in evs:
        path = Path(ev) / "greedy" / "completions.jsonl" if Path(ev).is_dir() else Path(ev)
        wrong: collections.Counter = collections.Counter()
        steps: collections.Counter = collections.Counter()
        for r in read_jsonl(path):
            if r.get("shots", 0) != 0 or question_style(r["question"]) == "expr":
                continue
            for a, op, b, c in filter(None, map(parse_step, r["completions"][0].split("\n")[:64])):
                k = seen[(a, op, b)]
                name = next(n for lo, hi, n in BUCKETS if lo <= k <= hi)
                steps[name] += 1
                wrong[name] += c != {"+": a + b, "-": a - b, "*": a * b}[op]
        cells = [f"{wrong[n]} / {steps[n]} ({wrong[n] / max(1, steps[n]):.3f})" for *_, n in BUCKETS]
        print(f"| {Path(ev).name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
