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
    """Everything up to BGS is planned; BGS's checkpoints then add the chosen chain's jobs."""
    wd = _workdir(tmp_path)
    r = _snakemake(wd, "-n", "--configfile", config)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    rules = ["make_shapes_data", "pretrain_backbone", "train_teacher", "train_baseline",
             "evaluate_teacher", "evaluate_student", "bgs_target", "bgs_round", "bgs_result",
             "tables"]
    if "tiny" in config:  # it also lists a fixed order, planned before BGS
        rules.append("distill_stage")
    for rule in rules:
        assert rule in out, f"{rule} missing from the plan of {config}:\n{out}"


def test_invalid_config_is_refused_with_key(tmp_path):
    wd = _workdir(tmp_path)
    cfg = (wd / "config" / "tiny.yaml").read_text().replace("epochs: 2", "epochs: -2", 1)
    (wd / "config" / "bad.yaml").write_text(cfg)
    r = _snakemake(wd, "-n", "--configfile", "config/bad.yaml")
    assert r.returncode != 0
    assert "teachers.t_r34_b.epochs: -2 is less than the minimum of 1" in r.stderr + r.stdout
    (wd / "config" / "bad.yaml").write_text(
        (wd / "config" / "tiny.yaml").read_text().replace("target: t_r34_b", "target: t_r34_b\n"
                                                          "  proxy_split: val"))
    r = _snakemake(wd, "-n", "--configfile", "config/bad.yaml")
    assert r.returncode != 0 and "bgs.proxy_split" in r.stderr + r.stdout


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path):
    """The whole DAG with BGS over three candidates; then forcing one stage re-runs only what
    depends on it."""
    wd = _workdir(tmp_path)
    r = _snakemake(wd, "--configfile", "config/tiny.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    res = wd / "results"
    result = json.loads((res / "bgs/result.json").read_text())
    order = result["order"]
    # margin -1000 accepts every candidate: target t_r34_b, then two more teachers (max 3)
    assert order[-1] == "t_r34_b" and len(order) == 3 and sorted(order) == sorted(
        ["t_r18", "t_r34_a", "t_r34_b"])
    # prefix reuse: rounds trained t_r34_b, [c, t_r34_b] for 2 candidates, and one 3-chain
    # whose first stage was already trained in round 1 -> 7 stage trainings instead of 8
    assert result["cost"]["bgs_stage_trainings_with_reuse"] == 7
    assert result["cost"]["bgs_stage_trainings_without_reuse"] == 8
    # exhaustive mode adds the other 3-chain: 9 distinct stages (11 without reuse), each
    # trained exactly once on disk although BGS and exhaustive search share most of them
    assert result["cost"]["exhaustive_stage_trainings_with_reuse"] == 9
    assert result["cost"]["exhaustive_stage_trainings_without_reuse"] == 11
    proxy_models = sorted(p.relative_to(res / "proxy").parent.as_posix()
                          for p in (res / "proxy").rglob("model.pth"))
    assert len(proxy_models) == 9, proxy_models
    ranked = pd.read_csv(res / "tables/bgs_exhaustive.csv")
    assert len(ranked) == 5 and ranked["bgs_order"].sum() == 1
    # proxy models are scored on the proxy split only
    for p in (res / "proxy").rglob("metrics_*.json"):
        assert p.name == "metrics_proxy.json"

    table = pd.read_csv(res / "tables/main.csv")
    methods = table["method"].tolist()
    assert methods.count("teacher") == 3 and methods.count("direct") == 3
    assert methods.count("MTPD (BGS)") == 1
    mtpd = table[table["method"] == "MTPD (BGS)"].iloc[0]
    assert mtpd["teachers"] == " -> ".join(order) and mtpd["epochs"] == 3
    assert set(table[table["method"] == "baseline"]["epochs"]) == {1, 2, 3}
    assert table["AP"].between(0, 100).all()
    log = pd.read_csv(res / "tables/bgs_log.csv")
    assert list(log["round"]) == [0, 1, 1, 2] and log["chosen"].sum() == 3
    for f in ("main.md", "main.tex", "bgs_cost.csv"):
        assert (res / "tables" / f).stat().st_size > 0
    for f in ("stages.png", "bgs.png"):
        assert (res / "plots" / f).read_bytes()[:4] == b"\x89PNG"
    assert not list(res.rglob("*.tmp"))  # nothing half-written is left behind

    # Force the MTPD chain's first stage: only its descendants re-run.
    first = f"results/progressive/{order[0]}/model.pth"
    r = _snakemake(wd, "-n", "--forcerun", first, "--configfile", "config/tiny.yaml")
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    jobs = dict(line.split()[:2] for line in out.split("Job stats:")[1].splitlines()[3:]
                if len(line.split()) == 2 and line.split()[1].isdigit())
    assert jobs.get("distill_stage") == "3"      # the 3 stages of the chain
    assert jobs.get("evaluate_student") == "3"
    for rule in ("train_teacher", "train_baseline", "distill_direct", "pretrain_backbone",
                 "make_shapes_data"):
        assert rule not in jobs, out
