"""fewshot_copy.py STUDY [RUNG ...] (session 37): does a base model copy the start number of the
question it answers, or one of an exemplar's? Of the baseline's stories that start with a digit
number and whose greedy answer starts with a worked step, the share whose first operand is the
question's own start, a number of an exemplar's question, or neither, at 0, 1 and 5 shots.

    .venv/bin/python experiments/fewshot_copy.py /tmp/s36/r117 20k 60k
"""
import re
import sys

from rlscale.arith import question_operands, question_style
from rlscale.chains import parse_step
from rlscale.files import read_jsonl

study, tags = sys.argv[1], sys.argv[2:] or ["20k", "60k", "200k", "600k"]
for tag in tags:
    rows = read_jsonl(f"{study}/baseline/{tag}/completions.jsonl")
    for shots in (0, 1, 5):
        n = right = exemplar = 0
        for r in (x for x in rows if x["shots"] == shots):
            ops = question_operands(r["question"])
            first = r["completions"][0].strip().split("\n")[0]
            step = parse_step(first.split(": ")[-1]) if ": " in first else None
            if (question_style(r["question"]) != "words" or not ops or not isinstance(ops[0], int)
                    or step is None):
                continue
            shown = {int(v) for q in re.findall(r"Question: (.*)\n", r["prompt"])[:-1]
                     for v in re.findall(r"\d+", q)}  # the exemplars' questions' numbers
            n += 1
            right += step[0] == ops[0]
            exemplar += step[0] != ops[0] and step[0] in shown
        if n:
            print(f"{tag} {shots}-shot: {n} stories with a worked first step; start copied right "
                  f"{right / n:.3f}, an exemplar's number {exemplar / n:.3f}, other "
                  f"{(n - right - exemplar) / n:.3f}")
