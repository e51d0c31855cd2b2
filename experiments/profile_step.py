"""The torch profiler's table for one training step as a study runs it (session 35): where a
step's time goes, op by op. A profile, not a benchmark: speed claims are benchmarks/'s.

    pretrain STUDY RUNG ROWS LEN  rlscale.pretrain_loop.Loop.step on random tokens of a finished
                                  study's pre-trained RUNG (its model dir), ROWS x LEN, fp32
    grpo RUN                      five GRPO steps of a finished study's run directory (its
                                  config.json), restarted in a scratch directory
    rollout STUDY RUNG            a GRPO rollout as the study samples it (16 train prompts x 8,
                                  temperature 1, the study's stop strings) from the pre-trained
                                  RUNG, under cProfile: the Python side (the stop-string check,
                                  the tokenizer calls) that the torch profiler does not show

    .venv/bin/python experiments/profile_step.py pretrain /tmp/s34/run14 20k 32 128
    .venv/bin/python experiments/profile_step.py grpo /tmp/s34/run14/runs/60k
    .venv/bin/python experiments/profile_step.py rollout /tmp/s34/run14 60k

One thread, as a study worker; prints the mean step time, then the 22 ops (functions, for
rollout) of most self time.
"""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.profiler import profile


def pretrain_step(study: str, rung: str, rows: int, length: int):
    from rlscale.models import load_model
    from rlscale.pretrain_loop import Loop

    model, _ = load_model(f"{study}/pretrain/{rung}/model", "cpu", "fp32")
    model.train()

    class Random:
        def batch(self, step):
            x = torch.randint(2, 500, (rows, length + 1),
                              generator=torch.Generator().manual_seed(step))
            return x[:, :-1], x[:, 1:], torch.ones(rows, length)

    cfg = SimpleNamespace(weight_decay=0.1, lr=1e-3, grad_clip=1.0, matmul_precision="highest")
    loop = Loop(cfg, Random(), model, "cpu", None)
    return lambda i: loop.step(i, 1e-3), None


def grpo_step(run: str):
    from rlscale.grpo import trainer as T
    from rlscale.grpo.config import TrainConfig

    cfg = TrainConfig(**TrainConfig.settings_of(json.loads((Path(run) / "config.json").read_text())))
    cfg.steps, cfg.eval_every, cfg.checkpoint_every, cfg.heldout = 10, 0, 10**6, 16
    scratch = Path(tempfile.mkdtemp(prefix="profile_step_"))
    tr = T._Trainer(cfg, scratch / "run", False)
    tr.open_run(False)
    return lambda i: tr.step(), scratch


def rollout_step(study: str, rung: str):
    from rlscale.models import load_model
    from rlscale.rollout import SamplingParams, generate
    from rlscale.tasks import STOP_STRINGS, format_prompt, load_task

    model, tok = load_model(f"{study}/pretrain/{rung}/model", "cpu", "fp32")
    prompts = [format_prompt(p) for p in load_task(f"{study}/task").train[:16] for _ in range(8)]
    params = SamplingParams(96, 1.0, 1.0, STOP_STRINGS)
    return lambda i: generate(model.eval(), tok, prompts, params, seed=i), None


def cprofile(step) -> None:
    import cProfile
    import pstats

    pr = cProfile.Profile()
    pr.runcall(lambda: [step(i) for i in range(5)])
    pstats.Stats(pr).sort_stats("tottime").print_stats(22)


def main() -> None:
    torch.set_num_threads(1)
    kind, args = sys.argv[1], sys.argv[2:]
    step, scratch = (pretrain_step(args[0], args[1], int(args[2]), int(args[3]))
                     if kind == "pretrain" else rollout_step(args[0], args[1])
                     if kind == "rollout" else grpo_step(args[0]))
    try:
        for i in range(2):
            step(i)
        t0 = time.perf_counter()
        for i in range(5):
            step(i)
        print(f"{kind} {' '.join(args)} s/step {(time.perf_counter() - t0) / 5:.4f}")
        if kind == "rollout":
            return cprofile(step)
        with profile() as p:
            for i in range(5):
                step(i)
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=22))
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
