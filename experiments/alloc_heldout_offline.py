"""alloc_heldout_offline.py DIR SEED|none [DOWN] (session 27, pilots 73 and 73b): an allocation
law scored on the measured points it did not see, split by checkpoint: seen by the fit (only RL
reaches past it) or never seen (pre-training tokens past the fit's for that rung); the split is
`allocation_points.held_out`'s, which new runs write into allocation.json themselves.
DOWN 0 (default): the run's own validation fit (its plan's, bootstrap draws stored with it;
nothing refitted), scored on the points above its fit budget. DOWN k >= 1: the plan's form refitted
(100 bootstrap draws, seed 0) on the points within the k+1-th largest budget of the grid, scored
on those up to the k-th largest (so the plan's own held-out points stay out)."""
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alloc_offline import load
from rlscale.allocation_points import budget_grid, held_out
from rlscale.allocation_validation import fit_law, fitting_points
from rlscale.scaling.joint import JointFit
p, points, plan, fit_pts = load(sys.argv[1], sys.argv[2])
down = int(sys.argv[3]) if len(sys.argv) > 3 else 0
if down:
    grid = budget_grid(points)
    fit_budget, top = grid[-2 - down], grid[-1 - down]
    mine = [q for q in points if q["C_total"] <= top * (1 + 1e-9)]
    fit = fit_law(fitting_points(mine, fit_budget), plan["form"],
                  sorted({q["N"] for q in points}), 100)
else:
    fit_budget, top, mine = plan["fit_budget"], plan["budget"], points
    fit = JointFit.from_dict(plan["fit"])
h = held_out(fit, mine, fit_budget, top)
unseen = sorted({(q["rung"], q["pretrain_tokens"]) for q in mine
                 if q["C_total"] > fit_budget * (1 + 1e-9)})
keys = ("n_points", "mare", "within_2se", "median_z", "inside_interval")
print(json.dumps({"dir": sys.argv[1], "down": down, "form": plan["form"], "fit_budget": fit_budget,
                  "n_fit_points": len(fitting_points(mine, fit_budget)), "r2": fit.r2,
                  "all": {k: h[k] for k in h if k in keys}, **h["by_checkpoint"],
                  "scored_checkpoints": unseen}, default=float))
