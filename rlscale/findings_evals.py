"""Findings from the evaluation jobs (rlscale.study_evals): pass@k, greedy accuracy, transfer
and few-shot prompts, before vs after RL. Same shape and rules as rlscale.findings."""

from __future__ import annotations

import math

import numpy as np

from rlscale.findings import SE_Z, finding, per_problem_se


def _delta(before: dict, afters: list[dict], key: str, k: str) -> tuple[float, float]:
    """Seed-mean after minus before of a pass@k (or accuracy) value, with the combined SE."""
    b, bse = before[key][k], before[f"{key}_se"][k]
    a = float(np.mean([x[key][k] for x in afters]))
    ase = math.sqrt(sum(x[f"{key}_se"][k] ** 2 for x in afters)) / len(afters)
    return a - b, math.hypot(bse, ase)


def paired_se(before: dict, afters: list[dict]) -> float | None:
    """SE of the seed-mean change (mean over `afters` minus `before`) of a per-problem value,
    {problem index: value} each, paired over the problems all of them scored: the SD of the
    per-problem changes / sqrt(n). Both sides score the same problems, so this is the change's
    SE; the combined SE of two independent means (`_delta`) overstates it where a problem's
    difficulty is shared. None below two common problems."""
    common = sorted(set(before).intersection(*afters)) if afters else []
    if len(common) < 2:
        return None
    return per_problem_se([float(np.mean([a[i] for a in afters])) - before[i] for i in common])


def _se(paired: float | None, combined: float) -> float:
    """The change's SE: paired over problems where the per-problem values gave one."""
    return combined if paired is None else paired


def _change(r: dict, k: str) -> tuple[float, float, float]:
    """(seed-mean change of pass@k, its SE: paired over problems where the rung has it, the
    combined SE otherwise; the combined SE, reported beside it)."""
    d, combined = _delta(r["before"], r["after"], "pass_at_k", k)
    return d, _se((r.get("paired_se") or {}).get(k), combined), combined


def rl_sharpens_or_expands(evals: list[dict]) -> dict:
    """pass@1 and pass@k_max before vs after RL, per rung; changes judged on their SE paired
    over problems (the same problems before and after) where the per-problem values exist."""
    claim = ("RL sharpens rather than expands: it raises pass@1 but not pass@k at the largest k "
             "(the base model's samples already hold what RL finds).")
    stat = ("seed-mean change in pass@k_max (after - before), mean over rungs; interval: +-2 SE "
            "of that mean (SEs paired over the problems)")
    rows = []
    for r in evals:
        if not r.get("before") or not r.get("after"):
            continue
        kmax = str(max(int(k) for k in r["before"]["pass_at_k"]))
        d1, s1, c1 = _change(r, "1")
        dk, sk, ck = _change(r, kmax)
        rows.append({"N": r["N"], "rung": r["rung"], "k_max": int(kmax), "d_pass1": d1, "se1": s1,
                     "d_passk": dk, "sek": sk, "se_paired": (r.get("paired_se") or {}).get(kmax)
                     is not None, "se1_combined": c1, "sek_combined": ck,
                     "crossover": dk < -SE_Z * sk,
                     "sharpens": d1 > SE_Z * s1 and dk <= SE_Z * sk, "expands": dk > SE_Z * sk})
    if not rows:
        return finding("rl_sharpens_or_expands", claim, stat, None, None, None,
                       note="no pass@k evals")
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
    """Greedy 0-shot accuracy before vs after RL (seed mean) on the same held-out problems; each
    rung's change judged on its SE paired over those problems where the rows carry it
    (`final_greedy_se_paired`), else on the combined SE, which is kept beside it."""
    claim = "RL raises greedy (temperature 0) accuracy, not only sampled accuracy, on most rungs."
    stat = ("share of rungs whose seed-mean greedy 0-shot accuracy rises by > 2 SE (SE paired "
            "over problems); interval: [that share, share rising at all]")
    rows = [r for r in rungs
            if r.get("final_greedy") is not None and r.get("baseline_greedy") is not None]
    if not rows:
        return finding("greedy_gain", claim, stat, None, None, None,
                       note="no greedy evals after RL")
    per_rung = {}
    for r in rows:
        combined = math.hypot(r["baseline_greedy_se"], r["final_greedy_se"])
        se = _se(r.get("final_greedy_se_paired"), combined)
        d = r["final_greedy"] - r["baseline_greedy"]
        per_rung[r["rung"]] = {"before": r["baseline_greedy"], "after": r["final_greedy"],
                               "change": d, "se": se, "se_combined": combined,
                               "se_paired": r.get("final_greedy_se_paired") is not None,
                               "up": d > SE_Z * se, "down": d < -SE_Z * se}
    share = sum(x["up"] for x in per_rung.values()) / len(rows)
    any_up = sum(x["change"] > 0 for x in per_rung.values()) / len(rows)
    return finding("greedy_gain", claim, stat, share, (share, any_up), share > 0.5,
                   per_rung=per_rung, rule="true: more than half the rungs rise by > 2 SE")


