"""The study's findings table: pure functions of the runs' own numbers.

Inputs are plain data read back from the run directories (no models, no files here):

    curve   one GRPO run: {"run", "rung", "N", "seed", "tau", "reward", "evals"}, where evals are
            its metrics.jsonl rows that hold a held-out evaluation (step 0 = the base model)
    evals   per rung: {"rung", "N", "before": {...}, "after": [{...} per seed]}, each {...} an
            eval summary's check dict (accuracy, se, pass_at_k, pass_at_k_se, by_level)

Each finding is {id, claim, statistic, value, interval, reproduced, details}. `reproduced` is
decided by a rule fixed before any run was looked at and stated in the finding: true when the
data resolve the claim's direction (at two standard errors, or an interval that excludes the
other side), false when they resolve the opposite or a threshold the claim names is missed,
null when the study cannot test it (no data, or the difference is within the noise).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

SE_Z = 2.0  # "resolved" = more than two (combined) standard errors


def finding(id_, claim, statistic, value, interval, reproduced, **details) -> dict:
    return {"id": id_, "claim": claim, "statistic": statistic, "value": _num(value),
            "interval": None if interval is None else [_num(v) for v in interval],
            "reproduced": reproduced, "details": details}


def _num(v):
    return None if v is None or (isinstance(v, float) and not math.isfinite(v)) else float(v)


def _pos(curve: dict) -> list[dict]:
    """Evaluations after step 0 with a positive loss (log-log fits and interpolation)."""
    return [e for e in curve["evals"] if e["step"] > 0 and e["test_loss"] > 0]


def by_rung(curves: list[dict]) -> dict[float, list[dict]]:
    out: dict[float, list[dict]] = {}
    for c in sorted(curves, key=lambda c: (c["N"], c["seed"])):
        out.setdefault(float(c["N"]), []).append(c)
    return out


# ---------------------------------------------------------------- efficiency at fixed C or D
def _loss_at(curve: dict, x: str, at: float) -> tuple[float, float]:
    """Test loss and its SE at x = at, interpolated linearly in log x between evaluations."""
    ev = sorted(_pos(curve), key=lambda e: e[x])
    lx = np.log10([e[x] for e in ev])
    loss = np.interp(math.log10(at), lx, [e["test_loss"] for e in ev])
    se = np.interp(math.log10(at), lx, [e.get("test_loss_se") or 0.0 for e in ev])
    return float(loss), float(se)


def fixed_x_comparisons(curves: list[dict], x: str, levels: int = 5) -> list[dict]:
    """Adjacent rungs compared at budgets of x inside both rungs' measured ranges (every
    seed's): seed-mean test loss of each, the difference (larger - smaller) and its SE."""
    rungs = by_rung(curves)
    sizes = sorted(rungs)
    out = []
    for small, large in zip(sizes, sizes[1:]):
        ranges = [(min(e[x] for e in _pos(c)), max(e[x] for e in _pos(c)))
                  for c in rungs[small] + rungs[large] if len(_pos(c)) >= 2]
        if len(ranges) < len(rungs[small]) + len(rungs[large]):
            continue
        lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
        if not lo <= hi:
            continue  # the curves never reach a common budget
        for at in np.unique(np.geomspace(lo, hi, levels)):
            row = {"x": float(at), "N_small": small, "N_large": large}
            for key, n in (("small", small), ("large", large)):
                vals = [_loss_at(c, x, at) for c in rungs[n]]
                row[key] = float(np.mean([v[0] for v in vals]))
                row[f"{key}_se"] = math.sqrt(sum(v[1] ** 2 for v in vals)) / len(vals)
            row["diff"] = row["large"] - row["small"]
            row["se"] = math.hypot(row["small_se"], row["large_se"])
            out.append(row)
    return out


