"""Model configs (mtpd/model_config.py): names resolved, a zoo config adapted to the dataset, and
a config that does not build named in one line."""
from __future__ import annotations

import json

import pytest

from mtpd.data.manifest import DatasetManifest
from mtpd.errors import ModelConfigError
from mtpd.model_config import resolve_config_path
from tests.helpers import REPO, one_line_error, random_checkpoint, run_mtpd

RETINA = "mtpd::shapes/retinanet_r18w16_shapes.py"


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


def test_teacher_config_that_does_not_build(tmp_path, shapes_data):
    config = tmp_path / "broken.py"
    config.write_text(f"_base_ = '{REPO}/mtpd/configs/shapes/retinanet_r34w24_shapes.py'\n"
                      "model = dict(backbone=dict(type='NoSuchBackbone'))\n")
    ckpt = random_checkpoint(RETINA, shapes_data, tmp_path / "t.pth")
    r = run_mtpd("train", "--config", RETINA, "--dataset", str(shapes_data), "--out",
             str(tmp_path / "s.pth"), "--epochs", "1", "--seed", "0", "--num-workers", "0",
             "--distill", json.dumps({"teacher_config": str(config),
                                      "teacher_checkpoint": str(ckpt)}))
    one_line_error(r, "does not build", "NoSuchBackbone")
