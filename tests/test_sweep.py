"""Sweeps (spec, expansion, local Ray runs, a killed worker); the trackers: test_trackers.py."""

import json
import shutil
import time
from pathlib import Path

import pytest

from rlscale.errors import UserError
from rlscale.store import Store, import_run_dir
from rlscale.sweep import TEST_KILL_ENV, expand, load_spec, sweep


def run_sweep(spec, **kw):
    """A sweep whose database lies in its own folder (the default is the working directory's)."""
    return sweep(spec, db=Path(spec).with_suffix("") / "results.sqlite", **kw)


def write(path, text):
    path.write_text(text)
    return path


# -- spec -----------------------------------------------------------------------------------------
def test_spec_expands_grid_to_resolved_configs(tmp_path):
    spec = load_spec(write(tmp_path / "s.toml", """
[base]
preset = "paper"
model = "micro:tiny"
steps = 3
[grid]
lr = [1e-6, 1e-5]
seed = [0, 1, 2]
[resources]
num_cpus = 2
"""))
    runs = expand(spec)
    assert len(runs) == 6 and len({r.run_id for r in runs}) == 6
    assert spec.resources == {"num_cpus": 2, "num_gpus": 0, "memory": None}
    r = runs[0]
    assert r.point == {"lr": 1e-6, "seed": 0}
    assert r.config["batch_size"] == 512 and r.config["preset"] == "paper"  # preset applied
    assert r.config["steps"] == 3
    # the same spec gives the same ids (ids are hashes of the resolved config)
    assert [x.run_id for x in expand(load_spec(tmp_path / "s.toml"))] == [x.run_id for x in runs]


@pytest.mark.parametrize("text,match", [
    ("[base]\nlr = \n", "not valid TOML"),
    ("[grid]\nlr = 1e-6\n", "non-empty list"),
    ("[grid]\nlr = []\n", "non-empty list"),
    ("[base]\nlr = 1e-6\n[grid]\nlr = [1e-5]\n", "both"),
    ("[gird]\nlr = [1]\n", "unknown table"),
    ("[resources]\nnum_tpus = 1\n", "num_tpus"),
    ("[resources]\nnum_cpus = -1\n", ">= 0"),
    ("[grid]\nlearning_rate = [1e-6]\n", "learning_rate"),
    ("[grid]\ngroup_size = [1]\n", "group"),
])
def test_bad_spec_is_user_error_naming_file(tmp_path, text, match):
    p = write(tmp_path / "bad.toml", text)
    with pytest.raises(UserError, match=match) as e:
        expand(load_spec(p))
    assert "bad.toml" in str(e.value)


def test_missing_spec(tmp_path):
    from rlscale import cli

    assert cli.main(["sweep", str(tmp_path / "none.toml")]) == 2


# -- Ray sweeps -----------------------------------------------------------------------------------

