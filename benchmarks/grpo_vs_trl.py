"""GRPO step time: rlscale vs TRL's GRPOTrainer, side by side in one process, on the CPU.

Same random-init Qwen3-architecture model (micro rungs 1m and 6m, saved once and loaded by both),
same prompts (arith word problems), 4 prompts x 8 completions per step, 64 new tokens per
completion with EOS suppressed in both (so both generate the same number of tokens), KL 0, one
optimizer update per step, fp32. Prints per size:

    grpo_vs_trl params=<N> rlscale_s_per_step=<x> trl_s_per_step=<y> speedup=<y/x> mfu=<m>

s_per_step is the median over the timed steps after warm-up, pooled over --rounds rounds that
alternate the two sides (rlscale, TRL, rlscale, TRL, ...); rlscale's is its whole step
(rollout + rewards + log-probs + update), TRL's the time between its optimizer steps. MFU is
rlscale's C_itemized FLOPs per second over the measured matmul peak (rlscale.flops).

    .venv/bin/python benchmarks/grpo_vs_trl.py [--sizes 1m,6m] [--steps 8] [--warmup 2]
                                               [--rounds 2] [--threads 2]

Both sides run in this one process with the same torch intra-op thread count (--threads,
default: all cores; the header line reports it). Run it on a quiet machine: any other load
skews the ratio. On a virtual machine the hypervisor may give a core's time to
another guest: a comment line after each result gives the share of CPU time stolen that way
while each side ran (from /proc/stat; a few percent or more means the ratio is noisy, rerun).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

B, G, NEW_TOKENS = 4, 8, 64


def prompts(n: int) -> list[str]:
    from rlscale.tasks import format_prompt, load_task

    task = load_task("arith:easy", seed=0, n_test=8)
    return [format_prompt(p) for p in task.train[:n]]


def build(rung: str, out: Path) -> int:
    from rlscale.models import build_micro, micro_tokenizer, non_embedding_params, save_model

    tok = micro_tokenizer()
    model = build_micro(rung, tok, seed=0)
    save_model(model, tok, out)
    return non_embedding_params(model)


def time_rlscale(model_dir: Path, steps: int, warmup: int, work: Path, b: int = B, g: int = G,
                 new_tokens: int = NEW_TOKENS, device: str = "cpu", extra: dict | None = None):
    """(seconds of each timed step, MFU of each timed step); the rows are in work/metrics.jsonl.
    On CUDA its weights are bf16, as TRL's side's (the trainer's own default is fp32 on every
    device, which session 18's H200 run measured by mistake); on the CPU fp32. extra: more
    TrainConfig fields (e.g. activation_checkpointing)."""
    from rlscale.files import read_jsonl
    from rlscale.grpo.config import TrainConfig
    from rlscale.grpo.trainer import train

    cfg = TrainConfig.from_dict(dict(
        model=str(model_dir), task="arith:easy", batch_size=b, group_size=g,
        mini_batch_size=b, max_new_tokens=new_tokens, suppress_eos=True, kl_coef=0.0,
        steps=warmup + steps, lr=1e-6, reward="flexible", heldout=1, eval_every=0,
        eval_max_new_tokens=1, checkpoint_every=10**6, device=device, seed=0,
        dtype="bf16" if device != "cpu" else "",
        # its flexible reward scores a random model's samples 0: every group would be idle, and
        # TRL's side runs the whole update whatever the advantages; same work on both sides
        skip_zero_advantage=False, **(extra or {})))
    train(cfg, work, progress=False)
    rows = [r for r in read_jsonl(work / "metrics.jsonl") if r["step"] > warmup]
    return [r["time_step"] for r in rows], [r["mfu"] for r in rows]


def time_trl(model_dir: Path, steps: int, warmup: int, work: Path, b: int = B, g: int = G,
             new_tokens: int = NEW_TOKENS, device: str = "cpu") -> list[float]:
    """Seconds of each timed step (between TRL's optimizer steps); bf16 on CUDA, as rlscale."""
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

    def reward(completions, **kw):
        return [float(len(c) % 3 == 0) for c in completions]  # any signal; its cost is tiny

    args = GRPOConfig(
        output_dir=str(work), per_device_train_batch_size=b * g, num_generations=g,
        max_completion_length=new_tokens, beta=0.0, learning_rate=1e-6, temperature=1.0,
        max_steps=warmup + steps + 1, use_cpu=device == "cpu", bf16=device != "cpu",
        model_init_kwargs={"dtype": "bfloat16" if device != "cpu" else "float32"},
        report_to=[], save_strategy="no",
        logging_steps=10**6, num_iterations=1, gradient_accumulation_steps=1,
        generation_kwargs={"suppress_tokens": [tok.eos_token_id]}, seed=0)
    data = Dataset.from_dict({"prompt": prompts(b * (warmup + steps + 2))})
    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=reward, args=args,
                          train_dataset=data, processing_class=tok, callbacks=[Clock()])
    t0 = time.perf_counter()
    trainer.train()
    return [b - a for a, b in zip([t0] + stamps, stamps)][warmup + 1:]


def steal_ticks() -> tuple[int, int]:
    """(stolen, total) CPU ticks so far from /proc/stat; (0, 0) where there is none."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def stolen_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def same_threads(threads: int, side: str) -> None:
    """Fairness: neither side may have run with another intra-op thread count."""
    import torch

    if torch.get_num_threads() != max(1, threads):
        raise SystemExit(f"{side} changed torch's thread count to {torch.get_num_threads()}")


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1m,6m", help="micro rungs, comma-separated")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per side")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--rounds", type=int, default=2,
                    help="rlscale-then-TRL rounds per size; medians over all timed steps")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch intra-op threads, the same for both sides (default: all cores)")
    a = ap.parse_args()
    torch.set_num_threads(max(1, a.threads))
    from rlscale.models import native

    lib = ("native decoding kernels" if native.library() is not None
           else "no native kernels (torch path)")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, cpu, {lib}",
          flush=True)
    for rung in a.sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            n = build(rung, tmp / "model")
            ours_all, mfus, theirs_all, rounds = [], [], [], []
            stolen = [(0, 0), (0, 0)]  # (stolen, total) ticks while each side ran
            for r in range(a.rounds):  # alternate sides, so a burst of noise hits both
                t0 = steal_ticks()
                secs, m = time_rlscale(tmp / "model", a.steps, a.warmup, tmp / f"rlscale{r}")
                same_threads(a.threads, "rlscale")
                t1 = steal_ticks()
                theirs_all += time_trl(tmp / "model", a.steps, a.warmup, tmp / f"trl{r}")
                same_threads(a.threads, "TRL")
                t2 = steal_ticks()
                ours_all, mfus = ours_all + secs, mfus + m
                rounds.append(f"{statistics.median(secs):.3f}/"
                              f"{statistics.median(theirs_all[-len(secs):]):.3f}")
                for i, (x, y) in enumerate(((t0, t1), (t1, t2))):
                    stolen[i] = (stolen[i][0] + y[0] - x[0], stolen[i][1] + y[1] - x[1])
            ours, theirs = statistics.median(ours_all), statistics.median(theirs_all)
            mfu = statistics.median(mfus)
            print(f"grpo_vs_trl params={n} rlscale_s_per_step={ours:.3f} "
                  f"trl_s_per_step={theirs:.3f} speedup={theirs / ours:.2f} mfu={mfu:.3f}",
                  flush=True)
            print(f"# params={n}: CPU time stolen by the hypervisor while rlscale ran "
                  f"{stolen_share((0, 0), stolen[0]):.1%}, while TRL ran "
                  f"{stolen_share((0, 0), stolen[1]):.1%}; per round rlscale/TRL s per step: "
                  f"{' '.join(rounds)}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
