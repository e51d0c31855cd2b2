"""alloc_interval_offline.py DIR SEED|none DOWN (session 28, pilot 77): the allocation law's 90%
interval with and without its token-distance term (`JointFit.token_error`), scored on the
measured points the fit did not see, split by checkpoint (seen / unseen, as
`allocation_points.held_out`). The plan's form is refitted (100 bootstrap draws, seed 0) on the
points within the grid's (DOWN+1)-th largest budget and scored on those up to the DOWN-th (DOWN 0:
the plan's own fit budget and validation budget, refitted with this code)."""
import json, math, sys
from dataclasses import replace
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alloc_offline import load
from rlscale.allocation_points import budget_grid, held_out
from rlscale.allocation_validation import fit_law, fitting_points
p, points, plan, _ = load(sys.argv[1], sys.argv[2])
down = int(sys.argv[3])
grid = budget_grid(points)
fit_budget, top = (plan["fit_budget"], plan["budget"]) if down == 0 else (grid[-2 - down], grid[-1 - down])
mine = [q for q in points if q["C_total"] <= top * (1 + 1e-9)]
fit = fit_law(fitting_points(mine, fit_budget), plan["form"], sorted({q["N"] for q in points}), 100)
old = replace(fit, token_error=None)
out = {"dir": sys.argv[1], "down": down, "form": plan["form"], "token_error": fit.token_error}
for name, f in (("old", old), ("new", fit)):
    h = held_out(f, mine, fit_budget, top)["by_checkpoint"]
    out[name] = {c: {k: h[c].get(k) for k in ("n_points", "inside_interval", "mare")} for c in h}
unseen = [q for q in mine if q["C_total"] > fit_budget * (1 + 1e-9)
          and (q["N"], q["pretrain_tokens"]) not in {(r["N"], r["pretrain_tokens"]) for r in mine
                                                     if r["C_total"] <= fit_budget * (1 + 1e-9)}]
ratios = []
for q in unseen:
    a = old.interval(q["N"], q["pretrain_tokens"], q["rl_flops"])
    b = fit.interval(q["N"], q["pretrain_tokens"], q["rl_flops"])
    ratios.append(math.log(b[1] / b[0]) / max(math.log(a[1] / a[0]), 1e-12))
out["width_ratio_unseen_median"] = sorted(ratios)[len(ratios) // 2] if ratios else None
print(json.dumps(out, default=float))
