"""Shared fixtures: a small generated dataset, made once per test session."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """40 train / 12 proxy / 12 val images of 128 px; returns the manifest path."""
    from mtpd.data.shapes import ShapesSpec, generate

    out = tmp_path_factory.mktemp("data") / "shapes"
    generate(out, ShapesSpec.from_settings(num_train=40, num_proxy=12, num_val=12, seed=3))
    return out / "dataset.json"


SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def user_env() -> dict:
    """The environment of a user who did not activate the venv: rules must not need PATH."""
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    return env


def workdir(tmp_path: Path) -> Path:
    """A copy of the workflow and configs, so runs never touch the repository's results/."""
    wd = tmp_path / "wd"
    shutil.copytree(REPO / "workflow", wd / "workflow")
    shutil.copytree(REPO / "config", wd / "config")
    return wd


def snakemake(wd: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    """`snakemake --cores 2 ...` in a work directory, as a user would type it."""
    return subprocess.run(SNAKEMAKE + ["--cores", "2", *args], cwd=wd, env=user_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The whole tiny DAG (BGS over three candidates with exhaustive search), run once with
    `--cores 2`; returns its work directory (results/ inside)."""
    wd = workdir(tmp_path_factory.mktemp("tiny"))
    r = snakemake(wd, "--configfile", "config/tiny.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    return wd
