"""Paired A/B of pre-training's matmul precision (session 34): one rung of a finished study,
pre-trained again with that study's own job parameters and another seed, at a given
`matmul_precision`; optionally stopped at a step (the schedule stays the full run's). Prints the
final loss (full run) or the mean logged loss over the last 100 steps before the stop.

    .venv/bin/python experiments/precision_ab.py STUDY RUNG SEED highest|medium OUT [--stop-at N]

Session 34 ran it on a cpu-words-10m study (20k / 60k full, 600k --stop-at 1000; seeds 1-3), the
two precisions of a seed side by side, one thread each.
"""
import argparse
import json

import torch

from rlscale.corpus import Corpus
from rlscale.pretrain import PretrainConfig, pretrain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("study", "rung", "seed", "precision", "out"):
        ap.add_argument(name, type=int if name == "seed" else str)
    ap.add_argument("--stop-at", type=int, default=0, help="stop before this step (0: full run)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = json.load(open(f"{a.study}/pretrain/{a.rung}/pretrain.json"))["config"]
    cfg.update(seed=a.seed, matmul_precision=a.precision, task=f"{a.study}/task")
    if a.stop_at:
        real = Corpus.batch

        def batch(self, step):  # interrupting saves the last finished step, as a kill would
            if step == a.stop_at:
                raise KeyboardInterrupt
            return real(self, step)

        Corpus.batch = batch
    try:
        s = pretrain(PretrainConfig(**cfg), a.out, progress=False)
        print(a.rung, a.seed, a.precision, f"final_loss {s['final_loss']:.4f}",
              f"wall {s['wall_s']:.0f}", "bf16", s["matmul_bf16"])
    except KeyboardInterrupt:
        rows = [json.loads(x) for x in open(f"{a.out}/loss.jsonl")]
        last = [r["loss"] for r in rows if a.stop_at - 100 < r["step"] <= a.stop_at]
        print(a.rung, a.seed, a.precision, "steps", rows[-1]["step"],
              f"loss_last_100 {sum(last) / len(last):.4f}")


if __name__ == "__main__":
    main()
