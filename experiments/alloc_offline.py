"""What the offline allocation scripts (alloc_forms_offline.py, alloc_distance_offline.py) share:
a finished `allocate-words-long` directory read back as the experiment saw it."""
import json
from dataclasses import replace
from pathlib import Path


def load(out: str, seed: str):
    """(preset, every grid point, the validation plan, its fitting points) of DIR; seed: the
    run's --seed, or "none" for a run without one."""
    from rlscale.allocation import PRESETS, plan_jobs
    from rlscale.allocation_points import collect
    from rlscale.allocation_validation import fitting_points

    out, p = Path(out), PRESETS["allocate-words-long"]
    p = p if seed == "none" else replace(p, seed=int(seed))
    points = collect(plan_jobs(p, out))
    plan = json.loads((out / "allocation_validation_plan.json").read_text())
    fit_pts = fitting_points(points, plan["fit_budget"])
    assert len(fit_pts) == plan["n_fit_points"], "not the plan's fitting points"
    return p, points, plan, fit_pts
