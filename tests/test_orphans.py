"""Jobs a dead Snakemake left running are stopped before a rerun starts its own
(mtpd/orphans.py). Through the DAG: tests/e2e/test_orphans.py (local) and
tests/e2e/test_slurm.py (SLURM)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from mtpd.orphans import _is_mtpd, _is_snakemake, local_orphans, other_snakemakes, stop_orphans


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
