"""GPU assignment (mtpd/devices.py): what a job sees, and GPUs claimed on a machine of its own.

Why: on one GPU server without SLURM, concurrent Snakemake jobs must each get GPUs of their own,
set before torch starts, and give them back when they end, however they end (SIGKILL too).
The jobs here are real processes holding real flock locks; their pool is MTPD_GPUS, as a user
restricts it (this CPU machine has no GPU to detect).
"""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mtpd.devices import (
    JobDevices,
    assign,
    local_pool,
    machine_gpus,
    parse_nvidia_smi,
    parse_visible,
)
from mtpd.errors import DeviceError
from tests.helpers import wait_for

# one job: claims its GPUs as `mtpd train --gpus N` does, records them, holds them until told
JOB = """
import logging, os, sys, time
from pathlib import Path
from mtpd.devices import assign
logging.basicConfig(level=logging.INFO, format="%(message)s")
job = assign(int(sys.argv[1]), poll=0.05)
assert "torch" not in sys.modules  # CUDA_VISIBLE_DEVICES is set before torch can start CUDA
out = Path(sys.argv[2])
out.with_suffix(".tmp").write_text(os.environ["CUDA_VISIBLE_DEVICES"])
out.with_suffix(".tmp").rename(out)
while not Path(sys.argv[3]).exists():
    time.sleep(0.05)
"""


@pytest.mark.parametrize("text, devices", [
    (None, None),                      # unset: CUDA shows every device
    ("", []), ("-1", []), ("NoDevFiles", []),  # none (SLURM: GRES without device files)
    ("0,1", ["0", "1"]), (" 2 , 3 ", ["2", "3"]),
    ("0,-1,1", ["0"]),                 # CUDA stops at the first invalid entry
    ("GPU-8f3c2a1e-0b7d,1", ["GPU-8f3c2a1e-0b7d", "1"]),
    ("MIG-GPU-8f3c/1/0", ["MIG-GPU-8f3c/1/0"]),
])
def test_visible_devices_are_read_as_cuda_reads_them(text, devices):
    assert parse_visible(text) == devices


def test_machine_gpus_are_found_without_starting_cuda(tmp_path):
    """The driver's /proc entries (one directory per GPU, named by PCI address), and the
    output of `nvidia-smi -L`."""
    for bus in ("0000:3b:00.0", "0000:5e:00.0", "0000:86:00.0"):
        (tmp_path / bus).mkdir()
    assert machine_gpus(tmp_path) == (["0", "1", "2"], f"3 GPUs in {tmp_path}")
    smi = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1d2f)\n"
           "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-77a0)\n")
    assert parse_nvidia_smi(smi) == ["0", "1"]


def test_the_local_pool_is_what_the_user_allows():
    assert local_pool({"MTPD_GPUS": "2,3", "CUDA_VISIBLE_DEVICES": "0,1,2,3"}) == (
        ["2", "3"], "MTPD_GPUS=2,3")
    assert local_pool({"CUDA_VISIBLE_DEVICES": "1"}) == (["1"], "CUDA_VISIBLE_DEVICES=1")
    assert local_pool({"MTPD_GPUS": ""}) == ([], "MTPD_GPUS=")


def test_a_slurm_job_runs_one_process_per_device_slurm_gave_it(tmp_path):
    env = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1",
           "CUDA_VISIBLE_DEVICES": "0,1", "MTPD_GPU_LOCKS": str(tmp_path)}
    job = assign(2, env=env)
    assert job == JobDevices(["0", "1"], 2, "SLURM job 7, task 0 of 1")
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1" and not list(tmp_path.iterdir())  # no locks
    assert assign(2, parallel=False, env=dict(env)).processes == 1  # pretrain, stream
    # more devices than asked for (Snakemake inside an salloc): claimed within the allocation
    job = assign(1, env={**env, "CUDA_VISIBLE_DEVICES": "4,5"})
    assert job.devices == ["4"] and job.locks
    assert stat.S_IMODE((tmp_path / "slurm-7").stat().st_mode) == 0o1777
    for fd in job.locks:
        os.close(fd)
    with pytest.raises(DeviceError) as e:
        assign(4, env=dict(env))
    assert str(e.value).startswith("the job asks for 4 GPU(s) (--gpus 4) but SLURM job 7 "
                                   "sees 2 (CUDA_VISIBLE_DEVICES=0,1); ask SLURM for them")
    assert "--set-resources RULE:gpu=N" in str(e.value)


