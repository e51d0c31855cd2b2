"""alloc_forms_offline.py DIR SEED|none (session 26, pilot 71): an allocation experiment's law
refitted offline with the joint-law candidate set of the code it runs under (e.g. with
experiments/rl_edge_logit.patch applied: `git apply experiments/rl_edge_logit.patch`), on the
same fitting points and budget as DIR's validation plan, and scored as the experiment scored the
committed law: the form choose_form picks (leave-one-curve-out on the fitting points), the
held-out MARE, the predicted level at the realised validation allocation against the draws'
mean (in the draws' SE) and inside the 90% bootstrap interval, and the frontier at the
validation budget. DIR: a finished `rlscale study --preset allocate-words-long` directory; SEED:
its --seed (none for a run without one). One JSON line with the committed law's numbers (from
DIR) beside the refitted ones."""
import json, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from alloc_offline import load
from rlscale.allocation_points import held_out
from rlscale.allocation_validation import fit_law, joint_data, token_cap
from rlscale.scaling.frontier import frontier
from rlscale.scaling.joint import choose_form

out = Path(sys.argv[1])
p, points, plan, fit_pts = load(sys.argv[1], sys.argv[2])
val = json.loads((out / "allocation.json").read_text())["validation"]
fb, vb = plan["fit_budget"], plan["budget"]
form, scores = choose_form(joint_data(fit_pts, "fitting points"))
fit = fit_law(fit_pts, form, sorted({q["N"] for q in points}), p.n_boot)
r = val["realised"]
at = float(fit.predict(r["N"], r["pretrain_tokens"], r["rl_flops"]))
lo, hi = fit.interval(r["N"], r["pretrain_tokens"], r["rl_flops"])  # 90%, as the experiment
keys = ("N", "pretrain_tokens", "rl_share", "predicted_test_loss")
fr = frontier(fit, vb, d_max=token_cap(p, points))
ho = held_out(fit, points, fb, vb)
print(json.dumps({
    "dir": str(out), "measured": val["measured"], "se": val["se"],
    "committed": {"form": plan["form"], "mare": plan["held_out"].get("mare"),
                  "predicted_at_realised": val["predicted_at_realised"], "error": val["error"],
                  "z": val["error"] / val["se"], "inside": val["inside_interval"],
                  "frontier": {k: plan["predicted"][k] for k in keys}},
    "refitted": {"form": form, "loco_scores": scores, "mare": ho.get("mare"),
                 "regret": ho.get("regret"), "predicted_at_realised": at,
                 "error": val["measured"] - at, "z": (val["measured"] - at) / val["se"],
                 "interval": [lo, hi], "inside": lo <= val["measured"] <= hi,
                 "frontier": {k: fr[k] for k in keys}}}, default=float))
