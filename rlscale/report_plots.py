"""The study report's figures, each written atomically through rlscale.scaling.plots.save_png.

The law figures (test loss vs C and D with the fit and its bootstrap bands, k(N)) are the fitter's
own (`plot_curves`, `plot_k`): one plotting home for a fitted law. The rest show what the study
adds: accuracy before/after RL against total compute, pass@k before/after, accuracy per
difficulty level, k-shot accuracy, RL's change at each decoding temperature, and the data-reuse
and reward arms.
"""

from __future__ import annotations

import math
from pathlib import Path

from rlscale.arith import STYLE_NAMES
from rlscale.eval_metrics import level_key
from rlscale.findings_evals import edge_bins
from rlscale.scaling.plots import plot_curves, plot_k, save_png

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figures(data: dict, summary: dict, fitted: dict, out: Path) -> dict[str, str]:
    """Every figure the data allow; {name: file name} (a figure without data is left out)."""
    made = {}
    for name, key in (("loss_vs_compute", "loglinear_kn_C"), ("loss_vs_data", "loglinear_kn_D")):
        law, pts, boot = fitted[key]
        if law is not None:
            plot_curves(law, pts, out / f"{name}.png", boot=boot)
            made[name] = f"{name}.png"
    law, pts, boot = fitted["loglinear_kn_C"]
    if law is not None:
        plot_k(law, pts, out / "k_vs_n.png", boot=boot)
        made["k_vs_n"] = "k_vs_n.png"
    rungs = summary["rungs"]
    for name, fn, ok in (
            ("accuracy_vs_total_compute", accuracy_vs_compute, True),
            ("pass_at_k", pass_at_k, any(r["pass_at_k_before"] for r in rungs)),
            ("accuracy_by_level", by_level, any(r["by_level_before"] for r in rungs)),
            ("kshot", kshot, True)):
        if ok:
            fig = fn(rungs)
            made[name] = Path(save_png(fig, out / f"{name}.png")).name
    if any(r.get("edge_problems") for r in rungs):
        fig = edge_of_competence(rungs)
        made["edge_of_competence"] = Path(save_png(fig, out / "edge_of_competence.png")).name
    edge = next((f for f in summary["findings"] if f["id"] == "rl_below_edge"), None)
    if edge and edge["details"].get("rungs"):
        fig = by_temperature(rungs, edge["details"]["rungs"])
        made["rl_by_temperature"] = Path(save_png(fig, out / "rl_by_temperature.png")).name
    for key, name in (("reuse", "data_reuse"), ("reward", "reward_functions")):
        if summary["arms"][key]:
            fig = arm(summary["arms"][key], data["arms"], key)
            made[name] = Path(save_png(fig, out / f"{name}.png")).name
    return made


def accuracy_vs_compute(rungs):
    fig, ax = _plt().subplots(figsize=(6.4, 4.6))
    for i, r in enumerate(rungs):
        c = COLORS[i % len(COLORS)]
        x0, x1 = r["pretrain_flops"], r["pretrain_flops"] + r["rl_flops"]
        ax.errorbar(x0, r["baseline_acc"], yerr=r["baseline_se"], fmt="s", color=c, ms=8,
                    label=f"{r['rung']} base")
        ax.errorbar(x1, r["final_acc"], yerr=r["final_se"], fmt="*", color=c, ms=13,
                    label=f"{r['rung']} after RL ({len(r['seeds'])} seeds)")
        ax.annotate("", (x1, r["final_acc"]), (x0, r["baseline_acc"]),
                    arrowprops=dict(arrowstyle="->", color=c, lw=0.8))
    ax.set(xscale="log", xlabel="total compute: pre-training 6ND + RL (FLOPs)",
           ylabel="held-out accuracy pass@1 (T=0.7)", title="Accuracy vs total compute")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return fig


def _panels(n: int):
    """One panel per rung, side by side, sharing the y axis."""
    fig, axes = _plt().subplots(1, n, figsize=(3.2 * n + 0.8, 3.8), sharey=True, squeeze=False,
                                layout="constrained")
    return fig, list(axes[0])


