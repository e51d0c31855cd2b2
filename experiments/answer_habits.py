"""How a study's models answer, before and after RL: answers that repeat a number of the
question, and (rlscale.chains.answer_styles) expressions worked out or answered bare
(docs/study.md, session 10).

Reads the pass@k completions a study writes (OUT/evals/<rung>/base/passk and
OUT/evals/<rung>/<run>/passk: problems x samples at the rollout temperature). A final answer
that repeats one of the question's numbers is what a model does when it copies an operand in
place of computing; the task itself puts the answer among the question's numbers for ~9% of
the test problems (`--ceiling`).

    .venv/bin/python experiments/answer_habits.py studies/micro [--ceiling]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rlscale.chains import answer_styles
from rlscale.files import read_jsonl
from rlscale.rewards import extract, normalize_number


def _numbers(question: str) -> set:
    return {normalize_number(x) for x in re.findall(r"\d+", question)}


def copies(rows: list[dict]) -> dict:
    """Over every sampled completion: the share whose final answer is a number of the question,
    the share right, and the share right among the copies."""
    n = copied = right = right_copied = 0
    for r in rows:
        numbers, gold = _numbers(r["question"]), normalize_number(r["answer"])
        for text in r["completions"]:
            pred = normalize_number(extract("custom_flexible", text))
            n, copied, right = n + 1, copied + (pred in numbers), right + (pred == gold)
            right_copied += pred in numbers and pred == gold
    return {"right": right / n, "copied": copied / n,
            "right_of_copied": right_copied / max(copied, 1)}


def ceiling(rows: list[dict]) -> float:
    """Share of problems whose answer is one of the question's numbers."""
    hits = sum(normalize_number(r["answer"].rsplit("####", 1)[-1]) in _numbers(r["question"])
               for r in rows)
    return hits / len(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--ceiling", action="store_true", help="also the task's copy ceiling")
    args = ap.parse_args()
    if args.ceiling:
        test = read_jsonl(args.study / "task" / "test.jsonl")[:800]
        print(f"task: answer among the question's numbers in {ceiling(test):.3f} of "
              f"{len(test)} test problems")
    for rung in sorted((args.study / "evals").iterdir(), key=lambda p: (len(p.name), p.name)):
        for run in sorted(rung.iterdir(), key=lambda p: (p.name != "base", p.name)):
            path = run / "passk" / "completions.jsonl"
            if not path.is_file():
                continue
            rows = read_jsonl(path)
            st = answer_styles(rows)
            row = {**copies(rows), "expr worked": st["worked_share"],
                   "expr right worked": st["right_worked"], "expr right bare": st["right_bare"]}
            when = "before" if run.name == "base" else f"after {run.name}"
            print(f"{rung.name:>5} {when:<16} " + "  ".join(
                f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in row.items()))


if __name__ == "__main__":
    main()
