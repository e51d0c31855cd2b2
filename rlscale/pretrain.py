"""Pre-training a micro-ladder rung on a task's GSM8K-format corpus (`rlscale pretrain`).

A plain, fast fp32 loop (nanoGPT-like): AdamW, linear warm-up then cosine decay to a floor, rows
of `seq_len` tokens packed from whole "Question: q\\nAnswer: <chain of thought> #### N" documents
(each followed by EOS), loss on every token or on the answers only. The corpus is the task's
train side only, so no held-out question is ever seen.

The documents and their variants (bare answers, slips, prose endings) are rlscale.corpus's.
Step s draws its documents from an RNG seeded by (seed, s), so the batches do not depend on what
ran before and a resumed run reproduces the uninterrupted one. OUT holds

    OUT/model/          the final model (HF format, safetensors): `load_model("OUT/model")`
    OUT/pretrain.json   config, N (non-embedding), tokens D, FLOPs 6 N D, wall time, loss
    OUT/loss.jsonl      the loss curve (step, tokens, loss, lr)
    OUT/checkpoints/    the latest checkpoint while running (rlscale.grpo.checkpoint)
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rlscale.corpus import Corpus, corpus_tokenizer
from rlscale.errors import UserError
from rlscale.files import atomic_write_json, read_json
from rlscale.pretrain_loop import STATE_FILE, lr_at  # lr_at: the schedule, public here too

# settings that may change when resuming: they do not change what the finished steps did
RESUMABLE_CHANGES = ("checkpoint_every", "log_every", "device")


@dataclass
class PretrainConfig:
    rung: str = "micro:20k"  # a micro ladder rung (rlscale.models.LADDER)
    task: str = "arith"  # task spec; documents come from its train split only
    tokens: int = 2_000_000  # D_pretrain: tokens processed (steps x batch_size x seq_len)
    lr: float = 3e-3  # peak learning rate
    min_lr_frac: float = 0.1  # cosine floor, as a fraction of lr
    warmup_frac: float = 0.05  # share of the steps with a linear warm-up
    batch_size: int = 32  # rows per step
    seq_len: int = 128  # tokens per row
    weight_decay: float = 0.1
    grad_clip: float = 1.0  # 0 disables
    loss_on: str = "all"  # all | answer (answer: only the tokens after "Answer:")
    direct_frac: float = 0.0  # share of documents answering "#### N" without the steps
    direct_style: str = ""  # "expr" | "words": bare answers only for that question style
    # (drawn apart from slips and plain endings); "" = any document
    direct_frac_other: float = 0.0  # with direct_style: share of the other style's documents
    # answered bare (a draw of its own; 0 keeps every document of that style worked out)
    slip_frac: float = 0.0  # share of documents whose last step is off by 1 or 2
    plain_frac: float = 0.0  # share of documents ending "The answer is N." instead of "#### N"
    short_seq_len: int = 0  # rows this long (more rows: same tokens) before the last long_frac
    long_frac: float = 1.0  # share of the steps, at the end, whose rows are seq_len long
    blank_join_frac: float = 0.0  # share of documents followed by a blank line, as few-shot
    # exemplars are, instead of EOS: a packed row then reads like a k-shot prompt
    echo_frac: float = 0.0  # share of documents that are a question written twice (no answer):
    # repeated text, whose second copy is predicted by looking back (session 39's copy screen)
    n_problems: int = 0  # train problems to draw documents from (0: the task's default)
    easy_first: float = 0.0  # share of the steps, at the start, that draw their documents from
    # the problems of level <= easy_max_level only (a curriculum; 0: every step draws from all)
    easy_max_level: int = 2  # the curriculum's hardest level
    multi_digit_first: float = 0.0  # share of the steps, at the start, that draw their documents
    # from the stories whose start number has two or more digits only (session 41: copying such
    # a start needs the look-back an induction head does; 0: every step draws from all)
    vocab_size: int = 512  # micro tokenizer vocabulary
    numbers: str = "digits"  # micro tokenizer: a space before a number stays a token of its own
    # ("digits") or joins the first digit ("spaced"); rlscale.models.tokenizer says why
    seed: int = 0  # model init and batch order
    data_seed: int = 0  # the task's train split (as in rlscale train)
    checkpoint_every: int = 100  # steps
    log_every: int = 10  # steps
    device: str = ""  # "" = cuda if available else cpu
    schedule: str = "cosine"  # cosine | wsd (warm-up, stable, then a short decay per budget)
    budgets: str = ""  # wsd: more token budgets ("5e5,1e6"), each a decay branch off one run
    decay_frac: float = 0.2  # wsd: each budget's decay branch, as a share of its steps
    matmul_precision: str = "highest"  # the training step's matrix products:
    # highest (fp32) | medium (torch's fp32 precision "medium": inputs rounded to bf16, fp32
    # sums and outputs where oneDNN has bf16 instructions, 1.2-1.4x a step on AMX; fp32 where it
    # does not, and pretrain.json's matmul_bf16 says which ran) | bf16 (the products' inputs
    # and outputs in bf16 on every machine, as bf16 autocast; weights, AdamW, norms, attention
    # and loss fp32: 1.2-1.6x a step on AVX512-BF16; docs/benchmarks.md)

    def steps(self) -> int:
        return max(1, int(self.tokens) // (self.batch_size * self.seq_len))

    def budget_steps(self) -> list[int]:
        """The step counts of every budget, ascending (wsd: `budgets` and `tokens`)."""
        extra = [_count(b) for b in self.budgets.split(",") if b.strip()] if self.budgets else []
        rows = self.batch_size * self.seq_len
        return sorted({self.steps(), *(max(1, t // rows) for t in extra)})

    def warmup_steps(self) -> int:
        """Cosine: warmup_frac of the steps; wsd: of the smallest budget's (shared by all)."""
        first = self.budget_steps()[0] if self.schedule == "wsd" else self.steps()
        return max(1, round(self.warmup_frac * first))

    def decay_start(self, end: int) -> int:
        """wsd: the step at which the decay branch of the budget ending at `end` leaves the
        stable phase."""
        return max(self.warmup_steps(), end - max(1, round(self.decay_frac * end)))

    def validate(self) -> "PretrainConfig":
        def bad(name, why):
            raise UserError(f"--{name.replace('_', '-')}: {getattr(self, name)!r}: {why}")

        for name in ("tokens", "batch_size", "seq_len", "checkpoint_every", "log_every",
                     "vocab_size"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        if self.n_problems < 0:
            bad("n_problems", "must be >= 0")
        if self.easy_max_level < 1:
            bad("easy_max_level", "must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            bad("lr", "must be a positive number")
        for name in ("min_lr_frac", "warmup_frac", "direct_frac", "slip_frac", "plain_frac",
                     "long_frac", "blank_join_frac", "direct_frac_other", "easy_first",
                     "echo_frac", "multi_digit_first"):
            if not 0 <= getattr(self, name) <= 1:
                bad(name, "must be in [0, 1]")
        if self.easy_first and self.multi_digit_first:
            bad("multi_digit_first", "one first phase at a time: set easy_first or this, not both")
        if self.direct_style not in ("", "expr", "words"):
            bad("direct_style", "choose expr, words or '' (any)")
        if self.direct_frac_other and not self.direct_style:
            bad("direct_frac_other", "needs --direct-style (the style it is the other of)")
        shared = 0.0 if self.direct_style else self.direct_frac  # styled: a draw of its own
        if shared + self.slip_frac > 1:
            bad("slip_frac", "direct_frac + slip_frac must be <= 1")
        if self.short_seq_len and (self.short_seq_len < 1 or self.seq_len % self.short_seq_len):
            bad("short_seq_len", "must divide seq_len (0 = every row seq_len long)")
        if shared + self.slip_frac + self.plain_frac > 1:
            bad("plain_frac", "direct_frac + slip_frac + plain_frac must be <= 1")
        for name in ("weight_decay", "grad_clip"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                bad(name, "must be a finite number >= 0")
        from rlscale.models.tokenizer import NUMBERS

        if self.numbers not in NUMBERS:
            bad("numbers", f"choose {' or '.join(NUMBERS)}")
        if self.loss_on not in ("all", "answer"):
            bad("loss_on", "choose all or answer")
        if self.schedule not in ("cosine", "wsd"):
            bad("schedule", "choose cosine or wsd")
        if self.matmul_precision not in ("highest", "medium", "bf16"):
            bad("matmul_precision", "choose highest (fp32), medium (bf16 inputs where the CPU "
                "has bf16 products) or bf16 (bf16 products)")
        if not 0 < self.decay_frac <= 1:
            bad("decay_frac", "must be in (0, 1]")
        try:
            ends = self.budget_steps()
        except ValueError:
            bad("budgets", "a comma list of token counts, e.g. 5e5,1e6")
        if self.budgets and self.schedule != "wsd":
            bad("budgets", "needs --schedule wsd (branches decay off a stable phase)")
        if ends[0] <= self.warmup_steps() and len(ends) > 1:
            bad("budgets", f"the smallest budget ({ends[0]} steps) must outlast the warm-up")
        from rlscale.models import rung_name

        rung_name(self.rung)
        return self


def pretrain(cfg: PretrainConfig, out_dir, resume: bool = False, tokenizer=None,
             progress: bool | None = None) -> dict:
    """Pre-train cfg.rung into out_dir (resumable); returns the summary written to pretrain.json.

    tokenizer: the micro tokenizer to use (default: `micro_tokenizer` trained on cfg.task's
    corpus). A finished run in out_dir is returned as it is when resume is true. With the wsd
    schedule every budget gets OUT/branches/<tokens>/ (model/, pretrain.json, loss.jsonl) and
    OUT/model is the largest budget's model.
    """
    import torch
    from tqdm.auto import tqdm

    from rlscale.grpo import checkpoint as ck
    from rlscale.models import build_micro, non_embedding_params
    from rlscale.tasks import load_task

    cfg.validate()
    out = Path(out_dir)
    state_path = out / STATE_FILE
    saved = _saved_run(cfg, out, resume)
    if saved is not None and saved.get("done") and (out / "model").is_dir():
        return saved

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    # the held-out side is fixed by a hash of the question, whatever n_test: ask for one
    task = load_task(cfg.task, seed=cfg.data_seed, n_test=1, n_train=cfg.n_problems or None)
    tok = tokenizer or corpus_tokenizer(task.train, cfg.vocab_size, numbers=cfg.numbers)
    model = build_micro(cfg.rung, tok, seed=cfg.seed).to(device).train()
    summary = {"config": dataclasses.asdict(cfg), "rung": cfg.rung, "N": non_embedding_params(model),
               "n_train_problems": len(task.train), "device": device, "done": False}
    ends = cfg.budget_steps() if cfg.schedule == "wsd" else [cfg.steps()]
    work = (cfg.decay_start(ends[-1]) + sum(e - cfg.decay_start(e) for e in ends)
            if cfg.schedule == "wsd" else ends[-1])
    bar = tqdm(total=work, desc=f"pretrain {cfg.rung}", unit="step", disable=_no_bar(progress),
               dynamic_ncols=True, leave=False)
    from rlscale.pretrain_loop import Loop, copy_model, wsd_branches  # torch: not at CLI start-up

    loop = Loop(cfg, Corpus(task.train, tok, cfg), model, device, bar)
    summary["matmul_bf16"] = loop.matmul_bf16  # what cfg.matmul_precision gave on this machine
    st = (loop.load(out) if resume else None) or {"step": 0, "wall_s": 0.0}
    atomic_write_json(state_path, {**summary, **st})
    try:
        if cfg.schedule == "wsd":
            branches = wsd_branches(loop, out, tok, st, summary)
            copy_model(Path(branches[-1]["model_dir"]), out / "model")
            last = branches[-1]
            wall = st["wall_s"] + sum(b["wall_s"] for b in branches)
        else:
            t0, step0 = time.perf_counter(), st["step"]
            loop.run(out, st, ends[-1], lambda s: lr_at(s, cfg))
            last = loop.finish(out, tok, st, ends[-1], summary, time.perf_counter() - t0, step0)
            branches, wall = [], st["wall_s"]
    finally:
        bar.close()
    summary.update({k: last[k] for k in ("steps", "tokens", "flops", "tokens_per_s", "final_loss")},
                   done=True, wall_s=wall, model_dir=str(out / "model"))
    if branches:
        summary["branches"] = [{k: b[k] for k in ("steps", "tokens", "flops", "final_loss",
                                                  "decay_start", "wall_s", "model_dir")}
                               for b in branches]
    atomic_write_json(state_path, summary)
    shutil.rmtree(out / ck.CKPT_DIR, ignore_errors=True)  # the model dirs are the result now
    return summary


def _saved_run(cfg: PretrainConfig, out: Path, resume: bool) -> dict | None:
    """The run already in out (None if none), after checking that resuming it is allowed."""
    from rlscale.grpo import checkpoint as ck

    state_path = out / STATE_FILE
    saved = read_json(state_path) if state_path.is_file() else None
    if (saved is not None or ck.checkpoints(out)) and not resume:
        raise UserError(f"{out}: already holds a pre-training run; pass --resume to continue it "
                        f"or choose another --out")
    if saved is not None:
        ck.check_resume(saved.get("config", {}), dataclasses.asdict(cfg), RESUMABLE_CHANGES,
                        state_path, dataclasses.asdict(PretrainConfig()))
    return saved


def _no_bar(progress: bool | None) -> bool:
    import sys

    return (not sys.stderr.isatty()) if progress is None else not progress


# ---------------------------------------------------------------- CLI
HELP = {
    "rung": "micro ladder rung, e.g. micro:200k",
    "task": "task spec whose train split is the corpus (e.g. arith:easy)",
    "tokens": "pre-training tokens D (e.g. 2e6)",
    "loss_on": "all | answer",
    "direct_frac": "share of documents giving only '#### N' (no chain of thought)",
    "direct_style": "bare answers only for questions of this style: expr | words ('' = any)",
    "direct_frac_other": "with --direct-style: share of the other style's documents answered "
                         "bare",
    "slip_frac": "share of documents whose last step is off by 1 or 2",
    "plain_frac": "share of documents ending 'The answer is N.' instead of '#### N'",
    "echo_frac": "share of documents that are a question written twice, with no answer",
    "easy_first": "share of the steps, at the start, drawing documents only from problems of "
                  "level <= --easy-max-level (a curriculum)",
    "multi_digit_first": "share of the steps, at the start, drawing documents only from stories "
                         "whose start number has two or more digits",
    "numbers": "tokenizer: a space before a number stays its own token (digits) or joins the "
               "first digit (spaced)",
    "matmul_precision": "highest (fp32) | medium: matmul inputs rounded to bf16, fp32 sums, "
                        "where the CPU has bf16 products (pretrain.json's matmul_bf16 says) | "
                        "bf16: the products' inputs and outputs in bf16, the rest fp32",
}


def configure(p) -> None:
    types = {"int": int, "float": float, "str": str}
    for f in dataclasses.fields(PretrainConfig):
        kind = types[str(f.type)] if f.name != "tokens" else _count
        p.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default,
                       metavar=f.name.upper(),
                       help=f"{HELP.get(f.name, f.name.replace('_', ' '))} (default: {f.default!r})")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--resume", action="store_true", help="continue the run in DIR")
    p.add_argument("--progress", action="store_true", default=None, help="force a progress bar")


def _count(s: str) -> int:
    """'2e6' or '2000000' -> 2000000 (argparse type: ValueError becomes a one-line error)."""
    v = float(s)
    if not math.isfinite(v) or v != int(v):
        raise ValueError(s)
    return int(v)


def run(args) -> int:
    cfg = PretrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)})
    res = pretrain(cfg, args.out, resume=args.resume, progress=args.progress)
    print(f"{res['rung']}: N={res['N']:,} non-embedding parameters, D={res['tokens']:,} tokens, "
          f"{res['flops']:.3g} FLOPs, final loss {res['final_loss']:.4f}, {res['wall_s']:.1f} s; "
          f"model in {res['model_dir']}")
    return 0
