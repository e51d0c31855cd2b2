"""The fixed protocols: extrapolation with nested choices, compute-half for both laws,
identification flags, intervals that cover, `rlscale predict`, and bad fit input at the door."""

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from rlscale import cli
from rlscale.scaling import fit_law, load_points
from rlscale.scaling.compute_half import compute_half, fit_scalerl_curve, scalerl_starts
from rlscale.scaling.data import Points
from rlscale.scaling.extrapolation import Choice, extrapolate
from rlscale.scaling.fitting import FLAT, Problem
from rlscale.scaling.laws import LogLinearKNParam, Sigmoid

REF = Path(__file__).resolve().parents[1] / "reference/paper"
LLAMA = REF / "more/llama3_instruct_holdout_testloss_by_step.csv"
FEW = (Choice("loglinear_kn_param", 0, "mse"), Choice("loglinear_kn_param", 0, "huber"))


def test_a_parameter_at_its_bound_is_not_identified():
    """The Llama-3 fold without 1B: x0 runs to its bound; the optimiser still converges."""
    pts = load_points(LLAMA, x="C_flops")
    law = fit_law(LogLinearKNParam(), pts.subset(pts.size != 1e9))
    assert "x0" in law.result_.at_bound and not law.result_.identified
    assert "x0 at a bound" in law.result_.flags
    assert law.result_.to_dict()["identified"] is False


def test_two_sizes_leave_the_pivot_free_and_the_fit_says_so(synth):
    """e0, e1 and x0 set two intercepts: a direction no prediction on the data depends on
    (Jacobian rank 4 of 5), where the optimiser stops anywhere; a third size pins it down."""
    pts = synth.points(seed=0, noise=0.01)
    two = fit_law(LogLinearKNParam(), pts.subset(np.isin(pts.size, (1e8, 1e9))))
    assert not two.result_.identified
    assert any(FLAT in f and "rank 4 of 5" in f for f in two.result_.flags)
    three = fit_law(LogLinearKNParam(), pts.subset(np.isin(pts.size, (1e8, 1e9, 3e9))))
    assert not any(FLAT in f for f in three.result_.flags)


def test_three_training_sizes_take_the_fixed_order_not_a_score(synth):
    """Inner folds of two sizes cannot score a form (its prediction of the size they leave out
    is wherever the optimiser stopped): the first identified candidate is taken, and the
    protocol says so; with four training sizes nested leave-one-size-out scores again."""
    pts = synth.points(seed=2, noise=0.01)
    four = pts.subset(pts.size != 1e8)
    r = extrapolate(four, n_boot=5, candidates=FEW[::-1])
    assert all(c["inner_mare"] == float("inf") for c in r["candidates"])
    assert r["choice"]["objective"] == "huber" and r["chosen_by"].startswith("the first")
    r = extrapolate(pts, n_boot=5, candidates=FEW)
    assert all(np.isfinite(c["inner_mare"]) for c in r["candidates"])
    assert r["chosen_by"].startswith("nested")


def test_extrapolate_predicts_an_unseen_size_and_never_looks_at_it(synth):
    # where the law holds, the 90% interval covers most held-out points (seeds 0-7 with one
    # candidate: 78% on average; percentile intervals from 4 resampled sizes run a little short)
    runs = [extrapolate(synth.points(seed=s, noise=0.01), n_boot=30, candidates=FEW[:1])
            for s in range(4)]
    assert all(r["size"] == 1e10 and r["mare"] < 0.02 for r in runs)
    assert np.mean([r["coverage"] for r in runs]) >= 0.7
    pts = synth.points(seed=4, noise=0.01)
    r = extrapolate(pts, level=0.9, n_boot=20, seed=0, candidates=FEW)
    assert r["choice"] in [dict(law=c.law, warmup_clip=c.warmup_clip, objective=c.objective)
                           for c in FEW]
    # wreck the held-out size: the choice and the fitted parameters must not change
    y = pts.y.copy()
    y[pts.size == 1e10] *= 3.0
    r2 = extrapolate(replace(pts, y=y), level=0.9, n_boot=20, seed=0, candidates=FEW)
    assert r2["choice"] == r["choice"] and r2["params"] == r["params"]
    assert r2["mare"] > 0.5


def test_extrapolate_interval_widens_with_noise(synth):
    widths = []
    for noise in (0.005, 0.03):
        r = extrapolate(synth.points(seed=6, noise=noise), n_boot=30, candidates=FEW[:1])
        c = r["curve"]
        widths.append(np.mean(np.array(c["hi"]) / np.array(c["lo"])))
    assert widths[1] > widths[0] > 1


