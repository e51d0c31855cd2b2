"""Why a rung's k-shot greedy accuracy falls (session 22; docs/notes.md): per number of shots,
accuracy on stories and expressions, and for wrong worked stories whether an operand of the
first worked step is absent from the question but present in an exemplar (a copy from the
context, or chance overlap). Usage: fewshot_split.py BASELINE_DIR"""
import json, re, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1] + "/completions.jsonl")]
num = re.compile(r"\d+")
stat = defaultdict(lambda: defaultdict(float))
for r in rows:
    k = r["shots"]; c = r["completions"][0]; ok = r["scores"]["custom_flexible"][0]
    style = "expr" if r["question"].startswith("What is") else "story"
    s = stat[k]; s[style + "_n"] += 1; s[style + "_ok"] += ok
    s["bare"] += c.strip().startswith("####") and style == "story"
    if style == "story" and not ok:
        shots_text = r["prompt"][: r["prompt"].rfind("Question:")]
        first = c.strip().split("\n")[0]
        q_nums = set(num.findall(r["question"]))
        ops = num.findall(first.split(":")[-1])[:2]  # the operands of the first worked step
        foreign = [o for o in ops if o not in q_nums and o in set(num.findall(shots_text))]
        s["wrong_story"] += 1; s["operand_from_exemplar"] += bool(foreign and k)
for k in sorted(stat):
    s = stat[k]
    print(f"{k}-shot: stories {s['story_ok']/s['story_n']:.3f} (n {int(s['story_n'])}), "
          f"expressions {s['expr_ok']/s['expr_n']:.3f} (n {int(s['expr_n'])}), stories bare "
          f"{int(s['bare'])}, wrong stories {int(s['wrong_story'])} of which a first-step operand "
          f"not in the question but in an exemplar {int(s['operand_from_exemplar'])}")
