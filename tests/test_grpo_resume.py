"""A run killed with SIGKILL mid-way resumes from its last checkpoint to the same metrics and
the same logged samples."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rlscale.cli import main
from rlscale.files import read_jsonl

FLAGS = ["--model", "micro:tiny", "--task", "arith:easy", "--batch-size", "4", "--group-size",
         "4", "--mini-batch-size", "2", "--max-new-tokens", "8", "--heldout", "8",
         "--eval-every", "2", "--checkpoint-every", "1", "--steps", "6", "--lr", "1e-3",
         "--log-samples", "2"]
ROOT = Path(__file__).resolve().parents[1]


def _stable(rows):
    return [{k: v for k, v in r.items() if not k.startswith(("time_", "tokens_per_s", "mfu", "matmul_peak"))}
            for r in rows]


def _steps(path):
    try:
        return [r["step"] for r in read_jsonl(path, tolerate_torn_tail=True)]
    except Exception:
        return []


def test_sigkill_then_resume(tmp_path):
    straight = tmp_path / "straight"
    assert main(["train", *FLAGS, "--out", str(straight)]) == 0

    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "rlscale.cli", "train", *FLAGS, "--out",
                             str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and max(_steps(killed / "metrics.jsonl"), default=-1) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    cut_at = _steps(killed / "metrics.jsonl")
    assert max(cut_at) < 6, cut_at  # really cut short

    assert main(["train", *FLAGS, "--out", str(killed), "--resume"]) == 0
    assert _steps(killed / "metrics.jsonl") == list(range(7))  # nothing lost, nothing twice
    a = _stable(read_jsonl(straight / "metrics.jsonl"))
    b = _stable(read_jsonl(killed / "metrics.jsonl"))
    diff = [(x["step"], k) for x, y in zip(a, b) for k in x if x.get(k) != y.get(k)]
    assert not diff, (cut_at, diff[:5])
    # samples.jsonl: each step's first 2 prompts, once, as the uninterrupted run wrote them
    samples = read_jsonl(killed / "samples.jsonl")
    assert [r["step"] for r in samples] == [s for s in range(1, 7) for _ in range(2)]
    assert samples == read_jsonl(straight / "samples.jsonl")
    first = samples[0]
    assert first["prompt"].startswith("Question: ") and first["prompt"].endswith("\nAnswer:")
    assert len(first["completions"]) == len(first["rewards"]) == len(first["advantages"]) == 4
    assert set(first["finish"]) <= {"eos", "stop", "length"}
