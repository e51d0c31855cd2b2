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


def gain_in_se(rung: dict) -> float | None:
    """A rung's RL gain (final minus baseline held-out accuracy, summary.json `rungs`) in units
    of the combined standard error of the two; None when a standard error is missing."""
    if rung.get("baseline_se") is None or rung.get("final_se") is None:
        return None
    se, gain = math.hypot(rung["baseline_se"], rung["final_se"]), rung["gain"]
    if se:
        return gain / se
    return math.copysign(math.inf, gain) if gain else 0.0  # no noise: the sign decides


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
    """Spearman's rank correlation (average ranks for ties). On a few ranks it is a ratio of
    small integers; rounded to 12 places so that a rule's threshold meets it exactly (one swap
    in four rungs is 0.8, which scipy returns as 0.7999999999999999)."""
    from scipy.stats import spearmanr

    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return round(float(spearmanr(a, b).statistic), 12)


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


# ---------------------------------------------------------------- points for the law
def points(curves: list[dict], x: str):
    """Every main run's evaluations after step 0 as scaling Points (one curve per run)."""
    from rlscale.scaling.data import from_rows

    rows = [{x: e[x], "test_loss": e["test_loss"], "N": c["N"], "step": e["step"],
             "run": c["run"]} for c in curves for e in _pos(c)]
    return from_rows(rows, x, "test_loss", "N", "step", curve_col="run",
                     source=f"study runs ({x})")


# ---------------------------------------------------------------- arms
def _right_share(e: dict, check: str):
    """An eval row's share of right samples per held-out problem under `check` (from its
    `test_right`, rlscale.grpo.trainer), or None where the run did not keep them."""
    right = (e.get("test_right") or {}).get(check)
    return np.array(right, float) / e["test_samples"] if right else None


def per_problem_se(d) -> float:
    """SE of a mean change from its per-problem values d (>= 2): SD / sqrt(n). Every SE paired
    over problems in the findings is this one (here and rlscale.findings_evals.paired_se)."""
    d = np.asarray(d, float)
    return float(d.std(ddof=1) / math.sqrt(len(d)))


def paired_eval_se(a: dict, b: dict, check: str) -> float | None:
    """SE of the difference of two eval rows' accuracies under `check` on the same held-out
    problems: the SD of the per-problem differences / sqrt(n). None where either row lacks
    per-problem scores (runs written before they were kept) or the two did not score the same
    number of problems."""
    ra, rb = _right_share(a, check), _right_share(b, check)
    if ra is None or rb is None or len(ra) != len(rb) or len(ra) < 2:
        return None
    return per_problem_se(ra - rb)


def paired_gain_se(curves: list[dict]) -> float | None:
    """SE of a rung's RL gain (seed mean of last minus first evaluation) paired over the
    held-out problems: per problem the seed mean of its change, SD / sqrt(n). None unless every
    run kept per-problem scores of its reward (`test_right`) on the same number of problems."""
    per_run = []
    for c in curves:
        a, b = (_right_share(c["evals"][i], c["reward"]) for i in (0, -1))
        if a is None or b is None or len(a) != len(b):
            return None
        per_run.append(b - a)
    if not per_run or len({len(d) for d in per_run}) != 1 or len(per_run[0]) < 2:
        return None
    return per_problem_se(np.mean(per_run, axis=0))


def data_reuse(arm: list[dict], check: str = "custom_flexible") -> dict:
    """Final test loss of each tau vs tau = min (equal total prompts); each difference judged
    on its SE paired over the held-out problems where the runs kept per-problem scores, else on
    the combined SE of the two (kept beside it). `check` is the arm's reward."""
    arm = sorted(arm, key=lambda c: c["tau"])
    claim = ("At equal total prompts, reusing each prompt tau >= 4 times costs no more than "
             f"{SE_Z:g} standard errors of final test loss (paper finding 4).")
    stat = ("final test loss at the largest tau minus at the smallest; interval: +-2 SE (paired "
            "over problems where the runs kept per-problem scores, else combined)")
    if len(arm) < 2 or arm[-1]["tau"] < 4:
        return finding("data_reuse", claim, stat, None, None, None, note="no tau >= 4 arm")
    base = arm[0]["evals"][-1]
    rows = []
    for c in arm:
        e = c["evals"][-1]
        combined = math.hypot(e["test_loss_se"] or 0.0, base["test_loss_se"] or 0.0)
        paired = paired_eval_se(e, base, check) if c is not arm[0] else None
        rows.append({"tau": c["tau"], "final_test_loss": e["test_loss"],
                     "final_se": e["test_loss_se"], "diff": e["test_loss"] - base["test_loss"],
                     "se": combined if paired is None else paired, "se_combined": combined,
                     "se_paired": paired is not None,
                     "unique_prompts": c.get("unique_prompts"), "step": e["step"]})
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
            "interval: +-2 SE (paired over problems where the runs kept per-problem scores, "
            "else combined)")
    if not cf or not strict:
        return finding("reward_format", claim, stat, None, None, None, note="no reward arm")
    base = cf["evals"][0]
    gap = base["test_acc_custom_flexible"] - base["test_acc_strict"]
    a, b = cf["evals"][-1], strict["evals"][-1]
    diff = a["test_acc_custom_flexible"] - b["test_acc_custom_flexible"]
    combined = math.hypot(a["test_loss_se"] or 0.0, b["test_loss_se"] or 0.0)
    paired = paired_eval_se(a, b, "custom_flexible")
    se = combined if paired is None else paired
    verdict = None if gap < min_gap else bool(diff > SE_Z * se)
    return finding("reward_format", claim, stat, diff, (diff - SE_Z * se, diff + SE_Z * se),
                   verdict, base_format_gap=gap, se=se, se_combined=combined,
                   se_paired=paired is not None,
                   final={run: {k: e.get(f"test_acc_{k}") for k in ("strict", "custom_flexible")}
                          for run, e in (("custom_flexible", a), ("strict", b))},
                   rule=f"null when the base model's strict and custom_flexible accuracies differ "
                        f"by < {min_gap:g} (no format to teach); else true when the difference "
                        f"exceeds {SE_Z:g} SE")


