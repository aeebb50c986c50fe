"""A training job run by Snakemake, SIGKILLed at a random point, resumes when Snakemake runs again
(mtpd/resume.py through the DAG)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml

from mtpd.checkpoint import load_checkpoint_file
from tests.helpers import workdir


@pytest.mark.slow
def test_stage_killed_at_a_random_point_resumes_through_snakemake(tmp_path):
    """SIGKILL (no chance to save) at a random moment of a training job run by Snakemake: the
    target is not written; Snakemake run again resumes from the last checkpoint and finishes."""
    wd = workdir(tmp_path)
    cfg = yaml.safe_load((wd / "config/tiny.yaml").read_text())
    cfg["compute"] = {"checkpoint_minutes": 0.002}
    (wd / "config/kill.yaml").write_text(yaml.safe_dump(cfg))
    target = "results/tiny/seed0/baseline/e4/model.pth"
    work = wd / (target + ".work")
    cmd = [sys.executable, "-m", "snakemake", target, "--cores", "1", "--configfile",
           "config/kill.yaml"]
    proc = subprocess.Popen(cmd, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 900
    while not (work / "last_checkpoint").exists() and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 3.0))  # a random point after the first checkpoint
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (wd / target).exists(), "the job finished before it could be killed"
    # a killed Snakemake leaves its lock: `--unlock`, then run again (README)
    subprocess.run(cmd + ["--unlock"], cwd=wd, capture_output=True, check=True)
    r = subprocess.run(cmd + ["--rerun-incomplete"], cwd=wd, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    meta = load_checkpoint_file(wd / target)["meta"]["mtpd"]
    assert meta["resumed"] and meta["stage_epochs"] == 4
    assert "resuming from" in (wd / target).with_name("train.log").read_text()
    assert not list((wd / "results").rglob("*.tmp"))
