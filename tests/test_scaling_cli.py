"""`rlscale fit` end to end, and the analyses (data reuse, fixed compute)."""

import csv
import json

import numpy as np
import pytest

from rlscale import cli
from rlscale.errors import UserError
from rlscale.scaling import compute_to_target, data_reuse, fit, fixed_compute


def synth_csv(synth, path, noise=0.01, seed=0):
    pts = synth.points(seed=seed, noise=noise)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["N", "step", "D", "test_loss"])
        w.writerows(zip(pts.size, pts.step.astype(int), pts.x, pts.y))
    return str(path)


def test_fit_writes_json_and_plots_and_prints_a_table(tmp_path, capsys, synth):
    data = synth_csv(synth, tmp_path / "d.csv")
    out = tmp_path / "out"
    rc = cli.main(["fit", "--data", data, "--law", "loglinear_kn", "--x", "D",
                   "--bootstrap", "20", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "K_max" in text and "90% interval" in text and "R^2" in text
    fj = json.loads((out / "fit.json").read_text())
    assert fj["law"] == "loglinear_kn" and fj["n_points"] == 100 and fj["converged"]
    assert set(fj["params"]) >= {"K_max", "N0"} and fj["r2"] > 0.9
    lo, hi = fj["intervals"]["K_max"]
    assert lo <= fj["params"]["K_max"] <= hi
    for png in fj["plots"]:
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert fj["plots"] == ["fit_curves.png", "k_of_N.png"]


@pytest.mark.parametrize("protocol, extra", [("intra", ["--first-steps", "10"]),
                                             ("inter", ["--max-size", "3e9"]),
                                             ("loso", [])])
def test_protocols_report_errors_on_the_unseen_part(tmp_path, protocol, extra, synth,
                                                   monkeypatch):
    from rlscale.scaling.extrapolation import Choice

    # loso runs the extrapolation protocol per size: one candidate, few resamples, to stay fast
    monkeypatch.setattr("rlscale.scaling.extrapolation.CANDIDATES",
                        (Choice("loglinear_kn_param", 0, "mse"),))
    if protocol == "loso":
        extra = [*extra, "--bootstrap", "10"]
    data = synth_csv(synth, tmp_path / "d.csv")
    out = tmp_path / protocol
    rc = cli.main(["fit", "--data", data, "--law", "loglinear_kn_param", "--x", "D",
                   "--protocol", protocol, "--out", str(out), "--no-plots", *extra])
    assert rc == 0
    fj = json.loads((out / "fit.json").read_text())
    p = fj["prediction"]
    assert p["mare"] < 0.03 and p["r2"] > 0.8  # synthetic data follow the law (1% noise)
    n_unseen = {"intra": 50, "inter": 20, "loso": 100}[protocol]
    assert p["n"] == n_unseen


def test_bad_input_exits_2_with_one_line(tmp_path, capsys, synth):
    data = synth_csv(synth, tmp_path / "d.csv")
    assert cli.main(["fit", "--data", data, "--x", "C_flops", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "d.csv" in err and "'C_flops'" in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "fit.json").exists()
    assert cli.main(["fit", "--data", data, "--x", "D", "--protocol", "intra",
                     "--out", str(tmp_path / "o")]) == 2
    assert "--first-steps" in capsys.readouterr().err


def test_gain_power_from_curves_and_chinchilla_default_objective(tmp_path, synth):
    data = synth_csv(synth, tmp_path / "d.csv", noise=0.0)
    out = tmp_path / "g"
    assert cli.main(["fit", "--data", data, "--law", "gain_power", "--x", "D", "--out",
                     str(out)]) == 0
    fj = json.loads((out / "fit.json").read_text())
    assert fj["n_points"] == 5 and set(fj["params"]) == {"a", "b"} and fj["params"]["b"] > 0


def test_fixed_compute_and_compute_to_target(synth):
    law = fit(synth.points(noise=0.0), "loglinear_kn")
    sizes = law.sizes_
    fc = fixed_compute(law, sizes, 1e4)
    assert fc["best_size"] == sizes[int(np.argmin(fc["loss"]))]
    assert np.allclose(fc["loss"], [law.predict(np.array([1e4]), s)[0] for s in sizes])
    target = 0.5
    ct = compute_to_target(law, sizes, target)
    for s, need in zip(sizes, ct["x_needed"]):
        if np.isfinite(need):
            assert law.predict(np.array([need]), s)[0] == pytest.approx(target, rel=1e-6)
    # a size's extra cost (pre-training compute) can change which size is cheapest
    finite = [i for i, v in enumerate(ct["x_needed"]) if np.isfinite(v)]
    penal = np.zeros(len(sizes))
    penal[sizes == ct["best_size"]] = 1e40
    if len(finite) > 1:
        assert compute_to_target(law, sizes, target, extra=penal)["best_size"] != ct["best_size"]


def test_data_reuse_finds_where_the_final_loss_degrades():
    tau, step, loss = [], [], []
    rng = np.random.default_rng(0)
    for t, final in ((1, 0.50), (2, 0.50), (5, 0.505), (20, 0.56), (50, 0.65)):
        for s in range(1, 21):
            tau.append(t)
            step.append(s)
            loss.append(final + 0.2 * (20 - s) / 20 + 0.002 * rng.standard_normal())
    r = data_reuse(tau, step, loss, tail=5, rel_tol=0.02)
    assert r.tau == [1, 2, 5, 20, 50] and r.degrades_at == 20
    assert r.final_loss[0] == pytest.approx(0.50 + 0.2 * 2 / 20, abs=0.01)
    with pytest.raises(UserError):
        data_reuse([], [], [])


def test_law_choices_are_the_laws():
    """The CLI lists the laws by hand (no scipy import to build the parser); the list is LAWS."""
    import argparse

    from rlscale.scaling.cli import configure
    from rlscale.scaling.laws import LAWS

    p = argparse.ArgumentParser()
    configure(p)
    (law,) = [a for a in p._actions if a.dest == "law"]
    assert list(law.choices) == list(LAWS)
