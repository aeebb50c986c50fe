"""mtpd through a real single-node SLURM (tests/slurm_cluster.py): `--profile slurm` as a user
types it, every non-local job submitted with sbatch and run by slurmd on a node with GPUs.

Why: the profile, the rules' resources and the resumable training only prove themselves on a
real scheduler: jobs must find `mtpd` through the interpreter that runs Snakemake, get the GPUs
they ask for and run one process per GPU they see, give the same numbers as a local run,
survive a requeue by resuming from their checkpoint, and a forced re-run must submit only the
stages that depend on the forced one. The node's GPUs are GRES without CUDA (torch sees none),
so a job's processes use gloo on the CPU, as on a GPU node they would use NCCL.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from mtpd.orphans import ENDED
from tests.helpers import (
    ONE_THREAD,
    CheckpointWatch,
    job_stats,
    train_command,
    user_env,
    wait_for,
    workdir,
)
from tests.slurm_cluster import CPUS_PER_GPU, GPU_MODEL, SlurmCluster
from tests.slurm_cluster import start as start_cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

# test-only speed-ups: no accounting here, so status comes from squeue (MinJobAge is 300 s),
# checked every second instead of the plugin's 40 s first wait
FAST = ["--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--seconds-between-status-checks", "1", "--slurm-no-account"]
# one GPU of the test node's model per training and evaluation job, 1 CPU per GPU: a job sees
# one device and runs one process, so its numbers equal a local run's
ON_GPUS = {"compute": {"gpu_model": GPU_MODEL, **{
    kind: {"gpus": 1, "cpus_per_gpu": CPUS_PER_GPU, "mem_mb": 2000}
    for kind in ("train", "evaluate")}}}
# the CPU-only case: the rules ask SLURM for cpus_per_task instead of GPUs when gpus is 0
CPU_ONLY = {"compute": {kind: {"gpus": 0, "cpus_per_gpu": 1, "mem_mb": 2000}
                        for kind in ("train", "evaluate")}}
TINY_TIMEOUT = 2700        # seconds, the whole tiny DAG (local --cores 2: about 4 minutes)
TARGET_TIMEOUT = 1500      # seconds, one training target and what it needs
E6 = "results/tiny/seed0/baseline/e6"


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """The cluster for the whole session; its daemons are stopped at the end, even on failure
    or Ctrl-C (pytest runs fixture finalizers in both cases)."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


# --- running Snakemake through SLURM ----------------------------------------------------------
def slurm_workdir(tmp: Path, compute: dict, *extra: dict) -> tuple[Path, list[str]]:
    """A work directory where `--profile slurm` resolves as in the repository root (./slurm),
    with a compute file (ON_GPUS or CPU_ONLY) and any extra config files; returns it and the
    `--configfile` arguments."""
    wd = workdir(tmp)
    (wd / "slurm").symlink_to("workflow/profiles/slurm")
    files = ["config/tiny.yaml"]
    for i, cfg in enumerate([compute, *extra]):
        name = "compute.yaml" if i == 0 else f"extra{i}.yaml"
        (wd / name).write_text(yaml.safe_dump(cfg))
        files.append(name)
    return wd, ["--configfile", *files]


def snakemake_cmd(configfiles: list[str], *args: str, timeout: int) -> list[str]:
    """`snakemake --profile slurm ...` under a hard `timeout -k`: the plugin waits forever
    when its status command fails, and Snakemake ignores SIGTERM while it does."""
    return ["timeout", "-k", "30", str(timeout), sys.executable, "-m", "snakemake",
            "--profile", "slurm", *configfiles, *FAST, *args]


def run_snakemake(wd: Path, configfiles: list[str], *args: str, timeout: int,
                  log: str) -> tuple[int, str, float]:
    """Runs Snakemake through SLURM in `wd` as a user who did not activate the venv; returns
    the exit status, its output (also kept in `wd/<log>`) and the wall time."""
    start = time.monotonic()
    with open(wd / log, "w") as out:
        r = subprocess.run(snakemake_cmd(configfiles, *args, timeout=timeout), cwd=wd,
                           env=user_env(), stdout=out, stderr=subprocess.STDOUT,
                           timeout=timeout + 60)
    return r.returncode, (wd / log).read_text(), time.monotonic() - start


