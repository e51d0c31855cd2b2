"""temperature_table.py STUDY [STUDY ...] (session 29): per rung, the change under RL at the three
temperatures a study measures, each in its own SE - T=1 (the rollout temperature): pass@1 of the
pass@k evals, SE paired over problems (rl_sharpens_or_expands' rows); T=0.7: the test loss's gain,
combined SE (`rungs[].gain`); T=0: greedy 0-shot, SE paired over problems (greedy_gain's rows).
Reads each study's summary.json only."""
import math
import sys

from rlscale.files import read_json

for study in sys.argv[1:]:
    s = read_json(f"{study}/summary.json")
    found = {f["id"]: f["details"] for f in s["findings"]}
    sharp = {r["rung"]: r for r in found["rl_sharpens_or_expands"].get("rungs", [])}
    greedy = found["greedy_gain"].get("per_rung", {})
    print(f"{study} (seed {s['seed']})")
    for r in s["rungs"]:
        t1, t0 = sharp.get(r["rung"]), greedy.get(r["rung"])
        se = math.hypot(r["baseline_se"], r["final_se"])
        cells = [f"T=1 {t1['d_pass1']:+.3f} ({t1['d_pass1'] / t1['se1']:+.1f})" if t1 else "T=1 n/a",
                 f"T=0.7 {r['gain']:+.3f} ({r['gain'] / se:+.1f})",
                 f"T=0 {t0['change']:+.3f} ({t0['change'] / t0['se']:+.1f})"
                 if isinstance(t0, dict) else "T=0 n/a"]
        print(f"  {r['rung']}: " + " | ".join(cells))
