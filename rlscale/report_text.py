"""report.md from summary.json's content: every statement in it is a number it shows.

The GRPO settings are read from the runs' config.json (summary["run_settings"]), never assumed.
"""

from __future__ import annotations

import math

from rlscale.arith import STYLE_NAMES as _STYLE
from rlscale.eval_metrics import level_key
from rlscale.findings_evals import transfer_families, transfer_pair


def _f(x, spec=".3g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return format(x, spec)


def _iv(iv, spec=".3g") -> str:
    return "n/a" if not iv else f"[{_f(iv[0], spec)}, {_f(iv[1], spec)}]"


def _verdict(v) -> str:
    return {True: "yes", False: "**no**", None: "not testable here"}[v]


def _speed(s: dict) -> str:
    """The machine's measured speed beside the wall time (summary.json `machine`)."""
    m, bf16 = s.get("machine") or {}, sum(bool(r.get("pretrain_matmul_bf16")) for r in s["rungs"])
    text = "" if not bf16 else (f"; pre-training's matmuls took bf16 inputs (fp32 sums) on {bf16} "
                                f"of {len(s['rungs'])} rungs")
    if not m.get("matmul_peak_gflops"):
        return text
    lo, hi = m["matmul_peak_gflops_range"]
    return (f" on a machine whose fp32 matmul peak the GRPO runs recorded at "
            f"{m['matmul_peak_gflops']:.0f} GFLOP/s (median of {m['runs']} runs, {lo:.0f}-"
            f"{hi:.0f}; a process measures once){text}")


def _of_style(st: dict) -> str:
    style, other = st.get("direct_style", ""), st.get("direct_frac_other", 0.0)
    if style and other:  # both styles, each its own share
        return f" of the {_STYLE[style]} and {other:.0%} of the {_STYLE[_OTHER[style]]}"
    return {"expr": " (to expressions only)", "words": " (to stories only)"}.get(style, "")


_OTHER = {"expr": "words", "words": "expr"}


def markdown(s: dict) -> str:
    L = header(s) + findings_table(s) + rungs_table(s) + evals_tables(s) + fits_list(s) \
        + arms_table(s)
    L += ["## Figures", ""]
    for name, f in s["figures"].items():
        L += [f"![{name}]({f})", ""]
    L += ["## Times", "", "| job | seconds |", "|---|---|"]
    L += [f"| {k} | {v:.0f} |" for k, v in sorted(s["job_s"].items())]
    return "\n".join(L) + "\n"


def header(s: dict) -> list[str]:
    st, rs = s["settings"], s["run_settings"]
    one = "one update" if rs["updates_per_step"] == 1 else f"{rs['updates_per_step']} updates"
    kl = "no KL" if rs["kl_coef"] == 0 else f"KL coefficient {rs['kl_coef']}"
    seeds = sorted({x for r in s["rungs"] for x in r["seeds"]})
    return [
        f"# RL post-training scaling study: micro ladder, preset `{s['preset']}`", "",
        f"Task `{s['task']}`. Held-out test loss = 1 - pass@1 on {rs['heldout']} problems x "
        f"{rs['eval_samples']} samples at temperature {rs['eval_temperature']}. Pre-training "
        f"corpus: the train split, {st['slip_frac']:.0%} of worked solutions slipping in their "
        f"last step, {st['direct_frac']:.0%} bare answers{_of_style(st)}, "
        f"{st.get('plain_frac', 0.0):.0%} "
        f"ending 'The answer is N.' instead of '#### N'; {_budget(st)}. GRPO (from the runs' "
        f"config.json): "
        f"B={rs['batch_size']} prompts x G={rs['group_size']}, rollout temperature "
        f"{rs['temperature']}, {one} per step, {kl}, clip {rs['clip_low']}/{rs['clip_high']}, "
        f"reward {rs['reward']}, {rs['max_new_tokens']} new tokens; RL seeds {seeds} per rung "
        f"(tables show the seed mean). Wall time {_f(s['wall_s'], '.0f')} s{_speed(s)}.", "",
        "A finding is *reproduced* by a rule fixed before the runs (stated in summary.json "
        "`findings[].details.rule`): yes when the data resolve the claim at two standard "
        "errors, no when they resolve against it (or miss the threshold the claim names), "
        "not testable when the study has no data for it or the effect is within the noise.",
        f"These are one draw of the data order and initialisation (study seed {s.get('seed', 0)}): "
        "rerun with `rlscale study --seed N` into other directories and compare with "
        "`rlscale replicates DIR DIR ...` before calling a finding a property of the ladder.", ""]


def _budget(st: dict) -> str:
    """The pre-training budget rule and lr schedule in words (Preset.token_power and
    pretrain_schedule)."""
    rungs, power = st.get("rungs") or [], st.get("token_power", 0.0)
    from rlscale.pretrain import PretrainConfig  # the study's plan keeps its decay_frac

    lr = {"wsd": f"warmup-stable-decay lr (decay over the last {PretrainConfig.decay_frac:.0%} "
                 "of the steps)"}.get(st.get("pretrain_schedule", "cosine"), "cosine lr")
    if not rungs:
        return f"pre-training tokens as each rung's row shows, {lr}"
    top = min(r["tokens"] for r in rungs)  # the largest rung's (the rule's anchor)
    if not power:
        return f"every rung pre-trained on the same {top / 1e6:g}M tokens, {lr}"
    return (f"pre-training tokens = {top / 1e6:g}M x (N of the largest rung / N)^{power:g}, "
            f"so smaller rungs see more tokens, {lr}")


def findings_table(s: dict) -> list[str]:
    L = ["## Findings", "", "| id | claim | statistic | value | interval | reproduced |",
         "|---|---|---|---|---|---|"]
    for f in s["findings"]:
        note = f["details"].get("note") or f["details"].get("error") or shown(f)
        stat = f["statistic"] + (f" ({note})" if note else "")
        L.append(f"| `{f['id']}` | {f['claim']} | {stat} | {_f(f['value'])} | "
                 f"{_iv(f['interval'])} | {_verdict(f['reproduced'])} |")
    return L + [""]


def shown(f: dict) -> str:
    """The numbers behind a finding's value, in one line (from its details)."""
    d, i = f["details"], f["id"]
    if i == "k_increases_with_n" and d.get("fitted", {}).get("K_max") is not None:
        k = d["fitted"]
        sat = {True: "yes", False: "no", None: "undetermined"}[k["saturates"]]
        return (f"k per rung {', '.join(f'{v:.3g}' for v in d['k_per_rung'].values())}; fitted "
                f"K_max {_f(k['K_max'])} {_iv(k['K_max_interval'])}, N0 {_f(k['N0'])} "
                f"{_iv(k['N0_interval'])}; saturates within the ladder: {sat}")
    if i == "law_fit" and "intra" in d:
        return (f"R² {_f(d['r2']['C_paper'])} (C), {_f(d['r2']['D'])} (D); intra MARE "
                f"{_f(d['intra']['C_paper'].get('mare'))} (C), {_f(d['intra']['D'].get('mare'))} (D)")
    if i == "data_reuse" and "arms" in d:
        return "; ".join(f"tau {a['tau']}: {a['final_test_loss']:.3f} ± {a['final_se']:.3f} "
                         f"({a['unique_prompts']} unique)" for a in d["arms"]) + "; " + "; ".join(
            f"tau {a['tau']} - tau {d['arms'][0]['tau']}: {a['diff']:+.3f} (SE {a['se']:.3f}, "
            + ("paired over problems)" if a.get("se_paired") else "combined)")
            for a in d["arms"][1:])
    if i == "gain_vs_size" and "gain_per_rung" in d:
        fit = f"R² {_f(d['r2'])}; " if "r2" in d else "no power law (a gain <= 0); "
        # "not reproduced" alone hides which way the data point: false means the interval
        # (of b or of rho) lies above 0, the opposite of the seed study's direction
        opposite = "the opposite here, larger rungs gain more; " if f["reproduced"] is False else ""
        return (f"{opposite}{fit}rho {_f(d.get('rho'))} {_iv(d.get('rho_interval'))}; gain per "
                "rung " + ", ".join(f"{g:+.3f}" for g in d["gain_per_rung"].values()))
    if i == "reward_format" and "base_format_gap" in d:
        kind = "paired over problems" if d.get("se_paired") else "combined"
        se = f"; difference SE {d['se']:.3f} ({kind})" if "se" in d else ""
        return f"base model custom_flexible - strict accuracy {d['base_format_gap']:+.3f}{se}"
    if i == "rl_sharpens_or_expands" and "rungs" in d:
        return _se_kind(all(r.get("se_paired") for r in d["rungs"])) + "; ".join(
            f"{r['rung']}: pass@1 {r['d_pass1']:+.3f} (SE {r['se1']:.3f}), pass@{r['k_max']} "
            f"{r['d_passk']:+.3f} (SE {r['sek']:.3f})" for r in d["rungs"])
    if i == "greedy_gain" and d.get("per_rung"):
        rows = d["per_rung"].values()
        down = [rung for rung, x in d["per_rung"].items() if x.get("down")]
        changes = "; ".join(f"{rung}: {x['change']:+.3f} (SE {x['se']:.3f})"
                            for rung, x in d["per_rung"].items())
        return (_se_kind(all(x.get("se_paired") for x in rows)) + changes
                + (f"; falls by > 2 SE: {', '.join(down)}" if down else ""))
    if i == "rl_below_edge" and "rungs" in d:
        return "; ".join(
            f"{r['rung']}: greedy {r['d_greedy']:+.3f} (SE {r['se_greedy']:.3f}), pass@1 at the "
            f"rollout temperature {r['d_pass1']:+.3f} (SE {r['se_pass1']:.3f})"
            + (" - trades" if r["trades"] else " - lifts" if r["lifts"] else "")
            for r in d["rungs"])
    if i == "rl_lifts_edge" and d.get("pooled", {}).get("wrong"):
        return "; ".join(f"{name}: {_edge_line(c)}" for name, c in
                         [("all", d["pooled"])] + [(_STYLE.get(k, k or "no style"), c)
                                                   for k, c in d["per_style"].items()])
    if i.startswith("transfer") and "se_combined" in d:
        return (f"{'SE paired over problems' if d['se_paired'] else 'combined SE'} {d['se']:.4f} "
                f"(combined {d['se_combined']:.4f}); change per rung " + ", ".join(
                    f"{g:+.3f}" for g in d["per_rung"].values()))
    if i == "size_extrapolation" and "fits" in d:
        return "; ".join(
            f"{x}: " + (e.get("error") or f"MARE {_f(e['mare'])}, its 90% interval covers "
                        f"{e['coverage']:.0%} of N={e['size']:.3g}'s points, {e['choice']['law']}"
                        + ("" if e["identified"] else " (not identified)")
                        + (" by the fixed order (too few sizes to score forms)"
                           if e.get("chosen_by", "").startswith("the first") else ""))
            for x, e in d["fits"].items())
    if i.startswith("size_") and d.get("comparisons"):
        return f"{len(d['comparisons'])} comparisons"
    return ""


def _edge_line(c: dict) -> str:
    """A cell of rl_lifts_edge: greedy after RL on half-known and unknown base-wrong problems."""
    return (f"after RL {_f(c['after_half'], '.2f')} of {c['half_known']} half-known, "
            f"{_f(c['after_unknown'], '.2f')} of {c['unknown']} unknown")


def edge_table(s: dict) -> list[str]:
    """Where RL's greedy gain lies: finding rl_lifts_edge's cells, per rung and per style."""
    f = next((f for f in s.get("findings", []) if f["id"] == "rl_lifts_edge"), None)
    d = f["details"] if f else {}
    if not d.get("per_rung"):
        return []
    L = ["Where RL's greedy gain lies (finding `rl_lifts_edge`; the pass@k problems a base "
         "model answers wrong greedily, split by its samples: half-known if one of them is "
         "right, unknown if none is; greedy accuracy after RL, seed mean; expanded: problems "
         "the base model's samples never solve and the policies' do, lost: the reverse):", "",
         "| rung | base wrong | half-known | after RL | unknown | after RL | fixes in "
         "half-known | expanded | lost |", "|---|" + "---|" * 8]
    rows = list(d["per_rung"].items()) + [(f"all, {_STYLE.get(k, k or 'no style')}", c)
                                          for k, c in d["per_style"].items()]
    for name, c in rows + [("all", d["pooled"])]:
        L.append(f"| {name} | {c['wrong']} | {c['half_known']} | {_f(c['after_half'], '.2f')} | "
                 f"{c['unknown']} | {_f(c['after_unknown'], '.2f')} | "
                 f"{_f(c['fixes_half_share'], '.2f')} | {c['expanded']:.1f} | {c['lost']:.1f} |")
    return L + [""]


def _se_kind(paired: bool) -> str:
    """Which SE judged a before/after change (a `shown` line's prefix)."""
    return "SE paired over problems; " if paired else "combined SE (no per-problem values); "


def rungs_table(s: dict) -> list[str]:
    L = ["## Rungs", "",
         "| rung | N | tokens/param | base acc | after RL (seeds) | gain / combined SE (/ SE "
         "paired over problems) | greedy before -> "
         "after | pass@1 before -> after | pass@max before -> after | k (slope) | RL-trained "
         "model |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    ks = s["k_per_rung_slope"]
    for r in s["rungs"]:
        se = math.hypot(r["baseline_se"], r["final_se"]) or 1e-12
        seeds = ", ".join(f"{a:.3f}" for a in r["final_acc_seeds"])
        pb, pa = r["pass_at_k_before"], r["pass_at_k_after"]
        kmax = max(pb, key=int) if pb else None
        ps = r.get("gain_se_paired")
        paired = f" (paired {r['gain'] / ps:+.1f})" if ps else ""
        L.append(
            f"| {r['rung']} | {r['N']:,} | {r['tokens_per_param']:.0f} | "
            f"{r['baseline_acc']:.3f} ± {r['baseline_se']:.3f} | {r['final_acc']:.3f} ± "
            f"{r['final_se']:.3f} ({seeds}) | {r['gain'] / se:+.1f}{paired} | "
            f"{_f(r['baseline_greedy'])} -> {_f(r['final_greedy'])} | "
            f"{_f(pb.get('1'))} -> {_f(pa.get('1'))} | "
            f"{_f(pb.get(kmax)) if kmax else 'n/a'} -> {_f(pa.get(kmax)) if kmax else 'n/a'}"
            f"{f' (k={kmax})' if kmax else ''} | {_f(ks.get(r['rung']))} | "
            f"`{'`, `'.join(r['rl_models'])}` |")
    return L + [""] + order_lines(s.get("baseline_order"))


def order_lines(o: dict | None) -> list[str]:
    """One sentence: are the pre-trained baselines (greedy 0-shot) ordered by size?"""
    if not o or not o.get("steps"):
        return []
    steps = "; ".join(f"{x['from']} -> {x['to']} {x['step']:+.3f} (paired SE "
                      f"{_f(x['se_paired'])}, combined SE {x['se_combined']:.3f})"
                      for x in o["steps"])
    yes = lambda b: "yes" if b else "no"  # noqa: E731
    return [f"Greedy 0-shot baselines by size: {steps}. Increasing: {yes(o['increasing'])}; "
            f"each step above its paired SE: {yes(o['each_step_above_paired_se'])}, above the "
            f"combined SE: {yes(o['each_step_above_combined_se'])}; largest rung "
            f"{_f(o['largest'])} (at most {o['largest_at_most']}: {yes(o['room'])}).", ""]


def evals_tables(s: dict) -> list[str]:
    """k-shot accuracy, accuracy per difficulty level, transfer."""
    L = ["## Evaluations", "", "Greedy k-shot accuracy of the pre-trained rungs:", "",
         "| rung | " + " | ".join(f"{k}-shot" for k in range(6)) + " |",
         "|---|" + "---|" * 6]
    for r in s["rungs"]:
        L.append(f"| {r['rung']} | " + " | ".join(_f(r["kshot_greedy"].get(str(k)), ".2f")
                                                  for k in range(6)) + " |")
    counts = {k: n for r in s["rungs"] for k, n in (r.get("kshot_problems") or {}).items()}
    if len(set(counts.values())) > 1:  # e.g. the curve's interior on fewer problems
        L += ["", "Problems per shot count: " + ", ".join(
            f"{k}-shot {counts[k]}" for k in sorted(counts, key=int)) + "."]
    levels = sorted({lv for r in s["rungs"] for lv in r["by_level_before"]}, key=level_key)
    L += [""]
    if levels:
        L += ["Greedy 0-shot accuracy per difficulty level, before -> after RL:", "",
              "| rung | " + " | ".join(f"level {lv}" for lv in levels) + " |",
              "|---|" + "---|" * len(levels)]
        for r in s["rungs"]:
            b, a = r["by_level_before"], r["by_level_after"]
            L.append(f"| {r['rung']} | " + " | ".join(
                f"{_f(b.get(lv), '.2f')} -> {_f(a.get(lv), '.2f')}" for lv in levels) + " |")
        L += [""] + level_style_table(s["rungs"])
    else:
        L.append("The task's problems carry no difficulty level: no per-level table.")
    L += ([] if L[-1] == "" else [""]) + edge_table(s) + chain_table(s["rungs"]) + \
        style_table(s["rungs"])
    families = transfer_families(s["settings"].get("transfer_task"),
                                 s["settings"].get("transfer_more"))
    for fid, spec in families:
        L += [f"Transfer to `{spec}` (never seen by RL; finding `{fid}`), greedy 0-shot "
              "accuracy:", "", "| rung | before | after RL (seeds) |", "|---|---|---|"]
        for r in s["rungs"]:
            b, a = transfer_pair(r, fid)
            L.append(f"| {r['rung']} | {_f(b and b['accuracy'])} | "
                     f"{', '.join(_f(x['accuracy']) for x in a) or 'n/a'} |")
        L.append("")
    if not families:
        L += ["Transfer: this preset names no second task family (Preset.transfer_task).", ""]
    return L


def fits_list(s: dict) -> list[str]:
    L = ["## Fits", ""]
    for name, f in s["fits"].items():
        if "error" in f:
            L.append(f"- `{name}`: no fit ({f['error']})")
        elif f["law"] == "loglinear_kn":
            iv = f["intervals"]
            ident = ("identified" if f["identified"] else
                     "NOT identified: " + "; ".join(f["flags"]))
            L.append(f"- `{name}` (x = {f['x']}): K_max = {f['K_max']:.4g} "
                     f"{_iv(iv['K_max'], '.3g')}, N0 = {f['N0']:.4g} {_iv(iv['N0'], '.3g')} "
                     f"({f['interval_level']:.0%} bootstrap over {f['bootstrap']['unit']}, "
                     f"{f['bootstrap']['n']} resamples), R² = {f['r2']:.3f} on "
                     f"{f['n_points']} points; {ident}")
        else:
            p = f["params"]
            L.append(f"- `gain_power`: gain = {p['a']:.3g} N^{p['b']:.3f} (b "
                     f"{_iv(f['b_interval'])}), R² = {_f(f['r2'])} on {f['n_points']} rung means")
    return L + [""]


def arms_table(s: dict) -> list[str]:
    L = [f"## Arms (rung {s['settings']['arm_rung']}, seed {s['seed']})", "",
         "| run | tau | reward | unique prompts | final test loss | acc strict | acc custom_flexible |",
         "|---|---|---|---|---|---|---|"]
    seen = set()
    for a in s["arms"]["reuse"] + s["arms"]["reward"]:
        if a["run"] not in seen:
            seen.add(a["run"])
            L.append(f"| {a['run']} | {a['tau']} | {a['reward']} | {a['unique_prompts']} | "
                     f"{a['final_test_loss']:.3f} ± {a['final_se']:.3f} | "
                     f"{_f(a['final_acc_strict'], '.3f')} | "
                     f"{_f(a['final_acc_custom_flexible'], '.3f')} |")
    return L + [""]


def _before_after_table(rungs, name: str, intro: str, cols: dict, spec: str) -> list[str]:
    """A per-rung table of `{name}_before -> {name}_after` for the keys of cols (key -> header)."""
    if not any(r.get(f"{name}_before") for r in rungs):
        return []
    L = [intro, "", "| rung | " + " | ".join(cols.values()) + " |", "|---|" + "---|" * len(cols)]
    for r in rungs:
        b, a = r.get(f"{name}_before") or {}, r.get(f"{name}_after") or {}
        L.append(f"| {r['rung']} | " + " | ".join(
            f"{_f(b.get(k), spec)} -> {_f(a.get(k), spec)}" for k in cols) + " |")
    return L + [""]


def chain_table(rungs: list[dict]) -> list[str]:
    """What the greedy 0-shot chains get right, before -> after RL (rlscale.chains)."""
    return _before_after_table(
        rungs, "chains", "Greedy 0-shot chains step by step, before -> after RL (seed mean): the "
        "share of expressions answered bare (no working); of the worked step lines, those that "
        "copy the problem's operand where it is given in digits, those that recall the value of "
        "a number-word operand (the task's lexicon: knowledge, not copying) and those whose "
        "arithmetic is right; accuracy on stories and on expressions, and the ceiling (the "
        "accuracy with every story right and the expressions as answered: the room greedy "
        "decoding leaves a rung in its worked part):",
        {"bare_expr": "expressions answered bare", "operand_right": "digit operand copied right",
         **({"word_right": "number-word recalled right"}
            if any((r.get("chains_before") or {}).get("word_right") is not None for r in rungs)
            else {}),
         "arithmetic_right": "arithmetic right", "stories_right": "stories right",
         "expr_right": "expressions right", "ceiling": "ceiling"}, ".2f")


def level_style_table(rungs: list[dict]) -> list[str]:
    """Greedy 0-shot accuracy per (level, style) cell, before -> after RL (rlscale.chains)."""
    first = next((r["chains_before"] for r in rungs if r.get("chains_before")), {})
    n = first.get("cell_problems") or {}
    if not n:
        return []
    cell = {k: k.removeprefix("level_").rsplit("_", 1) for k in n}  # -> (level, style)
    order = lambda k: (level_key(cell[k][0]), cell[k][1] != "words")  # noqa: E731 stories first
    return _before_after_table(
        rungs, "chains", "The same by style (seed mean; problems per cell in the header; a "
        "level without one style has no column for it): a level's accuracy is a mix of its "
        "stories and its expressions, which the base models answer in different ways (the "
        "chains table below):",
        {k: f"level {cell[k][0]} {_STYLE.get(cell[k][1], cell[k][1])} ({n[k]})"
         for k in sorted(n, key=order)}, ".2f")


def style_table(rungs: list[dict]) -> list[str]:
    """How each rung answers expressions when sampled, before -> after RL (rlscale.chains)."""
    return _before_after_table(
        rungs, "answers", "Expressions answered in the pass@k samples (the rollout temperature), "
        "before -> after RL (seed mean): the share worked out, the accuracy of worked and of bare "
        "answers, and the worked advantage (worked minus bare accuracy: what RL can gain by "
        "moving a rung from guessing to working):",
        {"worked_share": "worked out", "right_worked": "right when worked",
         "right_bare": "right when bare", "worked_advantage": "worked advantage"}, ".3f") \
        + story_style_table(rungs)


def story_style_table(rungs: list[dict]) -> list[str]:
    """The same for stories, where the corpus answers some of them bare (direct_frac_other)."""
    shares = [(r.get("story_answers_before") or {}).get("worked_share") for r in rungs]
    if not any(x is not None and x < 1 for x in shares):
        return []  # every story worked out (or none sampled): nothing to show
    return _before_after_table(
        rungs, "story_answers", "Stories answered in the same samples, before -> after RL:",
        {"worked_share": "worked out", "right_worked": "right when worked",
         "right_bare": "right when bare", "worked_advantage": "worked advantage"}, ".3f")