def size_efficiency(curves: list[dict], x: str, id_: str, what: str) -> dict:
    rows = fixed_x_comparisons(curves, x)
    claim = (f"At a fixed {what}, the larger rung reaches the lower held-out test loss "
             "(paper finding 1/2).")
    stat = (f"share of comparisons (adjacent rungs, budgets of {x} both reach) where the larger "
            f"rung's seed-mean test loss is lower; interval: share lower by > {SE_Z:g} SE .. "
            f"share not higher by > {SE_Z:g} SE")
    if not rows:
        return finding(id_, claim, stat, None, None, None, comparisons=[],
                       note=f"no adjacent rungs reach a common {x}")
    n = len(rows)
    share = sum(r["diff"] < 0 for r in rows) / n
    lo = sum(r["diff"] < -SE_Z * r["se"] for r in rows) / n
    hi = 1 - sum(r["diff"] > SE_Z * r["se"] for r in rows) / n
    verdict = True if lo > 0.5 else False if share <= 0.5 else None
    return finding(id_, claim, stat, share, (lo, hi), verdict, comparisons=rows,
                   rule="true: a majority of comparisons resolved in the larger rung's favour; "
                        "false: no majority for the larger rung; null: a majority, not resolved")


# ---------------------------------------------------------------- k(N)
def curve_slope(curve: dict, x: str = "C_paper") -> float | None:
    """k of one run: minus the least-squares slope of log10 L vs log10 x (steps > 0)."""
    from rlscale.scaling.plots import curve_slopes

    if len(_pos(curve)) < 2:
        return None
    return curve_slopes(points([curve], x))[float(curve["N"])]


def spearman(a, b) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _seed_draws(groups: list[list], limit: int = 256, seed: int = 0):
    """One member of each group per draw: every combination when few, else a random sample."""
    total = math.prod(len(g) for g in groups)
    if total <= limit:
        yield from itertools.product(*groups)
        return
    rng = np.random.default_rng(seed)
    for _ in range(limit):
        yield tuple(g[rng.integers(len(g))] for g in groups)


def k_increases_with_n(curves: list[dict], fit_c: dict) -> dict:
    """Spearman rho of per-rung k (seed mean) vs N; the fitted k(N) of loglinear_kn on C."""
    rungs = by_rung(curves)
    slopes = {n: [s for c in cs if (s := curve_slope(c)) is not None] for n, cs in rungs.items()}
    slopes = {n: s for n, s in slopes.items() if s}
    ns = sorted(slopes)
    rho = spearman(ns, [float(np.mean(slopes[n])) for n in ns])
    rhos = [spearman(ns, list(d)) for d in _seed_draws([slopes[n] for n in ns])]
    rhos = [r for r in rhos if math.isfinite(r)]
    interval = (float(np.quantile(rhos, 0.05)), float(np.quantile(rhos, 0.95))) if rhos else None
    sat = saturation(fit_c, max(ns) if ns else None)
    claim = ("Per-rung learning efficiency k increases with N (paper finding 3: larger models "
             "learn faster, with k(N) = K_max / (1 + N0 / N) saturating).")
    stat = ("Spearman rho of N vs the seed-mean log-log slope of each rung's test loss on C; "
            "interval: 5-95% over draws of one seed per rung")
    verdict = None if len(ns) < 3 or not math.isfinite(rho) else rho >= 0.8
    return finding("k_increases_with_n", claim, stat, rho, interval, verdict,
                   k_per_rung={f"{n:.6g}": float(np.mean(s)) for n, s in slopes.items()},
                   k_per_run={c["run"]: curve_slope(c) for c in curves}, fitted=sat,
                   rule="true: rho >= 0.8 (monotone up to one swap); false: below; "
                        "null: fewer than 3 rungs")


def saturation(fit: dict, n_max: float | None) -> dict:
    """Whether the fitted k(N) flattens inside the ladder: N_max >= 4 N0, i.e. the largest
    rung already has 80% of K_max; judged on N0's bootstrap interval when there is one."""
    if not fit or "K_max" not in fit or n_max is None:
        return {"saturates": None, "note": fit.get("error", "no k(N) fit") if fit else "no fit"}
    n0 = fit["N0"]
    lo, hi = (fit.get("intervals") or {}).get("N0", (n0, n0))
    sat = True if hi * 4 <= n_max else False if lo * 4 > n_max else None
    return {"K_max": fit["K_max"], "K_max_interval": (fit.get("intervals") or {}).get("K_max"),
            "N0": n0, "N0_interval": [lo, hi], "k_at_largest": fit["K_max"] / (1 + n0 / n_max),
            "saturates": sat, "identified": fit.get("identified"), "flags": fit.get("flags", [])}


