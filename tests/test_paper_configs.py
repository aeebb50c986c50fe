"""The paper's experiments as configs: hyper-parameters checked line by line, plans that work
with no data or weights present, zoo teachers fetched safely and checked against their AP."""
from __future__ import annotations

import functools
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO, snakemake, workdir
from mtpd.checkpoint import fetch_checkpoint, load_checkpoint_file, save_model_checkpoint
from mtpd.errors import CheckpointError
from mtpd.io import sha256sum
from mtpd.model_config import load_config
from mtpd.pipeline_config import load

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


def test_missing_coco_says_where_to_get_it(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mtpd", "data", "manifest", "--out",
                        str(tmp_path / "m" / "dataset.json"), "--name", "coco", "--data-root",
                        str(tmp_path / "coco"), "--split",
                        "train:annotations/instances_train2017.json:train2017/"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "instances_train2017.json" in r.stderr and "cocodataset.org" in r.stderr
    assert not (tmp_path / "m" / "dataset.json").exists()


@pytest.fixture()
def http_server(tmp_path):
    """A plain HTTP server on loopback serving tmp_path/www (stands in for the model zoo)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_fetch_from_a_server_verifies_before_use(tmp_path, http_server):
    root, url = http_server
    good = root / "teacher_20200130-xxxxxxxx.pth"
    save_model_checkpoint(good, {"w": torch.arange(4.0)}, {"zoo": True})
    digest = sha256sum(good)
    out = tmp_path / "teachers" / "t" / "model.pth"
    with pytest.raises(CheckpointError, match="only https:// URLs"):
        fetch_checkpoint(f"{url}/{good.name}", out, digest[:8])
    assert not out.exists()
    fetch_checkpoint(f"{url}/{good.name}", out, digest[:8], allow_http=True)  # zoo-style prefix
    assert torch.equal(load_checkpoint_file(out)["state_dict"]["w"], torch.arange(4.0))
    out.unlink()
    with pytest.raises(CheckpointError, match="does not match the config's 00000000"):
        fetch_checkpoint(f"{url}/{good.name}", out, "00000000", allow_http=True)
    with pytest.raises(CheckpointError, match="could not download"):
        fetch_checkpoint(f"{url}/missing.pth", out, None, allow_http=True)
    (root / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pth is empty"):
        fetch_checkpoint(f"{url}/empty.pth", out, None, allow_http=True)
    (root / "cut.pth").write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"cut.pth cannot be read .* truncated"):
        fetch_checkpoint(f"{url}/cut.pth", out, None, allow_http=True)
    assert not out.exists() and not list(out.parent.glob("*.tmp"))


def test_teacher_far_below_its_recorded_ap_stops_the_run(tmp_path, shapes_data):
    """A checkpoint that does not fit its recorded AP (e.g. a wrong num_classes) is caught by
    evaluating each teacher once; nothing is written for it."""
    from mmdet.registry import MODELS

    from mtpd import register_all_modules
    from mtpd.data.manifest import DatasetManifest
    from mtpd.model_config import build_job_config

    register_all_modules()
    config = "mtpd::shapes/retinanet_r18w16_shapes.py"
    model = MODELS.build(build_job_config(config, DatasetManifest.load(shapes_data)).model)
    model.init_weights()
    ckpt = tmp_path / "teacher.pth"
    save_model_checkpoint(ckpt, model.state_dict(), {})
    out = tmp_path / "metrics_val.json"
    r = subprocess.run([sys.executable, "-m", "mtpd", "evaluate", "--config", config,
                        "--checkpoint", str(ckpt), "--dataset", str(shapes_data), "--split",
                        "val", "--out", str(out), "--num-workers", "0", "--expect-box-ap",
                        "38.5", "--ap-tolerance", "3"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "TEACHER CHECK FAILED" in r.stderr and "records 38.5" in r.stderr
    assert not out.exists()


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


def test_carved_proxy_split_is_disjoint_and_deterministic(tmp_path, shapes_data):
    from mtpd.data.carve import carve
    from mtpd.data.manifest import DatasetManifest

    out = tmp_path / "a" / "carved.json"
    info = carve(shapes_data, out, proxy_images=10, train_images=20, seed=1)
    assert info == {"from": "train", "seed": 1, "proxy_images": 10, "proxy_train_images": 20}
    m = DatasetManifest.load(out)
    ids = {s: {i["id"] for i in json.loads(m.split(s).ann_file.read_text())["images"]}
           for s in ("train", "proxy", "proxy_train")}
    assert not ids["proxy"] & ids["proxy_train"]
    assert ids["proxy"] | ids["proxy_train"] <= ids["train"]
    again = tmp_path / "b" / "carved.json"
    carve(shapes_data, again, proxy_images=10, train_images=20, seed=1)
    for s in ("proxy", "proxy_train"):
        assert Path(m.split(s).ann_file).read_text() == \
            (again.parent / f"{s}.json").read_text()
    with pytest.raises(Exception, match="dataset.proxy.images is 99"):
        carve(shapes_data, tmp_path / "c" / "carved.json", proxy_images=99, train_images=None,
              seed=1)


def test_experiments_sharing_a_dataset_must_carve_it_alike(tmp_path):
    """The carved and checked manifests are shared by every experiment on a dataset: one that
    asks for another proxy split stops before any job, naming the keys, and leaves it alone."""
    from mtpd.data.carve import carve_settings

    wd = workdir(tmp_path)
    carved = wd / "results/data/coco/carved.json"
    carved.parent.mkdir(parents=True)
    # what the RetinaNet config (proxy 5000 images, candidates on 30000) has made before
    carved.write_text(json.dumps({"carve_settings": carve_settings(5000, 30000, 0)}))
    before = carved.read_bytes()
    r = snakemake(wd, "-n", "--configfile", "config/coco_retinanet.yaml", timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    # the Mask R-CNN config carves alike; one with other candidates' images does not
    cfg = (wd / "config/coco_mask_rcnn.yaml").read_text()
    assert "proxy_train_images: 30000" in cfg
    (wd / "config/other.yaml").write_text(cfg.replace("proxy_train_images: 30000",
                                                      "proxy_train_images: 10000"))
    r = snakemake(wd, "-n", "--configfile", "config/other.yaml", timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "the proxy split of dataset 'coco' (dataset.proxy, bgs.proxy_train_images)" in out
    assert "'proxy_train_images': 30000" in out and "'proxy_train_images': 10000" in out
    assert carved.read_bytes() == before


def test_direct_distillation_trains_at_the_students_batch_size(tmp_path):
    """train.batch_size is the student's, for every student run (direct ones too), never a
    teacher's."""
    wd = workdir(tmp_path)
    cfg = (wd / "config/config.yaml").read_text().replace("num_workers: 1",
                                                         "num_workers: 1\n  batch_size: 3")
    (wd / "config/bs.yaml").write_text(cfg)
    r = snakemake(wd, "-n", "-p", "--configfile", "config/bs.yaml", "--forceall",
                  "results/demo/seed0/direct/retina_r50w16/e16/model.pth",
                  "results/teachers/shapes/retina_r50w16/model.pth",
                  "results/demo/seed0/baseline/e8/model.pth", timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    commands = [line[line.index("mtpd train"):] for line in (r.stdout + r.stderr).splitlines()
                if "mtpd train" in line]
    by_out = {re.search(r"--out (\S+)", c).group(1): c for c in commands}
    assert "--batch-size 3" in by_out["results/demo/seed0/direct/retina_r50w16/e16/model.pth"]
    assert "--batch-size 3" in by_out["results/demo/seed0/baseline/e8/model.pth"]
    assert "--batch-size" not in by_out["results/teachers/shapes/retina_r50w16/model.pth"]
