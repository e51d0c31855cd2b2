import json
import math

import pytest

from rlscale import cli
from rlscale.errors import UserError
from rlscale.importers import (read_trl_run, read_verl_log, read_verl_logs, verl_rows,
                               verl_val_score)
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
        assert sum(len(s.metrics(r["run_id"])) for r in s.runs()) == 7 + 6
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


# -- upstream formats: verl's own writers, TRL's own trainer ---------------------------------------
VERL_WRITER = r'''
import json, os, sys
import numpy as np
from verl.utils.logger.aggregate_logger import concat_dict_to_str
from verl.utils.tracking import FileLogger

out = sys.argv[1]
def metrics(s):  # numpy scalars, as verl's metric reducers return them
    m = {"training/global_step": s, "actor/pg_loss": np.float64(-0.01),
         "critic/score/mean": np.float64(0.1 * s), "response_length/mean": np.float32(30.0),
         "perf/total_num_tokens": np.int64(1000), "actor/lr": 1e-06, "training/epoch": 0,
         "actor/entropy": float("nan"), "is_last": False}
    if s % 2 == 0:
        m["val-core/openai/gsm8k/reward/mean@1"] = np.float64(0.1 * s)
    return m
with open(os.path.join(out, "console.log"), "w") as f:
    for s in range(1, 5):
        f.write("(TaskRunner pid=7) " + concat_dict_to_str(metrics(s), step=s) + "\n")
for name, steps in (("launch-1.jsonl", range(1, 5)), ("launch-2.jsonl", range(3, 7))):
    os.environ["VERL_FILE_LOGGER_PATH"] = os.path.join(out, "metrics", name)
    os.makedirs(os.path.join(out, "metrics"), exist_ok=True)
    logger = FileLogger("rlscale", "x")
    for s in steps:  # launch 2 resumed from the step-2 checkpoint: steps 3-4 are redone
        m = metrics(s)
        if name == "launch-2.jsonl":
            m["critic/score/mean"] = np.float64(0.5)
        logger.log(m, s)
    logger.finish()
'''


def test_verl_logs_written_by_verls_own_loggers(tmp_path):
    """Console lines from verl's concat_dict_to_str under numpy >= 2 (`np.float64(0.1)`) and
    two launches' files from verl's FileLogger (each opens its file "wb")."""
    import subprocess

    from verl_env import verl_python

    subprocess.run([verl_python(), "-c", VERL_WRITER, str(tmp_path)], check=True,
                   capture_output=True, timeout=1200)
    console = (tmp_path / "console.log").read_text()
    assert "critic/score/mean:np.float64(0.1)" in console  # the numpy-2 repr really is there
    raw = read_verl_log(tmp_path / "console.log")
    assert [r["step"] for r in raw] == [1, 2, 3, 4]
    assert raw[0]["critic/score/mean"] == pytest.approx(0.1)
    assert raw[0]["perf/total_num_tokens"] == 1000 and raw[0]["response_length/mean"] == 30.0
    rows = verl_rows(raw, N, batch_size=8)
    assert rows[1]["test_loss"] == pytest.approx(0.8) and rows[0]["test_loss"] is None
    assert rows[3]["C_paper"] == pytest.approx(6 * N * 4000)

    # both launches, a directory read in name order: the later launch's steps 3-4 win
    rows = verl_rows(read_verl_logs([tmp_path / "metrics"]), N, batch_size=8)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["reward_mean"] for r in rows] == pytest.approx([0.1, 0.2, 0.5, 0.5, 0.5, 0.5])
    assert rows[-1]["tokens"] == 6000  # each step counted once
    assert rows[5]["test_loss"] == pytest.approx(1 - 0.6)

    # FileLogger writes line + newline in one unbuffered write: a killed writer can leave a
    # last line without its newline (a torn tail, skipped); anything else is an error
    f = tmp_path / "metrics" / "launch-2.jsonl"
    text = f.read_text()
    f.write_text(text[:-20])
    assert [r["step"] for r in read_verl_log(f)] == [3, 4, 5]
    f.write_text(text[:-20] + "\n")
    with pytest.raises(UserError, match=r"launch-2.jsonl:4: not valid JSON"):
        read_verl_log(f)


