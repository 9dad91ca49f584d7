"""The three install descriptions (pyproject.toml, environment.yml, requirements-cpu.txt) agree."""

from __future__ import annotations

import re
import tomllib

from visa_lib.paths import REPO_ROOT

# conda names the PyTorch package differently from PyPI.
CONDA_TO_PYPI = {"pytorch": "torch"}
# Packages that exist only to pin CUDA or the conda interpreter; not Python dependencies of ours.
CONDA_ONLY = {"python", "pip", "pytorch-cuda"}


def _name(requirement: str) -> str:
    """'scikit-image>=0.21' -> 'scikit-image' (lower case, '_' and '-' unified)."""
    name = re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0]
    return name.lower().replace("_", "-")


def _pyproject_names() -> dict[str, set[str]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    groups = {"core": {_name(r) for r in project["dependencies"]}}
    for extra, reqs in project["optional-dependencies"].items():
        groups[extra] = {_name(r) for r in reqs}
    return groups


def _environment_names() -> set[str]:
    names = set()
    text = (REPO_ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+[^#]*)$", line)
        if not m or m.group(1).startswith(("-e", ".")) or m.group(1).strip() == "pip:":
            continue
        name = CONDA_TO_PYPI.get(_name(m.group(1)), _name(m.group(1)))
        if name not in CONDA_ONLY and not name.endswith(":"):
            names.add(name)
    return names


def test_environment_yml_matches_pyproject():
    groups = _pyproject_names()
    declared = set().union(*groups.values())
    env = _environment_names()
    assert not env - declared, f"environment.yml lists packages pyproject.toml lacks: {env - declared}"
    assert not declared - env, f"pyproject.toml declares packages environment.yml lacks: {declared - env}"


def test_cpu_requirements_pin_everything_the_cpu_rung_needs():
    groups = _pyproject_names()
    pinned = {}
    for line in (REPO_ROOT / "requirements-cpu.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert "==" in line, f"requirements-cpu.txt: '{line}' is not pinned with =="
            pinned[_name(line)] = line.split("==")[1]
    needed = groups["core"] | groups["notebooks"] | groups["training"] | groups["dev"]
    assert needed - set(pinned) == set(), f"requirements-cpu.txt lacks pins for {needed - set(pinned)}"
    # A plain torch would pull a multi-GB CUDA build; the CPU rung pins the versions on this machine kind.
    assert pinned["torch"] == "2.14.1" and pinned["torchvision"] == "0.29.1"