# ---------------------------------------------------------------- the law
def points(curves: list[dict], x: str):
    """Every main run's evaluations after step 0 as scaling Points (one curve per run)."""
    from rlscale.scaling.data import from_rows

    rows = [{x: e[x], "test_loss": e["test_loss"], "N": c["N"], "step": e["step"],
             "run": c["run"]} for c in curves for e in _pos(c)]
    return from_rows(rows, x, "test_loss", "N", "step", curve_col="run",
                     source=f"study runs ({x})")


def fit_kn(curves: list[dict], x: str, n_boot: int = 100, seed: int = 0):
    """loglinear_kn on x: (summary dict, law, points, bootstrap); an error is a summary."""
    from rlscale.scaling import LogLinearKN, bootstrap, fit_law

    try:
        pts = points(curves, x)
        law = fit_law(LogLinearKN(), pts)
        boot = bootstrap(law, pts, n=n_boot, unit="curves", seed=seed)
    except Exception as e:  # noqa: BLE001 - the report states why a fit is missing
        return {"law": "loglinear_kn", "x": x, "error": f"{type(e).__name__}: {e}"}, None, None, None
    res = law.result_
    iv = boot.intervals(0.9)
    flags = list(res.flags) + [f"{p} 90% interval spans more than a decade" for p in ("K_max", "N0")
                               if _decades(iv[p]) > 1 and f"{p} interval" not in " ".join(res.flags)]
    out = {"law": "loglinear_kn", "x": x, "K_max": law.params_["K_max"], "N0": law.params_["N0"],
           "params": dict(law.params_), "r2": res.r2, "n_points": len(pts),
           "converged": bool(res.converged), "at_bounds": list(res.at_bound),
           "intervals": {p: list(iv[p]) for p in ("K_max", "N0")}, "interval_level": 0.9,
           "bootstrap": {"n": n_boot, "unit": "curves"}, "flags": flags,
           "identified": not flags,
           "k_of_N": {f"{n:.6g}": float(law.k_of([n])[0]) for n in np.unique(pts.size)}}
    return out, law, pts, boot


def _decades(iv) -> float:
    lo, hi = iv
    if not (lo > 0 and hi > 0 and math.isfinite(lo) and math.isfinite(hi)):
        return math.inf
    return math.log10(hi / lo)


