"""The loop of pre-training (rlscale.pretrain): fp32 steps over step ranges that checkpoint into
a run directory, and the warmup-stable-decay driver that forks one short decay branch per token
budget off a single stable run.

Why branches: a budget's model is the stable phase up to its decay start plus its own decay
(Hagele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
Durations"), so one run yields checkpoints at several budgets for the cost of the largest plus
the short decays. Batches are seeded by step, so a branch equals a separate wsd run of that
budget with the same warm-up, step for step (tests/test_allocation.py checks it). How branches
compare with separate cosine runs is measured in docs/study.md.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rlscale.errors import UserError
from rlscale.files import JsonlWriter, atomic_write_json, read_json, read_jsonl, truncate_jsonl

if TYPE_CHECKING:  # only for annotations: rlscale.pretrain imports this module
    from rlscale.pretrain import PretrainConfig

STATE_FILE = "pretrain.json"  # a finished range's summary, the mark that it is done


def lr_at(step: int, cfg: PretrainConfig, end: int | None = None) -> float:
    """cosine: linear warm-up over warmup_frac of the steps, then cosine from lr to
    min_lr_frac * lr. wsd: the same warm-up, then lr held constant (the trunk); the branch of
    the budget ending at step `end` decays from lr to the floor as 1 - sqrt over its last
    decay_frac of the steps (the shape Hagele et al. 2024 found to match cosine)."""
    warm = cfg.warmup_steps()
    if step < warm:
        return cfg.lr * (step + 1) / warm
    floor = cfg.min_lr_frac
    if cfg.schedule == "wsd":
        start = cfg.decay_start(end) if end is not None else None
        if start is None or step < start:
            return cfg.lr
        t = (step - start + 1) / (end - start)
        return cfg.lr * (floor + (1 - floor) * (1 - math.sqrt(min(t, 1.0))))
    t = (step - warm) / max(1, cfg.steps() - warm)
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


def read_log(path: Path) -> list[dict]:
    return read_jsonl(path, tolerate_torn_tail=True) if path.exists() else []




def wsd_branches(loop: "Loop", out: Path, tok, st: dict, summary: dict) -> list[dict]:
    """Run the stable trunk up to each budget's decay start, fork a decay branch there into
    OUT/branches/<tokens>/, and go on from the trunk. Order makes it resumable: the trunk is
    checkpointed at the fork and only moves on once the branch is done."""
    cfg, done = loop.cfg, []
    for end in cfg.budget_steps():
        bdir = out / "branches" / tokens_tag(end * cfg.batch_size * cfg.seq_len)
        if (bdir / STATE_FILE).is_file() and read_json(bdir / STATE_FILE).get("done"):
            done.append(read_json(bdir / STATE_FILE))
            continue
        start = cfg.decay_start(end)
        if st["step"] > start:
            raise UserError(f"{out}: the stable phase is at step {st['step']}, past the start "
                            f"({start}) of the unfinished branch {bdir.name}; use another --out")
        if st["step"] < start:
            loop.run(out, st, start, lambda s: lr_at(s, cfg), loop.view(None))
        loop.save(out, st)  # a killed branch restarts from the trunk here
        trunk = loop.snapshot()
        bst = loop.load(bdir) or {"step": start, "wall_s": 0.0}
        t0, step0 = time.perf_counter(), bst["step"]
        loop.run(bdir, bst, end, lambda s, e=end: lr_at(s, cfg, e), loop.view(end))
        info = {**summary, "config": {**summary["config"], "tokens": end * cfg.batch_size *
                                      cfg.seq_len}, "decay_start": start}
        done.append(loop.finish(bdir, tok, bst, end, info, time.perf_counter() - t0, step0))
        loop.restore(trunk)
    return done


def tokens_tag(tokens: int) -> str:
    return f"{tokens:09d}"  # sorts by budget


def copy_model(src: Path, dst: Path) -> None:
    """dst becomes a copy of the HF model directory src (via a temporary sibling: atomic)."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=f".{dst.name}."))
    shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)


