"""GRPO training loop: rollout -> rewards -> advantages -> mini-batch updates -> eval -> log.

`train(cfg, run_dir, resume)` is the one entry point (the CLI and sweeps call it). It writes

    RUN_DIR/config.json     the resolved TrainConfig + model facts (N = non-embedding params)
    RUN_DIR/metrics.jsonl   one row per finished step (step 0: the baseline evaluation)
    RUN_DIR/checkpoints/    the latest checkpoint (rlscale.grpo.checkpoint)

Metric rows: step, D (prompts consumed), unique_prompts, prompt_tokens / completion_tokens
(cumulative; step_* for this step; prompts counted once per rollout), C_paper / C_itemized
(cumulative FLOPs, rlscale.flops), reward_mean, acc_<check> for every answer check, frac_zero_std,
completion_len_mean, clipped_share, clip_frac, kl (to the reference; null without one), entropy,
grad_norm (before clipping, mean over updates), lr, time_rollout / time_reward / time_logprobs /
time_update / time_step (s; time_step excludes evaluation), tokens_per_s, mfu; on eval steps
test_loss, test_loss_se, test_problems, test_samples, eval_temperature, time_eval.

Determinism: every random draw is seeded from (seed, step) (rollout sampling, mini-batch order)
or (seed, cycle) (data order), and the data cursor is D, so a resumed run on CPU reproduces the
uninterrupted one exactly.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from rlscale.errors import UserError
from rlscale.files import JsonlWriter, atomic_write_json, read_json, read_jsonl, truncate_jsonl
from rlscale.grpo.config import TrainConfig

# fields that may change when resuming: they do not change what the finished steps did
RESUMABLE_CHANGES = ("steps", "eval_every", "checkpoint_every", "lr", "device", "rollout_batch_size",
                     "micro_batch_size")
ACCURACY_CHECKS = ("strict", "flexible", "custom_flexible")  # + boxed on boxed-format tasks


def _seed(cfg: TrainConfig, step: int, salt: int) -> int:
    return (cfg.seed * 1_000_003 + step * 7919 + salt) % (2**63)


def _check_resume_config(saved: dict, cfg: TrainConfig, path: Path) -> None:
    now = cfg.to_dict()
    diff = [k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diff:
        k = diff[0]
        raise UserError(f"{path}: --resume with a different {k} ({saved.get(k)!r} -> {now[k]!r}); "
                        f"resume with the run's own settings or start a new --out")
    if saved.get("steps") != cfg.steps and cfg.reuse != 1:
        raise UserError(f"{path}: --steps cannot change on resume with --reuse {cfg.reuse} "
                        f"(the unique prompt set depends on it)")


class _Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, resume: bool, progress: bool | None):
        import torch

        from rlscale.flops import ModelShape, matmul_peak_flops
        from rlscale.models import load_model
        from rlscale.tasks import fewshot_exemplars, load_task

        self.cfg, self.run_dir = cfg, run_dir
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cpu":
            from rlscale.models.native import keep_freed_memory

            keep_freed_memory()
        self.model, self.tok = load_model(cfg.model, self.device, cfg.dtype or "fp32", seed=cfg.seed)
        self.shape = ModelShape.of(self.model)
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        self.ref = None
        if cfg.kl_coef > 0:  # the frozen initial policy; not built at all when beta = 0
            import copy

            self.ref = copy.deepcopy(self.model).eval().requires_grad_(False)
        unique = cfg.unique_prompts()
        # Draw exactly the prompts the run will use: a small problem space that cannot fill the
        # generator's default train size still serves a run that needs fewer prompts.
        self.task = load_task(cfg.task, seed=cfg.data_seed, n_test=cfg.heldout, n_train=unique)
        if len(self.task.train) < unique:
            raise UserError(f"--task {cfg.task}: {len(self.task.train)} training problems, but "
                            f"{cfg.steps} steps x {cfg.batch_size} prompts / reuse {cfg.reuse} "
                            f"need {unique}; raise --reuse or lower --steps")
        from rlscale.grpo.data import PromptStream

        self.stream = PromptStream(len(self.task.train), unique, cfg.seed)
        self.exemplars = fewshot_exemplars(self.task.train, cfg.fewshot, cfg.data_seed)
        self.checks = ACCURACY_CHECKS + (("boxed",) if self.task.answer_format == "boxed" else ())
        opt_args = dict(lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                        weight_decay=cfg.weight_decay)
        try:  # one kernel per tensor instead of ~10 ops (6m rung on the CPU: 12 -> 5 ms a step)
            self.optimizer = torch.optim.AdamW(self.model.parameters(), fused=True, **opt_args)
        except (RuntimeError, TypeError):  # a device or dtype the fused kernel does not serve
            self.optimizer = torch.optim.AdamW(self.model.parameters(), **opt_args)
        self.peak = matmul_peak_flops(self.device)
        self.state = {"step": 0, "D": 0, "prompt_tokens": 0, "completion_tokens": 0,
                      "C_paper": 0.0, "C_itemized": 0.0}
        self.saved_step = -1
        self.dirty = False  # weights changed since the last finished step
        self.progress = progress
        self.trackers: list = []

    # ------------------------------------------------------------------ run directory
    def open_run(self, resume: bool) -> None:
        from rlscale.grpo import checkpoint as ck

        cfg_path, metrics = self.run_dir / "config.json", self.run_dir / "metrics.jsonl"
        started = cfg_path.exists() or metrics.exists() or ck.checkpoints(self.run_dir)
        if started and not resume:
            raise UserError(f"{self.run_dir}: already holds a run; pass --resume to continue it "
                            f"or choose another --out")
        if resume and cfg_path.exists():
            _check_resume_config(read_json(cfg_path), self.cfg, cfg_path)
        latest = ck.latest_checkpoint(self.run_dir) if resume else None
        if latest is not None:
            st = ck.load_checkpoint(latest, self.model, self.optimizer)
            for g in self.optimizer.param_groups:
                g["lr"] = self.cfg.lr  # the one setting allowed to change on resume
            self.state = {k: st[k] for k in self.state}
            self.saved_step = self.state["step"]
        step = self.state["step"]
        # drop rows after the checkpoint (they will be recomputed), keep the step-0 baseline
        # only if it was finished, so nothing is duplicated and nothing is missing
        truncate_jsonl(metrics, lambda r: isinstance(r.get("step"), int) and r["step"] <= step
                       and latest is not None)
        self.has_baseline = metrics.exists() and any(
            r.get("step") == 0 for r in read_jsonl(metrics, tolerate_torn_tail=True))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cfg_path, {**self.cfg.to_dict(), "N": self.shape.n_params,
                                     "n_layer": self.shape.n_layer, "d_attn": self.shape.d_attn,
                                     "device_used": self.device})

    def save(self) -> None:
        from rlscale.grpo import checkpoint as ck

        if self.dirty or self.saved_step == self.state["step"]:
            return
        ck.save_checkpoint(self.run_dir, self.state["step"], self.model, self.optimizer,
                           dict(self.state))
        self.saved_step = self.state["step"]

    # ------------------------------------------------------------------ phases
    def evaluate(self) -> dict:
        import inspect

        from rlscale.evaluate import heldout_test_loss

        cfg = self.cfg
        extra = {}
        if self.exemplars:  # held-out prompts must look like the training prompts
            if "exemplars" not in inspect.signature(heldout_test_loss).parameters:
                raise UserError("--fewshot > 0: this rlscale.evaluate cannot evaluate few-shot "
                                "prompts (heldout_test_loss has no exemplars argument)")
            extra["exemplars"] = self.exemplars
        t0 = time.perf_counter()
        res = heldout_test_loss(
            self.model, self.tok, self.task.test, samples=cfg.eval_samples,
            temperature=cfg.eval_temperature,
            max_new_tokens=cfg.eval_max_new_tokens or cfg.max_new_tokens, reward=cfg.reward,
            seed=cfg.seed, batch_size=cfg.rollout_batch_size or None, **extra)
        return {"test_loss": res["test_loss"], "test_loss_se": res.get("se"),
                "test_problems": res["n_problems"], "test_samples": res["n_samples"],
                "eval_temperature": cfg.eval_temperature,
                "test_clipped_share": res.get("clipped_share"),
                **{f"test_acc_{k}": v for k, v in (res.get("accuracy") or {}).items()},
                "time_eval": time.perf_counter() - t0}

    def logprobs(self, model, batch, rows, grad: bool, entropy: bool = False):
        import torch

        from rlscale.rollout import sequence_logprobs

        ids, attn, pos, cmask = (t[rows] for t in batch)
        with torch.set_grad_enabled(grad):
            return sequence_logprobs(model, ids, attn, pos, cmask, self.cfg.temperature,
                                     return_entropy=entropy, entropy_grad=False)

    def chunks(self, rows):
        n = self.cfg.micro_batch_size or len(rows)
        return [rows[i:i + n] for i in range(0, len(rows), n)]

    def step(self) -> dict:
        import torch

        from rlscale.flops import attention_forward_flops, c_itemized, c_paper
        from rlscale.grpo import core
        from rlscale.rewards import REWARDS
        from rlscale.rollout import SamplingParams, batch_for_logprobs, generate
        from rlscale.tasks import STOP_STRINGS, format_prompt

        cfg, st = self.cfg, self.state
        step = st["step"] + 1
        B, G = cfg.batch_size, cfg.group_size
        t0 = time.perf_counter()
        problems = [self.task.train[i] for i in self.stream.take(st["D"], B)]
        prompts = [format_prompt(p, self.exemplars) for p in problems for _ in range(G)]
        params = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p,
                                () if cfg.suppress_eos else STOP_STRINGS, cfg.suppress_eos)
        self.model.eval()
        try:
            gen = generate(self.model, self.tok, prompts, params, seed=_seed(cfg, step, 1),
                           batch_size=cfg.rollout_batch_size or None)
        except RuntimeError as e:  # sampling from NaN/inf probabilities: the weights blew up
            if "inf" not in str(e) and "nan" not in str(e):
                raise
            raise UserError(f"step {step}: sampling met non-finite probabilities (diverged); "
                            f"resume with a lower --lr") from None
        t_roll = time.perf_counter()
        answers = [p.answer for p in problems for _ in range(G)]
        acc = {name: [REWARDS[name](t, a) for t, a in zip(gen.texts, answers)] for name in self.checks}
        rewards = acc[cfg.reward] if cfg.reward in acc else [
            REWARDS[cfg.reward](t, a) for t, a in zip(gen.texts, answers)]
        reward_t = torch.tensor(rewards, dtype=torch.float32)
        adv, zero_std = core.group_advantages(reward_t, G, cfg.adv, cfg.adv_eps)
        adv = adv.to(self.device)
        t_rew = time.perf_counter()

        batch = batch_for_logprobs(gen.prompt_ids, gen.completion_ids, self.pad, self.device)
        cmask = batch[3]
        all_rows = torch.arange(len(prompts), device=self.device)
        n_updates = cfg.updates_per_step()
        old = ref = None
        # old log-probs only when some update is off-policy (more than one per step); else the
        # current log-probs, detached, are exactly the sampling policy's
        if n_updates > 1:
            old = torch.cat([self.logprobs(self.model, batch, r, False) for r in self.chunks(all_rows)])
        if self.ref is not None:
            ref = torch.cat([self.logprobs(self.ref, batch, r, False) for r in self.chunks(all_rows)])
        t_lp = time.perf_counter()

        self.model.train()
        perm = torch.randperm(B, generator=torch.Generator().manual_seed(_seed(cfg, step, 2)))
        sums = {"tokens": 0.0, "clipped": 0.0, "kl": 0.0, "entropy": 0.0}
        grad_norms = []
        mb = cfg.mini_batch_size
        for u in range(n_updates):
            prompt_ids = perm[u * mb:(u + 1) * mb]
            rows = (prompt_ids[:, None] * G + torch.arange(G)[None, :]).reshape(-1).to(self.device)
            m = cmask[rows]
            norm = float(m.sum()) if cfg.loss_agg == "token-mean" else float(len(rows))
            self.optimizer.zero_grad(set_to_none=True)
            for r in self.chunks(rows):
                logp, ent = self.logprobs(self.model, batch, r, True, entropy=True)
                loss, s = core.grpo_loss(
                    logp, logp.detach() if old is None else old[r], adv[r], cmask[r],
                    ref_logp=None if ref is None else ref[r], kl_coef=cfg.kl_coef,
                    clip_low=cfg.clip_low, clip_high=cfg.clip_high, loss_agg=cfg.loss_agg,
                    normalizer=max(norm, 1.0))
                if not torch.isfinite(loss):
                    raise UserError(f"step {step}: the loss is {loss.item()} (diverged); resume "
                                    f"with a lower --lr")
                self.dirty = True
                loss.backward()
                for k in ("tokens", "clipped", "kl"):
                    sums[k] += float(s[k])
                sums["entropy"] += float((ent.detach() * cmask[r]).sum())
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or math.inf)
            if not torch.isfinite(gn):
                raise UserError(f"step {step}: gradient norm is {gn.item()} (diverged); resume "
                                f"with a lower --lr")
            grad_norms.append(float(gn))
            self.optimizer.step()
        with torch.no_grad():  # one reduction per tensor and one check (NaN/inf propagate)
            totals = torch.stack([p.sum() for p in self.model.parameters()])
            finite = bool(torch.isfinite(totals).all())
        if not finite:
            raise UserError(f"step {step}: weights became non-finite (diverged); resume with a "
                            f"lower --lr")
        self.model.eval()
        t_upd = time.perf_counter()

        p_tok, c_tok = gen.n_prompt_tokens, gen.n_completion_tokens
        tokens = p_tok + c_tok
        lens = [len(p) + len(c) for p, c in zip(gen.prompt_ids, gen.completion_ids)]
        attn = attention_forward_flops(self.shape.n_layer, self.shape.d_attn, lens)
        extra = int(old is not None) + int(ref is not None)
        flops_step = c_itemized(self.shape.n_params, tokens, tokens, extra, attn)
        st.update(step=step, D=st["D"] + B, prompt_tokens=st["prompt_tokens"] + p_tok,
                  completion_tokens=st["completion_tokens"] + c_tok,
                  C_paper=st["C_paper"] + c_paper(self.shape.n_params, tokens),
                  C_itemized=st["C_itemized"] + flops_step)
        self.dirty = False
        t_step = t_upd - t0
        n_tok = max(sums["tokens"], 1.0)
        row = {"step": step, "D": st["D"], "unique_prompts": self.stream.unique_seen(st["D"]),
               "prompt_tokens": st["prompt_tokens"], "completion_tokens": st["completion_tokens"],
               "step_prompt_tokens": p_tok, "step_completion_tokens": c_tok,
               "C_paper": st["C_paper"], "C_itemized": st["C_itemized"],
               "reward_mean": sum(rewards) / len(rewards),
               **{f"acc_{k}": sum(v) / len(v) for k, v in acc.items()},
               "frac_zero_std": float(zero_std.float().mean()),
               "completion_len_mean": c_tok / len(prompts),
               "clipped_share": gen.n_clipped / len(prompts),
               "clip_frac": sums["clipped"] / n_tok,
               "kl": sums["kl"] / n_tok if ref is not None else None,
               "entropy": sums["entropy"] / n_tok,
               "grad_norm": sum(grad_norms) / len(grad_norms),
               "lr": self.optimizer.param_groups[0]["lr"], "updates": n_updates,
               "time_rollout": t_roll - t0, "time_reward": t_rew - t_roll,
               "time_logprobs": t_lp - t_rew, "time_update": t_upd - t_lp, "time_step": t_step,
               "tokens_per_s": tokens / t_step if t_step > 0 else 0.0,
               "mfu": flops_step / t_step / self.peak if t_step > 0 else 0.0}
        return row

    # ------------------------------------------------------------------ loop
    def run(self) -> dict:
        from tqdm.auto import tqdm

        cfg = self.cfg
        last: dict = {}
        writer = JsonlWriter(self.run_dir / "metrics.jsonl")
        bar = tqdm(total=cfg.steps, initial=self.state["step"], desc="train", unit="step",
                   disable=(not _isatty()) if self.progress is None else not self.progress,
                   dynamic_ncols=True)
        try:
            if self.state["step"] == 0 and not self.has_baseline:
                last = {"step": 0, "D": 0, "unique_prompts": 0, "prompt_tokens": 0,
                        "completion_tokens": 0, "C_paper": 0.0, "C_itemized": 0.0,
                        **self.evaluate()}
                writer.write(last)
                bar.set_postfix(test_loss=f"{last['test_loss']:.3f}")
            while self.state["step"] < cfg.steps:
                row = self.step()
                step = row["step"]
                if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
                    row.update(self.evaluate())
                writer.write(row)
                for t in self.trackers:
                    t.log(row, step)
                last = row
                if step % cfg.checkpoint_every == 0:
                    self.save()
                bar.update(1)
                bar.set_postfix({"step": step, "reward": f"{row['reward_mean']:.3f}",
                                 **({"test_loss": f"{row['test_loss']:.3f}"}
                                    if "test_loss" in row else {}),
                                 "tok/s": f"{row['tokens_per_s']:.0f}"})
        finally:
            bar.close()
            writer.close()
            for t in self.trackers:
                t.close()
            self.save()  # at exit: only when the weights are those of a finished step
        return {"run_dir": str(self.run_dir), "steps": self.state["step"], **last}


def _isatty() -> bool:
    import sys

    return sys.stderr.isatty()


def train(cfg: TrainConfig, run_dir, resume: bool = False, progress: bool | None = None,
          trackers: tuple[str, ...] = ()) -> dict:
    """Run (or with resume=True continue) a GRPO run in run_dir; returns the last metrics row.

    Bad settings raise UserError before anything is written; a diverged loss raises UserError
    after keeping the run directory resumable from its last checkpoint.
    """
    cfg.validate()
    run_dir = Path(run_dir)
    trainer = _Trainer(cfg, run_dir, resume, progress)
    trainer.open_run(resume)
    if trackers:  # optional views of metrics.jsonl (TensorBoard, W&B, MLflow); off by default
        from rlscale.trackers import make_trackers

        trainer.trackers = make_trackers(list(trackers), run_dir, cfg.to_dict())
    return trainer.run()
