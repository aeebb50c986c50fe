"""A real single-node SLURM cluster, installed and started by the test suite itself.

Why: the SLURM profile can only be trusted once it has run the pipeline through a real
`sbatch`, `srun` and `squeue`, and CI machines start bare. This module installs Debian's
packages when the daemons are missing (`munge slurmctld slurmd slurm-client`), writes its
files into one temporary directory (munge key, `slurm.conf`, state, spool, logs, PID files;
outside it only a copy of slurm.conf, see below, and an /etc/hosts line if the short hostname
does not resolve), starts munged, slurmctld and slurmd on 127.0.0.1 with free ports and a
private munge socket (so a system munged or slurmctld that a package started stays out of the
way), waits until the node is idle and exports SLURM_CONF. `stop()` cancels what is left and
stops the three daemons by their PID files, SIGTERM first.

The node has GPUs (`GPUS` of model `GPU_MODEL`): GRES backed by character devices the harness
makes in its directory (mknod with /dev/null's 1:3; SLURM gives a job its device list only for
device files), listed in a gres.conf beside slurm.conf, so SLURM sets CUDA_VISIBLE_DEVICES in
each job step as on a GPU node; torch sees no CUDA here, so the jobs' processes use gloo. The
node claims `CPUS_PER_GPU` CPUs per GPU (`SlurmdParameters=config_overrides` when that is more
than this machine has), so a job can ask for every GPU.

One file has to go to /etc: the executor plugin's job step (snakemake-executor-plugin-slurm-
jobstep 0.6) removes every SLURM_* variable but the job's identity, SLURM_CONF included, from
the environment of the `srun` it runs inside each job, so that `srun` reads the default
/etc/slurm/slurm.conf (as on any real cluster, where every node has one). The harness writes a
copy there, marked as its own, refuses to replace one it did not write, and removes it at the
end.

Facts this relies on are in /work/shared/reference/slurm.md (measured on Debian 12, SLURM
22.05): no accounting, so the executor plugin must use `squeue` (MinJobAge >= 120 s), and
`jobcomp/filetxt` keeps SLURM's own record of every finished (or requeued) job instead.
When the packages cannot be installed (not root, no apt-get, no network) the tests are
skipped, unless MTPD_REQUIRE_SLURM=1 (CI), which turns that into a failure.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE_ENV = "MTPD_REQUIRE_SLURM"
PACKAGES = ("munge", "slurmctld", "slurmd", "slurm-client")
TOOLS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel", "slurmctld", "slurmd", "munged")
SYSTEM_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
HOSTS_MARK = "# mtpd tests: SLURM needs the short hostname"
ETC_CONF = Path("/etc/slurm/slurm.conf")
CONF_MARK = "# written by tests/slurm_cluster.py"
GPU_MODEL = "testgpu"      # the tests' compute.gpu_model: jobs ask for --gpus=testgpu:N
GPUS = 4
CPUS_PER_GPU = 1           # the tests' compute.*.cpus_per_gpu
# job states after which nothing runs any more (squeue --states=all shows them for MinJobAge)
FINISHED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
            "BOOT_FAIL", "DEADLINE", "OUT_OF_MEMORY", "SPECIAL_EXIT"}


def unavailable(reason: str) -> NoReturn:
    """Skip: SLURM cannot be had here. Under MTPD_REQUIRE_SLURM=1 (CI) that is a failure."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"SLURM tests required ({REQUIRE_ENV}=1) but {reason}", pytrace=False)
    pytest.skip(f"{reason} (set {REQUIRE_ENV}=1 to make this a failure)")