def steps_done(output: str) -> int:
    """Snakemake's last 'N of M steps (100%) done': every job of the run, BGS's included."""
    done, total = map(int, re.findall(r"^(\d+) of (\d+) steps \(\d+%\) done", output, re.M)[-1])
    assert done == total, (done, total)
    return total


def executed(output: str) -> tuple[Counter, Counter]:
    """The jobs Snakemake started, by rule: (on SLURM, local). A job's header reads
    `rule x:` (`checkpoint x:`) when it is submitted and `localrule x:` (`localcheckpoint
    x:`) when it runs in Snakemake's own process; this also counts the jobs BGS's
    checkpoints added after the first 'Job stats'."""
    remote = Counter(re.findall(r"^(?:rule|checkpoint) (\w+):$", output, re.M))
    local = Counter(re.findall(r"^local(?:rule|checkpoint) (\w+):$", output, re.M))
    return remote, local


def local_rules(wd: Path) -> set[str]:
    """Rules marked `localrule: True` in the workflow, and `all` (no command: always local)."""
    found = {"all"}
    for smk in (wd / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^(?=\s*(?:rule|checkpoint) \w+:)", smk.read_text(), flags=re.M):
            m = re.match(r"\s*(?:rule|checkpoint) (\w+):", block)
            if m and re.search(r"^\s+localrule:\s*True", block, re.M):
                found.add(m.group(1))
    return found


def not_descending_from(output: str, forced: str) -> list[str]:
    """The jobs of a run (from their `input:`/`output:` lines, in the order they started)
    that neither make `forced` nor read anything made from it: none after a `--forcerun`."""
    made, unrelated = {forced}, []
    pattern = r"^(?:local)?(?:rule|checkpoint) (\w+):\n((?:    .*\n)*)"
    for rule, body in re.findall(pattern, output, re.M):
        files = {key: set(value.split(", ")) for key, value in
                 re.findall(r"^    (input|output): (.*)$", body, re.M)}
        inputs, outputs = files.get("input", set()), files.get("output", set())
        if forced in outputs or inputs & made:
            made |= outputs
        else:
            unrelated.append(f"{rule}: {sorted(outputs)}")
    return unrelated


def slurm_logs(wd: Path) -> dict[str, tuple[str, Path]]:
    """SLURM's per-job logs (the profile's slurm-logdir, kept for successful jobs): {SLURM
    job id: (rule, log)}; SLURM names each file after the job's own SLURM_JOB_ID (%j)."""
    logs = {}
    for log in (wd / "results/logs/slurm").rglob("*.log"):
        rule = log.relative_to(wd / "results/logs/slurm").parts[0].removeprefix("rule_")
        logs[log.stem] = (rule, log)
    return logs


def job_devices(wd: Path, logs: dict[str, tuple[str, Path]]) -> dict[str, tuple[int, list[str]]]:
    """What each SLURM job that asked for GPUs saw, from the job itself: {job id: (the `gpu`
    resource in its header in SLURM's log, the `devices:` lines mtpd wrote to the job's own
    log)}."""
    seen = {}
    for job_id, (_, log) in logs.items():
        text = log.read_text()
        asked = re.search(r"^    resources: .*\bgpu=(\d+)", text, re.M)
        if asked:
            own = wd / re.search(r"^    log: (\S+)", text, re.M).group(1)
            lines = re.findall(r"mtpd\.devices INFO (devices: .*)", own.read_text())
            seen[job_id] = (int(asked.group(1)), lines)
    return seen


def device_line(job_id: str, gpus: int) -> str:
    """The pattern of the `devices:` line of SLURM job `job_id`, one task given `gpus` GPUs
    (gloo between its processes: torch sees no CUDA on the test node)."""
    devices = ",".join([r"\d+"] * gpus)
    runs = "1 process \\(cpu\\)" if gpus == 1 else f"{gpus} processes \\(gloo\\)"
    return (rf"devices: CUDA_VISIBLE_DEVICES=({devices}) \(SLURM job {job_id}, task 0 of 1\) "
            rf"-> {runs}")


def sbatch_calls(output: str) -> dict[str, list[str]]:
    """{rule: the plugin's sbatch calls for its jobs}, from Snakemake's --verbose output."""
    calls: dict[str, list[str]] = {}
    for call in re.findall(r"sbatch call: (sbatch .*)", output):
        rule = re.search(r"--comment '?rule_([a-z_]+?)(?:_wildcards_|'|\s)", call).group(1)
        calls.setdefault(rule, []).append(call)
    return calls


def records(cluster: SlurmCluster, wd: Path) -> list[dict[str, str]]:
    """SLURM's own records (jobcomp) of the jobs that ran from this work directory."""
    return [r for r in cluster.job_records() if r.get("WorkDir") == str(wd)]


def submitted(output: str) -> dict[str, str]:
    """{SLURM job id: Snakemake's log path} from Snakemake's 'submitted with SLURM jobid'."""
    return dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: (\S+)\)", output))


