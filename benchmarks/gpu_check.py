"""The GPU check: rlscale's full-size GRPO step vs TRL's, and the `gpu` study preset's smallest rung.

On one H200 (sessions 18-19, docs/benchmarks.md): part 1 takes about 150 s with one round;
part 2 about 8 minutes (~100 s before RL, then ~1.7 s per RL step; no lease has finished it).
1. GRPO step time of rlscale vs TRL 1.x GRPOTrainer on the same random-init model with
   Qwen3-0.6B's architecture (rlscale.models.archs), bf16, the same prompts, 8 prompts x 8
   completions, 256 new tokens with EOS suppressed (every completion is full length), KL 0, one
   optimizer update per step; the two sides alternate over --rounds (benchmarks/grpo_vs_trl.py
   does the timing, on either device). Printed as

     gpu_grpo_vs_trl params=<N> rlscale_s_per_step=<x> trl_s_per_step=<y> speedup=<y/x> mfu=<m>

   with N the non-embedding parameters, medians over the timed steps, and MFU rlscale's model
   FLOPs per second over the measured bf16 matmul peak (rlscale.flops.matmul_peak_flops);
   then rlscale's rollout tokens/s and the peak GPU memory of each side, and rlscale once more
   with activation checkpointing (TRL's default is on): `gpu_matched ...`; then the log-probs
   of one sampled batch by each path of the training forward against transformers' own
   forward, `gpu_paths <path>_vs_hf max_abs=... mean_abs=...`.
2. The `gpu` preset's smallest rung end to end, as the study runs it (rlscale.study.plan):
   pre-training, the k-shot baseline, the evaluations before RL, one GRPO run, the evaluations
   of its policy; without the preset's data-reuse and reward arms and extra seeds. Printed as
   `gpu_rung rung=<name> seconds=<s> ...` with the run's first and last test loss.

    .venv/bin/python benchmarks/gpu_check.py            # on a machine with a CUDA GPU
    .venv/bin/python benchmarks/gpu_check.py --dry-run  # the same code on the CPU, micro sizes

--dry-run replaces the model by the micro:1m rung, the batch by 2 x 2 completions of 8 tokens,
and the rung's budgets by a few steps, and runs on the CPU in fp32; CI runs it
(tests/test_gpu_check.py) so this script cannot rot before a GPU is at hand.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # grpo_vs_trl: the timing pieces
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpo_vs_trl as peer  # noqa: E402

FULL = dict(arch="qwen3-0.6b", b=8, g=8, new_tokens=256, steps=3, warmup=1)
DRY = dict(arch="", b=2, g=2, new_tokens=8, steps=1, warmup=1)


def build_model(arch: str, out: Path, device: str) -> int:
    """Save the compared model (bf16 on a GPU) with the local tokenizer; its N."""
    import torch

    from rlscale.models import build_micro, micro_tokenizer, non_embedding_params, save_model
    from rlscale.models.archs import build_random

    tok = micro_tokenizer()
    model = build_random(arch, tok) if arch else build_micro("1m", tok, seed=0)
    if device != "cpu":
        model = model.to(torch.bfloat16)
    save_model(model, tok, out)
    return non_embedding_params(model)


def peak_memory_gb(device: str, reset: bool = False) -> float:
    import torch

    if device == "cpu":
        return float("nan")  # the GPU number only; the CPU's is the process's RSS
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return torch.cuda.max_memory_allocated() / 2**30


def grpo_vs_trl(device: str, s: dict, rounds: int, tmp: Path) -> None:
    from rlscale.files import read_jsonl

    n = build_model(s["arch"], tmp / "model", device)
    ours, theirs, mfus, rollout_tps, mem = [], [], [], [], {"rlscale": [], "trl": []}
    for r in range(rounds):  # alternate the sides, so drift hits both
        peak_memory_gb(device, reset=True)
        secs, m = peer.time_rlscale(tmp / "model", s["steps"], s["warmup"], tmp / f"ours{r}",
                                    s["b"], s["g"], s["new_tokens"], device)
        mem["rlscale"].append(peak_memory_gb(device))
        rows = [x for x in read_jsonl(tmp / f"ours{r}" / "metrics.jsonl") if x["step"] > s["warmup"]]
        rollout_tps += [s["b"] * s["g"] * s["new_tokens"] / x["time_rollout"] for x in rows]
        ours, mfus = ours + secs, mfus + m
        peak_memory_gb(device, reset=True)
        theirs += peer.time_trl(tmp / "model", s["steps"], s["warmup"], tmp / f"trl{r}",
                                s["b"], s["g"], s["new_tokens"], device)
        mem["trl"].append(peak_memory_gb(device))
        print(f"gpu_round {r} rlscale_s_per_step={statistics.median(secs):.3f} "  # survives a cut
              f"trl_s_per_step={statistics.median(theirs[-len(secs):]):.3f}", flush=True)
    x, y = statistics.median(ours), statistics.median(theirs)
    print(f"gpu_grpo_vs_trl params={n} rlscale_s_per_step={x:.3f} trl_s_per_step={y:.3f} "
          f"speedup={y / x:.2f} mfu={statistics.median(mfus):.3f}", flush=True)
    print(f"gpu_rollout params={n} rlscale_rollout_tokens_per_s="
          f"{statistics.median(rollout_tps):.0f} rows={s['b'] * s['g']} "
          f"new_tokens={s['new_tokens']}", flush=True)
    print(f"gpu_memory params={n} rlscale_peak_gb={max(mem['rlscale']):.2f} "
          f"trl_peak_gb={max(mem['trl']):.2f}", flush=True)
    # matched in memory: TRL's default recomputes activations (gradient checkpointing); so
    # does rlscale with activation_checkpointing
    peak_memory_gb(device, reset=True)
    secs, _ = peer.time_rlscale(tmp / "model", s["steps"], s["warmup"], tmp / "ours_ckpt",
                                s["b"], s["g"], s["new_tokens"], device,
                                extra={"activation_checkpointing": True})
    print(f"gpu_matched params={n} rlscale_ckpt_s_per_step={statistics.median(secs):.3f} "
          f"trl_s_per_step={y:.3f} rlscale_ckpt_peak_gb={peak_memory_gb(device):.2f} "
          f"trl_peak_gb={max(mem['trl']):.2f}", flush=True)


def paths_agree(device: str, s: dict, tmp: Path) -> None:
    """The training forward's log-probs on the compared model, by each path the trainer can
    take (on CUDA: fused completion attention, from hidden states in chunks), against
    transformers' own forward on the same sampled batch: `gpu_paths` prints the largest and the
    mean |difference| over the completion tokens, in the model's dtype."""
    import torch

    from rlscale.grpo import logprobs as L
    from rlscale.models import fast, fast_train, load_model
    from rlscale.rollout import SamplingParams, generate

    model, tok = load_model(str(tmp / "model"), device=device)
    rows = [p for p in peer.prompts(s["b"]) for _ in range(s["g"])]
    g = generate(model, tok, rows, SamplingParams(s["new_tokens"], 1.0, suppress_eos=True), seed=0)
    batch = L.batch_for_logprobs(g.prompt_ids, g.completion_ids, tok.pad_token_id, device)
    whole, fused, supports = L.LOGITS_WHOLE_BYTES, fast_train.FUSED_ATTENTION, fast.supports
    out = {}
    try:
        with torch.no_grad():
            for name, (big, fuse, compact) in {"hf": (whole, None, False),
                                               "compact_explicit": (1 << 62, False, True),
                                               "compact_fused_whole": (1 << 62, True, True),
                                               "compact_default": (whole, None, True)}.items():
                L.LOGITS_WHOLE_BYTES, fast_train.FUSED_ATTENTION = big, fuse
                fast.supports = supports if compact else (lambda m: False)
                out[name] = L.sequence_logprobs(model, *batch).float()
    finally:  # the next part of the check runs the defaults
        L.LOGITS_WHOLE_BYTES, fast_train.FUSED_ATTENTION, fast.supports = whole, fused, supports
    mask = batch[3].bool()
    for name in list(out)[1:]:
        d = (out[name] - out["hf"])[mask].abs()
        print(f"gpu_paths {name}_vs_hf max_abs={float(d.max()):.4f} mean_abs={float(d.mean()):.5f} "
              f"dtype={next(model.parameters()).dtype} tokens={int(mask.sum())}", flush=True)
    del model


