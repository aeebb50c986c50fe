"""The paper's experiments as configs (config/coco_*.yaml, config/argoverse_retinanet.yaml):
hyper-parameters checked line by line, zoo teachers pinned, and plans that work with no data
or weights present."""
from __future__ import annotations

import re

import pytest

from mtpd.model_config import load_config
from mtpd.pipeline_config import load
from tests.helpers import REPO, snakemake, workdir

RETINA = ["coco_retinanet.yaml", "coco_retinanet_mgd.yaml"]
MASK = ["coco_mask_rcnn.yaml", "coco_mask_rcnn_mgd.yaml"]
PAPER = RETINA + MASK


def _scheduler(cfg, type_: str) -> dict:
    (sch,) = [s for s in cfg.param_scheduler if s["type"] == type_]
    return sch


@pytest.mark.parametrize("name", PAPER)
def test_paper_hyper_parameters(name):
    """1333x800, total batch 16 (8 GPUs x 2), SGD momentum 0.9, weight decay 1e-4, lr 0.01
    (RetinaNet) / 0.02 (Mask R-CNN), 12 epochs a stage with steps at 8 and 11, 500-iteration
    linear warm-up, lambda 0.5 / 0.8, and the authors' MGD settings with grad clip 35."""
    c = load(REPO / "config" / name)
    cfg = load_config(c["student"]["config"])
    retina = name in RETINA
    for loader in ("train_dataloader", "test_dataloader"):
        resize = [s for s in cfg[loader].dataset.pipeline if s["type"] == "Resize"]
        assert [tuple(s["scale"]) for s in resize] == [(1333, 800)], loader
    assert cfg.train_dataloader.batch_size * c["compute"]["train"]["gpus"] == 16
    assert cfg.auto_scale_lr.base_batch_size == 16
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.momentum, opt.weight_decay) == ("SGD", 0.9, 1e-4)
    assert opt.lr == (0.01 if retina else 0.02)
    assert c["student"]["epochs"] == cfg.train_cfg.max_epochs == 12
    assert _scheduler(cfg, "MultiStepLR").milestones == [8, 11]
    warmup = _scheduler(cfg, "LinearLR")
    assert (warmup.by_epoch, warmup.begin, warmup.end) == (False, 0, 500)
    loss = c["distill"]["loss"]
    if "mgd" in name:
        expected = (2e-5, 0.65, [0, 1, 2, 3, 4]) if retina else (5e-7, 0.45, [0, 1, 2, 3])
        assert (loss["type"], loss["loss_weight"], loss["mask_ratio"], c["distill"]["levels"]) \
            == ("MGDLoss", *expected)
        assert cfg.optim_wrapper.clip_grad == {"max_norm": 35, "norm_type": 2}
    else:
        assert loss == {"type": "FeatureMSELoss", "loss_weight": 0.5 if retina else 0.8}


@pytest.mark.parametrize("name", PAPER + ["argoverse_retinanet.yaml"])
def test_zoo_teachers_are_pinned(name):
    """Every zoo teacher: an https URL, its config in the installed zoo, the sha256 prefix that
    the zoo writes into the file name, and (on COCO) the zoo AP it must reach."""
    c = load(REPO / "config" / name)
    fetched = {t: v for t, v in c["teachers"].items() if "checkpoint" in v}
    assert len(fetched) >= 2
    for t, v in fetched.items():
        ckpt = v["checkpoint"]
        assert ckpt["source"].startswith("https://download.openmmlab.com/"), t
        assert re.search(rf"-{ckpt['sha256']}\.pth$", ckpt["source"]), t
        load_config(v["config"])  # resolves in the installed MMDetection
        if c["dataset"]["kind"] == "coco":
            assert ckpt["box_ap"] > 35, t


@pytest.mark.parametrize("name", PAPER + ["argoverse_retinanet.yaml"])
def test_paper_configs_plan_without_data(tmp_path, name):
    """`snakemake -n` plans every paper config with no data or weights present."""
    wd = workdir(tmp_path)
    r = snakemake(wd, "-n", "--configfile", f"config/{name}", timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out = r.stdout + r.stderr
    for rule in ("fetch_teacher", "evaluate_teacher", "check_dataset", "carve_proxy",
                 "bgs_target"):
        assert rule in out, rule
