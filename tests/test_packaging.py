"""environment.yml (clusters) and pyproject.toml (pip) must install the same packages."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import tomllib
import yaml

from tests.helpers import REPO


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


@pytest.mark.slow
def test_installed_wheel_validates_a_config(tmp_path):
    """A non-editable install carries its schema: the wheel's `mtpd` fills in every default.

    Built from a copy of the sources (the repository stays clean), installed with --target
    beside the venv's dependencies, and run from a directory outside the repository."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "mtpd", src / "mtpd",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("mtpd-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        assert "mtpd/schemas/config.schema.yaml" in z.namelist()
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=300)
    run = tmp_path / "elsewhere"
    run.mkdir()
    (run / "my.yaml").write_text("experiment: mine\ncompute: {train: {gpus: 2}}\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    r = subprocess.run([sys.executable, str(site / "bin" / "mtpd"), "config", "--show",
                        str(REPO / "config" / "tiny.yaml"), "my.yaml"],
                       cwd=run, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    completed = yaml.safe_load(r.stdout)
    assert completed["experiment"] == "mine"  # the later file wins, key by key
    assert completed["compute"]["train"]["gpus"] == 2
    assert completed["compute"]["checkpoint_minutes"] == 15  # a schema default
    where = subprocess.run([sys.executable, "-c", "import mtpd; print(mtpd.__file__)"],
                           cwd=run, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(site))  # the wheel's mtpd, not the checkout's
    bad = subprocess.run([sys.executable, str(site / "bin" / "mtpd"), "config", "my.yaml"],
                         cwd=run, env={**env, "PYTHONPATH": str(site)}, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0
    assert bad.stderr.count("\n") == 1 and "mtpd config: error:" in bad.stderr, bad.stderr
