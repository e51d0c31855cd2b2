"""word_coverage.py TRAIN TEST EV... (session 16): on a task with number-words (arith's
`lexicon`), how often a model recalls a word's value, by how often the word occurs in the
training problems TRAIN (a train.jsonl). TEST is the held-out test.jsonl the EVs were evaluated
on (its worked answers give the values of words TRAIN never shows). Each EV is a
completions.jsonl or a directory of rung_pilot.sh's (its greedy/completions.jsonl). Per model:
the story steps whose sentence says a word, wrong recalls / steps per bucket, and the greedy
accuracy of the stories by their rarest word (or with no word).

    .venv/bin/python experiments/word_coverage.py /tmp/s16/p33/task/train.jsonl \\
        /tmp/s16/p33/val/test.jsonl /tmp/s16/p33/ev-*
"""
import collections
import re
import sys
from pathlib import Path

from rlscale.arith import number_word, question_style
from rlscale.chains import parse_step
from rlscale.errors import UserError
from rlscale.files import read_jsonl

BUCKETS = ((0, 0, "0"), (1, 2, "1-2"), (3, 9, "3-9"), (10, 99, "10-99"), (100, 10**9, "100+"))
_WORD = re.compile(r"[a-z]+")


def word_values(*paths: str) -> dict[str, int]:
    """word -> value, read off worked steps that say a word ("He loses kavo: 17 - 6 = 11")."""
    values = {}
    for p in paths:
        for r in read_jsonl(p):
            for line in r["answer"].split("\n"):
                said, _, eq = line.rpartition(": ")
                w, step = number_word(said), parse_step(eq)
                if w and step:
                    values[w] = step[2]
    return values


def bucket(k: int) -> str:
    return next(n for lo, hi, n in BUCKETS if lo <= k <= hi)


def main(train: str, test: str, evs: list[str]) -> None:
    values = word_values(train, test)
    seen = collections.Counter(w for r in read_jsonl(train)
                               for w in _WORD.findall(r["question"]) if w in values)
    names = [n for *_, n in BUCKETS]
    story_names = ["no word", *names]
    print(f"{len(values)} words; recall wrong / steps by how often the word occurs in TRAIN, "
          "then story accuracy by its rarest word")
    print("| model | " + " | ".join(f"seen {n}" for n in names) + " | " +
          " | ".join(f"stories, rarest {n}" for n in story_names) + " |")
    print("|---|" + "---|" * (len(names) + len(story_names)))
    for ev in evs:
        path = Path(ev) / "greedy" / "completions.jsonl" if Path(ev).is_dir() else Path(ev)
        wrong, steps = collections.Counter(), collections.Counter()
        right, stories = collections.Counter(), collections.Counter()
        for r in read_jsonl(path):
            if r.get("shots", 0) != 0 or question_style(r["question"]) == "expr":
                continue
            ws = [w for w in _WORD.findall(r["question"]) if w in values]
            rarest = bucket(min(seen[w] for w in ws)) if ws else "no word"
            stories[rarest] += 1
            right[rarest] += r["scores"]["custom_flexible"][0] > 0
            for line in r["completions"][0].split("\n")[:64]:
                said, _, eq = line.rpartition(": ")
                w, step = number_word(said), parse_step(eq)
                if w in values and step:
                    steps[bucket(seen[w])] += 1
                    wrong[bucket(seen[w])] += step[2] != values[w]
        cells = [f"{wrong[n]}/{steps[n]} ({wrong[n] / max(1, steps[n]):.2f})" for n in names]
        cells += [f"{right[n] / max(1, stories[n]):.2f} (n={stories[n]})" for n in story_names]
        print(f"| {Path(ev).name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    try:
        main(sys.argv[1], sys.argv[2], sys.argv[3:])
    except UserError as e:  # a missing or malformed file: one line, exit code 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
