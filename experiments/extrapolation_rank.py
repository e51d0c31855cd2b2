"""Can the inner fits of size_extrapolation's nested choice score a form? (session 38)

For a finished study, per x column (C_paper, D) and candidate form: the smallest singular value
of the column-scaled Jacobian at the optimum relative to the largest, for the fit on every
training size and for each inner fit (one training size left out), and each inner fit's MARE on
the size it left out at the solver's default tolerances and at 1e-9. A ratio ~1e-16 is a
direction no prediction on the data depends on: the inner MARE is then wherever the optimiser
stopped, and moves with the tolerances (docs/scaling.md, "Three training sizes cannot score a
form"). ~1 minute on the default study.

    .venv/bin/python experiments/extrapolation_rank.py STUDY
"""
import json
import sys
from pathlib import Path

import numpy as np

import rlscale.scaling.fitting as F
from rlscale.findings import points
from rlscale.report import collect
from rlscale.scaling.data import select
from rlscale.scaling.extrapolation import candidates_for
from rlscale.scaling.metrics import errors
from rlscale.study_plan import plan
from rlscale.study_presets import PRESETS

_LS = F.least_squares


def ratio(choice, pts, law) -> float:
    prob = F.Problem(law, select(pts, warmup_clip=choice.warmup_clip), choice.objective,
                     choice.objective == "mse")
    jac = prob.jacobian(prob.internal(np.array([law.params_[s.name] for s in law.specs_])))
    s = np.linalg.svd(jac / np.maximum(np.linalg.norm(jac, axis=0), 1e-300), compute_uv=False)
    return s[-1] / s[0]


def inner_mare(choice, train, size, tol):
    F.least_squares = _LS if tol is None else (
        lambda *a, **k: _LS(*a, **{**k, "ftol": tol, "xtol": tol, "gtol": tol}))
    try:
        m = train.size == size
        law = choice.fit(train.subset(~m))
        return law, errors(train.y[m], law.predict(train.subset(m)))["mare"]
    finally:
        F.least_squares = _LS


def main() -> None:
    study = Path(sys.argv[1])
    preset = PRESETS[json.load(open(study / "study.json"))["preset"]["name"]]
    data = collect(preset, plan(preset, study))
    for x in ("C_paper", "D"):
        pts = points(data["curves"], x)
        train = pts.subset(~np.isclose(pts.size, np.unique(pts.size)[-1]))
        for c in candidates_for(x):
            cells = []
            for s in np.unique(train.size):
                law, m_default = inner_mare(c, train, s, None)
                _, m_loose = inner_mare(c, train, s, 1e-9)
                cells.append(f"{s:.3g}: {ratio(c, train.subset(train.size != s), law):.1e} "
                             f"MARE {m_default:.3f} / {m_loose:.3f}")
            full = ratio(c, train, c.fit(train))
            print(f"{x} {c.label()}: full fit {full:.1e}; inner fits " + "; ".join(cells),
                  flush=True)


if __name__ == "__main__":
    main()