def watch(metrics: Path, every: float, stop: threading.Event) -> None:
    """Print how many rows a running job has logged, every `every` s: the job itself prints no
    progress here, and a run cut off by its time limit still says how far its RL got (on the
    H200 in session 18 the 200-step RL job was cut off with nothing to show)."""
    t0 = time.perf_counter()
    while not stop.wait(every):
        rows = metrics.read_text().count("\n") if metrics.exists() else 0
        print(f"gpu_progress {metrics.parent.name} rows={rows} "
              f"seconds={time.perf_counter() - t0:.0f}", flush=True)


def smallest_rung(dry: bool, tmp: Path, every: float = 30.0) -> None:
    """The gpu preset's first rung through the study's own jobs, in dependency order."""
    from rlscale.files import read_jsonl
    from rlscale.study import PRESETS, plan, run_job, write_task

    gpu = PRESETS["gpu"]
    rung = gpu.rungs[0]
    preset = dataclasses.replace(gpu, rungs=(rung,), arm_rung="", rl_seeds=1)
    if dry:  # the same jobs at CPU-test sizes
        rung = dataclasses.replace(rung, name="micro:20k", tokens=4096, rl_steps=2)
        preset = dataclasses.replace(
            preset, rungs=(rung,), n_train=200, batch_size=2, group_size=2, max_new_tokens=8,
            eval_every=1, heldout=2, eval_samples=1, kshot_problems=2, passk_problems=2,
            passk_samples=2, pretrain_batch=4, seq_len=64, short_seq_len=32)
    out = tmp / "study"
    write_task(preset, out)
    t0, done = time.perf_counter(), set()
    jobs = plan(preset, out)
    while len(done) < len(jobs):
        job = next(j for j in jobs if j.name not in done and set(j.deps) <= done)
        t1, stop = time.perf_counter(), threading.Event()
        threading.Thread(target=watch, args=(Path(job.out) / "metrics.jsonl", every, stop),
                         daemon=True).start()
        try:
            run_job(job.kind, job.out, job.params, threads=0)  # each picks CUDA when present
        finally:
            stop.set()
        done.add(job.name)  # a line per job: what was measured survives a cut-off run
        print(f"gpu_job {job.name} kind={job.kind} seconds={time.perf_counter() - t1:.1f}",
              flush=True)
    rl = next(j for j in jobs if j.kind == "rl")
    losses = [r["test_loss"] for r in read_jsonl(Path(rl.out) / "metrics.jsonl")
              if r.get("test_loss") is not None]
    print(f"gpu_rung rung={rung.name} seconds={time.perf_counter() - t0:.0f} jobs={len(jobs)} "
          f"rl_steps={rung.rl_steps} test_loss_first={losses[0]:.3f} "
          f"test_loss_last={losses[-1]:.3f}", flush=True)


def main() -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="the same code on the CPU with a micro model and tiny budgets")
    ap.add_argument("--rounds", type=int, default=2, help="rlscale-then-TRL rounds (default 2)")
    ap.add_argument("--skip-rung", action="store_true", help="only the GRPO comparison")
    ap.add_argument("--skip-grpo", action="store_true", help="only the smallest rung")
    a = ap.parse_args()
    if a.dry_run:
        device, sizes = "cpu", DRY
    elif torch.cuda.is_available():
        device, sizes = "cuda", FULL
    else:
        print("gpu_check: no CUDA device; run with --dry-run to exercise it on the CPU",
              file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    print(f"# gpu_check on {name}, torch {torch.__version__}", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if not a.skip_grpo:
            grpo_vs_trl(device, sizes, a.rounds, Path(tmp))
            paths_agree(device, sizes, Path(tmp))
        if not a.skip_rung:
            smallest_rung(a.dry_run, Path(tmp))
    print(f"# gpu_check total {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
