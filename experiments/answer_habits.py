"""How a study's models answer, before and after RL: bare answers, answers that repeat a number
of the question, and accuracy (docs/study.md, session 10).

Reads the pass@k completions a study writes (OUT/evals/<rung>/base/passk and
OUT/evals/<rung>/<run>/passk: problems x samples at the rollout temperature). A final answer
that repeats one of the question's numbers is what a model does when it copies an operand in
place of computing; the task itself puts the answer among the question's numbers for ~9% of
the test problems (`--ceiling`). right_of_bare / right_of_worked: accuracy of the answers given
bare ("#### N") / worked out: what RL can gain by moving a model from the one to the other.

    .venv/bin/python experiments/answer_habits.py studies/micro [--ceiling]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from rlscale.files import read_jsonl
from rlscale.rewards import extract, normalize_number


def habits(rows: list[dict]) -> dict:
    """Shares over every sampled completion of rows: bare ("#### N" first), copied (the final
    answer is a number of the question), right, and right among the copied."""
    n = bare = copied = right = right_copied = right_bare = 0
    for r in rows:
        numbers = {normalize_number(x) for x in re.findall(r"\d+", r["question"])}
        gold = normalize_number(r["answer"])
        for text in r["completions"]:
            pred = normalize_number(extract("custom_flexible", text))
            n += 1
            is_bare = text.strip().startswith("####")
            bare += is_bare
            copied += pred in numbers
            right += pred == gold
            right_copied += pred in numbers and pred == gold
            right_bare += is_bare and pred == gold
    return {"samples": n, "bare": bare / n, "copied": copied / n, "right": right / n,
            "right_of_copied": right_copied / max(copied, 1),
            "right_of_bare": right_bare / max(bare, 1),
            "right_of_worked": (right - right_bare) / max(n - bare, 1)}


def ceiling(rows: list[dict]) -> float:
    """Share of problems whose answer is one of the question's numbers."""
    hit = sum(normalize_number(r["answer"].rsplit("####", 1)[-1]) in
              {normalize_number(x) for x in re.findall(r"\d+", r["question"])} for r in rows)
    return hit / len(rows)


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
            if path.is_file():
                h = habits(read_jsonl(path))
                when = "before" if run.name == "base" else f"after {run.name}"
                print(f"{rung.name:>5} {when:<16} " + "  ".join(
                    f"{k} {v:.3f}" for k, v in h.items() if k != "samples"))


if __name__ == "__main__":
    main()