# ---------------------------------------------------------------- RL gain vs size
def run_gain(curve: dict) -> float:
    """RL gain of one run: held-out test loss at step 0 minus at its last evaluation."""
    return curve["evals"][0]["test_loss"] - curve["evals"][-1]["test_loss"]


def gain_vs_size(curves: list[dict], n_boot: int = 200, min_share: float = 0.8) -> dict:
    """gain_power G = a N^b on each rung's seed-mean gain, and Spearman rho of gain vs N.

    The verdict is b's interval over seed draws (one seed per rung) where at least min_share of
    the draws have every gain positive (a power law needs them); else, and where some rung's
    mean gain is not positive, the direction of the claim is tested by rho's interval."""
    claim = ("Smaller models gain more from RL: gain = a N^b with b < 0 (the seed study: gains "
             "falling with size, |b| = 0.19).")
    rungs = by_rung(curves)
    gains = {n: [run_gain(c) for c in cs] for n, cs in rungs.items()}
    ns = sorted(gains)
    draws = list(_seed_draws([[(n, g) for g in gains[n]] for n in ns], limit=n_boot))
    rhos = [r for d in draws if math.isfinite(r := spearman(ns, [g for _, g in d]))]
    rho = spearman(ns, [float(np.mean(gains[n])) for n in ns])
    rho_iv = (float(np.quantile(rhos, 0.05)), float(np.quantile(rhos, 0.95))) if rhos else None
    extra = dict(rho=_num(rho), rho_interval=rho_iv,
                 gain_per_rung={f"{n:.6g}": float(np.mean(gains[n])) for n in ns})
    rho_verdict = None if rho_iv is None else (True if rho_iv[1] < 0 else
                                               False if rho_iv[0] > 0 else None)
    rho_rule = "true: rho's interval below 0; false: above 0; null: it contains 0"
    try:
        law, pts = _gain_power([(n, float(np.mean(gains[n]))) for n in ns])
    except Exception as e:  # noqa: BLE001 - e.g. a rung with no mean gain: no power law
        stat = ("Spearman rho of gain vs N (each rung's seed-mean drop in held-out test loss; "
                "no power law: a mean gain is not positive); interval: 5-95% over draws of one "
                "seed per rung")
        return finding("gain_vs_size", claim, stat, rho, rho_iv, rho_verdict,
                       no_power_law=f"{type(e).__name__}: {e}", **extra, rule=rho_rule)
    bs = []
    for draw in draws:
        try:
            bs.append(_gain_power(draw)[0].params_["b"])
        except Exception:  # noqa: BLE001 - a draw with a non-positive gain has no power law
            continue
    share = len(bs) / max(1, len(draws))
    iv = (float(np.quantile(bs, 0.05)), float(np.quantile(bs, 0.95))) if bs else None
    b = law.params_["b"]
    fit = dict(a=law.params_["a"], r2=law.result_.r2, n_rungs=len(pts),
               flags=list(law.result_.flags), draws_with_a_law=share, **extra)
    if share < min_share:  # b's interval would be drawn from the favourable seeds only
        stat = (f"Spearman rho of gain vs N (gain_power b = {b:.3g} on the seed means, but "
                f"only {share:.0%} of seed draws have every gain positive); interval: 5-95% "
                "over draws of one seed per rung")
        return finding("gain_vs_size", claim, stat, rho, rho_iv, rho_verdict, b=b,
                       b_interval=iv, **fit, rule=rho_rule)
    verdict = None if iv is None else True if iv[1] < 0 else False if iv[0] > 0 else None
    stat = ("exponent b of gain_power fitted to each rung's seed-mean gain (drop in held-out "
            "test loss); interval: 5-95% over draws of one seed per rung")
    return finding("gain_vs_size", claim, stat, b, iv, verdict, **fit,
                   rule="true: b's interval below 0; false: above 0; null: it contains 0")


def _gain_power(pairs: list[tuple[float, float]]):
    """(gain_power law fitted to (N, gain) pairs, its points); raises where a gain <= 0."""
    from rlscale.scaling import GainPower, fit_law
    from rlscale.scaling.data import from_rows

    rows = [{"x": 1.0, "gain": g, "N": n, "step": 0, "run": str(i)}
            for i, (n, g) in enumerate(pairs)]
    pts = from_rows(rows, "x", "gain", "N", "step", curve_col="run", source="study gains")
    return fit_law(GainPower(), pts), pts
