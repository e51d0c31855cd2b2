"""Bootstrap intervals: coverage of the true parameters on synthetic data, both units."""

import numpy as np
import pytest

from rlscale.errors import UserError
from rlscale.scaling import bootstrap, fit


def test_true_values_inside_90pct_intervals_in_at_least_80pct_of_trials(synth):
    hits, total = 0, 0
    for trial in range(12):
        pts = synth.points(seed=100 + trial, noise=0.01)
        law = fit(pts, "loglinear_kn")
        iv = bootstrap(law, pts, n=100, unit="points", seed=trial).intervals(0.9)
        truth = {"K_max": synth.TRUE["K_max"], "N0": synth.TRUE["N0"]}
        truth.update({name: e for name, e in
                      zip([k for k in law.params_ if k.startswith("E0_")], synth.true_intercepts())})
        for name, v in truth.items():
            lo, hi = iv[name]
            hits += lo <= v <= hi
            total += 1
    assert hits / total >= 0.8, f"coverage {hits}/{total}"


def test_intervals_widen_with_noise_and_bracket_the_fit(synth):
    narrow = wide = None
    for noise in (0.005, 0.03):
        pts = synth.points(seed=5, noise=noise)
        law = fit(pts, "loglinear_kn")
        b = bootstrap(law, pts, n=60, seed=1)
        lo, hi = b.intervals(0.9)["K_max"]
        assert lo <= law.params_["K_max"] <= hi
        narrow, wide = (hi - lo, wide) if narrow is None else (narrow, hi - lo)
    assert wide > narrow


def test_prediction_band_and_curve_unit(synth):
    pts = synth.points(seed=2, noise=0.01)
    law = fit(pts, "loglinear_kn_param")
    b = bootstrap(law, pts, n=40, unit="curves", seed=0)
    x = np.array([1e3, 1e4])
    lo, hi = b.predict_band(x, 3e10, 0.9)  # an unseen size: the parametric law predicts it
    mid = law.predict(x, 3e10)
    assert np.all(lo <= mid) and np.all(mid <= hi) and np.all(hi > lo)
    # same seed, same intervals
    again = bootstrap(law, pts, n=40, unit="curves", seed=0)
    assert np.array_equal(b.samples, again.samples)


def test_curve_resamples_of_free_intercepts_leave_missing_sizes_nan(synth):
    pts = synth.points(seed=3, noise=0.01)
    law = fit(pts, "loglinear_kn")
    b = bootstrap(law, pts, n=30, unit="curves", seed=0)
    assert np.isnan(b.samples).any()  # some resample lost some size
    iv = b.intervals()
    assert all(np.isfinite(v).all() for v in iv.values())


def test_bad_arguments(synth):
    pts = synth.points(seed=3, noise=0.01)
    law = fit(pts, "loglinear_kn")
    with pytest.raises(UserError, match="unit"):
        bootstrap(law, pts, n=5, unit="rows")
    with pytest.raises(UserError, match="at least 2"):
        bootstrap(law, pts, n=1)