@contextlib.contextmanager
def matmul_precision(precision: str):
    """torch's fp32 matmul precision ("highest" | "high" | "medium") inside the block. The
    setting is process-wide, so it is restored after: evaluations and RL in the same worker
    process keep fp32."""
    import torch

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def bf16_matmuls(precision: str, device: str = "cpu") -> bool:
    """Whether fp32 matmuls of a training step's size round their inputs to bf16 under
    `precision` here: torch takes "medium" as leave to, where the hardware has bf16 products
    (oneDNN on CPUs with AVX512-BF16 or AMX), and computes fp32 elsewhere. 1 + 2^-10 is exact in
    fp32 and rounds to 1 in bf16, so a sum of 96 of them tells the two apart. "bf16" (the
    products in bf16 tensors, on any hardware) is True by construction."""
    import torch

    if precision == "bf16":
        return True

    a = torch.full((64, 96), 1 + 2 ** -10, device=device)
    with matmul_precision(precision):
        c = a @ torch.ones(96, 64, device=device)
    return bool((c != 96 * (1 + 2 ** -10)).any())


class Loop:
    """The training step of one model and optimizer (fp32 weights, gradients and AdamW state;
    matmul inputs bf16 where cfg.matmul_precision is medium, the products' inputs and outputs
    where it is bf16), run over step ranges that checkpoint
    into a run directory (the trunk's or a branch's) and save the last finished step when
    interrupted."""

    def __init__(self, cfg, corpus, model, device: str, bar, fast: bool | None = None,
                 bf16: bool | None = None):
        """fast: the compact forward of rlscale.models.fast instead of transformers' (None: where
        it reproduces the model exactly); bf16: the forward under bf16 autocast (None: on CUDA
        only; on the CPU it did not pay even with AMX, session 15); docs/benchmarks.md has what
        each costs."""
        import torch

        from rlscale.models import fast as fast_mod

        self.cfg, self.corpus, self.model, self.device, self.bar = cfg, corpus, model, device, bar
        self.fast = fast_mod.supports(model) if fast is None else fast
        self._rope = None
        decay = [p for p in model.parameters() if p.dim() >= 2]  # no decay on norms
        rest = [p for p in model.parameters() if p.dim() < 2]
        groups = [{"params": decay, "weight_decay": cfg.weight_decay},
                  {"params": rest, "weight_decay": 0.0}]
        try:  # one kernel per tensor instead of ~10 ops (docs/benchmarks.md)
            self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=True)
        except (RuntimeError, TypeError):
            self.opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))
        kind = torch.device(device).type
        self.precision = getattr(cfg, "matmul_precision", "highest")
        # "bf16": the compact forward rounds its products' inputs and outputs to bf16 and keeps
        # the rest fp32 on the fused kernels (bf16 autocast would send those to torch's slower
        # bf16 ops); transformers' forward gets bf16 autocast for the same products
        self.products = torch.bfloat16 if self.precision == "bf16" else None
        on = kind == "cuda" if bf16 is None else bf16
        on = on or (self.products is not None and not self.fast)
        self.amp = (lambda: torch.autocast(kind, dtype=torch.bfloat16)) if on \
            else contextlib.nullcontext
        self.matmul_bf16 = bf16_matmuls(self.precision, device)
        self.clean = True  # the weights are those of a finished step

    def view(self, end: int | None):
        """The corpus as the wsd run of one budget sees it. With short rows first
        (short_seq_len), the trunk uses short rows and every decay branch seq_len rows: a
        budget's long-row phase is its own decay, as in a separate run of that budget."""
        import copy
        import dataclasses

        cfg = self.cfg
        if cfg.schedule != "wsd" or not getattr(cfg, "short_seq_len", 0):
            return self.corpus
        if end is None:
            sub = dataclasses.replace(cfg, long_frac=0.0)
        else:
            sub = dataclasses.replace(cfg, tokens=end * cfg.batch_size * cfg.seq_len, budgets="",
                                      long_frac=(end - cfg.decay_start(end)) / end)
        view = copy.copy(self.corpus)
        view.cfg = sub
        return view

    def step(self, step: int, lr: float, corpus=None) -> float:
        import torch
        import torch.nn.functional as F

        from rlscale.models import native_train

        x, y, m = (t.to(self.device) for t in (corpus or self.corpus).batch(step))
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.zero_grad(set_to_none=True)
        # the backward's products too ("bf16" sets the products' dtype, not torch's precision)
        with matmul_precision("highest" if self.products is not None else self.precision):
            with self.amp():
                logits = self.forward(x).float().flatten(0, 1)
            if native_train.usable(logits):  # one pass, gradient included (native_train)
                # the mean over the unmasked tokens, as below
                loss = native_train.cross_entropy(logits, y.flatten(),
                                                  m.flatten() / m.sum().clamp(min=1))
            else:
                nll = F.cross_entropy(logits, y.flatten(), reduction="none")
                loss = (nll * m.flatten()).sum() / m.sum().clamp(min=1)
            loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.clean = False  # only the optimizer step changes the weights
        self.opt.step()
        self.clean = True
        return loss.item()

    def forward(self, x):
        """Logits [B, S, V] of full rows (no padding)."""
        if not self.fast:
            return self.model(input_ids=x, use_cache=False).logits
        import torch

        from rlscale.models.fast import FastDecoder

        # fused weights: rebuilt after every update
        dec = FastDecoder(self.model, grad=True, products=self.products)
        S = x.shape[1]
        if self._rope is None or self._rope[0].shape[0] < S:
            with torch.no_grad():
                self._rope = dec.rope_tables(S)
        return dec.causal_logits(x, self._rope)

    def run(self, run_dir: Path, st: dict, end: int, lr_fn, corpus=None) -> None:
        """Steps st["step"] .. end - 1 (st advances in place), logged to RUN_DIR/loss.jsonl."""
        cfg, log = self.cfg, JsonlWriter(run_dir / "loss.jsonl")
        t0, losses, saved = time.perf_counter(), [], st["step"]
        wall0 = st["wall_s"]
        try:
            for step in range(st["step"], end):
                losses.append(self.step(step, lr_fn(step), corpus))
                st["step"], st["wall_s"] = step + 1, wall0 + time.perf_counter() - t0
                if st["step"] % cfg.log_every == 0 or st["step"] == end:
                    log.write({"step": st["step"], "tokens": st["step"] * cfg.batch_size *
                               cfg.seq_len, "loss": sum(losses) / len(losses), "lr": lr_fn(step)})
                    self.bar.set_postfix(loss=f"{sum(losses) / len(losses):.3f}")
                    losses = []
                if st["step"] % cfg.checkpoint_every == 0 and st["step"] < end:
                    self.save(run_dir, st)
                    saved = st["step"]
                self.bar.update(1)
        except BaseException:  # Ctrl-C or an error: keep the last finished step for --resume
            if self.clean and saved < st["step"] < end:
                self.save(run_dir, st)
            raise
        finally:
            log.close()

    def save(self, run_dir: Path, st: dict) -> None:
        from rlscale.grpo import checkpoint as ck

        ck.save_checkpoint(run_dir, st["step"], self.model, self.opt, {"wall_s": st["wall_s"]})

    def load(self, run_dir: Path) -> dict | None:
        """The latest checkpoint of run_dir into the model and optimizer: {step, wall_s}, or
        None when there is none; the loss log is cut back to it."""
        from rlscale.grpo import checkpoint as ck

        latest = ck.latest_checkpoint(run_dir)
        st = {"step": 0, "wall_s": 0.0}
        if latest is not None:
            st = {k: v for k, v in ck.load_checkpoint(latest, self.model, self.opt).items()
                  if k in st}
            self.bar.update(st["step"])
        truncate_jsonl(run_dir / "loss.jsonl", lambda r: r.get("step", 0) <= st["step"])
        return st if latest is not None else None

    def snapshot(self) -> tuple[dict, dict]:
        import copy

        return copy.deepcopy(self.model.state_dict()), copy.deepcopy(self.opt.state_dict())

    def restore(self, snap: tuple[dict, dict]) -> None:
        self.model.load_state_dict(snap[0])
        self.opt.load_state_dict(snap[1])

    def finish(self, run_dir: Path, tok, st: dict, end: int, info: dict, seconds: float,
               step0: int) -> dict:
        """Save run_dir/model (HF format) and run_dir/pretrain.json for a finished range."""
        from rlscale.flops import pretrain_flops
        from rlscale.models import save_model

        cfg = self.cfg
        self.model.eval()
        save_model(self.model, tok, run_dir / "model")
        self.model.train()
        tokens = end * cfg.batch_size * cfg.seq_len
        curve = read_log(run_dir / "loss.jsonl")
        res = {**info, "done": True, "steps": end, "tokens": tokens,
               "flops": pretrain_flops(info["N"], tokens), "wall_s": st["wall_s"],
               "tokens_per_s": (end - step0) * cfg.batch_size * cfg.seq_len / max(seconds, 1e-9),
               "final_loss": curve[-1]["loss"] if curve else None,
               "model_dir": str(run_dir / "model")}
        if "decay_start" in info:  # a branch: its own record (the trunk's is the caller's)
            import shutil

            from rlscale.grpo import checkpoint as ck

            atomic_write_json(run_dir / STATE_FILE, res)
            shutil.rmtree(run_dir / ck.CKPT_DIR, ignore_errors=True)
        return res