def pass_at_k(rungs):
    """pass@k vs k (log2) per rung: the base model and the RL-trained one (seed mean)."""
    fig, axes = _panels(len(rungs))
    for ax, r in zip(axes, rungs):
        for key, style, color, label in (("pass_at_k_before", "--o", "tab:gray", "base"),
                                         ("pass_at_k_after", "-s", "tab:blue", "after RL")):
            pk = r[key]
            if pk:
                ks = sorted(pk, key=int)
                ax.plot([int(k) for k in ks], [pk[k] for k in ks], style, color=color, ms=4,
                        label=label)
        ax.set_xscale("log", base=2)
        ax.set(title=r["rung"], xlabel="k (samples per problem)", ylim=(-0.02, 1.02))
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("pass@k (unbiased estimator)")
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("pass@k before and after RL: RL sharpens if the curves meet at large k")
    return fig


def by_level(rungs):
    """Greedy 0-shot accuracy per difficulty level per rung, base and after RL, as bars: one row
    of panels for all problems, and where the report has its (level, style) cells
    (rlscale.chains) one row each for stories and for expressions."""
    import numpy as np

    rows = [("all problems", "by_level_before", "by_level_after", None)]
    cells = {k for r in rungs for k in ((r.get("chains_before") or {}).get("cell_problems")
                                        or {})}
    for style, name in STYLE_NAMES.items():
        if any(k.endswith(f"_{style}") for k in cells):
            rows.append((name, "chains_before", "chains_after", style))
    plt = _plt()
    fig, axes = plt.subplots(len(rows), len(rungs), figsize=(3.2 * len(rungs) + 0.8,
                             2.9 * len(rows) + 0.6), sharey=True, squeeze=False,
                             layout="constrained")
    levels = sorted({lv for r in rungs for lv in (r.get("by_level_before") or {})}, key=level_key)
    x = np.arange(len(levels))
    for i, (name, before, after, style) in enumerate(rows):
        for ax, r in zip(axes[i], rungs):
            for off, key, color, label in ((-0.2, before, "tab:gray", "base"),
                                           (0.2, after, "tab:blue", "after RL")):
                d = r.get(key) or {}
                vals = [d.get(lv if style is None else f"level_{lv}_{style}") for lv in levels]
                ax.bar(x + off, [np.nan if v is None else v for v in vals], width=0.4,
                       color=color, label=label)
            ax.set_xticks(x, levels)
            ax.set(ylim=(0, 1.02), title=f"{r['rung']}: {name}" if len(rows) > 1 else r["rung"])
            ax.grid(True, axis="y", alpha=0.3)
        axes[i][0].set_ylabel("greedy 0-shot accuracy")
    for ax in axes[-1]:
        ax.set_xlabel("difficulty level (steps)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Accuracy per difficulty level, before and after RL"
                 + (" (no bars: the level has none of those problems)" if len(rows) > 1
                    else ""))
    return fig


