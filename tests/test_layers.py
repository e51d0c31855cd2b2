"""Imports run one way, down: the pure layers (metrics, rewards, FLOPs, the fitter, the findings
and the report's analysis) load neither torch, transformers nor the models package, so fitting
and reporting work in an environment without them and start fast."""

from __future__ import annotations

import subprocess
import sys

import pytest

PURE = ("rlscale.eval_metrics", "rlscale.rewards", "rlscale.flops", "rlscale.scaling",
        "rlscale.findings", "rlscale.findings_evals", "rlscale.findings_law", "rlscale.report")
HEAVY = ("torch", "transformers", "rlscale.models")


@pytest.mark.parametrize("module", PURE)
def test_pure_layer_imports_no_models(module):
    code = (f"import sys, {module}\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == [], f"{module} imports {loaded}"
