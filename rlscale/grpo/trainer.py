"""GRPO training loop: rollout -> rewards -> advantages -> mini-batch updates -> eval -> log.

`train(cfg, run_dir, resume)` is the one entry point (the CLI and sweeps call it). It writes

    RUN_DIR/config.json     the resolved TrainConfig + model facts (N = non-embedding params)
    RUN_DIR/metrics.jsonl   one row per finished step (step 0: the baseline evaluation)
    RUN_DIR/samples.jsonl   with log_samples N: each step's first N prompts and completions
    RUN_DIR/checkpoints/    the latest checkpoint (rlscale.grpo.checkpoint)
    RUN_DIR/policy/         the final policy as an HF model directory (config, safetensors,
                            tokenizer, generation config), written when the last step is done;
                            `rlscale eval --model RUN_DIR/policy` and transformers load it
    RUN_DIR/policies/step_N the policy at each checkpoint, with --checkpoint-policy

A step reads as its phases: `rollout` (the batch generator: prompts, completions, rewards,
advantages), `old_and_ref_logprobs`, `update` (the mini-batch loop), `account`, `metrics_row`
(the last two: rlscale.grpo.step_log).

Metric rows: rlscale.grpo.step_log lists every field.

Determinism: every random draw is seeded from (seed, step) (rollout sampling, mini-batch order)
or (seed, cycle) (data order), and the data cursor is D, so a resumed run on CPU reproduces the
uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import copy
import math
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rlscale.checks import device as check_device
from rlscale.errors import UserError
from rlscale.evaluate import heldout_test_loss
from rlscale.files import JsonlWriter, atomic_write_json, read_json, read_jsonl, truncate_jsonl
from rlscale.flops import ModelShape, matmul_peak_flops
from rlscale.grpo import checkpoint as ck
from rlscale.grpo import core, step_log
from rlscale.grpo.config import TrainConfig
from rlscale.grpo.data import PromptStream
from rlscale.grpo.logprobs import batch_for_logprobs, sequence_logprobs
from rlscale.grpo.step_log import Rollout, sample_rows
from rlscale.models import fast, load_model, save_model, set_activation_checkpointing
from rlscale.models.tokenizer import chat_prompts, chat_style, task_prompts
from rlscale.rollout import SamplingParams, generate
from rlscale.tasks import STOP_STRINGS, fewshot_exemplars, load_task

ACCURACY_CHECKS = ("strict", "flexible", "custom_flexible")  # + boxed on boxed-format tasks
POLICY_DIR = "policy"
SAMPLES = "samples.jsonl"  # RUN/samples.jsonl: with log_samples, what the model saw and wrote


def _seed(cfg: TrainConfig, step: int, salt: int) -> int:
    return (cfg.seed * 1_000_003 + step * 7919 + salt) % (2**63)


def _diverged(step: int, what: str) -> UserError:
    """The one divergence error: the run stops with one line; the directory stays resumable
    from its last checkpoint (metrics rows end at the step that checkpoint holds)."""
    return UserError(f"step {step}: {what} (diverged); resume with a lower --lr")


def _check_finite(step: int, what: str, x: torch.Tensor) -> None:
    """The one divergence check: a loss, gradient norm or weight sum that is NaN or inf."""
    if not bool(torch.isfinite(x).all()):
        raise _diverged(step, f"{what} is {x.item() if x.numel() == 1 else 'not finite'}")


def _check_resume_config(saved: dict, cfg: TrainConfig, path: Path) -> None:
    ck.check_resume(saved, cfg.to_dict(), TrainConfig.resumable(), path, TrainConfig().to_dict())
    if saved.get("steps") != cfg.steps and cfg.reuse != 1:
        raise UserError(f"{path}: --steps cannot change on resume with --reuse {cfg.reuse} "
                        f"(the unique prompt set depends on it)")


def _device(cfg: TrainConfig) -> str:
    """The device to train on; one this machine lacks is a one-line error (rlscale.checks,
    the same check the CLI makes at the door, here for sweeps and the study too)."""
    check_device(cfg.device)
    return cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")


class _Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, progress: bool | None):
        self.cfg, self.run_dir, self.progress = cfg, run_dir, progress
        self.device = _device(cfg)
        self.model, self.tok = load_model(cfg.model, self.device, cfg.dtype or "fp32", seed=cfg.seed)
        self.shape = ModelShape.of(self.model)
        if next(self.model.parameters()).dtype != torch.float32:  # allowed (memory); its cost:
            print(f"rlscale train: warning: --dtype {cfg.dtype} keeps the weights and AdamW's "
                  f"updates in {cfg.dtype}, which rounds away every update below ~1/256 of its "
                  f"weight (at lr 1e-6, 99% of them: docs/benchmarks.md); --autocast bf16 "
                  f"computes in bf16 with fp32 weights", file=sys.stderr)
        if cfg.autocast:  # a device whose autocast lacks bf16 fails here, not mid-run
            try:
                self.amp()
            except RuntimeError as e:
                raise UserError(f"--autocast {cfg.autocast}: not available on {self.device} "
                                f"({str(e).splitlines()[0][:80]})") from None
        if cfg.activation_checkpointing and not fast.supports(self.model):  # else the compact
            set_activation_checkpointing(self.model)  # forward's own (sequence_logprobs)
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        # the frozen initial policy; not built at all when beta = 0
        self.ref = copy.deepcopy(self.model).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
        unique = cfg.unique_prompts()
        # Draw exactly the prompts the run will use: a small problem space that cannot fill the
        # generator's default train size still serves a run that needs fewer prompts.
        self.task = load_task(cfg.task, seed=cfg.data_seed, n_test=cfg.heldout, n_train=unique)
        if len(self.task.train) < unique:
            raise UserError(f"--task {cfg.task}: {len(self.task.train)} training problems, but "
                            f"{cfg.steps} steps x {cfg.batch_size} prompts / reuse {cfg.reuse} "
                            f"need {unique}; raise --reuse or lower --steps")
        self.stream = PromptStream(len(self.task.train), unique, cfg.seed)
        self.exemplars = fewshot_exemplars(self.task.train, cfg.fewshot, cfg.data_seed)
        self.style = chat_style(cfg)  # None: raw prompts
        if cfg.chat:  # a tokenizer without a chat template: one line, before anything is written
            chat_prompts(self.tok, [])
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
        self.trackers: list = []

    def amp(self):
        """Mixed precision (--autocast bf16): forward passes under torch.autocast on the run's
        device, the weights and optimizer fp32; a no-op without it. Backward passes run outside
        it (autograd replays each op in its forward's dtype)."""
        if not self.cfg.autocast:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    # ------------------------------------------------------------------ run directory
    def open_run(self, resume: bool) -> None:
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
        for log in (metrics, self.run_dir / SAMPLES):
            truncate_jsonl(log, lambda r: isinstance(r.get("step"), int) and r["step"] <= step
                           and latest is not None)
        self.has_baseline = metrics.exists() and any(
            r.get("step") == 0 for r in read_jsonl(metrics, tolerate_torn_tail=True))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cfg_path, {**self.cfg.to_dict(), "N": self.shape.n_params,
                                     "n_layer": self.shape.n_layer, "d_attn": self.shape.d_attn,
                                     "device_used": self.device})

    def save(self) -> None:
        """Checkpoint the last finished step (not weights half-way through a step)."""
        step = self.state["step"]
        if self.dirty or self.saved_step == step:
            return
        ck.save_checkpoint(self.run_dir, step, self.model, self.optimizer, dict(self.state))
        if self.cfg.checkpoint_policy:
            save_model(self.model, self.tok, self.run_dir / "policies" / f"step_{step:07d}")
        self.saved_step = step

    # ------------------------------------------------------------------ phases
    def evaluate(self) -> dict:
        cfg = self.cfg
        t0 = time.perf_counter()
        with self.amp():
            res = heldout_test_loss(
                self.model, self.tok, self.task.test, samples=cfg.eval_samples,
                temperature=cfg.eval_temperature,
                max_new_tokens=cfg.eval_max_new_tokens or cfg.max_new_tokens, reward=cfg.reward,
                seed=cfg.seed, batch_size=cfg.rollout_batch_size or None,
                exemplars=self.exemplars, style=self.style)  # as the training prompts look
        return {"test_loss": res["test_loss"], "test_loss_se": res.get("se"),
                "test_problems": res["n_problems"], "test_samples": res["n_samples"],
                "eval_temperature": cfg.eval_temperature,
                "test_clipped_share": res.get("clipped_share"),
                "test_right": res.get("right"),  # per problem, for paired comparisons of runs
                **{f"test_acc_{k}": v for k, v in (res.get("accuracy") or {}).items()},
                "time_eval": time.perf_counter() - t0}

    def rollout(self, step: int) -> Rollout:
        """The batch generator: B prompts from the stream, G sampled completions each, the
        reward of every answer check, group advantages."""
        cfg, G = self.cfg, self.cfg.group_size
        problems = [self.task.train[i] for i in self.stream.take(self.state["D"], cfg.batch_size)]
        prompts = task_prompts(self.tok, problems, [self.exemplars] * len(problems), self.style)
        prompts = [x for x in prompts for _ in range(G)]
        stops = STOP_STRINGS if cfg.stop_at_question and not cfg.suppress_eos else ()
        params = SamplingParams(cfg.max_new_tokens, cfg.temperature, cfg.top_p, stops,
                                cfg.suppress_eos)
        self.model.eval()
        try:
            with self.amp():
                gen = generate(self.model, self.tok, prompts, params, seed=_seed(cfg, step, 1),
                               batch_size=cfg.rollout_batch_size or None, entropy=True)
        except RuntimeError as e:  # sampling from NaN/inf probabilities: the weights blew up
            if "inf" not in str(e) and "nan" not in str(e):
                raise
            raise _diverged(step, "sampling met non-finite probabilities") from None
        t_sampled = time.perf_counter()
        answers = [p.answer for p in problems for _ in range(G)]
        acc, rewards, adv, zero_std = step_log.score(gen.texts, answers, self.checks, cfg)
        t_rewarded = time.perf_counter()
        batch = batch_for_logprobs(gen.prompt_ids, gen.completion_ids, self.pad, self.device)
        return Rollout(gen, acc, rewards, adv.to(self.device), zero_std, batch, t_sampled,
                       t_rewarded, prompts, answers)

    def logprobs(self, model, batch, rows, grad: bool):
        ids, attn, pos, cmask = (t[rows] for t in batch)
        with torch.set_grad_enabled(grad), self.amp():
            return sequence_logprobs(model, ids, attn, pos, cmask, self.cfg.temperature,
                                     checkpoint=grad and self.cfg.activation_checkpointing)

    def chunks(self, rows):
        n = self.cfg.micro_batch_size or max(len(rows), 1)
        return [rows[i:i + n] for i in range(0, len(rows), n)]

    def old_and_ref_logprobs(self, ro: Rollout):
        """(old, ref) log-probs [R, C], each None when not needed. Old log-probs only when some
        update is off-policy (more than one per step); else the current log-probs, detached,
        are exactly the sampling policy's; idle rows (`split_idle`), which the update leaves
        out, get zeros. Reference log-probs only with a KL penalty (then no row is idle)."""
        every = torch.arange(len(ro.rewards), device=self.device)
        old = ref = None
        if self.cfg.updates_per_step() > 1:
            live, _ = self.split_idle(every, ro.adv, self.ref)
            old = torch.zeros(ro.batch[3].shape, device=self.device)
            if len(live):
                old[live] = torch.cat([self.logprobs(self.model, ro.batch, r, False)
                                       for r in self.chunks(live)]).to(old.dtype)
        if self.ref is not None:
            ref = torch.cat([self.logprobs(self.ref, ro.batch, r, False)
                             for r in self.chunks(every)])
        return old, ref

    def update(self, step: int, ro: Rollout, old, ref) -> dict:
        """The mini-batch loop: B / mini_batch_size optimizer updates over the step's prompts in
        a seeded order. Returns summed token statistics and the gradient norm of each update."""
        cfg, G = self.cfg, self.cfg.group_size
        self.model.train()
        perm = torch.randperm(cfg.batch_size,
                              generator=torch.Generator().manual_seed(_seed(cfg, step, 2)))
        # the entropy metric: the sampling policy's, read by the rollout (the update's forward
        # of the first mini-batch would score the same policy; the others, a moved one)
        sums = {"tokens": 0.0, "clipped": 0.0, "kl": 0.0, "grad_norms": [],
                "entropy": sum(map(sum, ro.gen.entropies))}
        mb = cfg.mini_batch_size
        for u in range(cfg.updates_per_step()):
            prompt_ids = perm[u * mb:(u + 1) * mb]
            rows = (prompt_ids[:, None] * G + torch.arange(G)[None, :]).reshape(-1).to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            self.backward(step, ro, rows, old, ref, sums)
            gn = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip or math.inf)
            _check_finite(step, "the gradient norm", gn)
            sums["grad_norms"].append(float(gn))
            self.optimizer.step()
        with torch.no_grad():  # one reduction per tensor and one check (NaN/inf propagate)
            _check_finite(step, "a weight", torch.stack([p.sum() for p in self.model.parameters()]))
        self.model.eval()
        return sums

    def backward(self, step: int, ro: Rollout, rows, old, ref, sums: dict) -> None:
        """Gradients of one mini-batch's GRPO loss, accumulated over micro-batch chunks (each
        chunk's loss is normalised by the whole mini-batch, so the chunks add up to it). Idle
        groups (`split_idle`) are only counted; when every group is idle, the gradient is set
        to zeros, so AdamW steps (momentum, decay) as it would on theirs."""
        cfg, cmask = self.cfg, ro.batch[3]
        norm = float(cmask[rows].sum()) if cfg.loss_agg == "token-mean" else float(len(rows))
        live, idle = self.split_idle(rows, ro.adv, ref)
        self.dirty = True
        sums["tokens"] += float(cmask[idle].sum())  # nothing clipped: -A x ratio is 0 both ways
        if not len(live):
            for p in self.model.parameters():
                if p.requires_grad:
                    p.grad = torch.zeros_like(p)
        for r in self.chunks(live):
            logp = self.logprobs(self.model, ro.batch, r, True)
            loss, s = core.grpo_loss(
                logp, logp.detach() if old is None else old[r], ro.adv[r], cmask[r],
                ref_logp=None if ref is None else ref[r], kl_coef=cfg.kl_coef,
                clip_low=cfg.clip_low, clip_high=cfg.clip_high, clip_c=cfg.clip_c,
                loss_agg=cfg.loss_agg, normalizer=max(norm, 1.0))
            _check_finite(step, "the loss", loss)
            loss.backward()
            for k in ("tokens", "clipped", "kl"):
                sums[k] += float(s[k])

    def split_idle(self, rows, adv, ref):
        """(live, idle) rows of a mini-batch (runs of G rows, one prompt each). Idle: the groups
        whose every advantage is exactly 0 (all G rewards equal), with skip_zero_advantage and
        no KL term. Their PPO surrogate -A x ratio is 0 whatever the weights, so leaving them
        out of the forward-backward changes the gradient only by rounding; the KL term's
        gradient does not vanish with A, so with a reference nothing is idle."""
        if not self.cfg.skip_zero_advantage or ref is not None:
            return rows, rows[:0]
        G = self.cfg.group_size
        live = (adv[rows].view(-1, G) != 0).any(1).repeat_interleave(G)
        return rows[live], rows[~live]

    def account(self, ro: Rollout, extra_forwards: int) -> tuple[float, int]:
        """Advance the run's counters by this step; returns (its C_itemized FLOPs, its tokens)."""
        return step_log.advance(self.state, ro.gen, self.shape, self.cfg.batch_size,
                                extra_forwards)

    def metrics_row(self, ro: Rollout, sums: dict, flops: float, tokens: int, has_ref: bool,
                    times: dict) -> dict:
        return step_log.metrics_row(
            self.state, ro, sums, flops, tokens, has_ref, times,
            unique_prompts=self.stream.unique_seen(self.state["D"]),
            lr=self.optimizer.param_groups[0]["lr"], peak=self.peak)

    def step(self) -> dict:
        """One GRPO step: rollout, old/reference log-probs, updates, then its metrics row."""
        step, t0 = self.state["step"] + 1, time.perf_counter()
        ro = self.rollout(step)
        old, ref = self.old_and_ref_logprobs(ro)
        t_lp = time.perf_counter()
        sums = self.update(step, ro, old, ref)
        t_upd = time.perf_counter()
        flops, tokens = self.account(ro, int(old is not None) + int(ref is not None)
                                     + int(self.cfg.activation_checkpointing))  # its recompute
        self.dirty = False
        self.samples = sample_rows(step, ro, self.cfg.log_samples, self.cfg.group_size)
        times = {"time_rollout": ro.t_sampled - t0, "time_reward": ro.t_rewarded - ro.t_sampled,
                 "time_logprobs": t_lp - ro.t_rewarded, "time_update": t_upd - t_lp}
        return self.metrics_row(ro, sums, flops, tokens, ref is not None, times)

    # ------------------------------------------------------------------ loop
    def run(self) -> dict:
        cfg = self.cfg
        last: dict = {}
        writer = JsonlWriter(self.run_dir / "metrics.jsonl")
        self.sample_log = JsonlWriter(self.run_dir / SAMPLES) if cfg.log_samples else None
        bar = tqdm(total=cfg.steps, initial=self.state["step"], desc="train", unit="step",
                   disable=(not sys.stderr.isatty()) if self.progress is None else not self.progress,
                   dynamic_ncols=True)
        try:
            if self.state["step"] == 0 and not self.has_baseline:
                last = {"step": 0, "D": 0, "unique_prompts": 0, "prompt_tokens": 0,
                        "completion_tokens": 0, "C_paper": 0.0, "C_itemized": 0.0,
                        **self.evaluate()}
                writer.write(last)
                bar.set_postfix(test_loss=f"{last['test_loss']:.3f}")
            while self.state["step"] < cfg.steps:
                last = self.step()
                self.finish_step(last, writer)
                bar.update(1)
                bar.set_postfix({"step": last["step"], "reward": f"{last['reward_mean']:.3f}",
                                 **({"test_loss": f"{last['test_loss']:.3f}"}
                                    if "test_loss" in last else {}),
                                 "tok/s": f"{last['tokens_per_s']:.0f}"})
            # the run is done: its policy as a model directory (atomic: temp dir + rename)
            save_model(self.model, self.tok, self.run_dir / POLICY_DIR)
        finally:
            bar.close()
            writer.close()
            if self.sample_log:
                self.sample_log.close()
            for t in self.trackers:
                t.close()
            self.save()  # at exit: only when the weights are those of a finished step
        return {"run_dir": str(self.run_dir), "steps": self.state["step"],
                "policy": str(self.run_dir / POLICY_DIR), **last}

    def finish_step(self, row: dict, writer: JsonlWriter) -> None:
        """Evaluate when due, write the row (file and trackers), checkpoint when due."""
        step, cfg = row["step"], self.cfg
        if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
            row.update(self.evaluate())
        if self.sample_log and self.samples:  # before the row: a step's row closes its record
            self.sample_log.write_many(self.samples)
        writer.write(row)
        for t in self.trackers:
            t.log(row, step)
        if step % cfg.checkpoint_every == 0:
            self.save()


def train(cfg: TrainConfig, run_dir, resume: bool = False, progress: bool | None = None,
          trackers: tuple[str, ...] = ()) -> dict:
    """Run (or with resume=True continue) a GRPO run in run_dir; returns the last metrics row
    (and `policy`, the directory of the final policy).

    Bad settings raise UserError before anything is written; a diverged loss raises UserError
    after keeping the run directory resumable from its last checkpoint.
    """
    cfg.validate()
    run_dir = Path(run_dir)
    trainer = _Trainer(cfg, run_dir, progress)
    trainer.open_run(resume)
    if trackers:  # optional views of metrics.jsonl (TensorBoard, W&B, MLflow); off by default
        from rlscale.trackers import make_trackers

        trainer.trackers = make_trackers(list(trackers), run_dir, cfg.to_dict())
    return trainer.run()
