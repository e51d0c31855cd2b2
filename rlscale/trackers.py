"""Optional experiment trackers: TensorBoard, Weights & Biases, MLflow. Off by default.

    trackers = make_trackers(["tensorboard"], run_dir, config)   # e.g. from --tracker tensorboard
    for t in trackers: t.log({"reward_mean": 0.4, "test_loss": 0.7}, step)
    for t in trackers: t.close()

Each backend is imported only when asked for; a missing package is a one-line UserError. Only
finite numbers are logged (metrics.jsonl stays the record; trackers are a view of it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from rlscale.errors import UserError
from rlscale.finite import finite_float

NAMES = ("tensorboard", "wandb", "mlflow")
_PIP = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


class Tracker(Protocol):
    def log(self, metrics: dict, step: int) -> None: ...

    def close(self) -> None: ...


def scalars(metrics: dict) -> dict[str, float]:
    return {k: x for k, v in metrics.items() if (x := finite_float(v)) is not None}


def _missing(name: str) -> UserError:
    return UserError(f"--tracker {name}: the {_PIP[name]} package is not installed "
                     f"(pip install {_PIP[name]})")


class TensorBoardTracker:
    def __init__(self, run_dir: Path, config: dict):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in config.items()))

    def log(self, metrics: dict, step: int) -> None:
        for k, v in scalars(metrics).items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, run_dir: Path, config: dict):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb") from None
        # the run dir name is stable across resumes, so a resumed run continues its W&B run
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "rlscale"),
                              name=run_dir.name, id=run_dir.name, resume="allow",
                              dir=str(run_dir), config=config)

    def log(self, metrics: dict, step: int) -> None:
        self.run.log(scalars(metrics), step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowTracker:
    def __init__(self, run_dir: Path, config: dict):
        try:
            import mlflow
        except ImportError:
            raise _missing("mlflow") from None
        self.mlflow = mlflow
        mlflow.start_run(run_name=run_dir.name)
        # MLflow params are strings of bounded length
        mlflow.log_params({k: str(v)[:250] for k, v in config.items()})

    def log(self, metrics: dict, step: int) -> None:
        self.mlflow.log_metrics(scalars(metrics), step=step)

    def close(self) -> None:
        self.mlflow.end_run()


_CLASSES = {"tensorboard": TensorBoardTracker, "wandb": WandbTracker, "mlflow": MlflowTracker}


def parse_names(text: str | list[str] | None) -> list[str]:
    """'tensorboard,wandb' (or a list of such) -> validated names, in order, no duplicates."""
    items = text if isinstance(text, list) else [text or ""]
    names: list[str] = []
    for item in items:
        for n in (s.strip().lower() for s in str(item).split(",")):
            if not n or n == "none":
                continue
            if n not in _CLASSES:
                raise UserError(f"--tracker: unknown tracker {n!r}; choose from {', '.join(NAMES)}")
            if n not in names:
                names.append(n)
    return names


def make_trackers(names, run_dir, config: dict) -> list[Tracker]:
    """Open the named trackers for a run; [] when none are asked for (the default)."""
    run_dir = Path(run_dir)
    opened: list[Tracker] = []
    try:
        for n in parse_names(list(names) if names else None):
            opened.append(_CLASSES[n](run_dir, config))
    except BaseException:
        for t in opened:
            t.close()
        raise
    return opened
