"""environment.yml (clusters) and pyproject.toml (pip) must install the same packages."""
from __future__ import annotations

import tomllib

import yaml

from conftest import REPO


def test_environment_pip_section_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1
    norm = lambda reqs: sorted(r.replace(" ", "").lower() for r in reqs)  # noqa: E731
    assert norm(pip_sections[0]) == norm(project["dependencies"])


def test_no_torchvision_dependency():
    text = (REPO / "pyproject.toml").read_text() + (REPO / "environment.yml").read_text()
    assert "torchvision" not in text


def test_console_script_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["mtpd"] == "mtpd.cli:main"