def rl_below_edge(rungs: list[dict], sharp: dict, greedy: dict) -> dict:
    """Below the edge of competence RL trades greedy accuracy for sampled accuracy (session 29's
    reading, its rule written before the seeds that judge it: docs/study.md, session 30). Per
    rung it joins greedy_gain's greedy change (d0, SE s0) with rl_sharpens_or_expands' pass@1
    change at the rollout temperature (d1, SE s1), both findings as already computed."""
    claim = ("Below the edge of competence RL trades greedy accuracy for sampled accuracy: on the "
             "smallest rungs greedy (T=0) accuracy falls while pass@1 at the rollout temperature "
             "does not; the larger rungs gain at both.")
    stat = ("the smallest rung's greedy change minus its pass@1 change at the rollout "
            "temperature (seed means); interval: +-2 SE (the two changes' SEs combined)")
    t1 = {r["rung"]: r for r in sharp["details"].get("rungs", [])}
    t0 = greedy["details"].get("per_rung") or {}
    rows = []
    for r in sorted(rungs, key=lambda r: r["N"]):
        a, b = t0.get(r["rung"]), t1.get(r["rung"])
        if not isinstance(a, dict) or b is None:
            continue
        d0, s0, d1, s1 = a["change"], a["se"], b["d_pass1"], b["se1"]
        rows.append({"rung": r["rung"], "N": r["N"], "d_greedy": d0, "se_greedy": s0,
                     "d_pass1": d1, "se_pass1": s1,
                     "worked_advantage": (r.get("answers_before") or {}).get("worked_advantage"),
                     "trades": d0 < -SE_Z * s0 and d1 >= -SE_Z * s1,
                     "lifts": d0 > SE_Z * s0 and d1 > SE_Z * s1})
    if not rows:
        return finding("rl_below_edge", claim, stat, None, None, None,
                       note="no rung with both greedy and pass@k evals after RL")
    trade = [r["N"] for r in rows if r["trades"]]
    lift = [r["N"] for r in rows if r["lifts"]]
    verdict = (False if trade and lift and max(trade) > min(lift) else
               True if trade and lift else None)
    r0 = rows[0]
    v, se = r0["d_greedy"] - r0["d_pass1"], math.hypot(r0["se_greedy"], r0["se_pass1"])
    return finding("rl_below_edge", claim, stat, v, (v - SE_Z * se, v + SE_Z * se), verdict,
                   rungs=rows, rule="trades: greedy falls by > 2 SE while pass@1 at the rollout "
                   "temperature does not fall by > 2 SE; lifts: both rise by > 2 SE. true: some "
                   "rung trades, some lifts, and every trading rung is smaller than every lifting "
                   "one; false: a trading rung is larger than a lifting one; else null")


def transfer_families(task: str, more) -> list[tuple[str, str]]:
    """(finding id, task spec) of every family RL never sees: the preset's transfer_task as
    `transfer`, then its transfer_more."""
    return ([("transfer", task)] if task else []) + [(fid, spec) for fid, spec in more or ()]


def transfer_pair(r: dict, fid: str = "transfer") -> tuple[dict | None, list]:
    """(before, after seeds) of one rung on one transfer family: `transfer` is the preset's
    transfer_task, any other id one of its transfer_more."""
    if fid == "transfer":
        return r.get("transfer_before"), r.get("transfer_after") or []
    m = (r.get("transfer_more") or {}).get(fid) or {}
    return m.get("before"), m.get("after") or []


def transfer_paired_se(r: dict, fid: str = "transfer") -> float | None:
    """A rung's SE of its seed-mean change on one transfer family, paired over the family's
    problems (None where the rows do not carry it)."""
    if fid == "transfer":
        return r.get("transfer_se_paired")
    return ((r.get("transfer_more") or {}).get(fid) or {}).get("se_paired")