def edge_of_competence(rungs):
    """After-RL greedy accuracy on the base-wrong pass@k problems by the base model's right
    samples (findings_evals.edge_bins), one panel per question style, one line per rung (marker
    area ~ problems) and one for the rungs pooled; dashed: the bin's own rate, what one
    base-model sample would score."""
    styles = sorted({p["style"] for r in rungs for p in r.get("edge_problems") or []},
                    key=lambda st: st != "words")  # stories first, as in the tables
    fig, axes = _panels(len(styles))
    names = {**STYLE_NAMES, "": "all problems"}
    n = max(p["base_samples"] for r in rungs for p in r.get("edge_problems") or [])
    ref = edge_bins([{"base_greedy": 0, "base_samples": n, "base_right": k,
                      "after_greedy": k / n} for k in range(n + 1)])
    pos = {b["lo"]: j for j, b in enumerate(ref)}  # bins evenly spaced
    for ax, st in zip(axes, styles):
        for i, r in enumerate(rungs):
            bins = edge_bins([p for p in r.get("edge_problems") or [] if p["style"] == st])
            x, y = [pos[b["lo"]] for b in bins], [b["after"] for b in bins]
            ax.plot(x, y, "-", color=COLORS[i % len(COLORS)], lw=1, label=r["rung"])
            ax.scatter(x, y, s=[10 + 3 * min(b["problems"], 100) for b in bins],
                       color=COLORS[i % len(COLORS)], alpha=0.7)
        pooled = edge_bins([p for r in rungs for p in r.get("edge_problems") or []
                            if p["style"] == st])  # 64 problems a rung: thin bins alone
        ax.plot([pos[b["lo"]] for b in pooled], [b["after"] for b in pooled], "-", color="black",
                lw=2.2, alpha=0.8, label="all rungs")
        ax.plot(range(len(ref)), [b["after"] for b in ref], "--", color="tab:gray", lw=1,
                label="one base sample")
        ax.set_xticks(range(len(ref)), [f"{b['lo']}" if b["lo"] == b["hi"] else
                                        f"{b['lo']}-{b['hi']}" for b in ref])
        ax.set(title=names.get(st, st), ylim=(-0.02, 1.02),
               xlabel=f"base model's right samples of {n}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("greedy accuracy after RL (seed mean)")
    axes[0].legend(fontsize=8, loc="upper left")  # stories: the upper left stays empty
    fig.suptitle("Problems the base model gets wrong greedily: what RL's greedy policy gets right")
    return fig


def kshot(rungs):
    fig, ax = _plt().subplots(figsize=(5.6, 4.2))
    for i, r in enumerate(rungs):
        ks = sorted(r["kshot_greedy"], key=int)
        se = r.get("kshot_greedy_se") or {}  # a summary written before it: no bars
        ax.errorbar([int(k) for k in ks], [r["kshot_greedy"][k] for k in ks],
                    yerr=[2 * se.get(k, 0.0) for k in ks], fmt="-o", capsize=3,
                    color=COLORS[i % len(COLORS)], label=r["rung"])
    ax.set(xlabel="exemplars in the prompt (shots)", ylabel="greedy accuracy (base model)",
           ylim=(-0.02, 1.02), title="k-shot accuracy of the pre-trained rungs (±2 SE)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def by_temperature(rungs, edge_rows):
    """RL's change per rung at the three decoding temperatures the study measures, +-2 SE:
    greedy (T=0, rl_below_edge's rows), the test loss's T=0.7 (the rung's gain) and pass@1 at
    the rollout temperature, each with its SE paired over problems where the runs kept one.
    Below the edge the bars disagree in sign."""
    rows = {r["rung"]: r for r in edge_rows}
    shown = [r for r in rungs if r["rung"] in rows]
    bars = (("greedy (T=0)", lambda r, e: (e["d_greedy"], e["se_greedy"])),
            ("T=0.7 (the test loss)", lambda r, e: (r["gain"], r.get("gain_se_paired") or
                                                     math.hypot(r["baseline_se"], r["final_se"]))),
            ("pass@1 at the rollout temperature", lambda r, e: (e["d_pass1"], e["se_pass1"])))
    fig, ax = _plt().subplots(figsize=(6.4, 4.4))
    width = 0.8 / len(bars)
    for j, (label, get) in enumerate(bars):
        vals = [get(r, rows[r["rung"]]) for r in shown]
        ax.bar([i + (j - 1) * width for i in range(len(shown))], [v for v, _ in vals], width,
               yerr=[2 * se for _, se in vals], capsize=3, color=COLORS[j], label=label)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(shown)), [r["rung"] for r in shown])
    ax.set(ylabel="accuracy after RL - before (seed mean, +-2 SE)",
           title="RL's change by decoding temperature")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def arm(rows: list[dict], curves: list[dict], key: str):
    """Held-out accuracy vs prompts consumed for each run of an arm."""
    label = "tau" if key == "reuse" else "reward"
    by_run = {c["run"]: c for c in curves}
    fig, ax = _plt().subplots(figsize=(6.0, 4.4))
    for i, a in enumerate(rows):
        ev = by_run[a["run"]]["evals"]
        ax.errorbar([e["D"] for e in ev], [1 - e["test_loss"] for e in ev],
                    yerr=[e["test_loss_se"] for e in ev], marker="o", capsize=2,
                    color=COLORS[i % len(COLORS)],
                    label=f"{label} = {a[label]} ({a['unique_prompts']} unique prompts)")
    title = "Data reuse at equal total prompts" if key == "reuse" else "Reward function"
    ax.set(xlabel="prompts consumed D", ylabel="held-out accuracy (T=0.7, the run's reward)",
           title=f"{title} ({by_run[rows[0]['run']]['rung']})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig
