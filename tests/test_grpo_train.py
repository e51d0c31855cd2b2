"""`rlscale train` end to end on a tiny random-init model: metrics, config, resume, bad configs."""

import json

import pytest

from rlscale.cli import main
from rlscale.files import read_jsonl
from rlscale.grpo.config import TrainConfig
from rlscale.grpo.trainer import train

TINY = dict(model="micro:tiny", task="arith:easy", batch_size=4, group_size=4, mini_batch_size=2,
            max_new_tokens=8, heldout=8, eval_every=2, checkpoint_every=2, steps=4, lr=1e-3)
VOLATILE = ("time_", "tokens_per_s", "mfu", "matmul_peak")


def _flags(d):
    return [x for k, v in d.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def _stable(rows):
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows]


def test_metrics_config_and_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *_flags({**TINY, "steps": 3, "kl_coef": 0.01}), "--out", str(out)]) == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert "test_loss" in rows[0] and "test_loss" in rows[2] and "test_loss" in rows[3]
    assert "test_loss" not in rows[1]
    need = ["D", "unique_prompts", "prompt_tokens", "completion_tokens", "C_paper", "C_itemized",
            "reward_mean", "acc_strict", "acc_flexible", "acc_custom_flexible", "frac_zero_std",
            "completion_len_mean", "clipped_share", "clip_frac", "kl", "entropy", "grad_norm", "lr",
            "time_rollout", "time_logprobs", "time_update", "tokens_per_s", "mfu", "matmul_peak_flops"]
    for r in rows[1:]:
        assert all(k in r for k in need), [k for k in need if k not in r]
    assert rows[2]["test_samples"] == 1 and rows[2]["eval_temperature"] == 0.7
    right = rows[2]["test_right"]["custom_flexible"]  # per held-out problem, for paired SEs
    assert len(right) == rows[2]["test_problems"] and set(right) <= {0, 1}
    assert sum(right) / len(right) == pytest.approx(1 - rows[2]["test_loss"])
    assert [r["D"] for r in rows] == [0, 4, 8, 12]
    assert rows[3]["C_paper"] > rows[2]["C_paper"] > 0
    # two updates per step and a reference model: two extra forwards priced in C_itemized
    r = rows[1]
    tokens = r["step_prompt_tokens"] + r["step_completion_tokens"]
    assert r["C_itemized"] > r["C_paper"] * 12 / 6 - 1e-6  # (2 gen + 2 x 2 fwd + 6 train) / 6
    assert r["kl"] is not None and r["updates"] == 2 and r["C_paper"] == 6 * json.loads(
        (out / "config.json").read_text())["N"] * tokens
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == "micro:tiny" and cfg["N"] > 0 and cfg["kl_coef"] == 0.01
    assert (out / "checkpoints" / "step_0000003" / "model.safetensors").is_file()
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 3


def test_interrupted_run_resumes_to_the_same_metrics(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    train(TrainConfig.from_dict(TINY), straight)

    from rlscale.grpo import trainer as tr

    cut = tmp_path / "cut"
    real_step = tr._Trainer.step

    def step_then_stop(self):
        if self.state["step"] == 3:  # stop in the middle of the run (like Ctrl-C)
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(tr._Trainer, "step", step_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig.from_dict(TINY), cut)
    monkeypatch.setattr(tr._Trainer, "step", real_step)
    assert [r["step"] for r in read_jsonl(cut / "metrics.jsonl")] == [0, 1, 2, 3]
    # the at-exit checkpoint holds step 3; a stale row beyond it must not survive a resume
    with open(cut / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "stale": True}) + "\n")
    train(TrainConfig.from_dict(TINY), cut, resume=True)
    a = _stable(read_jsonl(straight / "metrics.jsonl"))
    b = _stable(read_jsonl(cut / "metrics.jsonl"))
    assert a == b


def test_existing_run_needs_resume_and_same_settings(tmp_path):
    out = tmp_path / "run"
    train(TrainConfig.from_dict({**TINY, "steps": 1}), out)
    assert main(["train", *_flags({**TINY, "steps": 1}), "--out", str(out)]) == 2
    assert main(["train", *_flags({**TINY, "steps": 1, "group_size": 2}), "--out", str(out),
                 "--resume"]) == 2
    # more steps is allowed: the run goes on from its checkpoint
    assert main(["train", "--out", str(out), "--resume", "--steps", "2"]) == 0
    assert [r["step"] for r in read_jsonl(out / "metrics.jsonl")] == [0, 1, 2]


@pytest.mark.parametrize("change, words", [
    ({"group_size": 1}, "--group-size"),
    ({"mini_batch_size": 3}, "not divisible"),
    ({"reward": "exact"}, "unknown reward"),
])
def test_bad_config_one_line_exit_2(tmp_path, capsys, change, words):
    out = tmp_path / "run"
    assert main(["train", *_flags({**TINY, **change}), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    assert not (out / "metrics.jsonl").exists()  # nothing written: a later run starts clean


def test_diverged_loss_stops_and_stays_resumable(tmp_path, capsys):
    from rlscale.grpo.checkpoint import latest_checkpoint

    out = tmp_path / "run"
    flags = [*_flags({**TINY, "mini_batch_size": 4, "checkpoint_every": 1}), "--lr", "1e30",
             "--weight-decay", "1", "--out", str(out)]
    for resume in ([], ["--resume"]):  # the failed run resumes, and stops again the same way
        assert main(["train", *flags, *resume]) == 2
        err = capsys.readouterr().err.strip()
        assert "diverged" in err and len(err.splitlines()) == 1, err
        steps = [r["step"] for r in read_jsonl(out / "metrics.jsonl")]
        assert steps == list(range(len(steps)))  # whole rows, no gap, no duplicate
        # rows end at the last finished step, which the newest checkpoint holds
        assert latest_checkpoint(out).name == f"step_{steps[-1]:07d}"


def test_activation_checkpointing_and_micro_batches_change_memory_not_the_run(tmp_path):
    """Memory and speed settings leave the run alone: with activation checkpointing,
    micro-batches of 2 rows or idle groups run through the update, every metric but C_itemized (which prices checkpointing's recompute as one more
    forward over the trained tokens) and the timings matches the plain run."""
    plain = tmp_path / "plain"
    train(TrainConfig.from_dict(TINY), plain)
    base = read_jsonl(plain / "metrics.jsonl")
    for name, extra in (("ckpt", {"activation_checkpointing": True}),
                        ("micro", {"micro_batch_size": 2}),
                        ("all rows", {"skip_zero_advantage": False})):
        train(TrainConfig.from_dict({**TINY, **extra}), tmp_path / name)
        rows = read_jsonl(tmp_path / name / "metrics.jsonl")
        for a, b in zip(_stable(base), _stable(rows)):
            for k in a:
                if k == "C_itemized":
                    continue
                if isinstance(a[k], float):  # the same math; chunked sums round differently
                    assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), (name, k)
                else:
                    assert b[k] == a[k], (name, k)
        more = [r["C_itemized"] - q["C_itemized"] for q, r in zip(base[1:], rows[1:])]
        if name == "ckpt":
            n = json.loads((plain / "config.json").read_text())["N"]
            seen = 0  # the counters are cumulative: each step adds >= 2 N x its tokens
            for m, r in zip(more, rows[1:]):
                seen += r["step_prompt_tokens"] + r["step_completion_tokens"]
                assert m >= 2 * n * seen * (1 - 1e-9) and m > 0
        else:
            assert more == [0.0] * len(more)


def test_idle_groups_leave_the_update_but_not_its_gradient_or_metrics(tmp_path):
    """Groups whose advantages are all exactly 0 skip the forward-backward: the gradient and
    the summed token statistics are those of the whole mini-batch; with every group idle the
    gradient is zeros (AdamW still steps); with a KL term nothing is idle."""
    import dataclasses

    import torch

    from rlscale.grpo import trainer as T

    cfg = TrainConfig.from_dict({**TINY, "mini_batch_size": 4, "max_new_tokens": 12})
    tr = T._Trainer(cfg, tmp_path / "run", False)
    tr.open_run(False)
    ro = tr.rollout(1)
    rows = torch.arange(16)

    scored = []  # rows each forward of the update scores
    forward = tr.logprobs
    tr.logprobs = lambda model, batch, r, grad: scored.append(len(r)) or forward(model, batch, r,
                                                                                  grad)

    def grads_and_sums(adv, skip: bool):
        tr.cfg.skip_zero_advantage = skip
        scored.clear()
        tr.optimizer.zero_grad(set_to_none=True)
        sums = {"tokens": 0.0, "clipped": 0.0, "kl": 0.0}
        tr.model.train()
        tr.backward(1, dataclasses.replace(ro, adv=adv), rows, None, None, sums)
        return [p.grad.clone() for p in tr.model.parameters()], sums

    mixed = torch.tensor([0.0] * 4 + [1.0, -1.0, 0.5, -0.5] + [0.0] * 4 + [0.0, 0.0, 2.0, -2.0])
    assert [len(x) for x in tr.split_idle(rows, mixed, None)] == [8, 8]
    assert [len(x) for x in tr.split_idle(rows, mixed, ro.adv)] == [16, 0]  # a reference
    g_skip, s_skip = grads_and_sums(mixed, True)
    assert scored == [8]  # the two live groups only
    g_all, s_all = grads_and_sums(mixed, False)
    assert scored == [16]
    assert any(g.abs().sum() > 0 for g in g_all)
    for a, b in zip(g_skip, g_all):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-8)
    for k in s_all:
        assert s_skip[k] == pytest.approx(s_all[k], rel=1e-5, abs=1e-9), k
    assert s_all["tokens"] == float(ro.batch[3].sum())
    g_idle, s_idle = grads_and_sums(torch.zeros(16), True)
    assert scored == [] and all(g is not None and not g.any() for g in g_idle)
    assert s_idle == {"tokens": s_all["tokens"], "clipped": 0.0, "kl": 0.0}
    # two updates a step: old log-probs of the live rows as before, none computed for idle ones
    tr.cfg.mini_batch_size, tr.model.training = 2, False
    olds = {}
    for skip in (True, False):
        tr.cfg.skip_zero_advantage = skip
        olds[skip], _ = tr.old_and_ref_logprobs(dataclasses.replace(ro, adv=mixed))
    live = (mixed.view(-1, 4) != 0).any(1).repeat_interleave(4)
    assert torch.allclose(olds[True][live], olds[False][live], atol=1e-6)
    assert not olds[True][~live].any() and olds[False][~live].any()


@pytest.mark.parametrize("stop", [True, False])
def test_stop_at_question_off_rolls_on_and_rewards_the_text_before_it(tmp_path, monkeypatch, stop):
    """stop_at_question off (verl 0.9's rollouts): no stop strings in the sampler, and the
    reward reads the completion up to a new "Question:" (as the exported verl module does)."""
    from rlscale.grpo import trainer as T
    from rlscale.tasks import STOP_STRINGS

    cfg = TrainConfig.from_dict({**TINY, "reward": "flexible", "stop_at_question": stop})
    tr = T._Trainer(cfg, tmp_path / "run", False)
    tr.open_run(False)
    answers = [tr.task.train[i].answer for i in tr.stream.take(tr.state["D"], cfg.batch_size)
               for _ in range(cfg.group_size)]
    seen, real = [], T.generate

    def generate(model, tok, prompts, params, **kw):  # a base model going on past its answer
        seen.append(params.stop_strings)
        g = real(model, tok, prompts, params, **kw)
        g.texts = [f"so #### {a}\nQuestion: and then 999999" for a in answers]
        return g

    monkeypatch.setattr(T, "generate", generate)
    ro = tr.rollout(1)
    assert seen == [STOP_STRINGS if stop else ()]
    # flexible takes the last number: the answer before the new question, the wrong one after
    assert ro.rewards == [0.0 if stop else 1.0] * len(answers)


def test_eval_every_only_subsamples_the_curve(tmp_path):
    """The held-out evals are seeded by the run's seed alone and the rollouts by step, so a
    sparser eval_every keeps the trajectory and the remaining points exactly (the preset
    cpu-words-10m-e20 relies on it: its models are the default cpu-words-10m's, whose eval_every
    10 curves have every other point more; session 44 compared the two on that ground)."""
    dense = train(TrainConfig(**{**TINY, "eval_every": 1}), tmp_path / "dense", progress=False)
    sparse = train(TrainConfig(**{**TINY, "eval_every": 2}), tmp_path / "sparse", progress=False)
    rows_d = _stable(read_jsonl(tmp_path / "dense" / "metrics.jsonl"))
    rows_s = _stable(read_jsonl(tmp_path / "sparse" / "metrics.jsonl"))
    assert [r["step"] for r in rows_s if "test_loss" in r] == [0, 2, 4]
    for d, s in zip(rows_d, rows_s):
        assert s == (d if "test_loss" in s else {k: v for k, v in d.items()
                                                  if not k.startswith(("test_", "eval_"))})
    assert dense["steps"] == sparse["steps"] == 4
