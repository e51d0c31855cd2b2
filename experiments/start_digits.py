"""How does an incomplete copy of a story's start go wrong, digit by digit? (session 40)

For the 0-shot worked stories whose question starts from digits (an eval's or a study
baseline's completions.jsonl; for a copy_screen draw, its eval/), the first step's first operand
against the question's start: copied, first digit wrong, a digit added (a 1-digit start written
with two), a digit dropped, or the second digit wrong. Session 40: the draws whose copy is
incomplete get the first digit right and miss the number's end or its second digit.

    .venv/bin/python experiments/start_digits.py DIR [DIR ...]
"""
import sys
from collections import Counter
from pathlib import Path

from story_start import first_step

from rlscale.arith import question_style, story_start
from rlscale.files import read_jsonl


def classify(want: str, got: str) -> str:
    if want == got:
        return "copied"
    if got[0] != want[0]:
        return "first digit wrong"
    if len(got) != len(want):
        return "digit added" if len(got) > len(want) else "digit dropped"
    return "second digit wrong"


def tally(d: Path) -> Counter:
    path = d / "eval/completions.jsonl" if (d / "eval").is_dir() else d / "completions.jsonl"
    c: Counter = Counter()
    for r in read_jsonl(path):
        if r["shots"] != 0 or question_style(r["question"]) == "expr":
            continue
        start, first = story_start(r["question"]), first_step(r["completions"][0])
        if not first or start is None:
            continue
        want = str(start)
        c[f"{min(len(want), 2)}-digit", classify(want, str(first[0]))] += 1
    return c


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    for d in sys.argv[1:]:
        c = tally(Path(d))
        cells = []
        for size in ("1-digit", "2-digit"):
            n = sum(v for (s, _), v in c.items() if s == size)
            parts = [f"{k} {v}" for (s, k), v in sorted(c.items()) if s == size and k != "copied"]
            cells.append(f"{size} starts {n}: copied {c[size, 'copied']}"
                         + (", " + ", ".join(parts) if parts else ""))
        print(d, "|", " | ".join(cells))


if __name__ == "__main__":
    main()
