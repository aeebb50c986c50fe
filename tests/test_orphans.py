"""Jobs a dead Snakemake left running are stopped before a rerun starts its own
(mtpd/orphans.py); the SLURM case is in test_slurm.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import (ONE_THREAD, SNAKEMAKE, CheckpointWatch, train_command, user_env,
                      wait_for, workdir)
from mtpd.orphans import (_is_mtpd, _is_snakemake, local_orphans, other_snakemakes,
                          stop_orphans)

E6 = "results/tiny/seed0/baseline/e6/model.pth"  # the student alone, 6 epochs: long enough


def test_command_lines_are_recognised():
    assert _is_mtpd(["/venv/bin/mtpd", "train"])
    assert _is_mtpd(["/usr/bin/python3", "/venv/bin/mtpd", "evaluate"])
    assert _is_mtpd(["python", "-m", "mtpd", "stream"])
    assert not _is_mtpd(["python", "-m", "snakemake", "--cores", "2"])
    assert not _is_mtpd(["bash", "-c", "mtpd train --out x > log"])  # its shell: not a writer
    assert _is_snakemake(["python", "-m", "snakemake", "--cores", "2"])
    # the Snakemake a job runs in (a SLURM job step, a subprocess) schedules nothing
    assert not _is_snakemake(["python", "-m", "snakemake", "--target-jobs", "train:seed=0",
                              "--executor", "slurm-jobstep"])
    assert not _is_snakemake(["python", "-m", "snakemake", "--target-jobs", "train:seed=0"])


def _sleeper(bin_dir: Path, cwd: Path, name: str = "mtpd") -> subprocess.Popen:
    """A long-lived process whose command line is `python .../<name>`, run in `cwd`."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text("import time\ntime.sleep(120)\n")
    return subprocess.Popen([sys.executable, str(script), "train"], cwd=cwd)


def _wait_listed(find, what: str) -> None:
    """Until `find()` lists something: /proc shows the final command line once exec'd."""
    deadline = time.monotonic() + 20
    while not find() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert find(), f"{what} never showed up in /proc"


def test_only_this_directorys_mtpd_processes_are_stopped(tmp_path):
    ours, other = tmp_path / "ours", tmp_path / "other"
    ours.mkdir()
    other.mkdir()
    mine, theirs = _sleeper(tmp_path / "bin", ours), _sleeper(tmp_path / "bin", other)
    try:
        _wait_listed(lambda: local_orphans(ours), "the mtpd process")
        assert [o.id for o in local_orphans(ours)] == [str(mine.pid)]
        said: list[str] = []
        stopped = stop_orphans(ours, slurm=False, log=said.append, interval=0.1)
        assert [o.id for o in stopped] == [str(mine.pid)]
        assert mine.wait(timeout=10) == -signal.SIGTERM
        assert theirs.poll() is None  # another directory's job is left alone
        assert said[0].startswith(f"mtpd: stopping local process {mine.pid} (")
        assert stop_orphans(ours, slurm=False, log=said.append) == []
    finally:
        for p in (mine, theirs):
            p.kill()
            p.wait()


def test_nothing_is_stopped_while_another_snakemake_runs_here(tmp_path):
    """Snakemake locks outputs, not directories: a live run for other targets may share the
    directory, and its jobs are not orphans."""
    job = _sleeper(tmp_path / "bin", tmp_path)
    other = _sleeper(tmp_path / "bin", tmp_path, name="snakemake")
    try:
        _wait_listed(lambda: local_orphans(tmp_path), "the mtpd process")
        _wait_listed(lambda: other_snakemakes(tmp_path), "the other Snakemake")
        assert other_snakemakes(tmp_path) == [str(other.pid)]
        said: list[str] = []
        assert stop_orphans(tmp_path, slurm=False, log=said.append) == []
        assert job.poll() is None and f"another Snakemake runs in {tmp_path}" in said[0]
    finally:
        for p in (job, other):
            p.kill()
            p.wait()


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