def which(name: str) -> str | None:
    """A tool on PATH or in the system directories (daemons live in /usr/sbin)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *SYSTEM_PATH])
    return shutil.which(name, path=path)


def missing_tools() -> list[str]:
    return [t for t in TOOLS if which(t) is None]


def install() -> float:
    """Installs the Debian packages if a tool is missing; returns the seconds it took (0 when
    nothing was missing). Calls `unavailable` when installing cannot work here."""
    missing = missing_tools()
    if not missing:
        return 0.0
    why = f"SLURM is not installed (missing: {', '.join(missing)})"
    if os.geteuid() != 0:
        unavailable(f"{why} and installing it needs root")
    apt = which("apt-get")
    if apt is None:
        unavailable(f"{why} and there is no apt-get to install it")
    start = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = [apt, "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends",
           *PACKAGES]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    if r.returncode != 0:  # stale or missing package lists: update once, then try again
        u = subprocess.run([apt, "-o", "DPkg::Lock::Timeout=300", "update"], env=env,
                           capture_output=True, text=True, timeout=600)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
        if r.returncode != 0:
            unavailable(f"{why} and `apt-get install` failed:\n{(u.stderr + r.stderr)[-2000:]}")
    still = missing_tools()
    if still:
        unavailable(f"{why}; after installing {PACKAGES} still missing: {still}")
    return time.monotonic() - start


def free_ports(n: int) -> list[int]:
    """n distinct TCP ports that are free now (SLURM's defaults may be taken by a system
    slurmctld that a package install started)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def node_line(slurmd: str) -> tuple[str, str, bool]:
    """This host's name, its SLURM node definition from `slurmd -C` (RealMemory at about 90%
    of MemTotal, since the whole of it marks the node invalid; the address 127.0.0.1; the
    GPUs) and whether it claims more CPUs than the machine has (`CPUS_PER_GPU` per GPU)."""
    out = subprocess.run([slurmd, "-C"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    fields = dict(kv.split("=", 1) for kv in out.splitlines()[0].split())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    fields["RealMemory"] = str(int(mem_kb / 1024 * 0.9))
    more_cpus = GPUS * CPUS_PER_GPU > int(fields["CPUs"])
    if more_cpus:  # one socket of single-thread cores
        fields.update(CPUs=str(GPUS * CPUS_PER_GPU), Boards="1", SocketsPerBoard="1",
                      CoresPerSocket=str(GPUS * CPUS_PER_GPU), ThreadsPerCore="1")
    name = fields.pop("NodeName")
    keys = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore",
            "RealMemory")
    rest = " ".join(f"{k}={fields[k]}" for k in keys if k in fields)
    return name, (f"NodeName={name} NodeAddr=127.0.0.1 {rest} Gres=gpu:{GPU_MODEL}:{GPUS} "
                  "State=UNKNOWN"), more_cpus


def make_gpu_files(root: Path) -> str:
    """The GPUs' device files (character devices 1:3, what /dev/null is) and the gres.conf
    that lists them, beside slurm.conf; returns its text."""
    (root / "gpus").mkdir(mode=0o755)
    for i in range(GPUS):
        os.mknod(root / "gpus" / f"fakegpu{i}", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    text = f"Name=gpu Type={GPU_MODEL} File={root}/gpus/fakegpu[0-{GPUS - 1}]\n"
    (root / "gres.conf").write_text(text)
    return text


def ensure_resolves(host: str) -> bool:
    """SLURM looks its controller up by name: adds `127.0.0.1 <host>` to /etc/hosts when the
    name does not resolve; returns whether it did (the line is removed at the end)."""
    try:
        socket.gethostbyname(host)
        return False
    except OSError:
        pass
    with open("/etc/hosts", "a") as f:
        f.write(f"\n127.0.0.1 {host} {HOSTS_MARK}\n")
    print(f"[slurm] added '127.0.0.1 {host}' to /etc/hosts (removed at teardown)")
    return True


def _remove_hosts_line() -> None:
    hosts = Path("/etc/hosts")
    lines = hosts.read_text().splitlines(keepends=True)
    hosts.write_text("".join(line for line in lines if HOSTS_MARK not in line))


SLURM_CONF = CONF_MARK + """: a one-node cluster on 127.0.0.1 for one test session
# ({root}); removed when the session ends
ClusterName=mtpdtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
SwitchType=switch/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# SLURM's own record of every job that ended or was requeued (no slurmdbd needed)
JobCompType=jobcomp/filetxt
JobCompLoc={root}/log/jobcomp.txt
# the plugin's squeue status command needs finished jobs kept >= 120 s
MinJobAge=300
KillWait=30
ReturnToService=2
# a requeued job appends to its log: both runs stay visible
JobFileAppend=1
GresTypes=gpu
{overrides}{node}
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    """A running single-node cluster; its files live under `root`."""

    root: Path
    conf: Path
    host: str
    install_seconds: float = 0.0
    start_seconds: float = 0.0
    added_hosts_line: bool = False
    previous_conf: str | None = None
    pid_files: list[tuple[str, Path]] = field(default_factory=list)

    @property
    def jobcomp(self) -> Path:
        return self.root / "log" / "jobcomp.txt"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True, timeout: int = 60) -> str:
        """A SLURM client command against this cluster; its stdout."""
        exe = which(cmd[0]) or cmd[0]
        r = subprocess.run([exe, *cmd[1:]], env=self.env(), capture_output=True, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr}")
        return r.stdout

    def succeeds(self, *cmd: str) -> bool:
        """Whether a SLURM client command against this cluster exits 0."""
        exe = which(cmd[0]) or cmd[0]
        return subprocess.run([exe, *cmd[1:]], env=self.env(), capture_output=True,
                              timeout=60).returncode == 0

    def jobs(self) -> dict[str, str]:
        """{job id: state} of every job slurmctld still knows (finished ones for MinJobAge)."""
        out = self.run("squeue", "--states=all", "--noheader", "--format=%i|%T", check=False)
        return dict(line.split("|", 1) for line in out.split() if "|" in line)

    def job_records(self) -> list[dict[str, str]]:
        """SLURM's completion records (jobcomp/filetxt): one per job end, requeues included."""
        if not self.jobcomp.exists():
            return []
        return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                for line in self.jobcomp.read_text().splitlines() if line.strip()]

    def logs(self, lines: int = 30) -> str:
        """The tail of every daemon log, for failure messages."""
        parts = []
        for log in sorted((self.root / "log").glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def wait_idle(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            out = self.run("sinfo", "--noheader", "--Node", "--format=%T", check=False)
            state = out.strip()
            if state == "idle":
                return
            time.sleep(0.2)
        raise RuntimeError(f"node not idle after {timeout:.0f} s (sinfo: {state!r})\n"
                           f"{self.logs()}")

    def stop(self) -> None:
        """Cancels every job left, waits for them to end, then stops the daemons by PID file.
        Safe to call twice and after a failed start."""
        try:
            active = [j for j, s in self.jobs().items() if s not in FINISHED]
            if active:
                self.run("scancel", "--full", *active, check=False)
            deadline = time.monotonic() + 45  # KillWait (30 s) and a margin
            while time.monotonic() < deadline and any(
                    s not in FINISHED for s in self.jobs().values()):
                time.sleep(0.5)
        except (OSError, subprocess.SubprocessError, RuntimeError):
            pass
        for name, pid_file in reversed(self.pid_files):
            stop_by_pid_file(name, pid_file)
        self.pid_files.clear()
        if self.previous_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = self.previous_conf
        remove_etc_conf(self.root)
        if self.added_hosts_line:
            _remove_hosts_line()
            self.added_hosts_line = False
        shutil.rmtree(self.root, ignore_errors=True)
        print(f"\n[slurm] cluster stopped, {self.root} removed")


def write_etc_conf(text: str) -> None:
    """The copy of slurm.conf that `srun` inside a job reads (module docstring)."""
    if ETC_CONF.exists() and CONF_MARK not in ETC_CONF.read_text(errors="replace"):
        unavailable(f"{ETC_CONF} belongs to another SLURM cluster on this machine; the test "
                    "cluster would have to replace it")
    ETC_CONF.parent.mkdir(parents=True, exist_ok=True)
    tmp = ETC_CONF.with_name(f".{ETC_CONF.name}.mtpd-tests")
    tmp.write_text(text)
    os.replace(tmp, ETC_CONF)


def remove_etc_conf(root: Path) -> None:
    """Removes the /etc copy if it is this cluster's (another session may have replaced it)."""
    try:
        text = ETC_CONF.read_text(errors="replace")
    except OSError:
        return
    if CONF_MARK in text and f"({root})" in text:
        ETC_CONF.unlink(missing_ok=True)


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def stop_by_pid_file(name: str, pid_file: Path, grace: float = 10.0) -> None:
    """SIGTERM the daemon named in its PID file (only if that process is still `name`), then
    SIGKILL after `grace` seconds."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if not _process_name(pid).startswith(name[:15]):
        return  # gone, or the PID was reused by another process
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _process_name(pid).startswith(name[:15]):
        time.sleep(0.1)
    if _process_name(pid).startswith(name[:15]):
        os.kill(pid, signal.SIGKILL)


def _daemon(cmd: list[str], env: dict[str, str], log: Path) -> None:
    """Starts a daemon that forks into the background (its parent exits once it is up)."""
    with open(log, "ab") as out:
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                           start_new_session=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}:\n"
                           f"{log.read_text(errors='replace')[-2000:]}")


def start() -> SlurmCluster:
    """Installs SLURM if needed, writes its files to a temporary directory and starts the
    daemons; SLURM_CONF is then set in os.environ for the tests and what they start."""
    t0 = time.monotonic()
    installed = install()
    if os.geteuid() != 0:
        unavailable("the test cluster runs its daemons as root (SlurmUser=root) and writes "
                    f"{ETC_CONF}: run the SLURM tests as root")
    t1 = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="mtpd-slurm-"))  # short: a socket path is <= 107
    root.chmod(0o755)
    for sub in ("munge", "state", "spool", "log", "run"):
        (root / sub).mkdir(mode=0o755)
    host, node, more_cpus = node_line(which("slurmd") or "slurmd")
    cluster = SlurmCluster(root=root, conf=root / "slurm.conf", host=host,
                           install_seconds=installed,
                           previous_conf=os.environ.get("SLURM_CONF"))
    try:
        cluster.added_hosts_line = ensure_resolves(host)
        key = root / "munge" / "munge.key"
        if which("mungekey"):
            subprocess.run([which("mungekey"), "--create", "--keyfile", str(key)], check=True,
                           capture_output=True, timeout=60)
        else:
            key.write_bytes(os.urandom(1024))
        key.chmod(0o600)  # munged wants the key owned by its user (root here), mode 0600
        munge_socket = root / "munge" / "munge.socket"
        ctld_port, slurmd_port = free_ports(2)
        make_gpu_files(root)
        overrides = ("# the node claims more CPUs than this machine has (CPUS_PER_GPU per GPU)\n"
                     "SlurmdParameters=config_overrides\n" if more_cpus else "")
        text = SLURM_CONF.format(host=host, root=root, ctld_port=ctld_port,
                                 slurmd_port=slurmd_port, munge_socket=munge_socket, node=node,
                                 overrides=overrides)
        cluster.conf.write_text(text)
        write_etc_conf(text)
        env = cluster.env()
        munged_pid = root / "munge" / "munged.pid"
        cluster.pid_files.append(("munged", munged_pid))
        _daemon([which("munged") or "munged", "--socket", str(munge_socket), "--key-file",
                 str(key), "--pid-file", str(munged_pid), "--log-file",
                 str(root / "log" / "munged.log"), "--seed-file", str(root / "munge" / "seed")],
                env, root / "log" / "start.log")
        cluster.pid_files.append(("slurmctld", root / "run" / "slurmctld.pid"))
        _daemon([which("slurmctld") or "slurmctld", "-f", str(cluster.conf)], env,
                root / "log" / "start.log")
        cluster.pid_files.append(("slurmd", root / "run" / "slurmd.pid"))
        _daemon([which("slurmd") or "slurmd", "-f", str(cluster.conf)], env,
                root / "log" / "start.log")
        cluster.wait_idle()
    except BaseException:
        cluster.stop()
        raise
    os.environ["SLURM_CONF"] = str(cluster.conf)
    cluster.start_seconds = time.monotonic() - t1
    total = time.monotonic() - t0
    print(f"\n[slurm] set-up {total:.1f} s: install {installed:.1f} s "
          f"({'ran apt-get' if installed else 'already installed'}), config + start "
          f"{cluster.start_seconds:.1f} s; node {host} with {GPUS} GPUs ({GPU_MODEL}), "
          f"SLURM_CONF={cluster.conf}")
    return cluster
