"""Which rollouts verl updates together (runs in verl's environment, .venv-verl).

    python verl_minibatches.py CASE.json  -> one JSON line: each update's rows, by row index

CASE.json: {"overrides": [...], "dp": data-parallel ranks, "lengths": [tokens of each row]},
rows in the order verl's trainer holds them after the rollout (each prompt's n rollouts side by
side: `batch.repeat(n, interleave=True)`), row i of prompt i // n. What verl 0.9's
RayPPOTrainer then does with a step's batch, each step by verl's own code: Hydra composes
`ppo_trainer` with the overrides; if `trainer.balance_batch`, its `_balance_batch` reorders the
rows (the method's own source, read from verl's ray_trainer.py and run with the names it uses:
importing that module needs verl's whole training stack; the trainer's config and its dp size
are all the method reads of its trainer); the actor's
dispatch hands each of the dp ranks a contiguous chunk (`DataProto.chunk`); each rank iterates
its chunk with `tensordict_utils.make_iterator` as `train_mini_batch` does (mini-batch
ppo_mini_batch_size x n / dp rows, the actor's shuffle and data_loader_seed + rank); update u
trains on the union of the ranks' u-th mini-batches.
"""

import json
import sys
from types import SimpleNamespace


def balance_batch():
    """verl's `RayPPOTrainer._balance_batch`, defined from its source in ray_trainer.py."""
    import ast
    import os

    import torch
    import verl
    from verl import DataProto
    from verl.utils import seqlen_balancing

    path = os.path.join(os.path.dirname(verl.__file__), "trainer", "ppo", "ray_trainer.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    trainer = next(n for n in tree.body if isinstance(n, ast.ClassDef)
                   and n.name == "RayPPOTrainer")
    method = next(n for n in trainer.body if getattr(n, "name", None) == "_balance_batch")
    names = {"torch": torch, "DataProto": DataProto, **{k: getattr(seqlen_balancing, k) for k in (
        "calculate_workload", "get_seqlen_balanced_partitions", "log_seqlen_unbalance")}}
    exec(compile(ast.Module(body=[method], type_ignores=[]), path, "exec"), names)
    return names["_balance_batch"]


def updates(overrides: list[str], dp: int, lengths: list[int]) -> list[list[int]]:
    import torch
    from verl import DataProto
    from verl.utils import tensordict_utils as tu

    from verl_validate import composed

    config = composed(overrides)
    width = max(lengths)
    mask = torch.tensor([[1] * k + [0] * (width - k) for k in lengths])
    batch = DataProto.from_dict(tensors={"attention_mask": mask,
                                         "row": torch.arange(len(lengths))})
    if config.trainer.balance_batch:
        trainer = SimpleNamespace(config=config, _get_dp_size=lambda wg, role: dp,
                                  actor_rollout_wg=None)
        balance_batch()(trainer, batch, metrics={})
    actor = config.actor_rollout_ref.actor
    mini = actor.ppo_mini_batch_size * config.actor_rollout_ref.rollout.n // dp
    per_rank = [list(tu.make_iterator(chunk.to_tensordict(), mini_batch_size=mini,
                                      epochs=actor.ppo_epochs,
                                      seed=actor.data_loader_seed + rank,
                                      dataloader_kwargs={"shuffle": actor.shuffle}))
                for rank, chunk in enumerate(batch.chunk(dp))]
    return [sorted(int(r) for rank in per_rank for r in rank[u]["row"])
            for u in range(len(per_rank[0]))]


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        case = json.load(f)
    print(json.dumps(updates(case["overrides"], case["dp"], case["lengths"])), flush=True)
