"""The Snakemake DAG: dry runs of the shipped configs and a real end-to-end tiny run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


def _workdir(tmp_path: Path) -> Path:
    """A copy of the workflow and configs, so runs never touch the repository's results/."""
    wd = tmp_path / "wd"
    shutil.copytree(REPO / "workflow", wd / "workflow")
    shutil.copytree(REPO / "config", wd / "config")
    return wd


def _snakemake(wd: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    return subprocess.run(SNAKEMAKE + ["--cores", "2", *args], cwd=wd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("config", ["config/config.yaml", "config/tiny.yaml"])
def test_dry_run_shows_whole_plan(tmp_path, config):
    wd = _workdir(tmp_path)
    r = _snakemake(wd, "-n", "--configfile", config)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    for rule in ("make_shapes_data", "pretrain_backbone", "train_teacher", "train_baseline",
                 "distill_stage", "distill_direct", "evaluate_teacher", "evaluate_student",
                 "tables"):
        assert rule in out, f"{rule} missing from the plan of {config}:\n{out}"


def test_invalid_config_is_refused_with_key(tmp_path):
    wd = _workdir(tmp_path)
    cfg = (wd / "config" / "tiny.yaml").read_text().replace("epochs: 2", "epochs: -2", 1)
    (wd / "config" / "bad.yaml").write_text(cfg)
    r = _snakemake(wd, "-n", "--configfile", "config/bad.yaml")
    assert r.returncode != 0
    assert "teachers.retina_r34w24.epochs: -2 is less than the minimum of 1" in r.stderr + r.stdout


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    wd = _workdir(tmp_path)
    r = _snakemake(wd, "--configfile", "config/tiny.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    table = pd.read_csv(wd / "results/tables/main.csv")
    rows = {(m, t or "") for m, t in zip(table["method"], table["teachers"].fillna(""))}
    assert ("teacher", "") in rows and ("baseline", "") in rows
    assert ("progressive", "retina_r34w24_b -> retina_r34w24") in rows
    assert ("direct", "retina_r34w24") in rows
    assert len(table) == 2 + 2 + 2 + 1  # teachers, baselines (1x, 2x), 2 stages, 1 direct
    assert table["AP"].between(0, 100).all()
    md = (wd / "results/tables/main.md").read_text()
    assert md.count("\n|") == len(table) + 1
    # the progressive second stage started from the first stage's student
    ckpt_meta = json.loads((wd / "results/progressive/retina_r34w24_b/retina_r34w24/"
                            "metrics_val.json").read_text())
    assert ckpt_meta["method"] == "progressive" and ckpt_meta["stage"] == 2
    # nothing half-written is left behind
    assert not list((wd / "results").rglob("*.tmp"))
