"""Jobs a dead Snakemake left running, stopped before a new run starts its own.

Why: when Snakemake itself dies (an ssh session drops, the login node reboots, Ctrl-C twice),
the jobs it started live on: SLURM jobs stay queued or keep running, and local jobs keep
running as orphans. After `snakemake --unlock`, the same command would start a second job for
each of their targets: two writers on one `<target>.work/` directory and its resumable
checkpoints, and on a cluster two GPU allocations where one was needed. So the workflow's
`onstart` hook (which runs once, on the submitting host, before the first job; never inside
jobs, which Snakemake starts with --no-hooks) calls `stop_orphans`: every job that still lives
from this work directory is stopped first, the new run's job for that target resumes from the
checkpoint the stopped job saved on SIGTERM (`mtpd.resume`), and the log says which jobs were
stopped. Snakemake's own lock (which `--unlock` removed) means no other live Snakemake run uses
this work directory, so whatever still runs from it belongs to a dead one.

What this relies on, and why it holds on clusters: no file locks (NFS, Lustre and GPFS do not all
honour flock or fcntl locks across hosts). SLURM's controller is asked which jobs live
(`squeue`): the Snakemake SLURM plugin marks each job with a comment `rule_<rule>...`, and SLURM
records the directory it was submitted from (`%Z`), Snakemake's work directory. Jobs that run on
this host (local jobs, and local rules of a SLURM run) are found in `/proc`: `mtpd` processes
whose working directory is this one.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mtpd.errors import MtpdError

SQUEUE_FORMAT = "%i|%T|%Z|%k"  # job id, state, submit directory, comment
PLUGIN_COMMENT = "rule_"       # how the Snakemake SLURM plugin's jobs say which rule they run
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
         "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}  # squeue may still list these


@dataclass(frozen=True)
class Orphan:
    """A job still alive from this work directory: a SLURM job id or a local process id."""

    kind: str       # "slurm" | "local"
    id: str
    what: str       # the plugin's comment (rule and wildcards), or the command line
    state: str = "RUNNING"

    def describe(self) -> str:
        where = f"SLURM job {self.id}" if self.kind == "slurm" else f"local process {self.id}"
        return f"{where} ({self.what}, {self.state})"


def _same_dir(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _squeue() -> list[list[str]]:
    """squeue's rows for this user, as lists of the SQUEUE_FORMAT fields."""
    r = subprocess.run(["squeue", "--me", "--noheader", f"--format={SQUEUE_FORMAT}"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise MtpdError(f"cannot ask SLURM which jobs of an earlier run still live (squeue: "
                        f"{r.stderr.strip() or r.returncode}); start the run again once "
                        "squeue works, so no job runs twice")
    return [line.split("|", 3) for line in r.stdout.splitlines() if line.count("|") >= 3]


def slurm_orphans(workdir: str | Path) -> list[Orphan]:
    """SLURM jobs of this user submitted from `workdir` by Snakemake's SLURM plugin."""
    if shutil.which("squeue") is None:
        return []
    return [Orphan("slurm", job_id, comment, state)
            for job_id, state, submit_dir, comment in _squeue()
            if comment.startswith(PLUGIN_COMMENT) and state not in ENDED
            and _same_dir(submit_dir, workdir)]


def _is_mtpd(argv: list[str]) -> bool:
    """`mtpd ...`, `python .../bin/mtpd ...` or `python -m mtpd ...`."""
    return (Path(argv[0]).name == "mtpd" or (len(argv) > 1 and Path(argv[1]).name == "mtpd")
            or argv[1:3] == ["-m", "mtpd"])


def _is_snakemake(argv: list[str]) -> bool:
    """A Snakemake that schedules jobs, not one that runs a job: Snakemake starts those (inside
    SLURM jobs, and in subprocesses) with `--target-jobs`."""
    named = (Path(argv[0]).name == "snakemake" or (len(argv) > 1
             and Path(argv[1]).name == "snakemake") or argv[1:3] == ["-m", "snakemake"])
    return named and "--target-jobs" not in argv


def _ancestors(proc: Path) -> set[int]:
    """This process and its parents (the Snakemake that runs this hook, and `timeout` & co.)."""
    found, pid = set(), os.getpid()
    while pid > 1 and pid not in found:
        found.add(pid)
        try:
            pid = int((proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            break
    return found


def _processes_in(workdir: str | Path, proc: Path, wanted: Callable[[list[str]], bool],
                  skip: set[int]) -> list[tuple[str, list[str]]]:
    """(pid, argv) of the processes on this host working in `workdir` whose argv is `wanted`."""
    found = []
    for entry in proc.glob("[0-9]*"):
        if int(entry.name) in skip:
            continue
        try:
            argv = [a for a in (entry / "cmdline").read_bytes().decode().split("\0") if a]
            if argv and wanted(argv) and _same_dir(entry / "cwd", workdir):
                found.append((entry.name, argv))
        except (OSError, UnicodeDecodeError):
            continue  # gone meanwhile, or not ours to read
    return found


def other_snakemakes(workdir: str | Path, proc: Path = Path("/proc")) -> list[str]:
    """Process ids of other live Snakemake runs in `workdir` on this host. Snakemake locks
    outputs, not directories, so runs for disjoint targets may share one: their jobs are not
    orphans."""
    return [pid for pid, _ in _processes_in(workdir, proc, _is_snakemake, _ancestors(proc))]


def local_orphans(workdir: str | Path, proc: Path = Path("/proc")) -> list[Orphan]:
    """`mtpd` processes on this host whose working directory is `workdir` (not this one)."""
    return [Orphan("local", pid, " ".join(argv[1:4]) + " ...")
            for pid, argv in _processes_in(workdir, proc, _is_mtpd, {os.getpid()})]


def _alive(orphan: Orphan, workdir: str | Path) -> bool:
    if orphan.kind == "slurm":
        return any(job_id == orphan.id and state not in ENDED
                   for job_id, state, *_ in _squeue())
    return any(o.id == orphan.id for o in local_orphans(workdir))


def stop_orphans(workdir: str | Path, *, slurm: bool, log: Callable[[str], None] = print,
                 timeout: float = 600.0, interval: float = 1.0) -> list[Orphan]:
    """Stops every job that still lives from `workdir` (SLURM jobs when `slurm`, then local
    `mtpd` processes) with SIGTERM (training saves a resumable checkpoint and exits; SLURM:
    `scancel`), waits until each is gone, and logs each one; returns them. One still alive
    `timeout` seconds later is killed (SIGKILL). Nothing is stopped while another live
    Snakemake runs in `workdir` (its jobs are no orphans)."""
    others = other_snakemakes(workdir)
    if others:
        log(f"mtpd: another Snakemake runs in {workdir} (process {', '.join(others)}), so the "
            "jobs alive here may be its own: none is stopped. If a dead run left jobs behind, "
            "stop them first (scancel / kill), then start this run again")
        return []
    stopped = []
    for find in ((slurm_orphans,) if slurm else ()) + (local_orphans,):
        orphans = find(workdir)
        for o in orphans:
            log(f"mtpd: stopping {o.describe()}, left running by an earlier Snakemake run in "
                f"{workdir}; this run makes its target again, resuming from the checkpoint it "
                "saves on SIGTERM")
            _signal(o, hard=False)
        _wait(orphans, workdir, log, timeout, interval)
        stopped += orphans
    if stopped:
        log(f"mtpd: stopped {len(stopped)} job(s) of an earlier run; none is alive now")
    return stopped


def _wait(orphans: list[Orphan], workdir: str | Path, log: Callable[[str], None],
          timeout: float, interval: float) -> None:
    deadline = time.monotonic() + timeout
    while orphans := [o for o in orphans if _alive(o, workdir)]:
        if time.monotonic() > deadline:
            for o in orphans:
                log(f"mtpd: {o.describe()} is still alive {timeout:.0f} s after SIGTERM: "
                    "killing it")
                _signal(o, hard=True)
            deadline = time.monotonic() + timeout
        time.sleep(interval)


def _signal(o: Orphan, hard: bool) -> None:
    if o.kind == "slurm":  # scancel: SIGTERM, and SIGKILL after SLURM's KillWait
        cmd = ["scancel", "--full", "--signal=KILL", o.id] if hard else ["scancel", o.id]
        subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        return
    try:
        os.kill(int(o.id), signal.SIGKILL if hard else signal.SIGTERM)
    except ProcessLookupError:
        pass
