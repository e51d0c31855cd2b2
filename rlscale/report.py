"""The study's report: summary.json, the PNGs and report.md, all from the jobs' own files.

Everything here is read back from what the stages wrote (pretrain.json, the baseline evals'
summary.json, each run's metrics.jsonl), so the report can be rebuilt at any time and a test can
check it against the runs. Fits use rlscale.scaling; a fit that fails is reported as such.
"""

from __future__ import annotations

import math
from pathlib import Path

from rlscale.files import atomic_write_json, atomic_write_text, read_json, read_jsonl

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _evals(run_dir: Path) -> list[dict]:
    return [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl", tolerate_torn_tail=True)
            if r.get("test_loss") is not None]


def collect(preset, jobs, out: Path) -> dict:
    """Per rung: N, pre-training tokens / FLOPs, baseline and final accuracy (+ SE), RL FLOPs."""
    by = {j.name: j for j in jobs}
    rungs, arms = [], {"reuse": [], "reward": []}
    for r in preset.rungs:
        tag = r.name.removeprefix("micro:")
        pre = read_json(Path(by[f"pretrain:{tag}"].out) / "pretrain.json")
        base = read_json(Path(by[f"baseline:{tag}"].out) / "summary.json")
        run = Path(by[f"rl:{tag}"].out)
        ev = _evals(run)
        last = read_jsonl(run / "metrics.jsonl", tolerate_torn_tail=True)[-1]
        first, final = ev[0], ev[-1]
        check = base.get("primary_check") or "custom_flexible"
        rungs.append({
            "rung": r.name, "N": pre["N"], "pretrain_tokens": pre["tokens"],
            "pretrain_flops": pre["flops"], "pretrain_lr": r.pretrain_lr,
            "pretrain_final_loss": pre["final_loss"], "pretrain_wall_s": pre["wall_s"],
            "baseline_acc": 1 - first["test_loss"], "baseline_se": first["test_loss_se"],
            "final_acc": 1 - final["test_loss"], "final_se": final["test_loss_se"],
            "gain": first["test_loss"] - final["test_loss"],
            "rl_steps": last["step"], "rl_lr": r.rl_lr, "rl_prompts": last["D"],
            "rl_flops": last["C_paper"], "rl_flops_itemized": last["C_itemized"],
            "kshot_greedy": {k: v["checks"][check]["accuracy"] for k, v in base["results"].items()},
            "run_dir": str(run),
        })
    for j in jobs:
        if j.kind != "rl" or j.meta.get("rung") != preset.arm_rung:
            continue
        ev = _evals(Path(j.out))
        row = {"run": j.name, "tau": j.meta["tau"], "reward": j.meta["reward"],
               "final_test_loss": ev[-1]["test_loss"], "final_se": ev[-1]["test_loss_se"],
               "baseline_test_loss": ev[0]["test_loss"],
               "final_acc_strict": ev[-1].get("test_acc_strict"),
               "final_acc_custom_flexible": ev[-1].get("test_acc_custom_flexible"),
               "unique_prompts": read_jsonl(Path(j.out) / "metrics.jsonl")[-1]["unique_prompts"],
               "run_dir": j.out}
        if j.meta["reward"] == "custom_flexible":
            arms["reuse"].append(row)
        if j.meta["tau"] == 1:
            arms["reward"].append(row)
    arms["reuse"].sort(key=lambda a: a["tau"])
    return {"rungs": rungs, "arms": arms}


def _points(rungs, x: str):
    from rlscale.scaling.data import from_rows

    rows = []
    for r in rungs:
        for e in _evals(Path(r["run_dir"])):
            if e["step"] > 0 and e["test_loss"] > 0:  # log-log law: X > 0 and L > 0
                rows.append({"x": e[x], "test_loss": e["test_loss"], "N": r["N"],
                             "step": e["step"], "run": r["rung"]})
    return from_rows(rows, "x", "test_loss", "N", "step", curve_col="run", source="study runs")


