"""Training that survives being stopped: SIGTERM, timed checkpoints, exact mid-epoch resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from mtpd.checkpoint import load_checkpoint_file
from mtpd.train import work_dir_for

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


def test_learning_rate_scales_with_the_total_batch(tmp_path, shapes_data):
    """The config's LR is for its base batch (8 for the shapes configs; MMDetection's zoo: 16 =
    8 GPUs x 2): a batch of 4 trains with half of it."""
    from mtpd.model_config import build_job_config, load_config
    from mtpd.data.manifest import DatasetManifest
    from mtpd.train import train

    base_lr = load_config(RETINA).optim_wrapper.optimizer.lr
    cfg = build_job_config(RETINA, DatasetManifest.load(shapes_data), batch_size=4)
    assert cfg.auto_scale_lr.base_batch_size == 8
    out = tmp_path / "half.pth"
    train(RETINA, shapes_data, out, epochs=1, seed=0, batch_size=4, num_workers=0)
    meta = load_checkpoint_file(out)["meta"]["mtpd"]
    assert meta["total_batch"] == 4 and meta["processes"] == 1
    assert meta["lr"] == base_lr * 4 / 8
