"""Per rung: greedy accuracy (all, stories, expressions; stories per level) with SE, and the
worked advantage at T=1 (rlscale.chains.answer_styles), from OUT/ev-RUNG/ (experiments/story_levels.sh)."""
import json, math, sys
from pathlib import Path
from rlscale.arith import question_style
from rlscale.chains import answer_styles, is_bare
from rlscale.files import read_jsonl
T = Path(sys.argv[1])
def acc(rows):
    x = [r["scores"]["custom_flexible"][0] for r in rows]
    m = sum(x) / len(x)
    return f"{m:.3f} ± {math.sqrt(m * (1 - m) / len(x)):.3f}", m
for rung in ("20k", "60k", "200k", "600k"):
    g = T / f"ev-{rung}" / "greedy" / "completions.jsonl"
    if not g.is_file():
        continue
    rows = read_jsonl(g)
    st = [r for r in rows if question_style(r["question"]) != "expr"]
    ex = [r for r in rows if question_style(r["question"]) == "expr"]
    lv = {l: acc([r for r in st if r["level"] == l])[1] for l in sorted({r["level"] for r in st})}
    t1 = T / f"ev-{rung}" / "t1" / "completions.jsonl"
    adv = answer_styles(read_jsonl(t1)) if t1.is_file() else {}
    bare = sum(is_bare(r["completions"][0]) for r in ex) / len(ex)
    print(f"| {rung} | {acc(rows)[0]} | {acc(st)[0]} | {acc(ex)[0]} (bare {bare:.2f}) | "
          + " / ".join(f"{v:.2f}" for v in lv.values())
          + f" | {adv.get('worked_advantage', float('nan')):+.3f} |")