def metrics(results: Path) -> dict[str, dict]:
    """Every evaluation of the experiment and the teachers: {path: metrics}."""
    files = [p for sub in ("tiny", "teachers") for p in (results / sub).rglob("metrics_*.json")]
    return {str(p.relative_to(results)): json.loads(p.read_text()) for p in sorted(files)}


def snakemake_log_seconds(wd: Path) -> float | None:
    """Wall time of a work directory's first Snakemake run, from its log: the file is named
    after the start time and last written at the end."""
    logs = sorted((wd / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        return None
    started = time.mktime(time.strptime(logs[0].name.split(".")[0], "%Y-%m-%dT%H%M%S"))
    return logs[0].stat().st_mtime - started


# --- (a) and (c): the tiny DAG through SLURM ----------------------------------------------------
@pytest.fixture(scope="module")
def slurm_tiny(slurm_cluster: SlurmCluster, tmp_path_factory) -> dict:
    """The whole tiny DAG run once through SLURM (shared by the tests below)."""
    wd, configfiles = slurm_workdir(tmp_path_factory.mktemp("slurm_tiny"), ON_GPUS)
    rc, out, seconds = run_snakemake(wd, configfiles, timeout=TINY_TIMEOUT, log="tiny.log")
    assert rc == 0, out[-6000:] + "\n" + slurm_cluster.logs()
    print(f"\n[slurm] tiny DAG through SLURM: {seconds:.0f} s")
    return {"wd": wd, "configfiles": configfiles, "output": out, "seconds": seconds}


def test_tiny_dag_through_slurm_matches_local_run(slurm_cluster, slurm_tiny, tiny_run):
    """Every non-local job ran as its own SLURM job, each training and evaluation job saw the
    one GPU it asked for and ran one process, and the numbers equal a local run's."""
    wd, out = slurm_tiny["wd"], slurm_tiny["output"]
    local = local_rules(wd)
    remote, ran_locally = executed(out)
    assert remote and not set(remote) & local, (remote, local)
    assert set(ran_locally) <= local, ran_locally
    # Snakemake's own counts: its first Job stats (the jobs known before BGS's checkpoints
    # added the rest) and its final 'N of N steps done', less the jobs it ran locally
    for rule, n in job_stats(out).items():
        assert (ran_locally if rule in local else remote)[rule] >= n, (rule, n, remote)
    non_local = steps_done(out) - sum(ran_locally.values())
    assert non_local == sum(remote.values()), (non_local, remote)

    logs = slurm_logs(wd)
    jobs = submitted(out)
    recs = {r["JobId"]: r for r in records(slurm_cluster, wd)}
    # one SLURM job per non-local job: Snakemake's submissions, SLURM's log files (named by
    # the job's SLURM_JOB_ID) and SLURM's completion records are the same set of job ids
    assert len(jobs) == non_local, (len(jobs), non_local)
    assert set(logs) == set(jobs) == set(recs), (sorted(logs), sorted(jobs), sorted(recs))
    assert Counter(rule for rule, _ in logs.values()) == remote
    for job_id, (rule, log) in logs.items():
        text = log.read_text()
        assert f"rule {rule}:" in text and "--executor slurm-jobstep" in text, log
        assert recs[job_id]["JobState"] == "COMPLETED", recs[job_id]
        assert recs[job_id]["ExitCode"] == "0:0", recs[job_id]
    devices = job_devices(wd, logs)
    assert {logs[j][0] for j in devices} >= {"train_teacher", "distill_stage", "evaluate_student"}
    for job_id, (gpus, lines) in devices.items():
        assert gpus == 1 and len(lines) == 1, (logs[job_id], lines)
        assert re.fullmatch(device_line(job_id, 1), lines[0]), lines[0]
    print(f"\n[slurm] {len(devices)} GPU jobs, each saw 1 GPU, e.g. {lines[0]}")
    local_seconds = snakemake_log_seconds(tiny_run)
    print(f"\n[slurm] {len(recs)} SLURM jobs ({dict(remote)}); "
          f"{sum(ran_locally.values())} local jobs ({dict(ran_locally)})")
    print(f"[slurm] wall time: SLURM {slurm_tiny['seconds']:.0f} s (Snakemake log "
          f"{snakemake_log_seconds(wd):.0f} s), local --cores 2 "
          f"{local_seconds if local_seconds is None else round(local_seconds)} s")

    # determinism across executors: same BGS order, same AP for every model
    bgs = "results/tiny/seed0/bgs/result.json"
    order = json.loads((wd / bgs).read_text())["order"]
    local_order = json.loads((tiny_run / bgs).read_text())["order"]
    ours, theirs = metrics(wd / "results"), metrics(tiny_run / "results")
    assert set(ours) == set(theirs)
    diffs = {k: round(ours[k]["AP"] - theirs[k]["AP"], 6) for k in ours
             if "AP" in ours[k] and ours[k]["AP"] != theirs[k].get("AP")}
    print(f"[slurm] BGS order SLURM {order}, local {local_order}; {len(ours)} models, "
          f"AP differences (SLURM - local): {diffs or 'none'}")
    assert order == local_order
    assert not diffs, f"AP differs between SLURM and local runs: {diffs}"


def test_forcing_one_stage_on_slurm_reruns_only_its_descendants(slurm_cluster, slurm_tiny):
    """`--forcerun` of the chain's first stage submits that stage, the stages after it and
    what reads them (their evaluations, and whatever else the config derives from the MTPD
    model), and nothing upstream or beside; the tables are rebuilt locally. With
    `--set-resources distill_stage:gpu=2 evaluate_student:gpu=2` (README) those stages and
    evaluations are submitted with `--gpus=testgpu:2`, each is one SLURM task that sees 2
    devices and runs 2 processes."""
    wd, configfiles = slurm_tiny["wd"], slurm_tiny["configfiles"]
    order = json.loads((wd / "results/tiny/seed0/bgs/result.json").read_text())["order"]
    first = f"results/tiny/seed0/progressive/{order[0]}/model.pth"
    logs_before = set(slurm_logs(wd))
    records_before = {r["JobId"] for r in records(slurm_cluster, wd)}
    rc, out, seconds = run_snakemake(wd, configfiles, "--forcerun", first, "--set-resources",
                                     "distill_stage:gpu=2", "evaluate_student:gpu=2",
                                     "--verbose", timeout=TINY_TIMEOUT, log="forcerun.log")
    assert rc == 0, out[-6000:]
    remote, ran_locally = executed(out)
    # BGS's checkpoints are done, so the first Job stats is the whole plan, and it ran
    assert job_stats(out) == dict(remote + ran_locally), (job_stats(out), remote, ran_locally)
    # each stage is evaluated on val, and on the proxy split (exhaustive: the proxy checked)
    assert remote["distill_stage"] == 3 and remote["evaluate_student"] == 6, remote
    assert set(ran_locally) <= local_rules(wd), ran_locally
    unrelated = not_descending_from(out, first)
    assert not unrelated, f"jobs that do not depend on {first}: {unrelated}"
    for rule in ("make_shapes_data", "check_dataset", "pretrain_backbone", "train_teacher",
                 "evaluate_teacher", "train_baseline", "distill_direct"):
        assert rule not in remote, remote
    # SLURM ran exactly those: one new log and one record per submitted job
    new_logs = {k: v for k, v in slurm_logs(wd).items() if k not in logs_before}
    new_records = [r for r in records(slurm_cluster, wd) if r["JobId"] not in records_before]
    assert set(new_logs) == set(submitted(out)) == {r["JobId"] for r in new_records}
    assert Counter(rule for rule, _ in new_logs.values()) == remote
    assert all(r["JobState"] == "COMPLETED" for r in new_records), new_records
    stages = {log.parent.name for rule, log in new_logs.values() if rule == "distill_stage"}
    chain = ["_".join(["0", "progressive", *order[: i + 1]]) for i in range(len(order))]
    assert stages == set(chain), (stages, chain)

    # the GPUs asked for on the command line: the plugin's sbatch calls, what each job saw
    # (its own log), how many processes ran (the stage's checkpoint, the metrics)
    calls = sbatch_calls(out)
    for rule in ("distill_stage", "evaluate_student"):
        assert len(calls[rule]) == remote[rule], calls
        assert all(f" --gpus={GPU_MODEL}:2" in c and " --cpus-per-gpu=1" in c
                   and "--ntasks" not in c for c in calls[rule]), calls[rule]
    devices = job_devices(wd, new_logs)
    overridden = {"distill_stage", "evaluate_student"}
    assert overridden <= {new_logs[j][0] for j in devices}
    for job_id, (gpus, lines) in devices.items():
        want = 2 if new_logs[job_id][0] in overridden else 1  # e.g. stream_model: 1
        assert gpus == want and len(lines) == 1, (new_logs[job_id], lines)
        assert re.fullmatch(device_line(job_id, want), lines[0]), lines[0]
    for prefix in (order[: i + 1] for i in range(len(order))):
        stage = wd / "results/tiny/seed0/progressive" / "/".join(prefix)
        meta = torch.load(stage / "model.pth", weights_only=True)["meta"]["mtpd"]
        assert meta["processes"] == 2, meta
        assert json.loads((stage / "metrics_val.json").read_text())["processes"] == 2
    stage_job = next(j for j in devices if new_logs[j][0] == "distill_stage")
    print(f"\n[slurm] 2-GPU stages submitted as: {calls['distill_stage'][0]}")
    print(f"[slurm] job {stage_job} logged: {devices[stage_job][1][0]}")
    print(f"\n[slurm] forced re-run of {first}: {len(new_records)} SLURM jobs "
          f"({dict(remote)}), local {dict(ran_locally)}, {seconds:.0f} s")


# --- (b): a requeued training job resumes from its checkpoint ---------------------------------
def test_requeued_training_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    """`scontrol requeue` (what preemption does) SIGTERMs a training job in epoch 2; SLURM runs
    it again under the same job id, it resumes mid-epoch from its checkpoint, Snakemake
    finishes, and the weights equal an uninterrupted run of the same command."""
    wd, configfiles = slurm_workdir(tmp_path, CPU_ONLY, {"compute": {"checkpoint_minutes": 0.002}})
    target = f"{E6}/model.pth"
    log = wd / "requeue.log"
    cmd = snakemake_cmd(configfiles, target, timeout=TARGET_TIMEOUT)
    with open(log, "w") as sink:
        proc = subprocess.Popen(cmd, cwd=wd, env=user_env(), stdout=sink,
                                stderr=subprocess.STDOUT)
    try:
        watch = CheckpointWatch(wd / f"{target}.work")
        # a checkpoint every iteration or so (checkpoint_minutes 0.002): wait for one that is
        # inside epoch 2 or later, i.e. at least one batch into an epoch index >= 1
        epoch, done = wait_for("a checkpoint inside epoch 2", lambda: (
            (pos := watch()) and pos[0] >= 1 and pos[1] >= 1 and pos),
            TARGET_TIMEOUT, proc, log, interval=0.1)
        logs = [k for k, (rule, _) in slurm_logs(wd).items() if rule == "train_baseline"]
        assert len(logs) == 1, logs
        job_id = logs[0]
        assert slurm_cluster.jobs().get(job_id) == "RUNNING"
        slurm_cluster.run("scontrol", "requeue", job_id)
        # once the job is pending again, its first run has ended: keep that run's log (the
        # second run overwrites it); then release the job, which SLURM holds for about 2
        # minutes after a requeue (BeginTime), so the test does not wait
        wait_for("the job to be pending again", lambda: slurm_cluster.jobs().get(job_id)
                 == "PENDING", 120, proc, log, interval=0.5)
        first_log = (wd / E6 / "train.log").read_text()
        wait_for("the requeued job to be released", lambda: slurm_cluster.succeeds(
            "scontrol", "update", f"JobId={job_id}", "StartTime=now"), 60, proc, log)
        rc = proc.wait(timeout=TARGET_TIMEOUT + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_text()
    assert rc == 0, out[-6000:]

    # SLURM ran the job twice under the same id: its record, its log and the job's output
    show = slurm_cluster.run("scontrol", "show", "job", job_id)
    restarts = int(re.search(r"Restarts=(\d+)", show).group(1))
    states = [r["JobState"] for r in slurm_cluster.job_records() if r["JobId"] == job_id]
    slurm_log = slurm_logs(wd)[job_id][1].read_text()
    # jobcomp writes one record when the job is requeued (state PENDING again) and one at the end
    assert restarts == 1 and len(states) == 2 and states[-1] == "COMPLETED", (restarts, states)
    assert "DUE TO JOB REQUEUE" in slurm_log
    assert slurm_log.count("localrule train_baseline:") == 2  # the job step's command, twice
    assert len(submitted(out)) == sum(executed(out)[0].values())  # Snakemake submitted it once
    assert list(submitted(out)).count(job_id) == 1

    # SLURM's SIGTERM made the first run save a checkpoint and stop; the second run resumed
    # from exactly that checkpoint, inside epoch 2 or later
    stopped = re.search(r"stopped by SIGTERM at iteration (\d+)", first_log)
    assert stopped, first_log[-3000:]
    train_log = (wd / E6 / "train.log").read_text()
    assert f"iter_{stopped.group(1)}.pth" in re.search(r"resuming from (\S+)", train_log).group(1)
    resumed = re.search(r"resuming epoch (\d+) after its first (\d+) batches", train_log)
    assert resumed and int(resumed.group(1)) >= 2, train_log[-3000:]
    ckpt = torch.load(wd / target, weights_only=True)
    assert ckpt["meta"]["mtpd"]["resumed"] is True
    # the CPU-only case: no GPU asked for, none visible, one process
    assert "devices: CUDA_VISIBLE_DEVICES= (--gpus 0, so on the CPU) -> 1 process (cpu)" in (
        train_log), train_log[:3000]

    # the same command, never interrupted, run here as Snakemake runs a job's shell command
    # (with the rule's threads, 1, in OMP_NUM_THREADS & co.; 2 threads sum in another order)
    plain = tmp_path / "plain.pth"
    r = subprocess.run(train_command(out, target, plain), cwd=wd, env={**user_env(), **ONE_THREAD},
                       capture_output=True, text=True, timeout=TARGET_TIMEOUT)
    assert r.returncode == 0, r.stderr[-4000:]
    ref = torch.load(plain, weights_only=True)
    assert ref["meta"]["mtpd"]["resumed"] is False
    assert ref["state_dict"].keys() == ckpt["state_dict"].keys()
    diff = max((ckpt["state_dict"][k].float() - v.float()).abs().max().item()
               for k, v in ref["state_dict"].items())
    print(f"\n[slurm] requeued job {job_id} after a checkpoint at epoch {epoch + 1}, batch "
          f"{done}; SIGTERM stopped it at iteration {stopped.group(1)}; it resumed epoch "
          f"{resumed.group(1)} after {resumed.group(2)} batches; "
          f"Restarts={restarts}, records {states}; max |weight difference| vs an "
          f"uninterrupted run: {diff:.3g}")
    assert diff <= 1e-6, diff


class LiveJobs:
    """Polls squeue from a thread: every live job of a work directory at each moment, so a test
    can tell whether one target ever had two live jobs (one comment names one target)."""

    def __init__(self, cluster: SlurmCluster, wd: Path, interval: float = 0.25):
        self.cluster, self.wd, self.interval = cluster, str(wd), interval
        self.most: dict[str, int] = {}          # comment -> most live jobs seen at once
        self.events: list[tuple[float, str]] = []
        self._states: dict[str, str] = {}
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            out = self.cluster.run("squeue", "--noheader", "--format=%i|%T|%Z|%k", check=False)
            live: dict[str, list[str]] = {}
            for line in out.splitlines():
                job_id, state, where, comment = (line.split("|", 3) + ["", "", ""])[:4]
                if where != self.wd:
                    continue
                if self._states.get(job_id) != state:
                    self._states[job_id] = state
                    self.note(f"job {job_id} {state} ({comment})")
                if state not in ENDED:
                    live.setdefault(comment, []).append(job_id)
            for comment, ids in live.items():
                self.most[comment] = max(self.most.get(comment, 0), len(ids))
            self._stop.wait(self.interval)

    def note(self, what: str) -> None:
        self.events.append((time.monotonic() - self._start, what))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def timeline(self) -> str:
        return "\n".join(f"  {t:6.1f} s  {what}" for t, what in self.events)


def test_rerun_after_the_login_node_dies_never_runs_a_target_twice(slurm_cluster, tmp_path):
    """The login node's Snakemake dies (its whole process group SIGKILLed) while its training
    job runs on SLURM; the job lives on. The user does what the README says: `snakemake
    --unlock`, then the same command. The rerun stops the dead run's live job before it
    submits anything (and says so), no target ever has two live jobs (squeue polled all
    along), the rerun finishes, and the weights equal an uninterrupted run's."""
    wd, configfiles = slurm_workdir(tmp_path, CPU_ONLY, {"compute": {"checkpoint_minutes": 0.002}})
    target = f"{E6}/model.pth"
    jobs = LiveJobs(slurm_cluster, wd)
    log = wd / "first.log"
    with open(log, "w") as sink:
        first = subprocess.Popen(snakemake_cmd(configfiles, target, timeout=TARGET_TIMEOUT),
                                 cwd=wd, env=user_env(), stdout=sink, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        watch = CheckpointWatch(wd / f"{target}.work")
        wait_for("a checkpoint inside epoch 2", lambda: (pos := watch()) and pos[0] >= 1
                 and pos[1] >= 1, TARGET_TIMEOUT, first, log, interval=0.1)
        os.killpg(first.pid, signal.SIGKILL)  # the login node's Snakemake and all it started
        first.wait()
        jobs.note("Snakemake's process group SIGKILLed")
        orphan = next(k for k, (rule, _) in slurm_logs(wd).items() if rule == "train_baseline")
        assert slurm_cluster.jobs().get(orphan) == "RUNNING"  # the job lives on
        r = subprocess.run(snakemake_cmd(configfiles, "--unlock", timeout=300), cwd=wd,
                           env=user_env(), capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        jobs.note("snakemake --unlock; the same command again")
        rc, out, _ = run_snakemake(wd, configfiles, target, timeout=TARGET_TIMEOUT,
                                   log="rerun.log")
        jobs.note(f"the rerun ended ({rc})")
    finally:
        jobs.stop()
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    print(f"\n[slurm] head loss, then unlock and rerun:\n{jobs.timeline()}")
    assert rc == 0, out[-6000:]
    assert re.search(rf"mtpd: stopping SLURM job {orphan} \(rule_train_baseline\S*, RUNNING\)",
                     out), out[-6000:]
    stopped_at = out.index(f"mtpd: stopping SLURM job {orphan}")
    assert "submitted with SLURM jobid" not in out[:stopped_at]  # stopped before anything new
    assert jobs.most and max(jobs.most.values()) == 1, jobs.most
    assert [r["JobState"] for r in slurm_cluster.job_records()
            if r["JobId"] == orphan] == ["CANCELLED"]
    train_log = (wd / E6 / "train.log").read_text()
    assert "resuming from" in train_log, train_log[-3000:]
    # the same command, never interrupted
    plain = tmp_path / "plain.pth"
    r = subprocess.run(train_command(log.read_text(), target, plain), cwd=wd,
                       env={**user_env(), **ONE_THREAD}, capture_output=True, text=True,
                       timeout=TARGET_TIMEOUT)
    assert r.returncode == 0, r.stderr[-4000:]
    ours = torch.load(wd / target, weights_only=True)["state_dict"]
    ref = torch.load(plain, weights_only=True)["state_dict"]
    diff = max((ours[k].float() - v.float()).abs().max().item() for k, v in ref.items())
    print(f"[slurm] max |weight difference| vs an uninterrupted run: {diff:.3g}")
    assert diff <= 1e-6, diff
