"""Where the tests find verl's own environment (`make verl-env` builds .venv-verl)."""

import functools
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def verl_python() -> str:
    """$RLSCALE_VERL_PYTHON or .venv-verl's python. Under CI (CI=true; .ci/run builds the env)
    a missing env fails the test; elsewhere the test skips."""
    py = os.environ.get("RLSCALE_VERL_PYTHON") or str(REPO / ".venv-verl" / "bin" / "python")
    if not Path(py).is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"verl environment missing ({py}): run `make verl-env`")
        pytest.skip(f"verl environment missing ({py}): run `make verl-env`")
    return py


@functools.lru_cache(maxsize=None)
def _has(py: str, module: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([py, "-c", code], capture_output=True).returncode == 0


def lmeval_python() -> str:
    """`verl_python()` where it holds lm_eval (`make verl-env` installs it; an env built before
    session 46 lacks it): under CI a missing one fails the test, elsewhere it skips."""
    py = verl_python()
    if not _has(py, "lm_eval"):
        why = f"lm_eval missing from the interop environment ({py}): run `make verl-env`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return py
