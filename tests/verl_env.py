"""Where the tests find verl's own environment (`make verl-env` builds .venv-verl)."""

import os
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
