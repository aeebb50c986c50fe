"""Training that survives being stopped (mtpd/resume.py): SIGTERM, SIGKILL, timed checkpoints,
exact mid-epoch resume (bf16 too), and a full disk while saving. Resuming through Snakemake:
tests/e2e/test_resume.py; a requeued SLURM job: tests/e2e/test_slurm.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtpd.checkpoint import load_checkpoint_file
from mtpd.train import train, work_dir_for
from tests.helpers import count_steps, one_line_error, run_mtpd

RETINA = "mtpd::shapes/retinanet_r18w16_shapes.py"


def _cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mtpd", "train", "--config", RETINA, "--dataset", str(data),
            "--out", str(out), "--epochs", "2", "--batch-size", "8", "--num-workers", "0",
            "--seed", "3", *extra]


def _last_checkpoint(work: Path) -> str:
    try:
        return Path((work / "last_checkpoint").read_text().strip()).name
    except OSError:
        return ""


def test_sigterm_mid_epoch_then_resume_matches_an_uninterrupted_run(tmp_path, shapes_data):
    """SLURM sends SIGTERM before a requeue or at the time limit: the job saves at the next
    iteration and stops; run again, it resumes inside the epoch and ends with exactly the
    weights of a run that was never stopped (same iterations, LR, data order, augmentation)."""
    plain = tmp_path / "plain.pth"
    subprocess.run(_cmd(shapes_data, plain), check=True, capture_output=True)

    out = tmp_path / "stopped.pth"
    work = work_dir_for(out)
    # a checkpoint every iteration (0.001 min), so we can stop it in the middle of epoch 2
    cmd = _cmd(shapes_data, out, "--checkpoint-minutes", "0.001")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        name = _last_checkpoint(work)
        if name.startswith("iter_") and int(name[5:-4]) >= 7:  # 5 batches an epoch
            os.killpg(proc.pid, signal.SIGTERM)
            break
        time.sleep(0.02)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err[-3000:]
    assert "stopped by SIGTERM at iteration" in err.splitlines()[-1]
    assert not out.exists()
    stopped_at = _last_checkpoint(work)
    iteration = int(stopped_at[5:-4])
    assert 7 <= iteration < 10, stopped_at
    assert len(list(work.glob("*.pth"))) == 1  # older checkpoints removed after the new one
    ckpt = load_checkpoint_file(work / stopped_at)
    assert ckpt["meta"]["mtpd_iter_in_epoch"] == iteration - 5 and ckpt["meta"]["epoch"] == 1

    r = subprocess.run(_cmd(shapes_data, out), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    logs = "".join(p.read_text() for p in work.rglob("*.log"))
    assert f"resuming epoch 2 after its first {iteration - 5} batches" in r.stderr + logs
    a = load_checkpoint_file(plain)
    b = load_checkpoint_file(out)
    assert b["meta"]["mtpd"]["resumed"] and b["meta"]["mtpd"]["stage_epochs"] == 2
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-6), key


def test_resume_after_kill(tmp_path, shapes_data):
    """A training killed after an epoch resumes from its last checkpoint when run again."""
    out = tmp_path / "r.pth"
    cmd = [sys.executable, "-m", "mtpd", "train", "--config", RETINA, "--dataset",
           str(shapes_data), "--out", str(out), "--epochs", "8", "--batch-size", "8",
           "--num-workers", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    work = work_dir_for(out)
    deadline = time.time() + 600
    # MMEngine writes `last_checkpoint` once an epoch's checkpoint is complete
    while not (work / "last_checkpoint").exists() and proc.poll() is None \
            and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the job finished before it could be killed"
    ckpt = Path((work / "last_checkpoint").read_text().strip())
    done = int(ckpt.stem.split("_")[1])
    assert 1 <= done < 8
    # MMEngine's own checkpoint loads through our allow-list (weights_only stays on)
    assert "message_hub" in load_checkpoint_file(ckpt)
    subprocess.run(cmd, check=True, capture_output=True)
    meta = load_checkpoint_file(out)["meta"]["mtpd"]
    assert meta["resumed"] is True and meta["stage_epochs"] == 8
    logs = "".join(p.read_text() for p in work.rglob("*.log"))
    assert f"resumed epoch: {done}" in logs.lower()


def test_interrupted_bf16_run_resumes_with_the_amp_wrapper(tmp_path, shapes_data,
                                                            monkeypatch):
    """SIGTERM mid-epoch saves the AMP wrapper's state; the next run resumes after the batches
    done, still in bf16, and finishes the epoch."""
    from mtpd.errors import TrainingInterrupted

    out = tmp_path / "student.pth"
    args = dict(epochs=1, batch_size=8, num_workers=0, seed=0, precision="bf16")
    handler = signal.getsignal(signal.SIGTERM)
    try:
        steps: list[float] = []
        count_steps(monkeypatch, steps, stop_at=3)
        with pytest.raises(TrainingInterrupted, match="stopped by SIGTERM at iteration 3"):
            train(RETINA, shapes_data, out, **args)
        saved = load_checkpoint_file(work_dir_for(out) / "iter_3.pth")
        assert "loss_scaler" in saved["optimizer"] and saved["meta"]["mtpd_iter_in_epoch"] == 3
        train(RETINA, shapes_data, out, **args)
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert len(steps) == 5  # 3, then batches 4 and 5 of 5
    meta = load_checkpoint_file(out)["meta"]["mtpd"]
    assert meta["resumed"] and meta["precision"] == "bf16"


@pytest.fixture()
def small_disk(tmp_path):
    """A 24 MB tmpfs: room for one resumable checkpoint of the small RetinaNet, not two."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a small tmpfs here ({r.stderr.strip()})")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_while_saving_keeps_the_previous_checkpoint(small_disk, shapes_data):
    out = small_disk / "model.pth"
    r = run_mtpd("train", "--config", RETINA, "--dataset", str(shapes_data), "--out", str(out),
             "--epochs", "2", "--batch-size", "8", "--num-workers", "0", "--seed", "0",
             "--checkpoint-minutes", "0.001")
    line = one_line_error(r, "could not save checkpoint", "the previous one is kept",
                          "free disk space")
    work = small_disk / "model.pth.work"
    kept = Path((work / "last_checkpoint").read_text().strip())
    assert kept.name in line and kept.is_file()
    assert "message_hub" in load_checkpoint_file(kept)  # usable for resuming
    assert not out.exists() and not list(work.glob(".*.tmp"))
