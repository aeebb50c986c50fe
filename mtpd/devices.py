"""Which devices a job runs on, and the name its runtimes carry.

A training or evaluation job asks for N GPUs (`--gpus N`, the rule's `gpu` resource) and runs
one process per device it is given, so the process count always matches what the job sees:

* under SLURM (SLURM_JOB_ID set) the devices are the ones SLURM gave the job step
  (CUDA_VISIBLE_DEVICES); a job that sees fewer than it asked for stops with one line;
* on a machine of its own (`snakemake --cores C --resources gpu=G`) the job claims N devices
  of the machine's pool with one `flock`ed lock file per device in a node-local directory, so
  no two jobs share a GPU; the kernel drops the locks when the job ends, however it ends
  (SIGKILL included), and a job waits while too few are free;
* a machine without GPUs runs the job on the CPU, as one process.

CUDA reads CUDA_VISIBLE_DEVICES once, when it starts, so `assign` sets it before anything
touches CUDA: this module imports torch only inside `describe` and `_torch_devices`.
"""
from __future__ import annotations

import fcntl
import logging
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mtpd.errors import DeviceError

log = logging.getLogger("mtpd.devices")
VISIBLE = "CUDA_VISIBLE_DEVICES"
POOL_ENV = "MTPD_GPUS"            # the GPUs of this machine that mtpd jobs may use, e.g. 0,1,2,3
LOCKS_ENV = "MTPD_GPU_LOCKS"      # where the per-device lock files live (node-local)
DEFAULT_LOCKS = Path("/tmp/mtpd-gpu-locks")
NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")
GPU_FIX = ("the rule's gpu resource: compute.train.gpus / compute.evaluate.gpus in your config, "
           "or --set-resources RULE:gpu=N")


def device_name(device: str | None = None) -> str:
    """What runtimes were measured on: `cuda: <GPU>` or `cpu: <model> (<n> threads)`.

    Runtimes from different devices are not comparable, so every one reported carries this."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda"):
        return f"cuda: {torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu: {_cpu_model()} ({torch.get_num_threads()} threads)"


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# --- what a job sees --------------------------------------------------------------------------
def parse_visible(text: str | None) -> list[str] | None:
    """The devices a CUDA_VISIBLE_DEVICES value names, read as CUDA reads it: None when unset
    (every device), else indices or GPU-/MIG- UUIDs up to the first entry that is neither
    (CUDA ignores it and all after it), so '', '-1' and SLURM's 'NoDevFiles' name none."""
    if text is None:
        return None
    devices = []
    for entry in (e.strip() for e in text.split(",")):
        if not (entry.isdigit() or re.fullmatch(r"(GPU|MIG)-[\w./-]+", entry)):
            break
        devices.append(entry)
    return devices


def parse_nvidia_smi(text: str) -> list[str]:
    """The indices of the GPUs `nvidia-smi -L` lists (`GPU 0: NVIDIA H100 ... (UUID: ...)`)."""
    return re.findall(r"^GPU (\d+):", text, re.M)


def machine_gpus(proc: Path = NVIDIA_PROC) -> tuple[list[str], str]:
    """This machine's NVIDIA GPUs as indices 0..n-1, found without starting CUDA: the driver's
    /proc entries, else `nvidia-smi -L`; ([], why) when there is none."""
    try:
        n = sum(1 for p in proc.iterdir() if p.is_dir())
        if n:
            return [str(i) for i in range(n)], f"{n} GPUs in {proc}"
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        found = parse_nvidia_smi(out)
        if found:
            return found, f"{len(found)} GPUs from nvidia-smi -L"
    return [], f"no GPU found in {proc} or by nvidia-smi -L"