def test_cpu_jobs_hide_the_gpus_and_run_one_process(tmp_path):
    env = {"MTPD_GPUS": "0,1", "CUDA_VISIBLE_DEVICES": "0,1", "MTPD_GPU_LOCKS": str(tmp_path)}
    assert assign(0, env=env) == JobDevices([], 1, "--gpus 0, so on the CPU")
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # the GPUs stay free for the jobs that asked
    env = {"MTPD_GPUS": "", "MTPD_GPU_LOCKS": str(tmp_path)}  # no GPU: on the CPU, as before
    assert assign(2, env=env) == JobDevices([], 1, "MTPD_GPUS=, so on the CPU")
    with pytest.raises(DeviceError, match=r"^the job asks for 3 GPU\(s\) \(--gpus 3\) but "
                                          r"only 2 may be used here \(MTPD_GPUS=0,1\); lower"):
        assign(3, env={"MTPD_GPUS": "0,1", "MTPD_GPU_LOCKS": str(tmp_path)})


def test_a_job_asking_for_more_gpus_than_the_machine_has_fails_in_one_line(tmp_path):
    """Before anything heavy is imported: the user reads one line naming the fix."""
    env = {**os.environ, "MTPD_GPUS": "0,1", "MTPD_GPU_LOCKS": str(tmp_path)}
    env.pop("SLURM_JOB_ID", None)
    r = subprocess.run([sys.executable, "-m", "mtpd", "evaluate", "--config", "c.py",
                        "--checkpoint", "m.pth", "--dataset", "d.json", "--out", "x.json",
                        "--gpus", "3"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "mtpd evaluate: error: the job asks for 3 GPU(s) (--gpus 3) but only 2 may be used here "
        "(MTPD_GPUS=0,1); lower the rule's gpu resource: compute.train.gpus / "
        "compute.evaluate.gpus in your config, or --set-resources RULE:gpu=N, or widen "
        "MTPD_GPUS"]


class Job:
    """One claiming process: its devices once it has them, its log, its end."""

    def __init__(self, tmp: Path, name: str, gpus: int, env: dict[str, str]):
        self.out, self.release = tmp / f"{name}.devices", tmp / f"{name}.release"
        self.log = tmp / f"{name}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", JOB, str(gpus), str(self.out),
                                          str(self.release)], env=env, stderr=log)

    def devices(self) -> set[str] | None:
        return set(self.out.read_text().split(",")) if self.out.exists() else None

    def waiting(self) -> bool:
        return "waiting for" in self.log.read_text()

    def end(self) -> int:
        self.release.touch()
        return self.proc.wait(timeout=30)


def test_concurrent_jobs_get_disjoint_gpus_wait_and_get_them_back(tmp_path):
    """Two 2-GPU jobs started together split a 4-GPU pool; a third waits until the first ends;
    a fourth waits until the second is SIGKILLed; no device is ever held twice."""
    locks = tmp_path / "locks"
    env = {**os.environ, "MTPD_GPUS": "0,1,2,3", "MTPD_GPU_LOCKS": str(locks)}
    env.pop("SLURM_JOB_ID", None)
    a, b = Job(tmp_path, "a", 2, env), Job(tmp_path, "b", 2, env)
    jobs = [a, b]
    try:
        got_a = wait_for("job a's devices", a.devices, 60.0, interval=0.05)
        got_b = wait_for("job b's devices", b.devices, 60.0, interval=0.05)
        assert len(got_a) == len(got_b) == 2 and got_a | got_b == {"0", "1", "2", "3"}
        assert stat.S_IMODE(locks.stat().st_mode) == 0o1777  # shared by every user, like /tmp

        c = Job(tmp_path, "c", 1, env)
        jobs.append(c)
        wait_for("job c to wait", c.waiting, 60.0, interval=0.05)
        assert c.devices() is None
        assert a.end() == 0  # a ends normally: its devices are free again
        got_c = wait_for("job c's device", c.devices, 60.0, interval=0.05)
        assert len(got_c) == 1 and got_c <= got_a

        d = Job(tmp_path, "d", 2, env)  # one device is free: d holds none and waits
        jobs.append(d)
        wait_for("job d to wait", d.waiting, 60.0, interval=0.05)
        assert d.devices() is None
        b.proc.send_signal(signal.SIGKILL)
        assert b.proc.wait(timeout=30) == -signal.SIGKILL
        got_d = wait_for("job d's devices", d.devices, 60.0, interval=0.05)
        assert len(got_d) == 2 and not got_d & got_c and got_d & got_b
        assert c.end() == 0 and d.end() == 0
    finally:
        for job in jobs:
            if job.proc.poll() is None:
                job.proc.kill()
                job.proc.wait()
