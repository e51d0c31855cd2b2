"""rl_temp_summary.py OUT [OUT ...] (session 29, pilot 86): per rl_temp_pilot.sh run, the test
loss's gain at T=0.7 (step 0 -> last, in combined SE) and greedy 0-shot before -> after."""
import math
import sys

from rlscale.files import read_json, read_jsonl


def greedy(d: str) -> float:
    s = read_json(f"{d}/summary.json")
    return s["results"]["0"]["checks"][s["primary_check"]]["accuracy"]


for out in sys.argv[1:]:
    evals = [r for r in read_jsonl(f"{out}/metrics.jsonl") if r.get("test_loss") is not None]
    e0, e1 = evals[0], evals[-1]
    gain = e0["test_loss"] - e1["test_loss"]
    se = math.hypot(e0["test_loss_se"], e1["test_loss_se"])
    print(f"{out}: T=0.7 accuracy {1 - e0['test_loss']:.3f} -> {1 - e1['test_loss']:.3f} "
          f"({gain / se:+.1f} SE); greedy {greedy(out + '-base-greedy'):.3f} -> "
          f"{greedy(out + '-greedy'):.3f}")