def _sigmoid_points(seed=0, n=40):
    """Test loss falling along ScaleRL curves (one per size), with 0.5% noise."""
    rng = np.random.default_rng(seed)
    x, y, size, step, curve = [], [], [], [], []
    for c, (n_, l0, a, mid) in enumerate(((1e9, 0.9, 0.55, 1.2e18), (3e9, 0.8, 0.45, 3e18))):
        steps = np.arange(1, n + 1)
        cc = 1e17 * steps * n_ / 1e9
        lt = l0 + (a - l0) / (1 + (mid / cc) ** 1.2)
        x += list(cc)
        y += list(lt * (1 + 0.005 * rng.standard_normal(n)))
        size += [n_] * n
        step += list(steps)
        curve += [c] * n
    return Points(np.array(x), np.array(y), np.array(size), np.array(step, float),
                  np.array(curve), ["a", "b"], x_name="C_flops", y_name="test_loss")


def test_scalerl_fit_matches_its_grid_and_recovers_the_curve():
    pts = _sigmoid_points()
    one = pts.subset(pts.curve == 0)
    r0 = float(one.y[0])
    law = fit_scalerl_curve(one, r0, early=0.1)
    prob = Problem(law, one.subset(one.x >= 0.1 * one.x.max()), "mse", False, fixed={"R0": r0})
    grid_best = min(prob.value(prob.internal(s)) for s in scalerl_starts(one, r0))
    assert law.result_.loss <= grid_best * (1 + 1e-9)  # refinement only improves on the grid
    assert law.params_["R0"] == r0 and abs(law.params_["A"] - 0.55) < 0.05


def test_compute_half_both_laws(synth):
    # the sigmoid's intervals run short on these 20-point halves (seeds 0-3: 38-90%, mean 63%)
    sigs = [compute_half(_sigmoid_points(s), "sigmoid", n_boot=30) for s in range(4)]
    assert all(r["mare"] < 0.03 and r["law"] == "sigmoid" for r in sigs)
    assert np.mean([r["coverage"] for r in sigs]) >= 0.5
    ll = compute_half(synth.points(seed=2, noise=0.01), "loglinear_kn", n_boot=30)
    assert ll["mare"] < 0.03 and ll["coverage"] >= 0.6
    assert set(ll["per_size"]) == {f"{s:.4g}" for s in synth.SIZES}


