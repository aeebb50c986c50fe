"""One distillation stage (mtpd/distill/model.py) on real mmdet models: frozen teacher, never
initialised from its config, gradients, levels, stages, the student exported."""
from __future__ import annotations

import socket

import pytest
import torch
from mmengine.config import Config

from mtpd.checkpoint import load_checkpoint_file, save_model_checkpoint
from mtpd.data.manifest import DatasetManifest
from mtpd.distill.align import match_levels
from mtpd.model_config import build_job_config, load_config
from tests.helpers import random_checkpoint

STUDENT = "mtpd::shapes/retinanet_r18w16_shapes.py"
TEACHER = "mtpd::shapes/retinanet_r34w24_shapes.py"
SWIN = "mtpd::shapes/retinanet_swin_shapes.py"


def _random_teacher(tmp_path, config, manifest) -> str:
    """A teacher checkpoint with random weights: enough to test the mechanics."""
    return str(random_checkpoint(config, manifest, tmp_path / f"teacher_{abs(hash(config))}.pth",
                                 work_dir=tmp_path / "w"))


def _distiller(tmp_path, shapes_data, teacher_config=TEACHER, **distill):
    from mmdet.registry import MODELS

    from mtpd.distill import build_distiller_cfg

    manifest = DatasetManifest.load(shapes_data)
    ckpt = _random_teacher(tmp_path, teacher_config, manifest)
    cfg = build_job_config(STUDENT, manifest, work_dir=tmp_path / "w", test_split="val")
    model_cfg = build_distiller_cfg(cfg, {"teacher_config": teacher_config,
                                          "teacher_checkpoint": ckpt, **distill},
                                    len(manifest.classes))
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model, cfg


def _batch(cfg, n=4):
    from mmengine.runner import Runner

    cfg.train_dataloader.batch_size = n
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    return next(iter(Runner.build_dataloader(cfg.train_dataloader)))


def test_teacher_is_frozen_and_outside_student_state(tmp_path, shapes_data):
    model, cfg = _distiller(tmp_path, shapes_data)
    teacher = model.teacher
    assert not any(k.startswith("teacher") for k in model.state_dict())
    assert all(not p.requires_grad for p in teacher.parameters())
    param_ids = {id(p) for p in model.parameters()}
    assert not param_ids & {id(p) for p in teacher.parameters()}
    before = {k: v.clone() for k, v in teacher.state_dict().items()}

    model.train()
    assert not teacher.training and all(not m.training for m in teacher.modules())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    data = model.data_preprocessor(_batch(cfg), True)
    losses = model(**data, mode="loss")
    total = sum(v for k, v in losses.items() if "loss" in k
                for v in (v if isinstance(v, list) else [v]))
    opt.zero_grad()
    total.backward()
    # gradients reach the student's backbone and the adapters; never the teacher
    assert model.student.backbone.conv1.weight.grad.abs().sum() > 0
    assert all(a.conv.weight.grad is not None for a in model.adapters[:3])
    assert all(p.grad is None for p in teacher.parameters())
    opt.step()
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN buffers too
    assert "distill.ratio" in losses and float(losses["distill.ratio"]) > 0


def test_teacher_survives_init_weights(tmp_path, shapes_data):
    model, _ = _distiller(tmp_path, shapes_data)
    w = model.teacher.backbone.conv1.weight.clone()
    model.init_weights()
    assert torch.equal(w, model.teacher.backbone.conv1.weight)


def test_levels_matched_by_stride_and_min_positions(tmp_path, shapes_data):
    # a teacher at 1.25x resolution: its stride-8 map is 5.1 student pixels a cell -> level 4
    assert match_levels([4, 8, 16, 32, 64], [3.2, 6.4, 12.8, 25.6, 51.2]) == [0, 1, 2, 3, 4]
    assert match_levels([4, 8, 16], [8, 16]) == [0, 0, 1]
    model, _ = _distiller(tmp_path, shapes_data, min_positions=16)
    feats = [torch.zeros(1, 1, s, s) for s in (32, 16, 8, 4, 2)]
    assert model.distilled_levels(feats) == [0, 1, 2, 3]  # the 2x2 map is skipped
    model.levels = [1, 2]
    assert model.distilled_levels(feats) == [1, 2]


@pytest.mark.parametrize("loss", ["FeatureMSELoss", "CWDLoss", "PKDLoss", "MGDLoss", "FGDLoss"])
def test_every_loss_trains_a_step(tmp_path, shapes_data, loss):
    model, cfg = _distiller(tmp_path, shapes_data, loss={"type": loss})
    data = model.data_preprocessor(_batch(cfg, 2), True)
    losses = model(**data, mode="loss")
    key = f"distill.loss_{loss}"
    assert torch.isfinite(losses[key]) and float(losses[key]) > 0
    losses[key].backward()
    assert model.adapters[0].conv.weight.grad.abs().sum() > 0


def test_paper_lambda_defaults(tmp_path, shapes_data):
    from mtpd.distill import build_distiller_cfg

    manifest = DatasetManifest.load(shapes_data)
    for student, lam in ((STUDENT, 0.5), ("mtpd::shapes/mask_rcnn_r18w16_shapes.py", 0.8)):
        cfg = build_job_config(student, manifest, work_dir=tmp_path)
        m = build_distiller_cfg(cfg, {"teacher_config": TEACHER, "teacher_checkpoint": "x"},
                                len(manifest.classes))
        assert m["loss"] == {"type": "FeatureMSELoss", "loss_weight": lam}
    with pytest.raises(ValueError, match="unknown distillation settings.*'lamda'"):
        build_distiller_cfg(cfg, {"teacher_config": TEACHER, "teacher_checkpoint": "x",
                                  "lamda": 1}, 12)


