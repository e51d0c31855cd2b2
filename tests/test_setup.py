"""The set-up's one hard rule: no install may leave torch to a resolver. An unpinned torch on a
fresh machine downloads a CUDA build of several GB; the CPU build goes in the same call as what
needs torch, by pin (pip) or as the very file pip would take (uv)."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _recipe_lines(make: str) -> list[str]:
    """The Makefile's logical lines, continuations joined."""
    return re.sub(r"\\\n\s*", " ", make).splitlines()


def test_every_install_of_the_project_names_the_cpu_torch():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH := torch==2\.13\.0$", make, re.M)
    lines = _recipe_lines(make)
    installs = [x for x in lines if re.search(r"\bpip install\b", x) and "--dry-run" not in x]
    # the installer macro's two paths: uv gets pip's own file, pip gets the pin
    (macro,) = [x for x in installs if "uv pip install" in x]
    assert '"torch @ $$url" $(1)' in macro and "file://*) true" in macro
    assert "--no-compile $(TORCH) $(1)" in macro
    # the project is installed through the macro only
    assert not [x for x in installs if " -e " in x]
    assert [x.strip() for x in lines if "$(call install," in x] == [
        "$(call install,pip -e .)", "$(call install,-e '.[test]')"]
    # the interop env: its pinned CPU torch first, before anything that could ask for one
    verl = [x for x in installs if "$(VERL_VENV)/bin/pip install" in x]
    assert "--upgrade pip" in verl[0] and verl[1].rstrip().endswith("install -q torch==2.13.0")


def test_the_pinned_torch_satisfies_the_projects_range():
    from packaging.requirements import Requirement

    text = (ROOT / "pyproject.toml").read_text()
    (spec,) = re.findall(r'"(torch[^"]*)"', text)
    assert Requirement(spec).specifier.contains("2.13.0")