def _csv(synth, path, **kw):
    pts = synth.points(**kw)
    rows = ["N,step,C_flops,test_loss"] + [f"{s:g},{int(t)},{x:g},{y:.6g}" for s, t, x, y in
                                            zip(pts.size, pts.step, 1e12 * pts.x, pts.y)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_cli_prints_the_protocol_lines(tmp_path, capsys, synth, monkeypatch):
    # the nested CV is slow: a few candidates (the compute set's own test is below)
    monkeypatch.setattr("rlscale.scaling.extrapolation.candidates_for", lambda x: FEW)
    data = _csv(synth, tmp_path / "d.csv", seed=1, noise=0.01, n=12)
    assert cli.main(["fit", "--data", data, "--protocol", "compute-half", "--law", "sigmoid",
                     "--bootstrap", "10", "--out", str(tmp_path / "h"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^compute-half: law=sigmoid mare=[\d.]+ coverage=[\d.]+$", out, re.M)
    assert cli.main(["fit", "--data", data, "--protocol", "extrapolate", "--bootstrap", "10",
                     "--out", str(tmp_path / "x"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^extrapolate: size=1e\+10 mare=[\d.]+ coverage=[\d.]+ level=0.9$", out,
                     re.M)
    fj = json.loads((tmp_path / "x" / "fit.json").read_text())
    assert fj["protocol"]["choice"]["law"].startswith("loglinear_kn_param")
    assert "identified" in fj and "predict" in fj


def test_predict_from_a_fit_with_interval_and_curve(tmp_path, capsys, synth):
    data = _csv(synth, tmp_path / "d.csv", seed=3, noise=0.01)
    fitdir = tmp_path / "f"
    assert cli.main(["fit", "--data", data, "--law", "loglinear_kn_param", "--bootstrap", "30",
                     "--out", str(fitdir), "--no-plots"]) == 0
    capsys.readouterr()
    assert cli.main(["predict", "--fit", str(fitdir), "--size", "3e10", "--compute", "1e16",
                     "--curve", str(tmp_path / "c.csv")]) == 0
    out = capsys.readouterr().out
    m = re.search(r": ([\d.]+)  90% interval \[([\d.]+), ([\d.]+)\]", out)
    assert m and float(m[2]) < float(m[1]) < float(m[3])
    lines = (tmp_path / "c.csv").read_text().splitlines()
    assert lines[0] == "C_flops,prediction,lo,hi" and len(lines) == 61
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert cli.main(["predict", "--fit", str(fitdir), "--size", "3e10", "--steps", "40"]) == 0
    assert "interval" in capsys.readouterr().out
    assert cli.main(["predict", "--fit", str(fitdir), "--size", "-1", "--steps", "4"]) == 2
    assert "--size" in capsys.readouterr().err


@pytest.mark.parametrize("flags, needle", [
    (["--bootstrap", "1000000000"], "--bootstrap"), (["--delta", "-1"], "--delta"),
    (["--delta", "nan"], "--delta")])
def test_bad_fit_flags_one_line(tmp_path, capsys, synth, flags, needle):
    data = _csv(synth, tmp_path / "d.csv", n=5)
    assert cli.main(["fit", "--data", data, "--out", str(tmp_path / "o"), *flags]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("edit, column", [("N", "'N'"), ("neg_x", "'C_flops'"),
                                          ("same_x", "'C_flops'")])
def test_bad_values_name_file_and_column(tmp_path, capsys, edit, column):
    rows = ["N,step,C_flops,test_loss"] + [f"{n:g},{s},{1e15 * s * n / 1e9:g},{0.9 - 0.01 * s}"
                                            for n in (1e9, 3e9, 1e10) for s in range(1, 6)]
    if edit == "N":
        rows[3] = rows[3].replace("1e+09", "0", 1)
    elif edit == "neg_x":
        rows[2] = "1e+09,2,-5,0.88"
    else:
        rows = [",".join(r.split(",")[:2] + ["7e15"] + r.split(",")[3:]) for r in rows]
        rows[0] = "N,step,C_flops,test_loss"
    (tmp_path / "b.csv").write_text("\n".join(rows) + "\n")
    assert cli.main(["fit", "--data", str(tmp_path / "b.csv"), "--out", str(tmp_path / "o"),
                     "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "b.csv" in err and column in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_sigmoid_rate_bounds():
    assert [(p.lo, p.hi) for p in Sigmoid(rate=True).specs()[:2]] == [(0.0, 1.0), (0.0, 1.0)]


def test_protocols_on_runs_from_a_results_database(tmp_path, capsys, synth, monkeypatch):
    """Runs imported into a results database (as a sweep or `rlscale import` leaves them)."""
    from rlscale.files import atomic_write_json
    from rlscale.store import import_run_dir

    monkeypatch.setattr("rlscale.scaling.extrapolation.candidates_for", lambda x: FEW[:1])
    pts = synth.points(seed=7, noise=0.01, n=12)
    db = tmp_path / "results.sqlite"
    for s in np.unique(pts.size):
        run = tmp_path / f"run{s:g}"
        m = pts.size == s
        atomic_write_json(run / "config.json", {"model": f"m{s:g}", "N": float(s), "steps": 12})
        rows = [{"step": int(t), "C_paper": float(1e12 * x), "test_loss": float(y)}
                for t, x, y in zip(pts.step[m], pts.x[m], pts.y[m])]
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        import_run_dir(db, run)
    for proto in (["extrapolate"], ["compute-half", "--law", "loglinear_kn"]):
        assert cli.main(["fit", "--data", str(db), "--x", "C_paper", "--protocol", *proto,
                         "--bootstrap", "10", "--out", str(tmp_path / proto[0]),
                         "--no-plots"]) == 0
        fj = json.loads((tmp_path / proto[0] / "fit.json").read_text())
        assert fj["n_curves"] == 5 and fj["protocol"]["mare"] < 0.05
    assert "extrapolate: size=1e+10" in capsys.readouterr().out


def test_interval_flags_bound_and_decade():
    from rlscale.scaling.intervals import wide_intervals
    from rlscale.scaling.laws import LogLinearKNParam

    specs = LogLinearKNParam().specs()
    iv = {"K_max": (0.1, 0.12), "N0": (1e9, 3e10), "e0": (-1.0, 1.0), "e1": (-0.5, 0.5),
          "x0": (-100.0, 12.0)}
    assert wide_intervals(iv, specs) == ["N0 interval spans more than a decade",
                                         "x0 interval reaches its bound"]


def test_compute_axes_add_the_per_parameter_pivot(tmp_path, capsys, synth, monkeypatch):
    """In compute (C_flops, C_paper, C_itemized) the candidates gain the per-parameter pivot,
    in data they do not; the CLI passes the x column's set to the protocol."""
    from rlscale.scaling import extrapolation as ex

    laws = lambda cs: {c.law for c in cs}  # noqa: E731
    for x in ex.COMPUTE_COLUMNS:
        assert laws(ex.candidates_for(x)) == {"loglinear_kn_param", "loglinear_kn_param_q",
                                              "loglinear_kn_param_pn"}
        assert len(ex.candidates_for(x)) == 12
    assert "loglinear_kn_param_pn" not in laws(ex.candidates_for("D"))
    seen = []
    real = ex.extrapolate
    monkeypatch.setattr(ex, "extrapolate", lambda pts, candidates, **kw: seen.append(
        laws(candidates)) or real(pts, candidates=FEW[:1], **kw))
    pts = synth.points(seed=1, noise=0.01, n=12)
    data = tmp_path / "d.csv"
    data.write_text("N,step,C_flops,D,test_loss\n" + "".join(
        f"{s:g},{int(t)},{1e12 * x:g},{x:g},{y:.6g}\n"
        for s, t, x, y in zip(pts.size, pts.step, pts.x, pts.y)))
    for x in ("C_flops", "D"):
        assert cli.main(["fit", "--data", str(data), "--x", x, "--protocol", "extrapolate",
                         "--bootstrap", "4", "--out", str(tmp_path / x), "--no-plots"]) == 0
    assert "loglinear_kn_param_pn" in seen[0] and "loglinear_kn_param_pn" not in seen[1]
