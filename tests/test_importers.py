import json
import math

import pytest

from rlscale import cli
from rlscale.errors import UserError
from rlscale.importers import read_trl_run, read_verl_log, verl_rows, verl_val_score
from rlscale.store import Store, fit_rows

N = 5e8


def verl_console_log(path, steps=6, test_freq=2, tokens=1000):
    """A console log as verl prints it (`step:N - k:v - ...`), with Ray noise around it."""
    lines = ["(TaskRunner pid=1) Using LocalLogger is deprecated.",
             "step:0 - val-core/openai/gsm8k/reward/mean@1:0.200000 - "
             "val-aux/openai/gsm8k/reward/std@1:0.4"]
    for s in range(1, steps + 1):
        f = {"training/global_step": s, "training/epoch": 0, "actor/pg_loss": -0.01,
             "critic/score/mean": 0.2 + 0.05 * s, "response_length/mean": 100.0,
             "prompt_length/mean": 25.0, "perf/total_num_tokens": tokens,
             "actor/lr": 1e-06}
        if s % test_freq == 0:
            f["val-core/openai/gsm8k/reward/mean@1"] = 0.2 + 0.05 * s
        lines.append("(TaskRunner pid=1) step:%d - " % s
                     + " - ".join(f"{k}:{v}" for k, v in f.items()) + " - is_last:False")
    path.write_text("\n".join(lines) + "\n")
    return path


def verl_file_log(path, steps=4):
    """verl's file logger: {"step": N, "data": {...}} per line (no token count: lengths only)."""
    lines = []
    for s in range(1, steps + 1):
        data = {"critic/score/mean": 0.5, "response_length/mean": 30.0,
                "prompt_length/mean": 10.0}
        if s == steps:
            data["val/test_score/gsm8k"] = 0.75
            data["val/test_score/math"] = 0.25
        lines.append(json.dumps({"step": s, "data": data}))
    path.write_text("\n".join(lines) + "\n")
    return path


def trl_state(d, steps=6, per_step_tokens=2000, eval_every=3):
    hist = []
    for s in range(1, steps + 1):
        hist.append({"step": s, "epoch": s / 10, "reward": 0.1 * s, "loss": 0.0,
                     "num_tokens": float(per_step_tokens * s), "completions/mean_length": 40.0})
        if s % eval_every == 0:
            hist.append({"step": s, "epoch": s / 10, "eval_reward": 0.1 * s, "eval_loss": 0.0})
    hist.append({"step": steps, "train_runtime": 12.0, "train_loss": 0.0})
    d.mkdir(parents=True, exist_ok=True)
    (d / "trainer_state.json").write_text(json.dumps({"global_step": steps,
                                                      "log_history": hist}))
    return d


def test_read_verl_console_log(tmp_path):
    raw = read_verl_log(verl_console_log(tmp_path / "v.log"))
    assert [r["step"] for r in raw] == list(range(7))
    assert raw[3]["perf/total_num_tokens"] == 1000 and "is_last" not in raw[3]
    rows = verl_rows(raw, N, batch_size=8)
    assert rows[0]["test_loss"] == pytest.approx(0.8) and rows[0]["C_paper"] == 0
    assert rows[1]["test_loss"] is None
    assert rows[4]["test_loss"] == pytest.approx(1 - 0.4)
    assert rows[6]["tokens"] == 6000 and rows[6]["C_paper"] == pytest.approx(6 * N * 6000)
    assert rows[6]["D"] == 48 and rows[6]["reward_mean"] == pytest.approx(0.5)


def test_read_verl_file_log_uses_lengths_and_old_val_keys(tmp_path):
    raw = read_verl_log(verl_file_log(tmp_path / "v.jsonl"))
    with pytest.raises(UserError, match="no token count"):
        verl_rows(raw, N)
    rows = verl_rows(raw, N, batch_size=4, rollout_n=2)
    assert rows[0]["tokens"] == (10 + 30) * 4 * 2
    assert rows[-1]["test_loss"] == pytest.approx(0.5)  # mean over the two data sources


def test_val_score_takes_largest_n_per_source():
    m = {"val-core/a/reward/mean@1": 0.1, "val-core/a/reward/mean@4": 0.3,
         "val-core/b/acc/mean@2": 0.5, "val-aux/a/reward/std@4": 9.0}
    assert verl_val_score(m) == pytest.approx(0.4)
    assert verl_val_score({"critic/score/mean": 1.0}) is None


@pytest.mark.parametrize("text,where", [
    ("step:1 - critic/score/mean:0.5\nstep:2 - critic/score/mean:abc\n", ":2:"),
    ("step:1 - critic/score/mean:0.5 - garbage\n", ":1:"),
    ('{"step": 1, "data": {"x": 1}}\n{"step": 2, "data": {"x": \n{"step": 3}\n', ":2:"),
    ('{"data": {"x": 1}}\n', ":1:"),
    ("nothing that looks like verl\n", "no verl metric"),
])
def test_malformed_verl_log_names_file_and_line(tmp_path, text, where):
    p = tmp_path / "bad.log"
    p.write_text(text)
    with pytest.raises(UserError, match=where) as e:
        read_verl_log(p)
    assert "bad.log" in str(e.value)