def fit_all(rungs) -> dict:
    """loglinear_kn on C and on D; gain_power of the RL gain vs N. A failed fit is reported."""
    import numpy as np

    fits = {}
    for name, x in (("loglinear_kn_C", "C_paper"), ("loglinear_kn_D", "D")):
        try:
            from rlscale.scaling.fitting import fit_law
            from rlscale.scaling.laws import LogLinearKN

            pts = _points(rungs, x)
            law = fit_law(LogLinearKN(), pts)
            curves = {}
            for r in rungs:  # the fitted line over each rung's own range, for the plot
                xs = pts.x[pts.size == r["N"]]
                if len(xs):
                    grid = np.geomspace(xs.min(), xs.max(), 30)
                    curves[r["rung"]] = [grid.tolist(), law.predict(grid, r["N"]).tolist()]
            fits[name] = {"law": "loglinear_kn", "x": x, "params": dict(law.params_),
                          "K_max": law.params_["K_max"], "N0": law.params_["N0"],
                          "r2": law.score(pts), "n_points": len(pts),
                          "converged": bool(getattr(law.result_, "converged", False)),
                          "at_bounds": _at_bounds(law),
                          "k_of_N": {r["rung"]: float(law.k_of([r["N"]])[0]) for r in rungs},
                          "curves": curves}
            if x == "C_paper":
                fits[name]["fixed_compute"] = fixed_compute_table(law, rungs, pts)
        except Exception as e:  # noqa: BLE001 - the report states why a fit is missing
            fits[name] = {"law": "loglinear_kn", "x": x, "error": f"{type(e).__name__}: {e}"}
    try:
        from rlscale.scaling.data import from_rows
        from rlscale.scaling.fitting import fit_law
        from rlscale.scaling.laws import GainPower

        rows = [{"x": 1.0, "gain": r["gain"], "N": r["N"], "step": 0, "run": r["rung"]}
                for r in rungs]
        pts = from_rows(rows, "x", "gain", "N", "step", curve_col="run", source="study gains")
        law = fit_law(GainPower(), pts)
        fits["gain_power"] = {"law": "gain_power", "params": dict(law.params_),
                              "r2": law.score(pts), "n_points": len(pts),
                              "converged": bool(getattr(law.result_, "converged", False)),
                              "at_bounds": _at_bounds(law)}
    except Exception as e:  # noqa: BLE001
        fits["gain_power"] = {"law": "gain_power", "error": f"{type(e).__name__}: {e}"}
    return fits


def fixed_compute_table(law, rungs, pts, levels: int = 5) -> list[dict]:
    """At RL budgets spread over the measured range: the fitted loss of every rung, the best."""
    import numpy as np

    from rlscale.scaling.analyses import fixed_compute

    out = []
    for c in np.geomspace(pts.x.min(), pts.x.max(), levels):
        res = fixed_compute(law, [r["N"] for r in rungs], float(c))
        best = next(r["rung"] for r in rungs if r["N"] == res["best_size"])
        out.append({"C": float(c), "loss": dict(zip((r["rung"] for r in rungs), res["loss"])),
                    "best": best})
    return out


def reuse_analysis(arm: list[dict]) -> dict | None:
    """rlscale.scaling.analyses.data_reuse on the arm's held-out curves (steps > 0)."""
    from rlscale.scaling.analyses import data_reuse

    tau, step, loss = [], [], []
    for a in arm:
        for e in _evals(Path(a["run_dir"])):
            if e["step"] > 0:
                tau.append(a["tau"]), step.append(e["step"]), loss.append(e["test_loss"])
    if len({*tau}) < 2:
        return None
    res = data_reuse(tau, step, loss, tail=3)
    return {"tau": res.tau, "final_loss": res.final_loss, "final_se": res.final_se,
            "degrades_at": res.degrades_at, "tail_points": 3}


def _at_bounds(law) -> list[str]:
    """Parameters the optimiser left on a bound: the data do not determine them."""
    return list(law.result_.at_bound)


def rung_slopes(rungs, x: str = "C_paper") -> dict[str, float]:
    """k per rung: minus the least-squares slope of log10 L vs log10 X (no law, a check)."""
    import numpy as np

    out = {}
    for r in rungs:
        ev = [e for e in _evals(Path(r["run_dir"])) if e["step"] > 0 and e["test_loss"] > 0]
        if len(ev) >= 2:
            lx = np.log10([e[x] for e in ev])
            ly = np.log10([e["test_loss"] for e in ev])
            out[r["rung"]] = float(-np.polyfit(lx, ly, 1)[0])
    return out