def intra_mare(curves: list[dict], x: str) -> dict:
    """Fit the first half of every curve's evaluations (after step 0), predict the rest."""
    from rlscale.scaling import LogLinearKN
    from rlscale.scaling.protocols import intra

    try:
        pts = points(curves, x)
        first = max(2, min(len(_pos(c)) for c in curves) // 2)
        res = intra(LogLinearKN(), pts, first)
        return {"first_steps": first, "mare": res["prediction"]["mare"],
                "r2": res["prediction"]["r2"], "n_predicted": res["prediction"]["n"]}
    except Exception as e:  # noqa: BLE001
        return {"error": f"{type(e).__name__}: {e}"}


def law_fit(curves: list[dict], fits: dict[str, dict], r2_min: float = 0.9,
            mare_max: float = 0.1) -> dict:
    """loglinear_kn on C and on D: R² of the fit, intra-curve prediction error (MARE)."""
    intra_ = {x: intra_mare(curves, x) for x in ("C_paper", "D")}
    r2s = {x: fits.get(x, {}).get("r2") for x in ("C_paper", "D")}
    mares = {x: intra_[x].get("mare") for x in ("C_paper", "D")}
    claim = ("Test loss follows the power law log L = -k(N) log X + E(N) in compute and in data, "
             "and predicts a curve's later steps from its first half (paper finding 2).")
    stat = ("intra-curve MARE on C (fit the first half of each run's evaluations, predict the "
            "rest); interval: [MARE on C, MARE on D]; details: R² of the full fits")
    if any(v is None for v in list(r2s.values()) + list(mares.values())):
        return finding("law_fit", claim, stat, mares["C_paper"], None, None, r2=r2s, intra=intra_,
                       note="a fit failed: see fits")
    ok = all(r >= r2_min for r in r2s.values()) and all(m <= mare_max for m in mares.values())
    return finding("law_fit", claim, stat, mares["C_paper"], sorted(mares.values()), ok,
                   r2=r2s, intra=intra_,
                   rule=f"true: R² >= {r2_min:g} on C and D and intra MARE <= {mare_max:g} on both")


# ---------------------------------------------------------------- arms
def data_reuse(arm: list[dict]) -> dict:
    """Final test loss of each tau vs tau = min (equal total prompts), in combined SE."""
    arm = sorted(arm, key=lambda c: c["tau"])
    claim = ("At equal total prompts, reusing each prompt tau >= 4 times costs no more than "
             f"{SE_Z:g} standard errors of final test loss (paper finding 4).")
    stat = ("final test loss at the largest tau minus at the smallest; interval: +-2 combined SE")
    if len(arm) < 2 or arm[-1]["tau"] < 4:
        return finding("data_reuse", claim, stat, None, None, None, note="no tau >= 4 arm")
    base = arm[0]["evals"][-1]
    rows = []
    for c in arm:
        e = c["evals"][-1]
        se = math.hypot(e["test_loss_se"] or 0.0, base["test_loss_se"] or 0.0)
        rows.append({"tau": c["tau"], "final_test_loss": e["test_loss"],
                     "final_se": e["test_loss_se"], "diff": e["test_loss"] - base["test_loss"],
                     "se": se, "unique_prompts": c.get("unique_prompts"), "step": e["step"]})
    far = rows[-1]
    ok = all(r["diff"] <= SE_Z * r["se"] for r in rows if r["tau"] >= 4)
    return finding("data_reuse", claim, stat, far["diff"],
                   (far["diff"] - SE_Z * far["se"], far["diff"] + SE_Z * far["se"]), ok,
                   arms=rows, rule=f"true: every tau >= 4 within {SE_Z:g} SE of the smallest tau")


def reward_format(cf: dict | None, strict: dict | None, min_gap: float = 0.02) -> dict:
    """Strict-reward vs custom_flexible-reward training, both judged by custom_flexible."""
    claim = ("Training on the strict '#### N' reward wastes RL on formatting: at equal steps, "
             "custom_flexible training ends with higher (custom_flexible) accuracy (seed study).")
    stat = ("final held-out custom_flexible accuracy: custom_flexible run minus strict run; "
            "interval: +-2 combined SE")
    if not cf or not strict:
        return finding("reward_format", claim, stat, None, None, None, note="no reward arm")
    base = cf["evals"][0]
    gap = base["test_acc_custom_flexible"] - base["test_acc_strict"]
    a, b = cf["evals"][-1], strict["evals"][-1]
    diff = a["test_acc_custom_flexible"] - b["test_acc_custom_flexible"]
    se = math.hypot(a["test_loss_se"] or 0.0, b["test_loss_se"] or 0.0)
    verdict = None if gap < min_gap else diff > SE_Z * se
    return finding("reward_format", claim, stat, diff, (diff - SE_Z * se, diff + SE_Z * se),
                   verdict, base_format_gap=gap,
                   final={"custom_flexible": {k: a.get(f"test_acc_{k}") for k in ("strict", "custom_flexible")},
                          "strict": {k: b.get(f"test_acc_{k}") for k in ("strict", "custom_flexible")}},
                   rule=f"null when the base model's strict and custom_flexible accuracies differ "
                        f"by < {min_gap:g} (no format to teach); else true when the difference "
                        f"exceeds {SE_Z:g} SE")


# ---------------------------------------------------------------- gain, pass@k, greedy
def run_gain(curve: dict) -> float:
    """RL gain of one run: held-out test loss at step 0 minus at its last evaluation."""
    return curve["evals"][0]["test_loss"] - curve["evals"][-1]["test_loss"]


def gain_vs_size(curves: list[dict], n_boot: int = 200) -> dict:
    """gain_power G = a N^b on every main run's gain; b's interval over seed draws."""
    from rlscale.scaling import GainPower, fit_law
    from rlscale.scaling.data import from_rows

    claim = "Smaller models gain more from RL: gain = a N^b with b < 0 (the seed study's b = -0.19)."
    stat = "exponent b of gain_power fitted to every main run's gain; interval: 5-95% over draws of one seed per rung"
    rungs = by_rung(curves)
    gains = {n: [run_gain(c) for c in cs] for n, cs in rungs.items()}

    def fit(pairs):
        rows = [{"x": 1.0, "gain": g, "N": n, "step": 0, "run": str(i)} for i, (n, g) in enumerate(pairs)]
        pts = from_rows(rows, "x", "gain", "N", "step", curve_col="run", source="study gains")
        return fit_law(GainPower(), pts), pts

    try:
        law, pts = fit([(n, g) for n, gs in gains.items() for g in gs])
    except Exception as e:  # noqa: BLE001 - e.g. a rung with no gain: no power law
        return finding("gain_vs_size", claim, stat, None, None, None, error=f"{type(e).__name__}: {e}",
                       gain_per_rung={f"{n:.6g}": float(np.mean(g)) for n, g in gains.items()})
    bs = []
    for draw in _seed_draws([[(n, g) for g in gains[n]] for n in sorted(gains)], limit=n_boot):
        try:
            bs.append(fit(draw)[0].params_["b"])
        except Exception:  # noqa: BLE001 - a draw with a non-positive gain has no power law
            continue
    iv = (float(np.quantile(bs, 0.05)), float(np.quantile(bs, 0.95))) if bs else None
    b = law.params_["b"]
    verdict = None if iv is None else True if iv[1] < 0 else False if iv[0] > 0 else None
    return finding("gain_vs_size", claim, stat, b, iv, verdict, a=law.params_["a"],
                   r2=law.result_.r2, n_runs=len(pts), flags=list(law.result_.flags),
                   gain_per_rung={f"{n:.6g}": float(np.mean(g)) for n, g in gains.items()},
                   rule="true: b's interval below 0; false: above 0; null: it contains 0")


def _delta(before: dict, afters: list[dict], key: str, k: str) -> tuple[float, float]:
    """Seed-mean after minus before of a pass@k (or accuracy) value, with the combined SE."""
    b, bse = before[key][k], before[f"{key}_se"][k]
    a = float(np.mean([x[key][k] for x in afters]))
    ase = math.sqrt(sum(x[f"{key}_se"][k] ** 2 for x in afters)) / len(afters)
    return a - b, math.hypot(bse, ase)


def rl_sharpens_or_expands(evals: list[dict]) -> dict:
    """pass@1 and pass@k_max before vs after RL, per rung."""
    claim = ("RL sharpens rather than expands: it raises pass@1 but not pass@k at the largest k "
             "(the base model's samples already hold what RL finds).")
    stat = "seed-mean change in pass@k_max (after - before), mean over rungs; interval: +-2 SE (mean over rungs)"
    rows = []
    for r in evals:
        if not r.get("before") or not r.get("after"):
            continue
        kmax = str(max(int(k) for k in r["before"]["pass_at_k"]))
        d1, s1 = _delta(r["before"], r["after"], "pass_at_k", "1")
        dk, sk = _delta(r["before"], r["after"], "pass_at_k", kmax)
        rows.append({"N": r["N"], "rung": r["rung"], "k_max": int(kmax), "d_pass1": d1, "se1": s1,
                     "d_passk": dk, "sek": sk, "crossover": dk < -SE_Z * sk,
                     "sharpens": d1 > SE_Z * s1 and dk <= SE_Z * sk, "expands": dk > SE_Z * sk})
    if not rows:
        return finding("rl_sharpens_or_expands", claim, stat, None, None, None, note="no pass@k evals")
    dk = float(np.mean([r["d_passk"] for r in rows]))
    se = math.sqrt(sum(r["sek"] ** 2 for r in rows)) / len(rows)
    n = len(rows)
    verdict = (True if sum(r["sharpens"] for r in rows) > n / 2 else
               False if sum(r["expands"] for r in rows) > n / 2 else None)
    return finding("rl_sharpens_or_expands", claim, stat, dk, (dk - SE_Z * se, dk + SE_Z * se),
                   verdict, rungs=rows,
                   rule="true: most rungs raise pass@1 by > 2 SE while pass@k_max moves <= 2 SE; "
                        "false: most rungs raise pass@k_max by > 2 SE (RL expands); else null")


def greedy_gain(rungs: list[dict]) -> dict:
    """Greedy 0-shot accuracy before vs after RL (seed mean) on the same held-out problems."""
    claim = "RL raises greedy (temperature 0) accuracy, not only sampled accuracy, on most rungs."
    stat = "rungs whose seed-mean greedy 0-shot accuracy rises by > 2 SE, as a share of rungs; interval: share rising at all .. "
    rows = [r for r in rungs if r.get("final_greedy") is not None and r.get("baseline_greedy") is not None]
    if not rows:
        return finding("greedy_gain", claim, stat, None, None, None, note="no greedy evals after RL")
    up = [r["final_greedy"] - r["baseline_greedy"] > SE_Z * math.hypot(
        r["baseline_greedy_se"], r["final_greedy_se"]) for r in rows]
    share, any_up = sum(up) / len(rows), sum(r["final_greedy"] > r["baseline_greedy"] for r in rows) / len(rows)
    return finding("greedy_gain", claim, stat.replace(" .. ", ""), share, (share, any_up), share > 0.5,
                   per_rung={r["rung"]: [r["baseline_greedy"], r["final_greedy"]] for r in rows},
                   rule="true: more than half the rungs rise by > 2 SE")


def transfer(rungs: list[dict], task: str) -> dict:
    """Greedy 0-shot accuracy on a task family RL never saw, before vs after."""
    claim = f"RL on the study task transfers to a task family it never saw ({task or 'none set'})."
    stat = "mean over rungs of the seed-mean change in greedy transfer accuracy; interval: +-2 SE"
    rows = [r for r in rungs if r.get("transfer_before") and r.get("transfer_after")]
    if not task or not rows:
        return finding("transfer", claim, stat, None, None, None,
                       note="no transfer task in this preset" if not task else "no transfer evals")
    ds, ses = [], []
    for r in rows:
        b, a = r["transfer_before"], r["transfer_after"]
        ds.append(float(np.mean([x["accuracy"] for x in a])) - b["accuracy"])
        ses.append(math.hypot(b["se"], math.sqrt(sum(x["se"] ** 2 for x in a)) / len(a)))
    d, se = float(np.mean(ds)), math.sqrt(sum(s * s for s in ses)) / len(ses)
    return finding("transfer", claim, stat, d, (d - SE_Z * se, d + SE_Z * se),
                   True if d > SE_Z * se else None if d >= -SE_Z * se else False,
                   per_rung={r["rung"]: dd for r, dd in zip(rows, ds)},
                   rule="true: the mean change exceeds 2 SE; false: a drop beyond 2 SE; else null")


def few_shot_stability(rungs: list[dict], ratio: float = 0.8) -> dict:
    """5-shot greedy accuracy against 0-shot, per rung (the seed study saw collapse at 1-2)."""
    claim = f"Few-shot prompts do not collapse the base models: 5-shot greedy accuracy >= {ratio:g} x 0-shot on every rung."
    stat = "smallest ratio of 5-shot to 0-shot greedy accuracy over rungs; interval: [min, max] ratio"
    ratios = {}
    for r in rungs:
        ks = {int(k): v for k, v in r.get("kshot_greedy", {}).items()}
        if 0 in ks and 5 in ks and ks[0] > 0:
            ratios[r["rung"]] = ks[5] / ks[0]
    if not ratios:
        return finding("few_shot_stability", claim, stat, None, None, None, note="no k-shot evals")
    vals = list(ratios.values())
    return finding("few_shot_stability", claim, stat, min(vals), (min(vals), max(vals)),
                   min(vals) >= ratio, per_rung=ratios, rule=f"true: every ratio >= {ratio:g}")
