"""The training entry point (mtpd/train.py): a real RetinaNet trained and evaluated, and the
LR scaled with the total batch."""
from __future__ import annotations

import json

import torch

from mtpd.checkpoint import load_checkpoint_file
from mtpd.evaluate import evaluate
from mtpd.train import train

RETINA = "mtpd::shapes/retinanet_r18w16_shapes.py"


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


def test_learning_rate_scales_with_the_total_batch(tmp_path, shapes_data):
    """The config's LR is for its base batch (8 for the shapes configs; MMDetection's zoo: 16 =
    8 GPUs x 2): a batch of 4 trains with half of it."""
    from mtpd.data.manifest import DatasetManifest
    from mtpd.model_config import build_job_config, load_config
    from mtpd.train import train

    base_lr = load_config(RETINA).optim_wrapper.optimizer.lr
    cfg = build_job_config(RETINA, DatasetManifest.load(shapes_data), batch_size=4)
    assert cfg.auto_scale_lr.base_batch_size == 8
    out = tmp_path / "half.pth"
    train(RETINA, shapes_data, out, epochs=1, seed=0, batch_size=4, num_workers=0)
    meta = load_checkpoint_file(out)["meta"]["mtpd"]
    assert meta["total_batch"] == 4 and meta["processes"] == 1
    assert meta["lr"] == base_lr * 4 / 8