def test_import_verl_reads_every_launch_and_checks_numbers(tmp_path, capsys):
    d = tmp_path / "verl_metrics"
    d.mkdir()
    for name, steps, reward in (("launch-a.jsonl", (1, 2, 3), 0.1), ("launch-b.jsonl", (3, 4), 0.9)):
        (d / name).write_text("".join(json.dumps(
            {"step": s, "data": {"perf/total_num_tokens": 100, "critic/score/mean": reward,
                                 "actor/entropy": None}}) + "\n" for s in steps))
    db = str(tmp_path / "r.sqlite")
    assert cli.main(["import", "verl", str(d), "--n-params", "1e6", "--batch-size", "4",
                     "--db", db]) == 0
    with Store(db) as s:
        (run,) = s.runs()
        rows = s.metrics(run["run_id"])
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[-1]["tokens"] == 400
    assert rows[2]["reward_mean"] == 0.9
    for flag in (["--batch-size", "-8"], ["--batch-size", "0"], ["--rollout-n", "-1"]):
        assert cli.main(["import", "verl", str(d), "--n-params", "1e6", *flag,
                         "--db", str(tmp_path / "x.sqlite")]) == 2
        err = capsys.readouterr().err
        assert flag[0] in err and len(err.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    assert cli.main(["import", "verl", str(tmp_path / "empty"), "--n-params", "1",
                     "--db", db]) == 2


def test_trl_eval_rows_take_eval_num_tokens(tmp_path):
    """TRL 1.x GRPOTrainer.log: eval entries carry eval_num_tokens and no num_tokens; with
    logging_steps 10 and eval_steps 5 the step-5 eval has no training entry beside it."""
    hist = [{"eval_reward": 0.2, "eval_num_tokens": 5000.0, "eval_runtime": 1.0, "epoch": 0.5,
             "step": 5},
            {"loss": 0.0, "reward": 0.3, "num_tokens": 10000.0, "epoch": 1.0, "step": 10},
            {"eval_reward": 0.4, "eval_num_tokens": 10000.0, "epoch": 1.0, "step": 10}]
    rows = _trl_rows(tmp_path / "ok", hist)
    assert [(r["step"], r["tokens"]) for r in rows] == [(5, 5000.0), (10, 10000.0)]
    assert rows[0]["C_paper"] == pytest.approx(6 * N * 5000) and rows[0]["test_loss"] == 0.8
    with pytest.raises(UserError, match="step 5: eval entry without 'eval_num_tokens'"):
        _trl_rows(tmp_path / "bad", [{"eval_reward": 0.2, "step": 5}])


def _trl_rows(d, hist):
    d.mkdir()
    (d / "trainer_state.json").write_text(json.dumps({"log_history": hist}))
    return read_trl_run(d, N, batch_size=2)


def test_trl_run_written_by_trls_own_trainer(tmp_path):
    """A real TRL GRPOTrainer run (tiny model, 10 steps, TRL's default logging_steps 10, eval
    every 5 steps): the step-5 eval row gets the tokens seen by step 5, not 0."""
    trl = pytest.importorskip("trl")
    import torch
    from datasets import Dataset
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rlscale.models import micro_tokenizer

    tok = micro_tokenizer()
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, intermediate_size=64, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))
    data = Dataset.from_list([{"prompt": f"{i} + {i} ="} for i in range(40)])
    args = trl.GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4,
                          per_device_eval_batch_size=4, num_generations=4,
                          max_completion_length=4, max_steps=10, eval_strategy="steps",
                          eval_steps=5, use_cpu=True, report_to=[], save_strategy="no", seed=0)
    assert args.logging_steps == 10  # TRL's default
    trainer = trl.GRPOTrainer(model=model, processing_class=tok, args=args, train_dataset=data,
                              eval_dataset=data.select(range(4)),
                              reward_funcs=lambda completions, **kw: [float(len(c) % 2)
                                                                      for c in completions])
    trainer.train()
    trainer.state.save_to_json(str(tmp_path / "trainer_state.json"))
    history = trainer.state.log_history
    step5 = [e for e in history if e["step"] == 5]
    assert len(step5) == 1 and "eval_num_tokens" in step5[0] and "num_tokens" not in step5[0]
    rows = read_trl_run(tmp_path, N, batch_size=1)
    by_step = {r["step"]: r for r in rows}
    assert by_step[5]["tokens"] == step5[0]["eval_num_tokens"] > 0
    assert 0 < by_step[5]["tokens"] < by_step[10]["tokens"]
    assert by_step[5]["test_loss"] == pytest.approx(1 - step5[0]["eval_reward"])