def test_swin_teacher_at_own_resolution_stage(tmp_path, shapes_data):
    """Heterogeneous stage: Swin teacher, 160 px input, 96 channels -> ResNet student, 64 ch."""
    from mtpd.evaluate import evaluate
    from mtpd.train import train

    manifest = DatasetManifest.load(shapes_data)
    ckpt = _random_teacher(tmp_path, SWIN, manifest)
    out = tmp_path / "stage1.pth"
    train(STUDENT, shapes_data, out, epochs=1, batch_size=8, num_workers=0, seed=0,
          distill={"teacher_config": SWIN, "teacher_checkpoint": ckpt},
          feature_loss_split="proxy")
    meta = load_checkpoint_file(out)["meta"]["mtpd"]
    assert meta["distill"]["teacher_config"] == SWIN
    assert meta["feature_loss"] > 0 and meta["feature_loss_split"] == "proxy"
    sd = load_checkpoint_file(out)["state_dict"]
    assert not any(k.startswith(("teacher", "adapters", "losses")) for k in sd)
    # stage 2 starts from stage 1's student with a fresh optimizer and schedule
    out2 = tmp_path / "stage2.pth"
    train(STUDENT, shapes_data, out2, epochs=1, batch_size=8, num_workers=0, seed=0,
          init_checkpoint=str(out),
          distill={"teacher_config": TEACHER,
                   "teacher_checkpoint": _random_teacher(tmp_path, TEACHER, manifest)})
    meta2 = load_checkpoint_file(out2)["meta"]["mtpd"]
    assert meta2["init_checkpoint"] == str(out)
    # per-stage vs cumulative epochs and wall time
    assert meta2["stage_epochs"] == 1 and meta2["total_epochs"] == 2
    assert meta2["total_train_seconds"] > meta2["train_seconds"] > 0
    rec = evaluate(STUDENT, out2, shapes_data, tmp_path / "m.json", split="val", num_workers=0)
    assert 0 <= rec["AP"] <= 100


def test_exported_student_runs_in_plain_mmdetection(tmp_path, shapes_data):
    """What a user does first with the result: load it and run it on an image, with nothing
    but MMDetection and the config stored in the checkpoint."""
    from mmdet.apis import inference_detector, init_detector

    from mtpd.train import train

    manifest = DatasetManifest.load(shapes_data)
    out = tmp_path / "s.pth"
    train(STUDENT, shapes_data, out, epochs=1, batch_size=8, num_workers=0, seed=0,
          distill={"teacher_config": TEACHER,
                   "teacher_checkpoint": _random_teacher(tmp_path, TEACHER, manifest)})
    ckpt = load_checkpoint_file(out)
    cfg = Config.fromstring(ckpt["meta"]["config_text"], ".py")
    model = init_detector(cfg, str(out), device="cpu")
    assert model.dataset_meta["classes"] == list(manifest.classes)
    sd = model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in ckpt["state_dict"].items())
    # the stored config round-trips exactly (tuples stay tuples), so inference runs
    assert Config.fromstring(cfg.pretty_text, ".py").pretty_text == cfg.pretty_text
    image = next(manifest.split("val").img_dir.glob("*.png"))
    result = inference_detector(model, str(image))
    assert result.pred_instances.bboxes.shape[1] == 4


def test_inherit_neck_head_only_when_shapes_match(tmp_path, shapes_data):
    """Off by default; on, stage 1 copies the teacher's neck and head, and a different
    architecture is refused instead of silently half-copied."""
    model, _ = _distiller(tmp_path, shapes_data, teacher_config=STUDENT)
    assert not torch.equal(model.student.neck.fpn_convs[0].conv.weight,
                           model.teacher.neck.fpn_convs[0].conv.weight)
    model, _ = _distiller(tmp_path, shapes_data, teacher_config=STUDENT, inherit_neck_head=True)
    for name in ("neck.fpn_convs.0.conv.weight", "bbox_head.retina_cls.weight"):
        assert torch.equal(model.student.state_dict()[name], model.teacher.state_dict()[name])
    with pytest.raises(ValueError, match="inherit_neck_head needs the same neck and head"):
        _distiller(tmp_path, shapes_data, inherit_neck_head=True)


def test_teachers_never_download_imagenet_weights(tmp_path, shapes_data, monkeypatch):
    """A zoo teacher config names ImageNet weights for its backbone; building and running it as
    a teacher must not fetch them (its checkpoint has every weight): no socket may connect."""
    from mmdet.registry import MODELS

    from mtpd import register_all_modules
    from mtpd.data.manifest import DatasetManifest
    from mtpd.distill import build_distiller_cfg
    from mtpd.model_config import build_job_config

    register_all_modules()
    zoo = "mmdet::retinanet/retinanet_r18_fpn_1x_coco.py"
    assert "torchvision://resnet18" in str(load_config(zoo).model.backbone.init_cfg)
    manifest = DatasetManifest.load(shapes_data)
    teacher = MODELS.build(build_job_config(zoo, manifest).model)  # built, never initialised
    ckpt = tmp_path / "zoo_teacher.pth"
    save_model_checkpoint(ckpt, teacher.state_dict(), {})

    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    cfg = build_job_config("mtpd::shapes/retinanet_r18w16_shapes.py", manifest)
    model = MODELS.build(build_distiller_cfg(
        cfg, {"teacher_config": zoo, "teacher_checkpoint": str(ckpt)}, len(manifest.classes)))
    model.init_weights()
    feats = model.teacher_features(torch.zeros(1, 3, 128, 128))
    assert len(feats) == 5
