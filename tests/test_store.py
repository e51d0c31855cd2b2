import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rlscale import cli
from rlscale.errors import UserError
from rlscale.files import atomic_write_json
from rlscale.store import Store, config_hash, fit_rows, import_run_dir, is_db

ROOT = Path(__file__).resolve().parents[1]


def make_run_dir(d: Path, steps=3, N=1000.0, lr=1e-6, done=True, torn=False) -> Path:
    cfg = {"model": "micro:tiny", "task": "arith", "lr": lr, "batch_size": 4, "steps": steps,
           "seed": 0, "N": N}
    atomic_write_json(d / "config.json", cfg)
    last = steps if done else steps - 1
    rows = [{"step": s, "D": 4 * s, "C_paper": 6 * N * 100 * s, "reward_mean": 0.1 * s,
             "test_loss": 1 - 0.1 * s if s % 2 == 0 else None} for s in range(1, last + 1)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if torn:
        text += '{"step": 99, "D":'
    (d / "metrics.jsonl").write_text(text)
    return d


def test_config_hash_ignores_derived_keys_and_order():
    a = {"model": "m", "lr": 1e-6, "seed": 0}
    assert config_hash(a) == config_hash({"seed": 0, "lr": 1e-6, "model": "m", "N": 123})
    assert config_hash(a) != config_hash({**a, "seed": 1})


def test_a_run_keeps_its_id_when_trainconfig_gains_a_field():
    """The default config's id is the one it had before clip_c existed (session 44's code): a
    field added at a value that changes nothing stays out of the hash (store.NEUTRAL_DEFAULTS),
    so a sweep resumes across the upgrade. A new TrainConfig field fails this test until its
    neutral default is listed there."""
    from rlscale.grpo.config import resolve

    cfg = resolve(None).to_dict()
    assert config_hash(cfg) == "db8a59dae6af6fad"
    assert config_hash({k: v for k, v in cfg.items() if k != "clip_c"}) == "db8a59dae6af6fad"
    assert config_hash({**cfg, "clip_c": 3.0}) != "db8a59dae6af6fad"  # another objective
    assert config_hash({**cfg, "stop_at_question": False}) != "db8a59dae6af6fad"
    assert config_hash({**cfg, "fewshot_as_multiturn": True}) != "db8a59dae6af6fad"
    assert config_hash({**cfg, "chat_template_kwargs": '{"a":1}'}) != "db8a59dae6af6fad"
    assert config_hash({**cfg, "system_prompt": "Be brief."}) != "db8a59dae6af6fad"
    assert config_hash({**cfg, "log_samples": 0}) == "db8a59dae6af6fad"


def test_import_run_dir_is_idempotent(tmp_path):
    db = tmp_path / "r.sqlite"
    run_dir = make_run_dir(tmp_path / "run", torn=True)
    rid = import_run_dir(db, run_dir)
    assert rid == import_run_dir(db, run_dir)
    assert is_db(db) and not is_db(run_dir / "config.json")
    with Store(db) as s:
        runs = s.runs()
        assert len(runs) == 1 and len(s.metrics(runs[0]["run_id"])) == 3  # torn tail skipped
        r = s.run(rid[:6])
        assert r["status"] == "done" and r["N"] == 1000.0 and r["config"]["lr"] == 1e-6
        assert [m["step"] for m in s.metrics(rid)] == [1, 2, 3]


def test_unfinished_run_is_running_and_status_transitions(tmp_path):
    db = tmp_path / "r.sqlite"
    rid = import_run_dir(db, make_run_dir(tmp_path / "run", done=False))
    with Store(db) as s:
        assert s.run(rid)["status"] == "running"
        assert s.set_status(rid, "running", new_attempt=True) == 1
        assert s.set_status(rid, "failed", error="boom", new_attempt=False) == 1
        assert s.run(rid)["error"] == "boom"
        assert s.status_counts() == {"pending": 0, "running": 0, "done": 0, "failed": 1}
        with pytest.raises(UserError, match="not one of"):
            s.set_status(rid, "weird")
        with pytest.raises(UserError, match="not in"):
            s.run("ffff")


def test_fit_rows_has_fitter_columns(tmp_path):
    db = tmp_path / "r.sqlite"
    import_run_dir(db, make_run_dir(tmp_path / "a", N=1e3))
    import_run_dir(db, make_run_dir(tmp_path / "b", N=2e3, lr=1e-5))
    rows = fit_rows(db)
    assert len(rows) == 2  # only step 2 of each run has a test loss
    for r in rows:
        assert {"run_id", "N", "step", "D", "C_paper", "test_loss", "model"} <= set(r)
    assert sorted(r["N"] for r in rows) == [1e3, 2e3]
    assert len(fit_rows(db, eval_only=False)) == 6
    with pytest.raises(UserError):
        fit_rows(tmp_path / "missing.sqlite")


def test_not_a_database_is_user_error(tmp_path):
    p = tmp_path / "x.sqlite"
    p.write_text("hello")
    with pytest.raises(UserError, match="not an SQLite"):
        Store(p)


def test_runs_cli_list_show_export(tmp_path, capsys):
    db = tmp_path / "r.sqlite"
    rid = import_run_dir(db, make_run_dir(tmp_path / "a"))
    assert cli.main(["runs", "list", "--db", str(db)]) == 0
    assert rid in capsys.readouterr().out
    assert cli.main(["runs", "show", rid[:5], "--db", str(db)]) == 0
    assert '"lr"' in capsys.readouterr().out
    out = tmp_path / "o.csv"
    assert cli.main(["runs", "export", "--format", "csv", "--out", str(out), "--db", str(db)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and rows[1]["test_loss"] == "0.8" and rows[0]["N"] == "1000.0"
    pq = tmp_path / "o.parquet"
    assert cli.main(["runs", "export", "--format", "parquet", "--out", str(pq),
                     "--db", str(db)]) == 0
    import pyarrow.parquet as papq

    t = papq.read_table(pq).to_pydict()
    assert t["step"] == [1, 2, 3] and t["test_loss"][1] == pytest.approx(0.8)
    assert cli.main(["runs", "list", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert cli.main(["runs", "show", "zzz", "--db", str(db)]) == 2
    assert cli.main(["import", "run", str(tmp_path / "nope"), "--db", str(db)]) == 2
    assert cli.main(["import", "run", str(make_run_dir(tmp_path / "b", lr=0.1)),
                     "--db", str(db)]) == 0
    assert len(Store(db).runs()) == 2


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from rlscale.store import Store
    db, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    s = Store(db)
    for i in range(n):
        rid = s.add_run({{"writer": tag, "i": i}})
        s.set_status(rid, "running", new_attempt=True)
        s.add_metrics(rid, [{{"step": k, "C_paper": float(k), "test_loss": 0.5}} for k in range(3)])
        s.set_status(rid, "done")
    s.close()
""")


def test_two_processes_hammering_lose_no_row(tmp_path):
    db = tmp_path / "r.sqlite"
    script = tmp_path / "w.py"
    script.write_text(WRITER.format(root=str(ROOT)))
    n = 150
    procs = [subprocess.Popen([sys.executable, str(script), str(db), tag, str(n)],
                              stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Store(db) as s:
        runs = s.runs()
        assert len(runs) == 2 * n
        assert sum(len(s.metrics(r["run_id"])) for r in s.runs()) == 2 * n * 3
        assert all(r["status"] == "done" and r["attempts"] == 1 for r in runs)
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
