"""The GRPO step of a study's runs, timed by phase: the compact forward scoring each length
bucket as it comes (session 32) against the same forward with its [B, C, V] logits assembled
and scored whole (the path before it), in the same process on the same rollouts' settings.

Each RUN is a finished study's GRPO run directory (its config.json names the pre-trained
model and the task); the run is restarted from its model in a scratch directory for --steps
steps, once per path, with the same seed, and the mean per-step update and rollout seconds
over the steps after the first two are printed, with their ratio. One thread, as a study
worker. Usage:
  .venv/bin/python benchmarks/grpo_step.py STUDY/runs/20k STUDY/runs/600k [--steps 8]

--idle compares instead the update with its idle groups (every advantage exactly 0:
TrainConfig.skip_zero_advantage, session 36) left out against the same update run over every
row, bucketwise both; --policy starts from the run's final policy (RUN/policy: late in RL, where
most groups are idle) instead of its pre-trained model. The mean share of idle groups of each
side's steps is printed with the times.
"""
import argparse, json, shutil, statistics, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from rlscale.grpo import logprobs as L
from rlscale.grpo import trainer as T
from rlscale.grpo.config import TrainConfig

ap = argparse.ArgumentParser()
ap.add_argument("runs", nargs="+")
ap.add_argument("--steps", type=int, default=8)
ap.add_argument("--idle", action="store_true", help="skip_zero_advantage on vs off")
ap.add_argument("--policy", action="store_true", help="start from RUN/policy")
a = ap.parse_args()
torch.set_num_threads(1)
bucketwise = T.sequence_logprobs


def whole_logits(model, ids, attn, pos, cmask, temperature=1.0, return_entropy=False,
                 entropy_grad=True, checkpoint=False):
    C = cmask.shape[1]
    lp, ent = L._whole_logprobs(model, ids, attn, pos, C, ids[:, -C:], temperature,
                                return_entropy, entropy_grad, checkpoint, False)
    return (lp * cmask, ent * cmask) if return_entropy else lp * cmask


def steps(run: Path, path, skip: bool = True) -> dict:
    cfg = TrainConfig(**TrainConfig.settings_of(json.loads((run / "config.json").read_text())))
    cfg.steps, cfg.eval_every, cfg.checkpoint_every, cfg.heldout = a.steps, 0, 10**6, 16
    cfg.skip_zero_advantage = skip
    if a.policy:
        cfg.model = str(run / "policy")
    T.sequence_logprobs = path
    out = Path(tempfile.mkdtemp(prefix="grpo_step_"))
    try:
        tr = T._Trainer(cfg, out / "run", False)
        tr.open_run(False)
        rows = [tr.step() for _ in range(a.steps)][2:]
    finally:
        T.sequence_logprobs = bucketwise
        shutil.rmtree(out, ignore_errors=True)
    return {k: statistics.fmean(r[k] for r in rows)
            for k in ("time_update", "time_rollout", "frac_zero_std")}


for run in map(Path, a.runs):
    if a.idle:
        on, off = steps(run, bucketwise, True), steps(run, bucketwise, False)
        print(f"grpo_step run={run.name} start={'policy' if a.policy else 'pretrained'} update: "
              f"idle_skipped={on['time_update']:.3f}s all_rows={off['time_update']:.3f}s "
              f"idle_speedup={off['time_update'] / on['time_update']:.2f} idle_share="
              f"{on['frac_zero_std']:.2f}/{off['frac_zero_std']:.2f} rollout: "
              f"{on['time_rollout']:.3f}s / {off['time_rollout']:.3f}s", flush=True)
        continue
    new, old = steps(run, bucketwise), steps(run, whole_logits)
    print(f"grpo_step run={run.name} update: bucketwise={new['time_update']:.3f}s "
          f"whole_logits={old['time_update']:.3f}s ratio={old['time_update'] / new['time_update']:.2f} "
          f"rollout: {new['time_rollout']:.3f}s / {old['time_rollout']:.3f}s", flush=True)
