"""Stories with a number-word operand against stories in digits only (session 36): greedy
0-shot accuracy per level, each rung's baseline and its after-RL greedy evals (every seed).
Where a story says an operand as a number-word the model must recall its value (knowledge,
rlscale.arith.word_values); in digits it only copies. Usage:

    .venv/bin/python experiments/story_words.py STUDY_DIR
"""
import glob
import sys
from collections import defaultdict

from rlscale.arith import question_operands, question_style
from rlscale.files import read_jsonl


def split(path: str) -> dict:
    """{(kind, level): (problems, accuracy)} over the 0-shot stories of a completions.jsonl."""
    cells = defaultdict(lambda: [0, 0.0])
    for r in read_jsonl(path):
        if r.get("shots", 0) != 0 or question_style(r["question"]) != "words":
            continue
        ops = question_operands(r["question"])
        kind = "word" if any(isinstance(o, str) for o in ops) else "digits"
        cells[(kind, r["level"])][0] += 1
        cells[(kind, r["level"])][1] += r["scores"]["custom_flexible"][0]
    return {k: (n, s / n) for k, (n, s) in sorted(cells.items())}


def line(name: str, cells: dict) -> str:
    return f"{name:>22}  " + "  ".join(f"{k[0]}/L{k[1]} {a:.2f} (n={n})"
                                       for k, (n, a) in cells.items())


study = sys.argv[1]
for base in sorted(glob.glob(f"{study}/baseline/*/completions.jsonl")):
    rung = base.split("/")[-2]
    print(line(f"{rung} before", split(base)))
    for after in sorted(glob.glob(f"{study}/evals/{rung}/*/greedy/completions.jsonl")):
        print(line(f"{rung} after ({after.split('/')[-3]})", split(after)))