def test_read_trl_run(tmp_path):
    rows = read_trl_run(trl_state(tmp_path / "out" / "checkpoint-6"), N, batch_size=4)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[2]["test_loss"] == pytest.approx(0.7) and rows[1]["test_loss"] is None
    assert rows[5]["C_paper"] == pytest.approx(6 * N * 12000) and rows[5]["D"] == 24
    # an output dir without its own trainer_state.json: the last checkpoint is read
    trl_state(tmp_path / "out" / "checkpoint-2", steps=2)
    assert len(read_trl_run(tmp_path / "out", N)) == 6
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "trainer_state.json").write_text('{"log_history": [{"loss": 1}]}')
    with pytest.raises(UserError, match=r"log_history\[0\]"):
        read_trl_run(tmp_path / "bad", N)
    with pytest.raises(UserError, match="no trainer_state"):
        read_trl_run(tmp_path / "bad" / "..", N)


def test_import_cli_round_trip(tmp_path, capsys):
    db = str(tmp_path / "r.sqlite")
    vlog = str(verl_console_log(tmp_path / "v.log"))
    tdir = str(trl_state(tmp_path / "trl"))
    assert cli.main(["import", "verl", vlog, "--n-params", str(N), "--batch-size", "8",
                     "--db", db]) == 0
    assert cli.main(["import", "trl", tdir, "--n-params", "1e9", "--db", db]) == 0
    assert cli.main(["import", "verl", vlog, "--n-params", str(N), "--batch-size", "8",
                     "--db", db]) == 0  # again: same run, no duplicates
    with Store(db) as s:
        runs = s.runs()
        assert sorted(r["source"] for r in runs) == ["trl", "verl"]
        assert s.metric_count() == 7 + 6
    rows = fit_rows(db)
    assert {r["N"] for r in rows} == {N, 1e9} and all(r["test_loss"] is not None for r in rows)
    assert cli.main(["import", "verl", vlog, "--db", db]) == 2  # no N
    assert "--n-params" in capsys.readouterr().err
    (tmp_path / "bad.log").write_text("step:1 - a:b\n")
    assert cli.main(["import", "verl", str(tmp_path / "bad.log"), "--n-params", "1",
                     "--db", db]) == 2
    assert "bad.log:1" in capsys.readouterr().err


# -- import round trip into the fitter ------------------------------------------------------------
K_MAX, N0 = 0.13, 1e9  # the law the synthetic runs follow: log10 L = -k(N) log10 C + E(N)
SIZES = {"verl": (5e8, 0.9), "trl": (1.5e9, 1.1)}  # engine: (N, E(N))


def law_loss(n, e, c):
    return 10 ** (e - K_MAX / (1 + N0 / n) * math.log10(c))


def law_runs(tmp_path, steps=8, tokens=4000):
    """A verl console log and a TRL run whose validation scores follow the paper's law in 6NT."""
    n, e = SIZES["verl"]
    lines = []
    for s in range(1, steps + 1):
        score = 1 - law_loss(n, e, 6 * n * tokens * s)
        lines.append(f"step:{s} - perf/total_num_tokens:{tokens} - critic/score/mean:{score!r}"
                     f" - val-core/gsm8k/reward/mean@1:{score!r}")
    vlog = tmp_path / "verl.log"
    vlog.write_text("\n".join(lines) + "\n")
    n, e = SIZES["trl"]
    hist = []
    for s in range(1, steps + 1):
        score = 1 - law_loss(n, e, 6 * n * tokens * s)
        hist += [{"step": s, "reward": score, "num_tokens": float(tokens * s)},
                 {"step": s, "eval_reward": score}]
    tdir = tmp_path / "trl"
    tdir.mkdir()
    (tdir / "trainer_state.json").write_text(json.dumps({"log_history": hist}))
    db = str(tmp_path / "r.sqlite")
    assert cli.main(["import", "verl", str(vlog), "--n-params", str(SIZES["verl"][0]),
                     "--batch-size", "16", "--db", db]) == 0
    assert cli.main(["import", "trl", str(tdir), "--n-params", str(SIZES["trl"][0]),
                     "--batch-size", "16", "--db", db]) == 0
    return db


def test_imported_runs_carry_the_law_in_c_paper(tmp_path):
    import numpy as np

    rows = fit_rows(law_runs(tmp_path))
    assert len(rows) == 16
    for n, e in SIZES.values():
        pts = [(r["C_paper"], r["test_loss"]) for r in rows if r["N"] == n]
        slope, icpt = np.polyfit(np.log10([c for c, _ in pts]), np.log10([l for _, l in pts]), 1)
        assert slope == pytest.approx(-K_MAX / (1 + N0 / n), rel=1e-6)
        assert icpt == pytest.approx(e, rel=1e-6)


@pytest.mark.parametrize("via", ["sqlite", "csv"])
def test_fit_runs_on_imported_runs(tmp_path, via, capsys):
    pytest.importorskip("rlscale.scaling.cli", reason="the fitter (rlscale.scaling) is not built")
    data = law_runs(tmp_path)
    if via == "csv":
        assert cli.main(["runs", "export", "--format", "csv", "--out",
                         str(tmp_path / "runs.csv"), "--db", data]) == 0
        data = str(tmp_path / "runs.csv")
    out = tmp_path / "fit"
    rc = cli.main(["fit", "--data", data, "--law", "loglinear_kn", "--x", "C_paper",
                   "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    fit = json.loads((out / "fit.json").read_text())
    assert fit["law"] == "loglinear_kn" and fit["n_points"] == 16
    assert fit["params"]["K_max"] == pytest.approx(K_MAX, rel=0.1)
