"""order_subsets.py STUDY (session 29, change Q): the baseline-ordering check
(findings_evals.baseline_order) and the 5-shot / 0-shot ratios on all 800 held-out problems and
on the first 400 (the greedy evals' problems before session 29), from one study's baseline
completions. Usage: .venv/bin/python experiments/order_subsets.py /tmp/s29/words7"""
import json, math, sys
from pathlib import Path
import numpy as np
from rlscale.files import read_jsonl
from rlscale.findings_evals import baseline_order

out = Path(sys.argv[1])
s = json.load(open(out / "summary.json"))
for cut in (800, 400):
    rungs, scores, ratios = [], [], {}
    for r in s["rungs"]:
        tag = r["rung"].removeprefix("micro:")
        recs = read_jsonl(out / "baseline" / tag / "completions.jsonl")
        by = {}
        for x in recs:
            if x["index"] < cut:
                by.setdefault(x["shots"], {})[x["index"]] = float(x["scores"]["custom_flexible"][0])
        z = by[0]; v = np.array(list(z.values()))
        acc, se = v.mean(), v.std(ddof=1) / math.sqrt(len(v))
        rungs.append({"rung": tag, "baseline_greedy": acc, "baseline_greedy_se": se})
        scores.append(z)
        ratios[tag] = np.mean(list(by[5].values())) / acc
    o = baseline_order(rungs, scores)
    steps = "; ".join(f"{x['from']}->{x['to']} {x['step']:+.4f} (comb {x['se_combined']:.4f}, paired {x['se_paired']:.4f})" for x in o["steps"])
    print(f"{cut} problems: acc " + ", ".join(f"{r['baseline_greedy']:.4f}" for r in rungs))
    print(f"  {steps}")
    print(f"  increasing {o['increasing']}, above combined {o['each_step_above_combined_se']}, above paired {o['each_step_above_paired_se']}")
    print("  5-shot/0-shot " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
