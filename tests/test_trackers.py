"""Optional experiment trackers: off by default, names checked, missing packages one line,
only finite numbers logged (rlscale.finite)."""

import sys
import types

import numpy as np
import pytest

from rlscale.errors import UserError
from rlscale.finite import finite_float
from rlscale.trackers import make_trackers, parse_names, scalars


def test_trackers_off_by_default_and_names_checked():
    assert make_trackers([], "x", {}) == [] and make_trackers(None, "x", {}) == []
    assert parse_names("tensorboard, wandb,tensorboard") == ["tensorboard", "wandb"]
    with pytest.raises(UserError, match="unknown tracker 'tb'"):
        parse_names("tb")


@pytest.mark.parametrize("name,module", [("wandb", "wandb"), ("mlflow", "mlflow"),
                                         ("tensorboard", "torch.utils.tensorboard")])
def test_missing_tracker_package_is_one_line_error(monkeypatch, tmp_path, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(UserError, match=f"pip install {name}"):
        make_trackers([name], tmp_path, {"lr": 1e-6})


def test_trackers_log_scalars_to_backends(monkeypatch, tmp_path):
    calls = []
    wandb = types.ModuleType("wandb")

    class WRun:
        def log(self, m, step):
            calls.append(("wandb", m, step))

        def finish(self):
            calls.append(("wandb", "finish"))

    wandb.init = lambda **kw: calls.append(("wandb.init", kw["config"], kw["id"])) or WRun()
    mlflow = types.ModuleType("mlflow")
    mlflow.start_run = lambda run_name: calls.append(("mlflow.start", run_name))
    mlflow.log_params = lambda p: calls.append(("mlflow.params", p))
    mlflow.log_metrics = lambda m, step: calls.append(("mlflow", m, step))
    mlflow.end_run = lambda: calls.append(("mlflow", "end"))
    tb = types.ModuleType("torch.utils.tensorboard")

    class Writer:
        def __init__(self, log_dir):
            calls.append(("tb.dir", log_dir))

        def add_text(self, *a):
            pass

        def add_scalar(self, k, v, step):
            calls.append(("tb", k, v, step))

        def flush(self):
            pass

        def close(self):
            calls.append(("tb", "close"))

    tb.SummaryWriter = Writer
    for name, mod in (("wandb", wandb), ("mlflow", mlflow), ("torch.utils.tensorboard", tb)):
        monkeypatch.setitem(sys.modules, name, mod)
    run_dir = tmp_path / "run1"
    ts = make_trackers(["tensorboard,wandb", "mlflow"], run_dir, {"lr": 1e-6})
    assert len(ts) == 3
    for t in ts:
        t.log({"reward_mean": 0.5, "test_loss": None, "note": "x", "done": True,
               "nan": float("nan"), "step": 3}, 3)
        t.close()
    assert ("wandb", {"reward_mean": 0.5, "step": 3.0}, 3) in calls
    assert ("mlflow", {"reward_mean": 0.5, "step": 3.0}, 3) in calls
    assert ("tb", "reward_mean", 0.5, 3) in calls and ("tb", "close") in calls
    assert ("tb.dir", str(run_dir / "tensorboard")) in calls
    assert ("wandb.init", {"lr": 1e-6}, "run1") in calls and ("mlflow", "end") in calls


def test_scalars_keep_finite_real_numbers_only():
    m = {"a": 1, "b": 0.5, "np": np.float32(0.25), "npi": np.int64(3), "flag": True,
         "nan": float("nan"), "inf": float("-inf"), "none": None, "s": "1.0", "t": [1.0]}
    assert scalars(m) == {"a": 1.0, "b": 0.5, "np": 0.25, "npi": 3.0}
    assert finite_float(np.bool_(True)) is None and finite_float(2) == 2.0
