"""rung_pilot_summary.py DIR: per pilot of experiments/rung_pilot.sh, the mean of the last 20
logged training losses (the lr rule), greedy validation accuracy (all, stories, expressions)
with SE, the greedy ceiling (session 13: the accuracy if every story were right and the
expressions kept their bare guesses; what room greedy decoding leaves above a rung), and the
worked advantage at T=1 (rlscale.chains.answer_styles)."""
import json
import sys
from pathlib import Path

from rlscale.arith import question_style
from rlscale.chains import accuracy, answer_styles, chain_stats
from rlscale.files import read_jsonl


def acc(rows):
    return "{:.3f} ± {:.3f}".format(*accuracy(rows)[:2])


T = Path(sys.argv[1])
print("| pilot | last-20 loss | greedy | stories | expressions | greedy ceiling | worked advantage |")
print("|---|---|---|---|---|---|---|")
# every evaluated model: rung_pilot.sh's pilots and models evaluated alone (ev-NAME without pre-NAME)
for name in sorted({p.name.split("-", 1)[1] for p in [*T.glob("pre-*/"), *T.glob("ev-*/")]}):
    pre = T / f"pre-{name}" / "loss.jsonl"
    loss = [json.loads(x)["loss"] for x in open(pre)] if pre.is_file() else []
    g = T / f"ev-{name}" / "greedy" / "completions.jsonl"
    t1 = T / f"ev-{name}" / "t1" / "completions.jsonl"
    # a run still training has no model yet: its loss is not the final one the lr rule compares
    # (session 16 read one mid-run by mistake), so it is marked
    busy = "" if (T / f"pre-{name}" / "model").is_dir() else " (training)"
    row = f"| {name} | {sum(loss[-20:]) / 20:.4f}{busy} |" if loss else f"| {name} | |"
    if g.is_file():
        rows = read_jsonl(g)
        st = [r for r in rows if question_style(r["question"]) != "expr"]
        ex = [r for r in rows if question_style(r["question"]) == "expr"]
        row += f" {acc(rows)} | {acc(st)} | {acc(ex)} | {chain_stats(rows)['ceiling']:.3f} |"
    else:
        row += " | | | |"
    if t1.is_file():
        row += f" {answer_styles(read_jsonl(t1)).get('worked_advantage', float('nan')):+.3f} |"
    print(row)
