"""alloc_distance_offline.py DIR SEED|none (session 26, pilot 72): is an allocation law's
validation miss its form or its distance? The committed form refitted on the plan's fitting
points plus validation draw 1's RL curve (draw 1 at the validation's own pre-training budget, 2x
past the grid's largest), then its level at the realised allocation against the mean of draws 0
and 2 (SE: max(SD / sqrt 2, their evaluation SE of the mean)). DIR: a finished
`allocate-words-long` directory with three draws; SEED: its --seed (none without one)."""
import json, math, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
from alloc_offline import load
from rlscale.allocation_points import curve_points
from rlscale.allocation_validation import fit_law, validation_jobs
out = Path(sys.argv[1])
p, points, plan, fit_pts = load(sys.argv[1], sys.argv[2])
draws = [j for j in validation_jobs(p, plan, points, out) if j.kind == "rl"]
curves = {j.meta["draw"]: curve_points(Path(j.out), Path(j.meta["pretrain"]), j.meta["rung"]) for j in draws}
for q in curves[1]:
    q["curve"] = "validation-d1"
fit = fit_law(fit_pts + curves[1], plan["form"], sorted({q["N"] for q in points}), 0)
last = {d: max(c, key=lambda q: q["step"]) for d, c in curves.items()}
others = [last[0], last[2]]
m = np.mean([q["test_loss"] for q in others])
eval_se = math.sqrt(sum(q["test_loss_se"] ** 2 for q in others)) / 2
se = max(float(np.std([q["test_loss"] for q in others], ddof=1)) / math.sqrt(2), eval_se)
at = float(np.mean([fit.predict(q["N"], q["pretrain_tokens"], q["rl_flops"]) for q in others]))
d1 = last[1]
print(json.dumps({"dir": str(out), "form": plan["form"], "measured_d0_d2": m, "se": se,
                  "predicted": at, "z": (m - at) / se, "within_2se": bool(abs(m - at) <= 2 * se),
                  "d1_measured": d1["test_loss"], "d1_fitted": float(fit.predict(d1["N"], d1["pretrain_tokens"], d1["rl_flops"])),
                  "r2": fit.r2}, default=float))
