"""A rerun after Snakemake itself died stops the job it left running first (mtpd/orphans.py
through the DAG, locally; the SLURM case is in tests/e2e/test_slurm.py)."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest
import torch
import yaml

from mtpd.orphans import local_orphans
from tests.helpers import (
    ONE_THREAD,
    SNAKEMAKE,
    CheckpointWatch,
    train_command,
    user_env,
    wait_for,
    workdir,
)

E6 = "results/tiny/seed0/baseline/e6/model.pth"  # the student alone, 6 epochs: long enough


@pytest.mark.slow
def test_rerun_after_snakemake_dies_stops_its_orphan_first(tmp_path):
    """`snakemake --cores 2` is SIGKILLed (itself, not its jobs: e.g. a `nohup` run killed, or
    Snakemake crashing) while a training job runs; the job lives on as an orphan. After
    `--unlock`, the same command stops it first (its log says so), then its own job resumes
    from the orphan's checkpoint, and the weights equal an uninterrupted run's."""
    wd = workdir(tmp_path)
    (wd / "fast.yaml").write_text(yaml.safe_dump({"compute": {"checkpoint_minutes": 0.002}}))
    configs = ["--configfile", "config/tiny.yaml", "fast.yaml"]
    cmd = [*SNAKEMAKE, "--cores", "2", "-p", E6, *configs]
    log = wd / "first.log"
    with open(log, "w") as sink:
        first = subprocess.Popen(cmd, cwd=wd, env=user_env(), stdout=sink,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        watch = CheckpointWatch(wd / f"{E6}.work")
        wait_for("a checkpoint inside epoch 2", lambda: (pos := watch()) and pos[0] >= 1
                 and pos[1] >= 1, 900, first, log, interval=0.1)
        os.kill(first.pid, signal.SIGKILL)  # Snakemake only: its job is orphaned
        first.wait()
        orphans = local_orphans(wd)
        assert len(orphans) == 1 and "train" in orphans[0].what, orphans
        r = subprocess.run([*SNAKEMAKE, "--unlock", *configs], cwd=wd, env=user_env(),
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        rerun = subprocess.run(cmd, cwd=wd, env=user_env(), capture_output=True,
                               text=True, timeout=900)
    finally:
        for o in local_orphans(wd):
            os.kill(int(o.id), signal.SIGKILL)
    out = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, out[-5000:]
    assert f"mtpd: stopping local process {orphans[0].id} (" in out
    assert not local_orphans(wd)
    train_log = (wd / E6).with_name("train.log").read_text()
    assert "resuming from" in train_log, train_log[-3000:]
    # the same command, never interrupted
    plain = tmp_path / "plain.pth"
    r = subprocess.run(train_command(log.read_text(), E6, plain), cwd=wd,
                       env={**user_env(), **ONE_THREAD},
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    ours = torch.load(wd / E6, weights_only=True)["state_dict"]
    ref = torch.load(plain, weights_only=True)["state_dict"]
    diff = max((ours[k].float() - v.float()).abs().max().item() for k, v in ref.items())
    assert diff <= 1e-6, diff
