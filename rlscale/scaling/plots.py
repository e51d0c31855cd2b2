"""PNG plots of a fit: y vs x per size with fitted lines and bootstrap bands; k(N) vs N.

Files are written atomically (rendered to memory, then rlscale.files.atomic_write_bytes).
matplotlib is imported lazily, with the non-interactive Agg backend.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from rlscale.errors import UserError
from rlscale.files import atomic_write_bytes
from rlscale.scaling.laws import GainPower, LogLinearKN, Sigmoid

X_UNITS = {"C_flops": "compute C (FLOPs, 6NT)", "C_paper": "compute C (FLOPs, 6NT)",
           "C_itemized": "compute C (FLOPs, itemized)", "D": "data D (prompts)",
           "step": "RL step", "N": "model size N (non-embedding params)"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> str:
    """Render a figure to memory and write it atomically (every PNG of rlscale goes here)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return str(path)


def size_name(n: float) -> str:
    """0.5e9 -> "0.5B", 7.2e9 -> "7.2B", 6.8e6 -> "6.8M", 20704 -> "20.7k" (3 significant
    digits: a legend, not a record)."""
    for unit, scale, floor in (("B", 1e9, 1e8), ("M", 1e6, 1e6), ("k", 1e3, 0.0)):
        if n >= floor:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def curve_slopes(pts) -> dict[float, float]:
    """Each size's own slope -d log10 y / d log10 x (least squares): the k(N) the law explains."""
    out = {}
    for s in np.unique(pts.size):
        m = (pts.size == s) & (pts.x > 0) & (pts.y > 0)
        if m.sum() >= 2:
            out[float(s)] = -float(np.polyfit(np.log10(pts.x[m]), np.log10(pts.y[m]), 1)[0])
    return out


def plot_curves(law, pts, path, boot=None, level: float = 0.9, extra=None) -> str:
    """y vs x per size (log-log; sigmoid: log x only), data as dots, fit as lines, bands."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sizes = np.unique(np.concatenate([pts.size, extra.size if extra is not None else []]))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    if isinstance(law, GainPower):
        grid = np.geomspace(pts.size.min() / 2, pts.size.max() * 2, 100)
        ax.scatter(pts.size, pts.y, color="k", s=20, label="data", zorder=3)
        ax.plot(grid, law.predict(grid, grid), color="C1", label=f"fit {law.name}")
        if boot is not None:
            lo, hi = boot.predict_band(grid, grid, level)
            ax.fill_between(grid, lo, hi, color="C1", alpha=0.2, label=f"{level:.0%} band")
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:
        for c, s in zip(colors, sizes):
            m = pts.size == s
            ax.scatter(pts.x[m], pts.y[m], s=6, color=c, alpha=0.5)
            xm = np.concatenate([pts.x[m], extra.x[extra.size == s] if extra is not None else []])
            xs = np.geomspace(xm.min(), xm.max(), 100)
            try:
                pred = law.predict(xs, s)
            except UserError:
                pred = None  # a size this law has no intercept for
            if pred is not None:
                ax.plot(xs, pred, color=c, label=size_name(s))
                if boot is not None:
                    lo, hi = boot.predict_band(xs, s, level)
                    ax.fill_between(xs, lo, hi, color=c, alpha=0.2)
        if extra is not None:  # e.g. the data a protocol predicted but did not fit
            ax.scatter(extra.x, extra.y, s=6, color="red", marker="x", alpha=0.6,
                       label="not fitted (predicted)")
        ax.set_xscale("log")
        if not isinstance(law, Sigmoid):
            ax.set_yscale("log")
    ax.set_xlabel(X_UNITS.get(pts.x_name, pts.x_name))
    ax.set_ylabel(pts.y_name if pts.y_name else law.y_label)
    band = f", {level:.0%} bootstrap bands" if boot is not None else ""
    r2 = law.result_.r2 if law.result_ is not None else float("nan")
    ax.set_title(f"{law.name} fit (R² {r2:.4f}){band}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title="model size" if not isinstance(law, GainPower) else None)
    return save_png(fig, Path(path))


def plot_k(law, pts, path, boot=None, level: float = 0.9) -> str:
    """k(N) vs N: each size's own slope, the fitted saturation curve and K_max."""
    if not isinstance(law, LogLinearKN):
        raise UserError(f"k(N) plot: {law.name} has no k(N)")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    slopes = curve_slopes(pts)
    lo_n, hi_n = min(pts.size.min(), law.params_["N0"]) / 10, max(pts.size.max(), law.params_["N0"]) * 10
    grid = np.geomspace(lo_n, hi_n, 200)
    ax.plot(grid, law.k_of(grid), color="C0",
            label=f"k(N) = K_max / (1 + N0/N), K_max {law.params_['K_max']:.4f}, "
                  f"N0 {law.params_['N0']:.3g}")
    if boot is not None:
        ks = np.array([b.k_of(grid) for b in boot.laws])
        a = (1 - level) / 2
        ax.fill_between(grid, np.quantile(ks, a, 0), np.quantile(ks, 1 - a, 0), color="C0",
                        alpha=0.2, label=f"{level:.0%} bootstrap band")
    ax.axhline(law.params_["K_max"], color="C0", ls="--", lw=0.8, label="K_max (saturation)")
    ax.scatter(list(slopes), list(slopes.values()), color="k", zorder=3,
               label="slope of each size's own log-log line")
    ax.set_xscale("log")
    ax.set_xlabel("model size N (non-embedding params)")
    ax.set_ylabel(f"k(N) (-d log10 L / d log10 {pts.x_name})")
    ax.set_title("learning-efficiency slope k(N)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return save_png(fig, Path(path))
