"""Real training iterations, evaluation with pycocotools, checkpoints and resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtpd.checkpoint import (CheckpointError, fetch_checkpoint, load_checkpoint_file,
                             save_model_checkpoint)
from mtpd.errors import ModelConfigError
from mtpd.model_config import resolve_config_path
from mtpd.data.manifest import DatasetManifest
from mtpd.evaluate import coco_eval, evaluate
from mtpd.io import sha256sum
from mtpd.train import train, work_dir_for

RETINA = "mtpd::shapes/retinanet_r18w16_shapes.py"
MASK_RCNN = "mtpd::shapes/mask_rcnn_r18w16_shapes.py"


def test_retinanet_trains_and_evaluates(tmp_path, shapes_data):
    out = tmp_path / "retina.pth"
    train(RETINA, shapes_data, out, epochs=2, batch_size=8, num_workers=0, seed=1)
    ckpt = torch.load(out, map_location="cpu", weights_only=True)  # plain, no allow-list needed
    meta = ckpt["meta"]["mtpd"]
    assert meta["stage_epochs"] == meta["total_epochs"] == 2 and meta["train_seconds"] > 0
    assert ckpt["meta"]["dataset_meta"]["classes"][0] == "disk_solid"
    # 2 anchors a cell, 12 classes
    assert ckpt["state_dict"]["bbox_head.retina_cls.weight"].shape[0] == 2 * 12
    rec = evaluate(RETINA, out, shapes_data, tmp_path / "m.json", split="val", num_workers=0)
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved == rec
    for key in ("AP", "AP50", "AP75", "APs", "APm"):
        assert 0 <= saved[key] <= 100
    assert saved["APl"] is None or 0 <= saved["APl"] <= 100  # None: no large objects in val
    assert "mask_AP" not in saved and saved["seconds_per_image"] > 0


def test_mask_rcnn_trains_and_reports_mask_ap(tmp_path, shapes_data):
    out = tmp_path / "mask.pth"
    train(MASK_RCNN, shapes_data, out, epochs=1, batch_size=8, num_workers=0, seed=0)
    rec = evaluate(MASK_RCNN, out, shapes_data, tmp_path / "m.json", split="val", num_workers=0)
    assert "mask_AP" in rec and 0 <= rec["mask_AP"] <= 100


def test_coco_eval_perfect_and_empty(shapes_data):
    """Ground truth scored against itself gives AP 100; no detections give 0."""
    ann = DatasetManifest.load(shapes_data).split("val").ann_file
    gt = json.loads(ann.read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                "score": 1.0} for a in gt["annotations"]]
    assert coco_eval(ann, results)["AP"] == pytest.approx(100.0)
    assert coco_eval(ann, [])["AP"] == 0.0


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


class Evil:
    """Stands for any class a checkpoint might smuggle in."""


class Sneaky:
    """Pickles as getattr(HistoryBuffer, '__init__'): the allowed getattr must refuse it."""

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer

        return (getattr, (HistoryBuffer, "__init__"))


def test_unsafe_checkpoint_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="evil.pth was refused"):
        load_checkpoint_file(path)
    # the getattr allowed for MMEngine's HistoryBuffer resolves nothing else
    torch.save({"state_dict": {}, "payload": Sneaky()}, path)
    with pytest.raises(CheckpointError, match="evil.pth was refused"):
        load_checkpoint_file(path)
    torch.save({"state_dict": {}, "payload": os.system}, path)
    with pytest.raises(CheckpointError, match="evil.pth was refused"):
        load_checkpoint_file(path)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="evil.pth cannot be read"):
        load_checkpoint_file(path)


def test_fetch_checks_sha256_and_keeps_nothing_bad(tmp_path):
    src = tmp_path / "zoo.pth"
    save_model_checkpoint(src, {"w": torch.ones(2)}, {"from": "zoo"})
    digest = sha256sum(src)
    out = tmp_path / "t" / "model.pth"
    with pytest.raises(CheckpointError, match="sha256 of .* is"):
        fetch_checkpoint(str(src), out, "0" * 64)
    assert not out.exists() and not list(out.parent.iterdir())
    fetch_checkpoint(f"file://{src}", out, digest)
    assert torch.equal(load_checkpoint_file(out)["state_dict"]["w"], torch.ones(2))


def test_config_resolution():
    assert resolve_config_path("mmdet::retinanet/retinanet_r50_fpn_1x_coco.py").is_file()
    assert resolve_config_path(RETINA).is_file()
    with pytest.raises(ModelConfigError, match="'mmdet::nope.py' not found"):
        resolve_config_path("mmdet::nope.py")


def test_mmdet_zoo_config_adapts_to_dataset(tmp_path, shapes_data):
    """A plain model-zoo config (mmdet:: name) gets our dataset's classes and paths."""
    from mtpd.model_config import build_job_config

    cfg = build_job_config("mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py",
                           DatasetManifest.load(shapes_data), work_dir=tmp_path, epochs=3,
                           test_split="val")
    assert cfg.model.roi_head.bbox_head.num_classes == 12
    assert cfg.model.roi_head.mask_head.num_classes == 12
    assert cfg.model.rpn_head.get("num_classes", 1) == 1
    assert cfg.train_cfg.max_epochs == 3
    assert cfg.param_scheduler[1].milestones == [2, 3]  # [8, 11] of 12 epochs, rescaled
    assert cfg.param_scheduler[1].end == 3
    assert cfg.train_dataloader.dataset.ann_file.endswith("train.json")
    assert cfg.test_dataloader.dataset.ann_file.endswith("val.json")