# ---------------------------------------------------------------- plots
def plots(data: dict, fits: dict, out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rungs, made = data["rungs"], {}

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made[name.removesuffix(".png")] = name

    fit_c = fits.get("loglinear_kn_C", {})
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, r in enumerate(rungs):
        ev = [e for e in _evals(Path(r["run_dir"])) if e["step"] > 0]
        c = COLORS[i % len(COLORS)]
        ax.plot([e["C_paper"] for e in ev], [e["test_loss"] for e in ev], "o", color=c,
                label=f"{r['rung']} (N={r['N']:,})")
        if r["rung"] in fit_c.get("curves", {}):
            xs, ys = fit_c["curves"][r["rung"]]
            ax.plot(xs, ys, "-", color=c, lw=1)
    ax.set(xscale="log", yscale="log", xlabel="RL compute C (FLOPs, 6 N T)",
           ylabel="held-out test loss 1 - pass@1 (T=0.7)",
           title="Test loss vs RL compute" + (f" (fit R²={fit_c['r2']:.3f})" if "r2" in fit_c else ""))
    ax.legend(fontsize=8)
    save(fig, "loss_vs_compute.png")

    slopes = rung_slopes(rungs)
    fig, ax = plt.subplots(figsize=(5.6, 4.2))
    ns = [r["N"] for r in rungs if r["rung"] in slopes]
    ax.plot(ns, [slopes[r["rung"]] for r in rungs if r["rung"] in slopes], "s", color="k",
            label="per-rung log-log slope")
    if "K_max" in fit_c:
        grid = np.geomspace(min(ns) / 2, max(ns) * 2, 100)
        ax.plot(grid, fit_c["K_max"] / (1 + fit_c["N0"] / grid), "-", color="tab:red",
                label=f"k(N) = {fit_c['K_max']:.3g} / (1 + {fit_c['N0']:.3g} / N)")
    ax.set(xscale="log", xlabel="non-embedding parameters N", ylabel="k (learning efficiency)",
           title="k(N) vs model size")
    ax.legend(fontsize=8)
    save(fig, "k_vs_n.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for i, r in enumerate(rungs):
        c = COLORS[i % len(COLORS)]
        ax.errorbar(r["pretrain_flops"], r["baseline_acc"], yerr=r["baseline_se"], fmt="s",
                    color=c, ms=8, label=f"{r['rung']} base")
        ax.errorbar(r["pretrain_flops"] + r["rl_flops"], r["final_acc"], yerr=r["final_se"],
                    fmt="*", color=c, ms=13, label=f"{r['rung']} after RL")
        ax.annotate("", (r["pretrain_flops"] + r["rl_flops"], r["final_acc"]),
                    (r["pretrain_flops"], r["baseline_acc"]),
                    arrowprops=dict(arrowstyle="->", color=c, lw=0.8))
    ax.set(xscale="log", xlabel="total compute: pre-training 6 N D + RL (FLOPs)",
           ylabel="held-out accuracy pass@1 (T=0.7)", title="Accuracy vs total compute")
    ax.legend(fontsize=7, ncol=2)
    save(fig, "accuracy_vs_total_compute.png")

    for key, title, fname, label in (
            ("reuse", "Data reuse at equal total prompts", "data_reuse.png", "tau"),
            ("reward", "Reward function", "reward_functions.png", "reward")):
        arm = data["arms"][key]
        if not arm:
            continue
        fig, ax = plt.subplots(figsize=(6.0, 4.4))
        for i, a in enumerate(arm):
            ev = _evals(Path(a["run_dir"]))
            ax.errorbar([e["D"] for e in ev], [1 - e["test_loss"] for e in ev],
                        yerr=[e["test_loss_se"] for e in ev], marker="o", capsize=2,
                        color=COLORS[i % len(COLORS)], label=f"{label} = {a[label]}")
        ax.set(xlabel="prompts consumed D", ylabel="held-out accuracy (T=0.7, the run's reward)",
               title=f"{title} ({data['arms'][key][0]['run'].split(':')[1].split('-')[0]})")
        ax.legend(fontsize=8)
        save(fig, fname)
    return made


# ---------------------------------------------------------------- report
def write_report(preset, jobs, out: Path) -> dict:
    import dataclasses

    out = Path(out)
    data = collect(preset, jobs, out)
    fits = fit_all(data["rungs"])
    figs = plots(data, fits, out)
    study = read_json(out / "study.json")
    _store(data, out)
    summary = {"preset": preset.name, "task": preset.task, "seed": preset.seed,
               "wall_s": study.get("wall_s"), "job_s": study.get("job_s", {}),
               "rungs": data["rungs"], "arms": data["arms"], "fits": fits,
               "k_per_rung_slope": rung_slopes(data["rungs"]), "figures": figs,
               "data_reuse": _safe(reuse_analysis, data["arms"]["reuse"]),
               "settings": dataclasses.asdict(preset),
               "all_rungs_improved": all(r["gain"] > max(r["baseline_se"], r["final_se"])
                                         for r in data["rungs"])}
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "report.md", markdown(summary))
    return summary


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - the report states why an analysis is missing
        return {"error": f"{type(e).__name__}: {e}"}


def _store(data: dict, out: Path) -> None:
    """Every GRPO run of the study in OUT/results.sqlite, for `rlscale fit` / `rlscale runs`."""
    from rlscale.store import import_run_dir

    for r in data["rungs"]:
        import_run_dir(out / "results.sqlite", r["run_dir"])
    for arm in data["arms"]["reuse"] + data["arms"]["reward"]:
        import_run_dir(out / "results.sqlite", arm["run_dir"])


def _fmt(x, spec=".3g"):
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _caveat(f: dict) -> str:
    out = "" if f.get("converged") else "; the optimiser did NOT report convergence"
    if f.get("at_bounds"):
        out += (f"; {', '.join(f['at_bounds'])} on a bound of its range: not determined by "
                f"these data (e.g. all N far below N0, so only K_max / N0 is identified)")
    return out


def markdown(s: dict) -> str:
    st = s["settings"]
    L = [f"# RL post-training scaling study: micro ladder, preset `{s['preset']}`", "",
         f"Task `{s['task']}` (held-out: {st['heldout']} problems x {st['eval_samples']} samples "
         f"at temperature 0.7; test loss = 1 - pass@1). Pre-training corpus: the train split, "
         f"with {st['slip_frac']:.0%} of the worked solutions slipping by 1-2 in their last step "
         f"and {st['direct_frac']:.0%} bare answers. GRPO: B={st['batch_size']} prompts x "
         f"G={st['group_size']}, rollout temperature 1, one update per step, no KL; seed "
         f"{s['seed']}. Wall time {_fmt(s['wall_s'], '.0f')} s.", "",
         "What RL can do at this scale is sharpen: a base model that has learnt the task puts "
         "the right answer at the mode and the corpus' slips around it; GRPO moves sampled "
         "accuracy toward greedy accuracy. A rung that has not learnt the task (greedy 0-shot "
         "near chance) gains nothing. See docs/study.md for the measurements behind the recipe.",
         "",
         "## Rungs", "",
         "| rung | N (non-emb.) | pre-train tokens | pre-train FLOPs | RL lr | RL steps | RL FLOPs "
         "| base acc | after RL | gain / SE | k (slope) | 0-shot..5-shot greedy |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in s["rungs"]:
        se = max(r["baseline_se"], r["final_se"], 1e-12)
        ks = " / ".join(f"{v:.2f}" for _, v in sorted(r["kshot_greedy"].items(), key=lambda t: int(t[0])))
        L.append(f"| {r['rung']} | {r['N']:,} | {r['pretrain_tokens']:.3g} | "
                 f"{r['pretrain_flops']:.3g} | {r['rl_lr']:g} | {r['rl_steps']} | {r['rl_flops']:.3g} | "
                 f"{r['baseline_acc']:.3f} ± {r['baseline_se']:.3f} | {r['final_acc']:.3f} ± "
                 f"{r['final_se']:.3f} | {r['gain'] / se:.1f} | "
                 f"{_fmt(s['k_per_rung_slope'].get(r['rung']))} | {ks} |")
    ok = "every rung" if s["all_rungs_improved"] else "NOT every rung"
    L += ["", f"After RL, {ok} is above its pre-trained baseline by more than one standard error.",
          "", "## Fits", ""]
    for name, f in s["fits"].items():
        if "error" in f:
            L.append(f"- `{name}`: no fit ({f['error']})")
        elif f["law"] == "loglinear_kn":
            L.append(f"- `{name}` (x = {f['x']}): K_max = {f['K_max']:.4g}, N0 = {f['N0']:.4g}, "
                     f"R² = {f['r2']:.3f} on {f['n_points']} points{_caveat(f)}")
        else:
            p = f["params"]
            L.append(f"- `gain_power`: gain = {p['a']:.3g} N^{p['b']:.3f}, R² = {f['r2']:.3f} "
                     f"on {f['n_points']} rungs{_caveat(f)}")
    L += ["", "## Arms (rung " + st["arm_rung"] + ")", "",
          "| run | tau | reward | unique prompts | final test loss | acc strict | acc custom_flexible |",
          "|---|---|---|---|---|---|---|"]
    seen = set()
    for a in s["arms"]["reuse"] + s["arms"]["reward"]:
        if a["run"] in seen:
            continue
        seen.add(a["run"])
        L.append(f"| {a['run']} | {a['tau']} | {a['reward']} | {a['unique_prompts']} | "
                 f"{a['final_test_loss']:.3f} ± {a['final_se']:.3f} | "
                 f"{_fmt(a['final_acc_strict'], '.3f')} | {_fmt(a['final_acc_custom_flexible'], '.3f')} |")
    L += ["", "## Findings", ""] + findings(s) + ["", "## Figures", ""]
    for name, f in s["figures"].items():
        L += [f"![{name}]({f})", ""]
    L += ["## Times", "", "| job | seconds |", "|---|---|"]
    L += [f"| {k} | {v:.0f} |" for k, v in sorted(s["job_s"].items())]
    return "\n".join(L) + "\n"


def findings(s: dict) -> list[str]:
    """Plain statements of what the study shows, and of what it does not."""
    out = []
    for r in s["rungs"]:
        se = max(r["baseline_se"], r["final_se"])
        verdict = "improved" if r["gain"] > se else "did NOT improve measurably"
        out.append(f"- {r['rung']}: RL {verdict}: {r['baseline_acc']:.3f} -> {r['final_acc']:.3f} "
                   f"({r['gain'] / max(se, 1e-12):+.1f} standard errors) with "
                   f"{r['rl_flops'] / max(r['pretrain_flops'], 1):.1%} of its pre-training compute.")
    for r in s["rungs"]:
        ks = {int(k): v for k, v in r["kshot_greedy"].items()}
        drop = [k for k in sorted(ks) if k > 0 and ks[k] < ks[0] / 2]
        if drop:
            out.append(f"- {r['rung']}: greedy k-shot accuracy collapses from k = {drop[0]} on "
                       f"({ks[0]:.2f} at 0-shot, {ks[drop[0]]:.2f} at {drop[0]}-shot): such "
                       f"prompts reach past the {s['settings']['seq_len']}-token rows of "
                       f"pre-training, positions the model never trained on.")
    fit = s["fits"].get("loglinear_kn_C", {})
    for row in fit.get("fixed_compute", []):
        out.append(f"- At an RL budget of {row['C']:.3g} FLOPs the fitted law puts {row['best']} "
                   f"lowest (test loss {row['loss'][row['best']]:.3f}).")
    reuse = s.get("data_reuse") or {}
    if "tau" in reuse:
        finals = ", ".join(f"tau {t:g}: {f:.3f} ± {e:.3f}" for t, f, e in
                           zip(reuse["tau"], reuse["final_loss"], reuse["final_se"]))
        deg = (f"degrades from tau = {reuse['degrades_at']:g}" if reuse["degrades_at"] else
               "does not degrade measurably at any tau tried")
        out.append(f"- Data reuse at equal total prompts (final test loss, mean of the last "
                   f"{reuse['tail_points']} evaluations): {finals}; the loss {deg}.")
    rew = {a["reward"]: a for a in s["arms"]["reward"]}
    if {"strict", "custom_flexible"} <= set(rew):
        a, b = rew["strict"], rew["custom_flexible"]
        diff = a["final_test_loss"] - b["final_test_loss"]
        se = math.hypot(a["final_se"], b["final_se"])
        what = (f"strict-reward training ends {diff:+.3f} in test loss (its own reward) vs "
                f"custom_flexible ({diff / max(se, 1e-12):+.1f} combined SE)")
        if abs(diff) <= 2 * se:
            what += ("; no measurable difference: the pre-training corpus always writes "
                     "'#### N', so there is no answer format left for a strict reward to teach "
                     "(the seed study's effect needs base models that do not know the format)")
        out.append(f"- Reward arm: {what}.")
    return out
