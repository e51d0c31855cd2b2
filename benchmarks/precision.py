"""GRPO steps in three precisions on one model, fp32 the peer measured in the same run:
fp32 weights, `--autocast bf16` (bf16 compute, fp32 weights and AdamW state) and `--dtype bf16`
(pure bf16 weights). Per mode: median seconds per step after the warm-up steps, its ratio to
fp32's, peak GPU memory (CUDA only), and the share of the weights the run changed at the given
lr (pure bf16 rounds away updates below ~1/256 of a weight: at lr 1e-6 most of them).

Completions run to --max-new-tokens (EOS suppressed) so every mode processes the same tokens;
rewards are whatever the model earns (a random-init model: ~none, so advantages are zero and the
weight change comes from AdamW's weight decay alone: pass a trained model, e.g. a study's
`pretrain/600k/model`, for a learning signal). Usage:
  .venv/bin/python benchmarks/precision.py [--model micro:600k] [--steps 6] [--warmup 2]
      [--batch 16] [--group 8] [--max-new-tokens 96] [--lr 1e-6] [--device cpu|cuda]
"""
import argparse, statistics, sys, tempfile
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
from safetensors.torch import load_file
from rlscale.grpo.config import TrainConfig
from rlscale.grpo.trainer import train
from rlscale.files import read_jsonl
from rlscale.models import load_model

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="micro:600k")
ap.add_argument("--task", default="arith:ladder")
ap.add_argument("--steps", type=int, default=6)
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--batch", type=int, default=16)
ap.add_argument("--group", type=int, default=8)
ap.add_argument("--max-new-tokens", type=int, default=96)
ap.add_argument("--lr", type=float, default=1e-6)
ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
ap.add_argument("--threads", type=int, default=1, help="CPU threads (CPU runs only)")
a = ap.parse_args()
if a.device == "cpu":
    torch.set_num_threads(a.threads)
MODES = {"fp32": {}, "autocast_bf16": {"autocast": "bf16"}, "pure_bf16": {"dtype": "bf16"}}


def changed_share(run: Path) -> float:
    """Share of the weights that differ from the starting model's (in the run's own dtype)."""
    w1 = load_file(str(run / "policy" / "model.safetensors"))
    w0 = load_model(a.model, "cpu", "fp32", seed=0)[0].state_dict()
    moved = sum(int((w1[k] != w0[k].to(w1[k].dtype)).sum()) for k in w1)
    return moved / sum(v.numel() for v in w1.values())


res = {}
with tempfile.TemporaryDirectory() as tmp:
    for mode, extra in MODES.items():
        cfg = TrainConfig.from_dict(dict(
            model=a.model, task=a.task, batch_size=a.batch, group_size=a.group,
            max_new_tokens=a.max_new_tokens, suppress_eos=True, steps=a.steps, lr=a.lr,
            heldout=8, eval_every=0, checkpoint_every=10**6, seed=0, device=a.device,
            **extra))
        if a.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        run = Path(tmp) / mode
        train(cfg, run, progress=False)
        rows = [r for r in read_jsonl(run / "metrics.jsonl") if r["step"] > a.warmup]
        peak = torch.cuda.max_memory_allocated() / 2**30 if a.device.startswith("cuda") else None
        res[mode] = (statistics.median(r["time_step"] for r in rows), peak, changed_share(run))
base = res["fp32"][0]
for mode, (s, peak, moved) in res.items():
    print(f"precision model={a.model} device={a.device} mode={mode} s_per_step={s:.3f} "
          f"vs_fp32={base / s:.2f}x peak_gb={'-' if peak is None else f'{peak:.2f}'} "
          f"weights_changed={moved:.3f} lr={a.lr:g}")
