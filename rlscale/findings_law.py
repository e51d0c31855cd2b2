"""The study's findings about the fitted law: its fit per curve (`law_fit`) and its
prediction of a rung no fit saw (`size_extrapolation`); with the fits of loglinear_kn on C and
on D that the report and `k_increases_with_n` read. Pure functions of the runs' curves, as in
rlscale.findings (whose module doc defines curves and findings).
"""

from __future__ import annotations

import numpy as np

from rlscale.findings import _pos, finding, points


def fit_kn(curves: list[dict], x: str, n_boot: int = 100, seed: int = 0):
    """loglinear_kn on x: (summary dict, law, points, bootstrap); an error is a summary."""
    from rlscale.scaling import LogLinearKN, bootstrap, fit_law
    from rlscale.scaling.intervals import wide_intervals

    try:
        pts = points(curves, x)
        law = fit_law(LogLinearKN(), pts)
        boot = bootstrap(law, pts, n=n_boot, unit="curves", seed=seed)
    except Exception as e:  # noqa: BLE001 - the report states why a fit is missing
        err = {"law": "loglinear_kn", "x": x, "error": f"{type(e).__name__}: {e}"}
        return err, None, None, None
    res = law.result_
    iv = boot.intervals(0.9)
    flags = list(res.flags) + wide_intervals({p: iv[p] for p in ("K_max", "N0")}, law.specs_)
    out = {"law": "loglinear_kn", "x": x, "K_max": law.params_["K_max"], "N0": law.params_["N0"],
           "params": dict(law.params_), "r2": res.r2, "n_points": len(pts),
           "converged": bool(res.converged), "at_bounds": list(res.at_bound),
           "intervals": {p: list(iv[p]) for p in ("K_max", "N0")}, "interval_level": 0.9,
           "bootstrap": {"n": n_boot, "unit": "curves"}, "flags": flags,
           "identified": not flags,
           "k_of_N": {f"{n:.6g}": float(law.k_of([n])[0]) for n in np.unique(pts.size)}}
    return out, law, pts, boot


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
                   rule=f"true: R² >= {r2_min:g} on C and D and intra MARE <= {mare_max:g} "
                        "on both")


def size_extrapolation(curves: list[dict], mare_max: float = 0.1, n_boot: int = 100) -> dict:
    """The law fitted on every rung but the largest predicts the largest rung's curve, in C and
    in D (rlscale.scaling.extrapolate: its form chosen by nested leave-one-size-out on the
    smaller rungs alone where they can score it, else the fixed order's first identified form;
    a 90% prediction interval from a curve bootstrap)."""
    claim = ("The power law fitted on the smaller rungs predicts the largest rung's test-loss "
             "curve in compute and in data (the paper's predictive law, on a size the fit did "
             "not see).")
    stat = ("MARE on the largest rung's evaluations, fitted on the other rungs (C); interval: "
            "[MARE on C, MARE on D]; details: the 90% interval's coverage, the chosen form")
    fits = {}
    for x, r in _extrapolate_each({x: points(curves, x) for x in ("C_paper", "D")},
                                  n_boot).items():
        if isinstance(r, Exception):  # e.g. fewer than 3 smaller rungs: not testable
            fits[x] = {"error": f"{type(r).__name__}: {r}"}
        else:
            fits[x] = {k: r[k] for k in ("size", "mare", "coverage", "choice", "chosen_by",
                                         "identified", "flags")}
    mares = {x: fits[x].get("mare") for x in fits}
    if any(v is None for v in mares.values()):
        return finding("size_extrapolation", claim, stat, mares["C_paper"], None, None,
                       fits=fits, note="an extrapolation could not run: see fits")
    return finding("size_extrapolation", claim, stat, mares["C_paper"], sorted(mares.values()),
                   all(m <= mare_max for m in mares.values()), fits=fits,
                   rule=f"true: MARE <= {mare_max:g} on C and on D (law_fit's bound); else false")


def _extrapolate_each(pts: dict, n_boot: int) -> dict:
    """{x: extrapolate(pts[x]) or the exception it raised}. With 4+ sizes and 2+ cores the two
    run in parallel processes (the report, the study's last step, waits for them on idle
    cores): ~2-6 s each on the default study's curves since inner fits that cannot score a form
    stop at once (18-40 s before, session 38). Seeded, so the results are the serial ones."""
    import concurrent.futures as cf
    import multiprocessing as mp
    import os

    if (os.cpu_count() or 1) < 2 or any(len(np.unique(p.size)) < 4 for p in pts.values()):
        return {x: _try_extrapolate(p, n_boot) for x, p in pts.items()}
    with cf.ProcessPoolExecutor(len(pts), mp_context=mp.get_context("spawn")) as pool:
        futures = {x: pool.submit(_try_extrapolate, p, n_boot) for x, p in pts.items()}
        return {x: f.result() for x, f in futures.items()}


def _try_extrapolate(pts, n_boot: int):
    from rlscale.scaling.extrapolation import candidates_for, extrapolate

    try:
        return extrapolate(pts, n_boot=n_boot, candidates=candidates_for(pts.x_name))
    except Exception as e:  # noqa: BLE001 - reported in the finding, not raised
        return e
