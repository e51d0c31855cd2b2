"""Why a rung's k-shot greedy accuracy falls (session 22; docs/notes.md): per number of shots,
accuracy on stories and expressions, and for wrong worked stories whether an operand of the
first worked step is absent from the question but present in an exemplar (a copy from the
context, or chance overlap). Usage: fewshot_split.py BASELINE_DIR (a study's baseline/RUNG).
rlscale.chains.accuracy is not used: it reads 0-shot rows only."""
import re
import sys
from collections import defaultdict
from pathlib import Path

from rlscale.arith import question_style
from rlscale.chains import is_bare, parse_step
from rlscale.files import read_jsonl

num = re.compile(r"\d+")
stat = defaultdict(lambda: defaultdict(float))
for r in read_jsonl(Path(sys.argv[1]) / "completions.jsonl"):
    k, c, ok = r["shots"], r["completions"][0], r["scores"]["custom_flexible"][0]
    style = "expr" if question_style(r["question"]) == "expr" else "story"
    s = stat[k]
    s[style + "_n"] += 1
    s[style + "_ok"] += ok
    s["bare"] += style == "story" and is_bare(c)
    if style == "story" and not ok:
        step = parse_step(c.strip().split("\n")[0])
        ops = {str(step[0]), str(step[2])} if step else set()
        exemplars = set(num.findall(r["prompt"][: r["prompt"].rfind("Question:")]))
        s["wrong_story"] += 1
        s["from_exemplar"] += bool(k and (ops - set(num.findall(r["question"]))) & exemplars)
for k in sorted(stat):
    s = stat[k]
    print(f"{k}-shot: stories {s['story_ok'] / s['story_n']:.3f} (n {int(s['story_n'])}), "
          f"expressions {s['expr_ok'] / s['expr_n']:.3f} (n {int(s['expr_n'])}), stories bare "
          f"{int(s['bare'])}, wrong stories {int(s['wrong_story'])} of which a first-step operand "
          f"not in the question but in an exemplar {int(s['from_exemplar'])}")
