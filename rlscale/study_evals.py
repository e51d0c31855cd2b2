"""The study's evaluation jobs: what is measured of each model, before and after RL.

    before RL (the pre-trained model)    pass@k (samples at the rollout temperature), transfer
    after RL (each main run's policy)    greedy 0-shot on the baseline's problems, pass@k, transfer

(the k-shot greedy baseline is its own job). Each eval is an `rlscale eval` run into
OUT/evals/<rung>/<base|run>/<sub>/, resumable on its own; a job loads its model once. The
after-RL model is the run's final policy (RUN_DIR/policy); a run written before policies were
saved is evaluated from its last checkpoint's weights in the pre-trained model.
"""

from __future__ import annotations

from pathlib import Path

from rlscale.errors import UserError


def eval_specs(preset, out: Path, after: bool) -> list[dict]:
    """The evals of one model as plain data (they cross a process boundary)."""
    from rlscale.findings_evals import transfer_families

    # 0-shot prompts are short: 512 rows per generate() call decode ~25-40% faster than 64
    # (fewer decoding passes; at 32 samples, 16 problems a call instead of 2). The k-shot
    # baseline keeps 64: its 5-shot prompts pad to the longest row of a call (400 rows: slower)
    common = dict(shots=(0,), max_new_tokens=preset.max_new_tokens, seed=preset.seed,
                  batch_size=512)
    task = str(out / "task")
    specs = []
    if after:  # the same problems as the baseline's 0-shot: a paired before/after comparison
        specs.append(dict(sub="greedy", task=task, samples=1, temperature=0.0,
                          n_problems=preset.kshot_problems, **common))
    specs.append(dict(sub="passk", task=task, samples=preset.passk_samples,
                      temperature=preset.passk_temperature,
                      n_problems=preset.passk_problems or preset.kshot_problems, **common))
    # families RL never sees may hold longer chains than RL's: twice the room, none cut short
    for fid, spec in transfer_families(preset.transfer_task, preset.transfer_more):
        specs.append(dict(sub=fid, task=spec, samples=1, temperature=0.0,
                          n_problems=preset.kshot_problems,
                          **{**common, "max_new_tokens": 2 * preset.max_new_tokens}))
    return specs


def eval_units(evals: list[dict]) -> int:
    """Progress units of a job: problems x shot counts (one completions.jsonl line each)."""
    return sum(len(e["shots"]) * e["n_problems"] for e in evals)


def eval_cost(evals: list[dict], n: int) -> float:
    """Estimated seconds (ordering and the overall bar only), as the baseline's estimate."""
    return sum(len(e["shots"]) * e["n_problems"] * e["samples"] for e in evals) * (n + 5e4) * 4e-8


def run_evals(out: str, params: dict) -> dict:
    """The evals of one model (loaded once) into out/<sub>/: each resumable on its own."""
    from rlscale.evaluate import EvalConfig, evaluate

    model, tok = load_policy(params)
    res = {}
    for e in params["evals"]:
        kw = {k: v for k, v in e.items() if k != "sub"}
        cfg = EvalConfig(model=params["model"], out=str(Path(out) / e["sub"]),
                         **{**kw, "shots": tuple(kw["shots"])})
        res[e["sub"]] = evaluate(cfg, model, tok)
    return res


def load_policy(params: dict):
    """(model, tokenizer) of an evals job: the pre-trained model, or a run's final policy."""
    import torch

    from rlscale.grpo import checkpoint as ck
    from rlscale.models import load_model
    from rlscale.rundir import policy_dir

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not params["run"]:
        return load_model(params["base"], device=device)
    policy = policy_dir(params["run"])
    if (policy / "config.json").is_file():
        return load_model(str(policy), device=device)
    latest = ck.latest_checkpoint(params["run"])
    if latest is None:
        raise UserError(f"{params['run']}: no policy/ and no checkpoint to evaluate")
    model, tok = load_model(params["base"], device=device)
    ck.load_checkpoint(latest, model)
    return model.eval(), tok