def local_pool(env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """The GPUs jobs on this machine may use, and where that came from: MTPD_GPUS (a user's
    restriction), else the CUDA_VISIBLE_DEVICES Snakemake was started with, else the
    machine's GPUs."""
    env = os.environ if env is None else env
    for name in (POOL_ENV, VISIBLE):
        pool = parse_visible(env.get(name))
        if pool is not None:
            return pool, f"{name}={env[name]}"
    return machine_gpus()


def _torch_devices() -> list[str]:
    """Devices torch sees when CUDA_VISIBLE_DEVICES is unset (starts CUDA: last resort)."""
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


# --- claiming devices on a machine of its own -------------------------------------------------
def lock_dir(env: dict[str, str] | None = None) -> Path:
    """The node-local directory of the per-device lock files (MTPD_GPU_LOCKS overrides)."""
    env = os.environ if env is None else env
    return Path(env.get(LOCKS_ENV) or DEFAULT_LOCKS)


def _make_shared(directory: Path) -> None:
    """Creates `directory` and its missing parents sticky and world-writable, like /tmp, so
    every user's jobs on this machine share the same lock files."""
    missing = []
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:  # made meanwhile by another job, its own mode set
            continue
        d.chmod(0o1777)


def _lock_file(directory: Path, device: str) -> int:
    """An open descriptor of `device`'s lock file. Read-only is enough for flock, so a file
    another user created (mode 0644) serves everyone; links are not followed."""
    _make_shared(directory)
    name = "gpu-" + re.sub(r"[^\w.-]", "_", device) + ".lock"
    return os.open(directory / name, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)


def claim(n: int, pool: list[str], directory: Path, poll: float = 1.0,
          on_wait: Callable[[], None] = lambda: None) -> tuple[list[str], list[int]]:
    """Locks `n` devices of `pool` (first free first); returns them and the open lock
    descriptors, which hold the claim until they are closed, at the latest when the last
    process holding them exits. While fewer than `n` are free it holds none and polls, so two
    jobs each holding part of what they need never wait for each other; `on_wait` runs once."""
    waited = False
    while True:
        held: list[tuple[str, int]] = []
        for device in pool:
            fd = _lock_file(directory, device)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held.append((device, fd))
            if len(held) == n:
                return [d for d, _ in held], [fd for _, fd in held]
        for _, fd in held:
            os.close(fd)
        if not waited:
            on_wait()
            waited = True
        time.sleep(poll)


# --- one job ----------------------------------------------------------------------------------
@dataclass
class JobDevices:
    """What a job runs on: `devices` (CUDA_VISIBLE_DEVICES as set; [] on the CPU), the
    processes to start, where the devices came from, and the lock descriptors that hold a
    claim (to pass to the processes started)."""

    devices: list[str]
    processes: int
    source: str
    locks: list[int] = field(default_factory=list)


def assign(gpus: int, parallel: bool = True, env: dict[str, str] | None = None,
           poll: float = 1.0) -> JobDevices:
    """The devices of a job that asked for `gpus` GPUs, with CUDA_VISIBLE_DEVICES set to them
    in `env` (os.environ) before torch starts CUDA; one process per device when `parallel`
    (else one). Raises DeviceError, naming what the job sees and the fix, when it can never
    get `gpus` devices."""
    env = os.environ if env is None else env
    if gpus <= 0:
        env[VISIBLE] = ""  # a CPU job leaves the GPUs to the jobs that asked for them
        return JobDevices([], 1, "--gpus 0, so on the CPU")
    job_id = env.get("SLURM_JOB_ID")
    if job_id:
        seen = parse_visible(env.get(VISIBLE))
        raw = env.get(VISIBLE, "unset")
        if seen is None:
            seen = _torch_devices()
        tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS") or "?"
        source = f"SLURM job {job_id}, task {env.get('SLURM_PROCID', '?')} of {tasks}"
        if len(seen) < gpus:
            raise DeviceError(f"the job asks for {gpus} GPU(s) (--gpus {gpus}) but SLURM job "
                              f"{job_id} sees {len(seen)} ({VISIBLE}={raw}); ask SLURM for "
                              f"them with {GPU_FIX}, and check that the node's gres.conf "
                              "lists its GPU device files")
        if len(seen) == gpus:
            devices, locks = seen, []
        else:  # e.g. Snakemake run inside an salloc: its jobs share the allocation's devices
            devices, locks = claim(gpus, seen, lock_dir(env) / f"slurm-{job_id}", poll,
                                   lambda: log.info("devices: waiting for %d of %s=%s",
                                                    gpus, VISIBLE, raw))
    else:
        pool, where = local_pool(env)
        if not pool:
            env[VISIBLE] = ""
            return JobDevices([], 1, f"{where}, so on the CPU")
        if len(pool) < gpus:
            raise DeviceError(f"the job asks for {gpus} GPU(s) (--gpus {gpus}) but only "
                              f"{len(pool)} may be used here ({where}); lower {GPU_FIX}, or "
                              f"widen {POOL_ENV}")
        directory = lock_dir(env)
        start = time.monotonic()
        devices, locks = claim(gpus, pool, directory, poll, lambda: log.info(
            "devices: waiting for %d free GPU(s) of %s (lock files in %s)", gpus, where,
            directory))
        source = f"claimed from {where}, locks in {directory}"
        if time.monotonic() - start > poll:
            source += f", after waiting {time.monotonic() - start:.0f} s"
    env[VISIBLE] = ",".join(devices)
    return JobDevices(devices, len(devices) if parallel else 1, source, locks)


def describe(job: JobDevices) -> str:
    """The log line of a job's devices, e.g. `devices: CUDA_VISIBLE_DEVICES=0,1 (SLURM job 7,
    task 0 of 1) -> 2 processes (gloo)`: the process group's backend, or for one process the
    device it computes on. Imports torch: call it after `assign`."""
    import torch

    from mtpd.distributed import backend

    n = job.processes
    how = backend() if n > 1 else "cuda" if torch.cuda.is_available() else "cpu"
    return (f"devices: {VISIBLE}={','.join(job.devices or [])} ({job.source}) -> {n} "
            f"process{'es' if n > 1 else ''} ({how})")
