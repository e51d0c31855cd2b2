"""benchmarks/gpu_check.py --dry-run: the GPU check's own code, on the CPU with a micro model,
so it runs the day a GPU is at hand. Checks the lines it prints, not their numbers."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NUM = r"[0-9.]+(?:e[-+]?\d+)?"


@pytest.mark.slow
def test_gpu_check_dry_run_prints_every_result():
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run",
                        "--rounds", "1"], capture_output=True, text=True, timeout=1200,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert re.search(rf"^gpu_grpo_vs_trl params=\d+ rlscale_s_per_step={NUM} "
                     rf"trl_s_per_step={NUM} speedup={NUM} mfu={NUM}$", out, re.M), out
    assert re.search(rf"^gpu_rollout params=\d+ rlscale_rollout_tokens_per_s={NUM} rows=4 "
                     r"new_tokens=8$", out, re.M), out
    assert re.search(rf"^gpu_round 0 rlscale_s_per_step={NUM} trl_s_per_step={NUM}$", out, re.M)
    for kind in ("pretrain", "baseline", "evals", "rl"):  # a line per job, as it finishes
        assert re.search(rf"^gpu_job \S+ kind={kind} seconds={NUM}$", out, re.M), out
    assert re.search(rf"^gpu_matched params=\d+ rlscale_ckpt_s_per_step={NUM} "
                     rf"trl_s_per_step={NUM} rlscale_ckpt_peak_gb=nan trl_peak_gb=nan$", out, re.M)
    assert re.search(r"^gpu_memory params=\d+ rlscale_peak_gb=nan trl_peak_gb=nan$", out, re.M)
    assert re.search(rf"^gpu_rung rung=micro:20k seconds=\d+ jobs=\d+ rl_steps=2 "
                     rf"test_loss_first={NUM} test_loss_last={NUM}$", out, re.M), out
