"""Why a rung's k-shot greedy accuracy falls (session 22; docs/notes.md): per number of shots,
accuracy on stories and expressions, and for wrong worked stories whether an operand of the
first worked step is absent from the question but present in an exemplar (a copy from the
context, or chance overlap). Then the problems right at 0-shot and wrong at 1-shot, and of those
with a parsed first step the ones whose chain starts from a number of the exemplar instead of
the question's start (session 35: the collapsing 20k rung's own failure; rungs that hold lose
~10 problems, none of them this way). Per shot count also (session 37) the share of worked
stories whose first step starts from the question's own start number: a draw that never
completed the copy transition reads below 1 at 0-shot already. Usage: fewshot_split.py
BASELINE_DIR (a study's baseline/RUNG). rlscale.chains.accuracy is not used: it reads 0-shot
rows only."""
import re
import sys
from collections import defaultdict
from pathlib import Path

from story_start import first_step

from rlscale.arith import question_operands, question_style, story_start
from rlscale.chains import is_bare, parse_step
from rlscale.files import read_jsonl

num = re.compile(r"\d+")


def exemplar_numbers(prompt: str) -> set[int]:
    """The numbers of a k-shot prompt's exemplars (everything before its last question)."""
    return {int(x) for x in num.findall(prompt[: prompt.rfind("Question:")])}


stat = defaultdict(lambda: defaultdict(float))
rows = read_jsonl(Path(sys.argv[1]) / "completions.jsonl")
for r in rows:
    k, c, ok = r["shots"], r["completions"][0], r["scores"]["custom_flexible"][0]
    style = "expr" if question_style(r["question"]) == "expr" else "story"
    s = stat[k]
    s[style + "_n"] += 1
    s[style + "_ok"] += ok
    s["bare"] += style == "story" and is_bare(c)
    first, start = first_step(c), story_start(r["question"])
    if first and start is not None:  # a worked story starting from digits
        s["worked"] += 1
        s["start_right"] += first[0] == start
        digits = "two" if start >= 10 else "one"  # session 38: is the second digit the miss?
        s[digits + "_n"] += 1
        s[digits + "_right"] += first[0] == start
    if style == "story" and not ok:
        step = first
        ops = {step[0], step[2]} if step else set()
        s["wrong_story"] += 1
        s["from_exemplar"] += bool(k and (ops - {int(x) for x in num.findall(r["question"])})
                                   & exemplar_numbers(r["prompt"]))
for k in sorted(stat):
    s = stat[k]
    print(f"{k}-shot: stories {s['story_ok'] / s['story_n']:.3f} (n {int(s['story_n'])}), "
          f"expressions {s['expr_ok'] / s['expr_n']:.3f} (n {int(s['expr_n'])}), stories bare "
          f"{int(s['bare'])}, wrong stories {int(s['wrong_story'])} of which a first-step operand "
          f"not in the question but in an exemplar {int(s['from_exemplar'])}; worked stories "
          f"starting from the question's start {s['start_right'] / max(s['worked'], 1):.3f} "
          f"(n {int(s['worked'])}; one-digit starts {s['one_right'] / max(s['one_n'], 1):.3f}, "
          f"two-digit {s['two_right'] / max(s['two_n'], 1):.3f})")

by = defaultdict(dict)
for r in rows:
    by[r["index"]][r["shots"]] = r
ok = lambda r: r["scores"]["custom_flexible"][0] == 1  # noqa: E731
lost = [v[1] for v in by.values() if 0 in v and 1 in v and ok(v[0]) and not ok(v[1])]
parsed = starts = 0
for r in lost:
    ops = question_operands(r["question"])
    steps = [x for x in map(parse_step, r["completions"][0].strip().split("\n")) if x]
    if steps and ops:
        parsed += 1
        starts += steps[0][0] != ops[0] and steps[0][0] in exemplar_numbers(r["prompt"])
print(f"right at 0-shot, wrong at 1-shot: {len(lost)}; of the {parsed} with a parsed first "
      f"step, starting from a number of the exemplar instead of the question's start: {starts}")
