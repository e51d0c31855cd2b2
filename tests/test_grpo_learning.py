"""It learns: GRPO from a random-init micro model raises the reward on a learnable task.

Task: "Item n: Tom has d pens. How many pens does Tom have?" with d in 1..3 and a flexible
answer check. A random-init model almost never ends with the right digit (reward ~1%); the
policy must learn to answer with a digit, and then which one. Seeded, CPU, a few seconds.
"""

import json
import random

import torch

from rlscale.files import read_jsonl
from rlscale.grpo.config import TrainConfig
from rlscale.grpo.trainer import train


def _copy_task(path, n=3000):
    rng = random.Random(0)
    words = ["apples", "pens", "books", "coins", "cards", "eggs"]
    with open(path, "w") as f:
        for _ in range(n):
            d, w, k = rng.randint(1, 3), rng.choice(words), rng.randint(0, 999)
            q = f"Item {k}: Tom has {d} {w}. How many {w} does Tom have?"
            f.write(json.dumps({"question": q, "answer": f"#### {d}"}) + "\n")


def test_reward_rises(tmp_path):
    _copy_task(tmp_path / "copy.jsonl")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic reductions, and the 2-core machine stays usable
    try:
        cfg = TrainConfig.from_dict(dict(
            model="micro:tiny", task=str(tmp_path / "copy.jsonl"), reward="flexible",
            batch_size=8, group_size=8, mini_batch_size=8, max_new_tokens=3, steps=60, lr=1e-2,
            heldout=50, eval_samples=2, eval_every=1000, checkpoint_every=1000, seed=0))
        train(cfg, tmp_path / "run")
    finally:
        torch.set_num_threads(threads)
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    reward = [r["reward_mean"] for r in rows[1:]]
    early, late = sum(reward[:10]) / 10, sum(reward[-20:]) / 20
    assert early < 0.06, reward
    assert late > 0.15 and late > 3 * early, reward
    assert rows[-1]["test_loss"] <= rows[0]["test_loss"] - 0.1  # held out, sampled at 0.7
