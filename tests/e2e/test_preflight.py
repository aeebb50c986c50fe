"""Snakemake runs the preflight (mtpd/preflight.py) before any training job, and stops there."""
from __future__ import annotations

import pytest

from tests.helpers import BROKEN, one_teacher, snakemake, workdir


@pytest.mark.slow
def test_snakemake_stops_at_the_preflight_before_any_training(tmp_path):
    """A broken teacher config: the preflight fails on the login node, and no training job
    (backbone pretraining included) is started."""
    wd = workdir(tmp_path)
    teacher, expected = BROKEN["typo'd backbone type"]
    config = one_teacher(tmp_path, teacher(tmp_path))
    dry = snakemake(wd, "-n", "--configfile", str(config), timeout=300)
    assert dry.returncode == 0 and "checkpoint preflight:" in dry.stdout, dry.stderr[-3000:]
    r = snakemake(wd, "--configfile", str(config), timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Error in rule preflight" in out, out[-3000:]
    for rule in ("pretrain_backbone", "train_teacher", "train_baseline", "distill_stage"):
        assert f"rule {rule}:" not in out, rule  # never started
    (log,) = (wd / "results" / "tiny" / "preflight").glob("*.log")
    lines = [line for line in log.read_text().splitlines() if line.startswith("mtpd preflight")]
    assert len(lines) == 1 and all(text in lines[0] for text in expected), lines
    assert not list((wd / "results" / "tiny" / "preflight").glob("*.json"))
