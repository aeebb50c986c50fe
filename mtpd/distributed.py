"""N processes on one node: one per GPU (or CPU processes with gloo, as the tests run them).

A rule given N GPUs runs `mtpd train --gpus N ...` inside its one SLURM task (the plugin wraps
each job in `srun -n1`); `mtpd.devices` finds the devices the job has (SLURM's, or claimed on a
machine of its own) and `relaunch` starts one process per device with `torch.distributed.run
--standalone`, each running the same command (`--nproc N`: N CPU processes). mtpd initialises
the process group itself (NCCL on GPUs, gloo on CPUs) because MMEngine 0.10's launcher assumes
CUDA.
"""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_child() -> bool:
    """Whether this is one of the N processes torch.distributed.run started (which must not
    assign devices or relaunch again)."""
    return "LOCAL_RANK" in os.environ


def relaunch(nproc: int, argv: list[str], pass_fds: tuple[int, ...] = ()) -> int | None:
    """Runs `python -m mtpd <argv>` as `nproc` processes and returns their exit code, or None
    when this process should do the work itself (one process, or already one of the N).
    `pass_fds` (a local device claim's locks) stay open in the launcher, so the claim lasts
    as long as it does even if this process is killed first."""
    if nproc <= 1 or is_child():
        return None
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "mtpd", *per_process(argv)]
    return subprocess.call(cmd, pass_fds=pass_fds)


def per_process(argv: list[str]) -> list[str]:
    """The command for each process: the same, less `--nproc N` (which torch.distributed.run's
    own parser would also take for an abbreviation of its --nproc-per-node) and `--gpus N`
    (the devices are assigned once, here)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--nproc", "--gpus"):
            skip = True
        elif not arg.startswith(("--nproc=", "--gpus=")):
            out.append(arg)
    return out


def backend() -> str:
    """The process group's backend: NCCL between GPUs, gloo on CPUs."""
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def init_process_group() -> bool:
    """Initialises torch.distributed for a multi-process run; returns whether it is one."""
    import torch
    import torch.distributed as dist

    if world_size() <= 1:
        return False
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group(backend=backend())
    return True


def configure_runner(cfg: Any) -> None:
    """Makes an MMEngine config run in the current process group (or as one process)."""
    import torch

    if world_size() <= 1:
        cfg.launcher = "none"
        return
    cfg.launcher = "pytorch"  # the group already exists: MMEngine only wraps the model in DDP
    cfg.model_wrapper_cfg = dict(type="MMDistributedDataParallel", broadcast_buffers=False,
                                 find_unused_parameters=False)
    if not torch.cuda.is_available():
        cfg.model_wrapper_cfg["device_ids"] = None  # DDP of a CPU module


def gather(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (a one-element list in a single process)."""
    import torch.distributed as dist

    if world_size() <= 1 or not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    import torch.distributed as dist

    if world_size() > 1 and dist.is_initialized():
        dist.barrier()
