"""Shared fixtures (a small generated dataset, made once per test session, and the whole tiny
DAG) and helpers (work directories, Snakemake runs, watching a training job)."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("OMP_NUM_THREADS", "2")
# what Snakemake sets for a job's shell command when its rule has 1 thread (the rules
# declare none), locally and inside SLURM jobs alike (snakemake/shell.py)
ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                               "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                               "NUMEXPR_NUM_THREADS")}


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


# --- watching a training job from outside (interruption tests) ---------------------------
T = TypeVar("T")


class CheckpointWatch:
    """Where the last checkpoint of a training work directory was taken; each checkpoint is
    read once (the job writes one every iteration and this process shares its 2 cores)."""

    def __init__(self, work: Path):
        self.work, self.seen, self.position = work, "", None

    def __call__(self) -> tuple[int, int] | None:
        """(epoch index, batches done in it), or None before the first checkpoint."""
        from mtpd.checkpoint import load_checkpoint_file

        try:
            path = (self.work / "last_checkpoint").read_text().strip()
            if path != self.seen:
                meta = load_checkpoint_file(Path(path))["meta"]
                self.seen = path
                self.position = int(meta["epoch"]), int(meta.get("mtpd_iter_in_epoch", 0))
        except (OSError, RuntimeError, EOFError, KeyError, ValueError):
            pass  # not there yet, or replaced by the next one while we read it
        return self.position


def wait_for(what: str, check: Callable[[], T], timeout: float, proc: subprocess.Popen,
             log: Path, interval: float = 0.2) -> T:
    """Polls `check()` until it returns something truthy; fails if Snakemake ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"Snakemake ended ({proc.returncode}) before {what}:\n"
                        f"{log.read_text()[-4000:]}")
        time.sleep(interval)
    pytest.fail(f"timed out waiting for {what}")


def train_command(output: str, target: str, out: Path) -> list[str]:
    """The rule's `mtpd train` command for `target` (from Snakemake's printed shell command),
    writing to `out` instead, without the log redirection."""
    line = next(line for line in output.splitlines()
                if line.startswith("Shell command: mtpd train") and f"--out {target}" in line)
    argv = shlex.split(line.removeprefix("Shell command: ").split(" > ")[0])
    argv[argv.index("--out") + 1] = str(out)
    return [sys.executable, "-m", "mtpd", *argv[1:]]
