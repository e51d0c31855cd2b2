"""Speed of the scaling-law fitter on the paper's 732 points (issue 4 acceptance).

    .venv/bin/python benchmarks/fit_speed.py [--data CSV] [--bootstrap 200]

Prints the time of one loglinear_kn fit (grid of starts + convergence check; the best of 5
repeats) and of 200 bootstrap refits (warm-started from the full fit), on one core, as CPU time
of this process (steady when the machine is shared) and wall time. Targets: under 1 s and 30 s.
"""

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # one core, before numpy loads

import argparse  # noqa: E402
import time  # noqa: E402

from rlscale.scaling import bootstrap, fit, load_points  # noqa: E402

from pathlib import Path  # noqa: E402

PAPER = str(Path(__file__).resolve().parents[1] / "reference/paper/qwen2.5_base_holdout_testloss_by_step.csv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=PAPER)
    ap.add_argument("--x", default="C_flops")
    ap.add_argument("--bootstrap", type=int, default=200)
    args = ap.parse_args()
    pts = load_points(args.data, x=args.x)
    times, walls = [], []
    for _ in range(5):
        t, w = time.process_time(), time.perf_counter()
        law = fit(pts, "loglinear_kn")
        times.append(time.process_time() - t)
        walls.append(time.perf_counter() - w)
    r = law.result_
    print(f"one loglinear_kn fit on {r.n_points} points: {min(times):.3f} s CPU, "
          f"{min(walls):.3f} s wall (best of 5; "
          f"K_max {law.params_['K_max']:.5f}, N0 {law.params_['N0']:.4g}, R^2 {r.r2:.5f}, "
          f"converged {r.converged})")
    t, w = time.process_time(), time.perf_counter()
    b = bootstrap(law, pts, n=args.bootstrap, unit="curves", seed=0)
    dt, wall = time.process_time() - t, time.perf_counter() - w
    lo, hi = b.intervals(0.9)["K_max"]
    print(f"{args.bootstrap} bootstrap fits (whole curves resampled): {dt:.2f} s CPU, "
          f"{wall:.2f} s wall ({1000 * dt / args.bootstrap:.1f} ms CPU each; "
          f"K_max 90% interval [{lo:.4f}, {hi:.4f}])")


if __name__ == "__main__":
    main()