MICRO = """
[base]
model = "micro:tiny"
task = "arith"
steps = 2
batch_size = 2
mini_batch_size = 2
group_size = 2
max_new_tokens = 8
heldout = 4
eval_every = 1
checkpoint_every = 1
[grid]
seed = {seeds}
"""


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module: startup costs seconds, so the tests share it."""
    import ray

    from rlscale.sweep import _init_ray

    t0 = time.time()
    _init_ray(None, 2)
    print(f"ray.init: {time.time() - t0:.1f}s")
    yield ray
    ray.shutdown()


def test_local_sweep_runs_then_skips(tmp_path, ray_local, capsys):
    spec = write(tmp_path / "micro.toml", MICRO.format(seeds="[0, 1, 2, 3]"))
    t0 = time.time()
    result = run_sweep(spec, workers=2, max_retries=1)
    first = time.time() - t0
    assert len(result) == 4 and set(result.values()) == {"done"}, capsys.readouterr().err
    db = tmp_path / "micro" / "results.sqlite"
    with Store(db) as s:
        for rid in result:
            r = s.run(rid)
            assert r["attempts"] == 1 and r["N"] and r["N"] > 0
            steps = [m["step"] for m in s.metrics(rid)]
            assert steps[-1] == 2 and all(m.get("C_paper") is not None for m in s.metrics(rid))
            # the id computed from the run's own config.json is the sweep's id
            assert import_run_dir(s, r["run_dir"]) == rid
    err = capsys.readouterr().err
    assert "4 to run" in err and "summary: 0 pending, 0 running, 4 done, 0 failed" in err
    t1 = time.time()
    assert run_sweep(spec, workers=2) == result
    err = capsys.readouterr().err
    assert "4 already done, 0 to run" in err
    with Store(db) as s:
        assert all(s.run(rid)["attempts"] == 1 for rid in result)  # nothing ran again
    print(f"4-run sweep: {first:.1f}s; rerun: {time.time() - t1:.1f}s")


@pytest.mark.slow
def test_killed_worker_run_is_retried_from_checkpoint(tmp_path, ray_local, monkeypatch, capsys):
    spec = write(tmp_path / "kill.toml", MICRO.format(seeds="[10, 11]").replace(
        "steps = 2", "steps = 3"))
    victim = expand(load_spec(spec))[0].run_id
    monkeypatch.setenv(TEST_KILL_ENV, victim)
    t0 = time.time()
    result = run_sweep(spec, workers=2, max_retries=2)
    assert set(result.values()) == {"done"}, capsys.readouterr().err
    with Store(tmp_path / "kill" / "results.sqlite") as s:
        assert s.run(victim)["attempts"] == 2
        assert [m["step"] for m in s.metrics(victim)][-1] == 3
        other = next(r for r in result if r != victim)
        assert s.run(other)["attempts"] == 1
    log = [json.loads(x) for x in
           (tmp_path / "kill" / "runs" / victim / "sweep_attempts.jsonl").read_text().splitlines()]
    starts = [e for e in log if "start" in e]
    assert [e["attempt"] for e in starts] == [1, 2]
    assert starts[0]["resumed_from_step"] is None and starts[1]["resumed_from_step"] >= 1
    assert not any(e.get("outcome") == "done" and e["attempt"] == 1 for e in log)

    # a run whose worker died before its first checkpoint (config + metrics, no checkpoint, a
    # stale 'running' status) runs again from scratch on the next invocation; the rest is skipped
    run_dir = tmp_path / "kill" / "runs" / other
    shutil.rmtree(run_dir / "checkpoints")
    with Store(tmp_path / "kill" / "results.sqlite") as s:
        s.set_status(other, "running")
    assert set(run_sweep(spec, workers=2, max_retries=0).values()) == {"done"}
    with Store(tmp_path / "kill" / "results.sqlite") as s:
        assert s.run(other)["attempts"] == 2 and s.run(victim)["attempts"] == 2
        assert [m["step"] for m in s.metrics(other)] == [0, 1, 2, 3]
    log = (tmp_path / "kill" / "runs" / other / "sweep_attempts.jsonl").read_text().splitlines()
    assert [json.loads(x)["resumed_from_step"] for x in log if '"start"' in x] == [None, None]
    print(f"kill sweep: {time.time() - t0:.1f}s")


@pytest.mark.slow
def test_worker_that_always_dies_fails_after_k_retries_then_rerun_resumes(
        tmp_path, ray_local, monkeypatch, capsys):
    spec = write(tmp_path / "die.toml", MICRO.format(seeds="[20, 21]"))
    victim = expand(load_spec(spec))[1].run_id
    monkeypatch.setenv(TEST_KILL_ENV, victim + ":always")
    t0 = time.time()
    result = run_sweep(spec, workers=2, max_retries=1)
    assert result[victim] == "failed" and list(result.values()).count("done") == 1
    db = tmp_path / "die" / "results.sqlite"
    with Store(db) as s:
        assert s.run(victim)["attempts"] == 2  # 1 + K, Ray's retry of the dead worker included
        assert "worker died" in s.run(victim)["error"]
        assert [m["step"] for m in s.metrics(victim)][:2] == [0, 1]  # finished steps kept
    assert "summary: 0 pending, 0 running, 1 done, 1 failed" in capsys.readouterr().err
    # the cause is gone: a second invocation gives the failed run a fresh budget and it
    # finishes from its checkpoint; the finished run is skipped
    monkeypatch.delenv(TEST_KILL_ENV)
    assert set(run_sweep(spec, workers=2, max_retries=0).values()) == {"done"}
    with Store(db) as s:
        assert s.run(victim)["attempts"] == 3 and s.metrics(victim)[-1]["step"] == 2
        assert all(s.run(r)["attempts"] == 1 for r in result if r != victim)
    log = (tmp_path / "die" / "runs" / victim / "sweep_attempts.jsonl").read_text().splitlines()
    assert [json.loads(x)["resumed_from_step"] is not None for x in log if '"start"' in x] == [
        False, True, True]
    print(f"always-dying sweep + rerun: {time.time() - t0:.1f}s")


def test_attempt_over_the_cap_fails_without_training(tmp_path):
    from rlscale.sweep import run_task

    db = tmp_path / "r.sqlite"
    with Store(db) as s:
        rid = s.add_run({"model": "micro:tiny", "seed": 5})
        s.set_status(rid, "running", new_attempt=True)
        s.set_status(rid, "failed", error="OSError: disk full")
    with pytest.raises(RuntimeError, match="no attempts left"):
        run_task(rid, {"model": "micro:tiny"}, str(tmp_path / "run"), str(db), max_attempts=1)
    with Store(db) as s:
        r = s.run(rid)
        assert r["status"] == "failed" and r["attempts"] == 1 and "disk full" in r["error"]
    assert not (tmp_path / "run" / "config.json").exists()


def test_failing_run_is_retried_then_failed(tmp_path, ray_local, capsys):
    # a task file that exists passes the checks before the sweep; its content fails in the run
    write(tmp_path / "broken.jsonl", '{"question": "1 + 1?", "answer": "#### 2"}\n{"question"\n')
    spec = write(tmp_path / "bad.toml", MICRO.format(seeds="[0]").replace(
        'task = "arith"', f'task = "{tmp_path / "broken.jsonl"}"'))
    result = run_sweep(spec, workers=2, max_retries=1)
    (rid, status), = result.items()
    assert status == "failed"
    with Store(tmp_path / "bad" / "results.sqlite") as s:
        r = s.run(rid)
        assert r["attempts"] == 2 and "broken.jsonl" in r["error"]
    err = capsys.readouterr().err
    assert "retrying" in err and "summary: 0 pending, 0 running, 0 done, 1 failed" in err

