"""Plots and the one-sentence-per-budget summary of the allocation study (rlscale.allocation),
and the frontier plot `rlscale plan` writes.

allocation_frontier.png: test loss against total compute. Every pre-trained checkpoint is one
line: a square at pure pre-training, the RL points along it, a star at its last; colour = rung,
shade = pre-training tokens. The fitted frontier (the best loss the joint law allows at each
C_total) is the black line, the measured best per budget the open circles, the validation run
a red diamond. The seed study's squares and stars, generalised. allocation_share.png: the RL
share of the fitted optimum against the budget, with the measured best shares.
"""

from __future__ import annotations

import math
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fmt_n(n: float) -> str:
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k"


def frontier_curve(fit, lo: float, hi: float, k: int = 30, within_seen: bool = False) -> list[dict]:
    import numpy as np

    from rlscale.scaling.frontier import frontier

    return [frontier(fit, float(c), within_seen=within_seen) for c in np.geomspace(lo, hi, k)]


def plot_frontier(fit, path, lo: float, hi: float, points=(), best=(), validation=None,
                  mark=None, within_seen: bool = False) -> str:
    """Loss vs total compute: measured curves (if any), the fitted frontier, marks."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    cmap = plt.get_cmap("viridis")
    ns = sorted({q["N"] for q in points})
    key = {q["curve"]: (q["N"], q["pretrain_tokens"]) for q in points}
    for curve in sorted(key, key=key.get):  # by size, then tokens: the legend reads up the ladder
        mine = sorted((q for q in points if q["curve"] == curve), key=lambda q: q["step"])
        ds = sorted({q["pretrain_tokens"] for q in points if q["N"] == mine[0]["N"]})
        color = cmap(ns.index(mine[0]["N"]) / max(1, len(ns) - 1) * 0.85)
        alpha = 0.4 + 0.6 * (ds.index(mine[0]["pretrain_tokens"]) + 1) / len(ds)
        x = [q["C_total"] for q in mine]
        y = [q["test_loss"] for q in mine]
        first = ds.index(mine[0]["pretrain_tokens"]) == len(ds) - 1
        ax.plot(x, y, "-", color=color, alpha=alpha, lw=1,
                label=f"N={_fmt_n(mine[0]['N'])}" if first else None)
        ax.plot(x[:1], y[:1], "s", color=color, alpha=alpha, ms=6)
        ax.plot(x[-1:], y[-1:], "*", color=color, alpha=alpha, ms=10)
    fr = frontier_curve(fit, lo, hi, within_seen=within_seen)
    ax.plot([f["C_total"] for f in fr], [f["predicted_test_loss"] for f in fr], "k-", lw=2,
            label=f"fitted frontier ({fit.form}{', within seen tokens' if within_seen else ''})")
    if any(f["interval"][0] == f["interval"][0] for f in fr):
        ax.fill_between([f["C_total"] for f in fr], [f["interval"][0] for f in fr],
                        [f["interval"][1] for f in fr], color="k", alpha=0.12, lw=0)
    for b in best:
        ax.plot([b["C_total"]], [b["test_loss"]], "o", mfc="none", mec="k", ms=12)
    if validation:
        draws = validation.get("draws") or []
        k = len(draws)
        if k > 1:  # each draw, then their mean with 2 SE of the mean
            ax.plot([d["realised"]["C_total"] for d in draws], [d["measured"] for d in draws],
                    ".", color="red", ms=7, alpha=0.6, label=f"validation draws ({k})")
        ax.errorbar([validation["realised"]["C_total"]], [validation["measured"]],
                    yerr=[2 * validation["se"]], fmt="D", color="red", ms=8,
                    label=f"validation, mean of {k} (2 SE)" if k > 1 else "validation run (2 SE)")
        ax.plot([validation["budget"]], [validation["predicted"]], "x", color="red", ms=10,
                label="predicted best")
    if mark:
        ax.plot([mark["C_total"]], [mark["predicted_test_loss"]], "D", color="red", ms=8,
                label="plan")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # the band may run decades below anything measured or predicted: keep the curves readable
    floor = min([q["test_loss"] for q in points] + [f["predicted_test_loss"] for f in fr])
    if floor > 0:
        ax.set_ylim(bottom=floor / 3)
    ax.set_xlabel("total compute C = 6 N D_pre + C_RL (FLOPs)")
    ax.set_ylabel("held-out test loss (1 - pass@1)")
    ax.set_title("Pre-training vs RL: squares = pre-trained, stars = after RL")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def plot_share(result: dict, fit, path, lo: float, hi: float) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    fr = frontier_curve(fit, lo, hi)
    ax.plot([f["C_total"] for f in fr], [f["rl_share"] for f in fr], "k-", label="fitted optimum")
    rows = [b for b in result["budgets"] if b.get("best")]
    for i, b in enumerate(r for r in rows if r.get("tied")):  # what the data cannot tell apart
        ax.plot([b["C_total"]] * 2, b["tied"]["rl_share"], "-", color="C1", lw=6, alpha=0.3,
                solid_capstyle="butt", label="within 2 SE of the best" if i == 0 else None)
    ax.plot([b["C_total"] for b in rows], [b["best"]["rl_share"] for b in rows], "o",
            mfc="none", mec="C1", ms=10, label="measured best")
    ax.set_xscale("log")
    ax.set_xlabel("total compute (FLOPs)")
    ax.set_ylabel("RL share of the total")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def plots(result: dict, points, fit, val, out: Path) -> dict:
    lo = min(q["C_total"] for q in points) / 1.5
    hi = max(max(q["C_total"] for q in points), val["budget"]) * 1.5
    best = [b["best"] for b in result["budgets"] if b.get("best")]
    return {"frontier": plot_frontier(fit, out / "allocation_frontier.png", lo, hi, points, best,
                                      val),
            "share": plot_share(result, fit, out / "allocation_share.png", lo, hi)}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def sentence(b: dict) -> str:
    """The answer at one budget, in one sentence."""
    best = b.get("best")
    if not best:
        return f"At {b['C_total']:.2g} FLOPs no measured allocation fits."
    s = (f"At {b['C_total']:.2g} FLOPs the best measured allocation is the "
         f"{_fmt_n(best['N'])} rung pre-trained on {best['pretrain_tokens'] / 1e6:.3g}M tokens "
         f"with {_pct(best['rl_share'])} of the compute in RL ({best['rl_flops']:.2g} FLOPs), "
         f"test loss {best['test_loss']:.3f} ± {best['test_loss_se']:.3f}")
    parts = []
    for key, what in (("pretrain_only", "pure pre-training"), ("rl_minimal", "the smallest RL")):
        o = b.get(key)
        if o and o.get("worse_by") is not None and (o["curve"], o["step"]) != (
                best["curve"], best["step"]):  # the best itself is not "worse by 0"
            parts.append(f"{what} is worse by {o['worse_by']:.3f} ± {o['worse_by_se']:.3f}"
                         + (f" (RL share {_pct(o['rl_share'])})" if key == "rl_minimal" else ""))
    t = b.get("tied")
    if t:
        lo, hi = t["rl_share"]
        parts.append(f"{t['n_points']} of the {t['of']} measured points within the budget are "
                     f"within 2 SE of it, with RL shares {_pct(lo)}-{_pct(hi)} on "
                     f"{len(t['curves'])} checkpoint{'s' if len(t['curves']) > 1 else ''}")
    f = b.get("fitted")
    if f:
        parts.append(f"the fit puts the optimum at N={_fmt_n(f['N'])}, RL share "
                     f"{_pct(f['rl_share'])}, loss {f['predicted_test_loss']:.3f}"
                     + (f" (extrapolated in {', '.join(f['extrapolated'])})"
                        if f.get("extrapolated") else ""))
    return s + ("; " + "; ".join(parts) if parts else "") + "."


def markdown(result: dict) -> str:
    law, v = result["law"], result["validation"]
    lines = ["# Where should compute go? (pre-training vs RL on the micro ladder)", "",
             "C_total = 6 N D_pre + C_RL (C_paper); test loss = 1 - pass@1 at T 0.7, held out.", ""]
    if result.get("seed") is not None:
        lines += [f"One draw (seed {result['seed']}) of the data order, the initialisations and "
                  "the RL seeds: rerun with `--seed N` into another directory and compare the "
                  "two with `rlscale replicates DIR DIR` before calling a split a property of "
                  "the ladder.", ""]
    lines += [f"- {sentence(b)}" for b in result["budgets"]]
    if result.get("checkpoints"):
        lines += ["", "Each checkpoint before RL and at its last step (accuracy = 1 - test loss; "
                  "gain in combined SE):", "", "| rung | pre-training tokens | RL steps | before "
                  "| after | gain |", "|---|---|---|---|---|---|"]
        lines += [f"| {_fmt_n(c['N'])} | {c['pretrain_tokens'] / 1e6:.3g}M | {c['steps']} | "
                  f"{c['before']:.3f} | {c['after']:.3f} | {c['gain']:+.3f} "
                  + (f"({c['gain_se']:+.1f}) |" if c["gain_se"] is not None else "(no SE) |")
                  for c in result["checkpoints"]]
    flags = law.get("flags") or {}
    ps = ", ".join((f"{k} {val:.3g} [{law['intervals'][k][0]:.3g}, {law['intervals'][k][1]:.3g}]"
                    if law.get("intervals") else f"{k} {val:.3g}")
                   + (f" (not identified: {flags[k]})" if k in flags else "")
                   for k, val in law["params"].items() if k not in ("N_ref", "D_ref"))
    lines += ["", f"Joint law `{law['name']}` (form chosen by {law['form_chosen_by']}; scores "
              + ", ".join(f"{k} {s:.4f}" for k, s in law["form_scores"].items())
              + f"): R² {law['r2']:.3f} on {law['n_points']} points; {ps}."
              + _token_error_sentence(law.get("token_error")), "",
              f"Validation: fitted on the points within {v['fit_budget']:.3g} FLOPs, the law "
              f"predicted the best allocation at {v['budget']:.3g} FLOPs to be N="
              f"{_fmt_n(v['predicted_allocation']['N'])}, "
              f"{v['predicted_allocation']['pretrain_tokens'] / 1e6:.3g}M tokens, RL share "
              f"{_pct(v['predicted_allocation']['rl_share'])}, loss {v['predicted']:.3f}; "
              + validation_sentence(v), "",
              "![frontier](allocation_frontier.png) ![share](allocation_share.png)", ""]
    h = result.get("held_out")
    if h:
        lines[-3:-3] = [held_out_sentence(h, v), ""]
    return "\n".join(lines)


def _token_error_sentence(te: dict | None) -> str:
    """How the law's interval is widened past a size's last checkpoint (docs/study.md, session
    28: without it, 63% of such points fell inside the nominal 90% interval)."""
    if not te:
        return ""
    return (f" Past a size's last pre-training checkpoint its intervals are widened to at least "
            f"the error it made there on its own data (each size's largest checkpoint left out "
            f"and predicted, {te['checkpoints']} checkpoints): a factor "
            f"{math.exp(te['per_decade']):.3g} per decade of tokens.")


def validation_sentence(v: dict) -> str:
    """What the validation draws measured against the law (one draw: as before draws existed)."""
    k = v.get("n_draws", 1)
    if k > 1:
        each = ", ".join(f"{d['measured']:.3f}" for d in v["draws"])
        s = (f"{k} draws of it (pre-training and RL seeds apart) measured {each}: mean "
             f"{v['measured']:.3f} ± {v['se']:.3f} (SE of the mean from the draws' spread, SD "
             f"{v['draw_sd']:.3f}; one draw's evaluation SE ~{v['eval_se'] * k ** 0.5:.3f})")
    else:
        s = f"the run of it measured {v['measured']:.3f} ± {v['se']:.3f}"
    s += (f" against {v['predicted_at_realised']:.3f} predicted at the realised allocation: "
          f"error {v['error']:+.3f}, {'within' if v['within_2se'] else 'outside'} 2 SE")
    lo, hi = v.get("interval_at_realised") or (None, None)
    if lo is not None:
        s += (f"; {'inside' if v['inside_interval'] else 'outside'} the law's own "
              f"{v['level']:.0%} interval there, [{lo:.3f}, {hi:.3f}]")
    b = v.get("vs_measured_best")
    if b:
        z = f" ({b['z']:+.1f} SE)" if b["z"] is not None else ""
        s += (f". Against the best option measured at that budget (N={_fmt_n(b['N'])}, "
              f"{b['pretrain_tokens'] / 1e6:.3g}M tokens, RL share {_pct(b['rl_share'])}: "
              f"{b['test_loss']:.3f} ± {b['test_loss_se']:.3f}) the law's allocation measured "
              f"{'lower' if b['difference'] < 0 else 'higher'} loss by {abs(b['difference']):.3f}"
              f"{z}, spending {_pct(b['budget_share_spent'])} of the budget")
    return s + "."


def held_out_sentence(h: dict, v: dict) -> str:
    """The validation fit scored on the measured points it did not see, and as a chooser."""
    s = f"On the {h['n_points']} measured points above {v['fit_budget']:.3g} FLOPs, which it did not see"
    if h.get("mare") is not None:
        s += (f", the same fit's error is {h['mare']:.3f} (mean absolute relative), "
              f"{_pct(h['within_2se'])} of them within 2 SE{_by_checkpoint(h, v)}")
    if h.get("law_pick"):
        pick, best = h["law_pick"], h["measured_best"]
        s += (f"; of the {h['n_options']} measured options at {v['budget']:.3g} FLOPs it picks "
              f"N={_fmt_n(pick['N'])}, {pick['pretrain_tokens'] / 1e6:.3g}M tokens, RL share "
              f"{_pct(pick['rl_share'])} (measured {pick['test_loss']:.3f}), the measured best "
              f"is N={_fmt_n(best['N'])}, {best['pretrain_tokens'] / 1e6:.3g}M tokens, RL share "
              f"{_pct(best['rl_share'])} ({best['test_loss']:.3f}): regret "
              f"{h['regret']:.3f} ± {h['regret_se']:.3f}")
    return s + "."


def _by_checkpoint(h: dict, v: dict) -> str:
    """The held-out points split by whether the fit saw their checkpoint (the error grows most
    where it did not: docs/study.md, session 27)."""
    level = v.get("level") or 0.9
    parts = []
    for key, what in (("seen", "checkpoints it saw (only their RL past its points)"),
                      ("unseen", "checkpoints it never saw (tokens past its own at that size)")):
        c = (h.get("by_checkpoint") or {}).get(key) or {}
        if c.get("n_points"):
            parts.append(f"{c['n_points']} on {what}: error {c['mare']:.3f}, "
                         f"{_pct(c['within_2se'])} within 2 SE"
                         + (f", {_pct(c['inside_interval'])} inside its {level:.0%} interval"
                            if c.get("inside_interval") is not None else ""))
    return " (" + "; ".join(parts) + ")" if parts else ""