def transfer(rungs: list[dict], task: str, fid: str = "transfer") -> dict:
    """Greedy 0-shot accuracy on a task family RL never saw, before vs after; each rung's change
    with its SE paired over the family's problems where the rows carry it, else combined."""
    claim = f"RL on the study task transfers to a task family it never saw ({task or 'none set'})."
    stat = ("mean over rungs of the seed-mean change in greedy transfer accuracy; interval: +-2 "
            "SE (per rung paired over problems, rungs taken as independent)")
    rows = [r for r in rungs if all(transfer_pair(r, fid))]
    if not task or not rows:
        return finding(fid, claim, stat, None, None, None,
                       note="no transfer task in this preset" if not task else "no transfer evals")
    ds, ses, combined = [], [], []
    paired = [transfer_paired_se(r, fid) for r in rows]
    for r, p in zip(rows, paired):
        b, a = transfer_pair(r, fid)
        ds.append(float(np.mean([x["accuracy"] for x in a])) - b["accuracy"])
        combined.append(math.hypot(b["se"], math.sqrt(sum(x["se"] ** 2 for x in a)) / len(a)))
        ses.append(_se(p, combined[-1]))
    d, se = float(np.mean(ds)), math.sqrt(sum(s * s for s in ses)) / len(ses)
    se_c = math.sqrt(sum(s * s for s in combined)) / len(combined)
    return finding(fid, claim, stat, d, (d - SE_Z * se, d + SE_Z * se),
                   True if d > SE_Z * se else None if d >= -SE_Z * se else False,
                   per_rung={r["rung"]: dd for r, dd in zip(rows, ds)},
                   se=se, se_combined=se_c,
                   se_paired=all(p is not None for p in paired),
                   rule="true: the mean change exceeds 2 SE; false: a drop beyond 2 SE; else null")


def few_shot_stability(rungs: list[dict], ratio: float = 0.8) -> dict:
    """5-shot greedy accuracy against 0-shot, per rung (the seed study saw collapse at 1-2)."""
    claim = (f"Few-shot prompts do not collapse the base models: 5-shot greedy accuracy >= "
             f"{ratio:g} x 0-shot on every rung.")
    stat = "smallest ratio of 5-shot to 0-shot greedy accuracy over rungs; interval: [min, max]"
    ratios = {}
    for r in rungs:
        ks = {int(k): v for k, v in r.get("kshot_greedy", {}).items()}
        if 0 in ks and 5 in ks and ks[0] > 0:
            ratios[r["rung"]] = ks[5] / ks[0]
    if not ratios:
        return finding("few_shot_stability", claim, stat, None, None, None,
                       note="no rung with 0-shot and 5-shot evals and 0-shot accuracy > 0")
    vals = list(ratios.values())
    return finding("few_shot_stability", claim, stat, min(vals), (min(vals), max(vals)),
                   min(vals) >= ratio, per_rung=ratios, rule=f"true: every ratio >= {ratio:g}")


def baseline_order(rungs: list[dict], scores: list[dict[int, float]], cap: float = 0.85) -> dict:
    """Are the pre-trained baselines ordered by size? Greedy 0-shot accuracy of adjacent rungs
    (ascending N) on the same held-out problems: each step with its paired SE (per-problem
    differences) and the combined SE of the two accuracies; the largest rung must leave RL room
    (at most `cap`)."""
    steps = []
    for (a, sa), (b, sb) in zip(zip(rungs, scores), zip(rungs[1:], scores[1:])):
        common = sorted(sa.keys() & sb.keys())
        d = np.array([sb[i] - sa[i] for i in common], dtype=float)
        paired = per_problem_se(d) if len(d) > 1 else None
        step = b["baseline_greedy"] - a["baseline_greedy"]
        combined = math.hypot(a["baseline_greedy_se"], b["baseline_greedy_se"])
        steps.append({"from": a["rung"], "to": b["rung"], "step": step, "se_paired": paired,
                      "se_combined": combined, "problems": len(common),
                      "above_paired_se": paired is not None and step > paired,
                      "above_combined_se": step > combined})
    top = rungs[-1]["baseline_greedy"] if rungs else None
    return {"increasing": all(s["step"] > 0 for s in steps),
            "each_step_above_paired_se": all(s["above_paired_se"] for s in steps),
            "each_step_above_combined_se": all(s["above_combined_se"] for s in steps),
            "largest": top, "largest_at_most": cap, "room": top is not None and top <= cap,
            "steps": steps}


# ---------------------------------------------------------------- the edge of competence
EDGE_MIN = 10  # problems a side needs before the edge's comparison is read


def edge_rows(base_greedy: dict[int, float], base_right: dict[int, int],
              after_greedy: list[dict[int, float]], after_right: list[dict[int, int]],
              styles: dict[int, str], samples: int) -> list[dict]:
    """One row per problem that every side scored (the pass@k problems): the base model's greedy
    score and its right samples of `samples`, the RL policies' greedy score and the share of them
    whose samples solve it at least once (seed means). Inputs are {problem index: value}."""
    if not after_greedy or not after_right:
        return []
    common = set(base_right).intersection(base_greedy, *after_greedy, *after_right)
    return [{"index": i, "style": styles.get(i, ""), "base_greedy": base_greedy[i],
             "base_right": int(base_right[i]), "base_samples": samples,
             "after_greedy": float(np.mean([a[i] for a in after_greedy])),
             "after_solved": float(np.mean([a[i] > 0 for a in after_right]))}
            for i in sorted(common)]


def edge_cell(rows: list[dict]) -> dict:
    """Of the base-wrong rows: half-known (some base sample right) and unknown (none), the RL
    policies' greedy accuracy on each, where the greedy fixes lie, and problems the policies'
    samples newly solve (expanded) or no longer solve (lost), as seed means."""
    wrong = [r for r in rows if r["base_greedy"] == 0]
    half = [r["after_greedy"] for r in wrong if r["base_right"] > 0]
    never = [r["after_greedy"] for r in wrong if r["base_right"] == 0]

    def mean_se(name, x):
        return {f"after_{name}": float(np.mean(x)) if x else None,
                f"after_{name}_se": per_problem_se(x) if len(x) > 1 else None}

    fixes = sum(half) + sum(never)
    return {"problems": len(rows), "wrong": len(wrong), "half_known": len(half),
            "unknown": len(never), **mean_se("half", half), **mean_se("unknown", never),
            "fixes": fixes,
            "fixes_half_share": sum(half) / fixes if fixes else None,
            "expanded": sum(r["after_solved"] for r in rows if r["base_right"] == 0),
            "lost": sum(1 - r["after_solved"] for r in rows if r["base_right"] > 0)}


def rl_lifts_edge(rungs: list[dict]) -> dict:
    """Does RL lift the edge of competence? Pooled over rungs, the after-RL greedy accuracy on
    base-wrong problems the base model half-knows against those it never solves (rungs'
    `edge_problems`: the pass@k problems, rlscale.report.edge_problems)."""
    claim = ("RL lifts the edge of competence: of the problems a base model answers wrong "
             "greedily, RL's greedy policy gets right those the base model's samples solve at "
             "least once (half-known) more often than those they never solve.")
    stat = ("after-RL greedy accuracy on half-known minus on unknown base-wrong problems, pooled "
            "over rungs (seed means per problem, the pass@k problems); interval: +-2 SE")
    rows = [p for r in rungs for p in r.get("edge_problems") or []]
    cell = edge_cell(rows)
    per_rung = {r["rung"]: edge_cell(r["edge_problems"]) for r in rungs if r.get("edge_problems")}
    styles = {s: edge_cell([p for p in rows if p["style"] == s])
              for s in sorted({p["style"] for p in rows})}
    details = dict(pooled=cell, per_rung=per_rung, per_style=styles,
                   rule=f"true: the difference exceeds 2 SE; false: it does not; null below "
                        f"{EDGE_MIN} problems on a side")
    if min(cell["half_known"], cell["unknown"]) < EDGE_MIN:
        return finding("rl_lifts_edge", claim, stat, None, None, None, **details,
                       note=f"fewer than {EDGE_MIN} half-known or unknown base-wrong problems")
    v = cell["after_half"] - cell["after_unknown"]
    se = math.hypot(cell["after_half_se"] or 0.0, cell["after_unknown_se"] or 0.0)
    return finding("rl_lifts_edge", claim, stat, v, (v - SE_Z * se, v + SE_Z * se),
                   v > SE_Z * se, **details)


def edge_bins(rows: list[dict]) -> list[dict]:
    """The RL policies' greedy accuracy on base-wrong problems by the base model's right samples,
    in doubling bins 0, 1, 2-3, 4-7, ... (the last one up to all samples right): {lo, hi,
    problems, after} per bin that holds a problem (`after`: the mean of per-problem seed means)."""
    wrong = [r for r in rows if r["base_greedy"] == 0]
    n = max((r["base_samples"] for r in wrong), default=0)
    edges, lo = [(0, 0)], 1
    while lo <= n:
        hi = n if 2 * lo >= n else 2 * lo - 1
        edges.append((lo, hi))
        lo = hi + 1
    out = []
    for lo, hi in edges:
        x = [r["after_greedy"] for r in wrong if lo <= r["base_right"] <= hi]
        if x:
            out.append({"lo": lo, "hi": hi, "problems": len(x), "after": float(np.mean(x))})
    return out
