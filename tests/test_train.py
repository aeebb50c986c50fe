"""The training entry point (mtpd/train.py): a real RetinaNet trained and evaluated, and the
LR scaled with the total batch."""
from __future__ import annotations

import json

import pytest
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


def test_a_continued_stage_trains_its_part_of_one_schedule(shapes_data):
    """Stage i of n (distill.continued_orders): the config's schedule stretched to n stages; the
    first stage warms up and keeps the first milestones' LR, a later stage skips the warm-up,
    starts at the LR the schedule has reached, and its milestones are shifted to it."""
    from mtpd.data.manifest import DatasetManifest
    from mtpd.errors import ModelConfigError
    from mtpd.model_config import build_job_config, load_config

    manifest = DatasetManifest.load(shapes_data)
    base_lr = load_config(RETINA).optim_wrapper.optimizer.lr  # warm-up 100 it., [8, 11] of 12
    first = build_job_config(RETINA, manifest, epochs=4, continue_schedule=(1, 3))
    third = build_job_config(RETINA, manifest, epochs=4, continue_schedule=(3, 3))
    restart = build_job_config(RETINA, manifest, epochs=4)
    assert first.train_cfg.max_epochs == third.train_cfg.max_epochs == 4
    assert [s.type for s in first.param_scheduler] == ["LinearLR", "MultiStepLR"]
    assert first.param_scheduler[1].milestones == []   # 8 and 11 of 12 are past its 4 epochs
    assert [s.type for s in third.param_scheduler] == ["MultiStepLR"]
    assert third.param_scheduler[0].milestones == [3]  # 11 of 12: epoch 3 of the third 4
    assert third.optim_wrapper.optimizer.lr == base_lr * 0.1  # 8 of 12 is behind it
    assert restart.param_scheduler[1].milestones == [3, 4]  # the paper: a whole 1x in 4 epochs
    with pytest.raises(ModelConfigError, match="stage 4 of 3"):
        build_job_config(RETINA, manifest, epochs=4, continue_schedule=(4, 3))


def test_continued_stage_and_teacher_snapshots_in_real_training(tmp_path, shapes_data):
    """A real run of the last stage of one schedule starts at the decayed LR, and a teacher's
    snapshot after epoch 1 is written beside it, loadable, and not its final weights."""
    base_lr = load_config_lr()
    out = tmp_path / "late.pth"
    train(RETINA, shapes_data, out, epochs=1, seed=0, num_workers=0, continue_schedule=(3, 3))
    meta = load_checkpoint_file(out)["meta"]["mtpd"]
    assert meta["continue_schedule"] == [3, 3]
    assert meta["lr"] == pytest.approx(base_lr * 0.1)  # past the first milestone of the three
    teacher, snap = tmp_path / "teacher.pth", tmp_path / "teacher_e1.pth"
    train(RETINA, shapes_data, teacher, epochs=2, seed=0, num_workers=0, snapshots={1: str(snap)})
    early, final = load_checkpoint_file(snap), load_checkpoint_file(teacher)
    assert early["meta"]["mtpd"]["total_epochs"] == early["meta"]["mtpd"]["snapshot_epoch"] == 1
    assert early["meta"]["dataset_meta"] == final["meta"]["dataset_meta"]
    key = "bbox_head.retina_cls.weight"
    assert not torch.equal(early["state_dict"][key], final["state_dict"][key])


def load_config_lr() -> float:
    from mtpd.model_config import load_config

    return load_config(RETINA).optim_wrapper.optimizer.lr
