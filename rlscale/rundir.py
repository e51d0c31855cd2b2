"""One reader for a GRPO run directory: RUN_DIR/config.json and RUN_DIR/metrics.jsonl.

The store (`import_run_dir`), the fitter (`scaling.data.read_run_dir`) and the study's report all
read runs through `read_run`, so what a run directory holds, and how a torn last line or a bad
config is handled, is decided in one place. Pure file reading: no models, no numpy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rlscale.errors import UserError
from rlscale.files import read_json, read_jsonl

CONFIG = "config.json"
METRICS = "metrics.jsonl"
POLICY = "policy"  # the final policy as an HF model directory (written at the end of a run)


@dataclass
class Run:
    path: Path
    config: dict  # the resolved TrainConfig plus model facts (N: non-embedding parameters)
    rows: list[dict]  # every metrics row, in order; a torn last line is dropped

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def evals(self) -> list[dict]:
        """The rows with a held-out evaluation (step 0 is the pre-trained baseline)."""
        return [r for r in self.rows if r.get("test_loss") is not None]

    @property
    def last_step(self) -> int:
        return max((int(r["step"]) for r in self.rows
                    if isinstance(r.get("step"), (int, float)) and not isinstance(r["step"], bool)),
                   default=0)

    @property
    def finished(self) -> bool:
        steps = self.config.get("steps")
        return isinstance(steps, int) and self.last_step >= steps

    def size(self) -> float:
        """N from config.json; UserError naming the file when it is missing or not positive."""
        n = self.config.get("N")
        if not isinstance(n, (int, float)) or isinstance(n, bool) or not n > 0:
            raise UserError(f"{self.path / CONFIG}: field 'N' (non-embedding parameters) missing "
                            "or not a positive number")
        return float(n)


def read_run(run_dir: str | os.PathLike, need_metrics: bool = True) -> Run:
    """The run in run_dir. A missing metrics.jsonl is a UserError unless need_metrics=False
    (a run that has not logged a step yet)."""
    path = Path(run_dir)
    config = read_json(path / CONFIG)
    if not isinstance(config, dict):
        raise UserError(f"{path / CONFIG}: expected a JSON object")
    mpath = path / METRICS
    if not mpath.is_file() and not need_metrics:
        return Run(path, config, [])
    return Run(path, config, read_jsonl(mpath, tolerate_torn_tail=True))


def policy_dir(run_dir: str | os.PathLike) -> Path:
    """Where a run's final policy lives (it may not exist yet: check before loading)."""
    return Path(run_dir) / POLICY
