"""Pretrained weights: every checkpoint a shipped config trains from resolves here, without
torchvision; a torchvision:// name loads through MMEngine's own path from a local mirror; a
distillation teacher is never initialised from its config's weights."""
from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch

from mtpd.errors import ModelConfigError
from mtpd.model_config import PACKAGE_CONFIGS, load_config
from mtpd.pipeline_config import load
from mtpd.pretrained import MIRROR_ENV, pretrained_checkpoints, resolve
from tests.helpers import REPO

SHIPPED = sorted(p.name for p in (REPO / "config").glob("*.yaml"))
R18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"  # MMEngine's table


def trained_models(config: dict) -> list[tuple[str, str]]:
    """(key, model config) of every model a pipeline config trains: the student and the
    teachers without a checkpoint (fetched teachers are never initialised)."""
    models = [("student", config["student"]["config"])]
    models += [(f"teachers.{t}", v["config"]) for t, v in config["teachers"].items()
               if "checkpoint" not in v]
    return models


@pytest.mark.parametrize("name", SHIPPED)
def test_every_trained_models_weights_resolve_without_torchvision(name):
    """Each Pretrained init_cfg (at any depth) of each model the config trains resolves, and
    MMEngine picks a loader for it that runs here: mtpd's for torchvision://."""
    from mmengine.runner.checkpoint import CheckpointLoader

    import mtpd.pretrained
    from mtpd import register_all_modules

    assert importlib.util.find_spec("torchvision") is None  # what makes this test matter
    register_all_modules()
    config = load(REPO / "config" / name)
    for key, spec in trained_models(config):
        for at, checkpoint in pretrained_checkpoints(load_config(spec).model):
            w = resolve(checkpoint, f"{key} ({spec}): {at}")
            loader = CheckpointLoader._get_checkpoint_loader(checkpoint)
            if w.scheme == "torchvision":
                assert loader is mtpd.pretrained.load_from_torchvision, (spec, at)
                assert w.url.startswith("https://download.pytorch.org/models/"), w
            else:
                assert loader.__module__ == "mmengine.runner.checkpoint", (spec, at, loader)
            assert w.scheme in ("torchvision", "open-mmlab", "http", "local"), w


def test_the_paper_students_start_from_torchvision_weights():
    """Not vacuous: the COCO students name torchvision://resnet50, Swin teachers GitHub URLs."""
    seen = {}
    for name in SHIPPED:
        for _, spec in trained_models(load(REPO / "config" / name)):
            for _, checkpoint in pretrained_checkpoints(load_config(spec).model):
                seen[checkpoint] = resolve(checkpoint, spec).scheme
    assert seen["torchvision://resnet50"] == "torchvision"
    assert {s for c, s in seen.items() if "SwinTransformer" in c} == {"http"}


def test_checkpoints_are_found_at_any_depth():
    cfg = {"backbone": {"init_cfg": {"type": "Pretrained", "checkpoint": "torchvision://resnet50"}},
           "neck": [{"init_cfg": [{"type": "Xavier"},
                                  {"type": "Pretrained", "checkpoint": "a.pth"}]}],
           "roi_head": {"mask_head": {"pretrained": "https://x/y.pth"}}}
    assert pretrained_checkpoints(cfg) == [
        ("model.backbone.init_cfg.checkpoint", "torchvision://resnet50"),
        ("model.neck[0].init_cfg[1].checkpoint", "a.pth"),
        ("model.roi_head.mask_head.pretrained", "https://x/y.pth")]


@pytest.mark.parametrize("checkpoint, expected", [
    ("torchvision://resnet5", r"'torchvision://resnet5' is not a name in \S+torchvision_0.12.json"
                              r" \(did you mean 'torchvision://resnet50'\?\); give a name"),
    ("open-mmlab://resnext101_64x4", r"'open-mmlab://resnext101_64x4' is not a name in "
                                     r"\S+openmmlab.json \(did you mean "
                                     r"'open-mmlab://resnext101_64x4d'\?\)"),
    ("missing/weights.pth", r"'missing/weights.pth' is no file here .*; fix the path"),
    ("s3://bucket/w.pth", r"'s3://bucket/w.pth' uses 's3://', which mtpd does not load .*; "
                          r"download the file"),
], ids=["unknown torchvision name", "unknown open-mmlab name", "missing file", "s3 scheme"])
def test_unresolvable_weights_say_config_key_and_fix(checkpoint, expected, tmp_path,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    where = "model config my.py: model.backbone.init_cfg.checkpoint"
    with pytest.raises(ModelConfigError, match=f"^{where} {expected}") as e:
        resolve(checkpoint, where)
    assert "\n" not in str(e.value)


def test_open_mmlab_and_local_weights_resolve_without_downloading(tmp_path):
    w = resolve("open-mmlab://resnext101_64x4d", "x")
    assert (w.scheme, urlsplit(w.url).netloc) == ("open-mmlab", "download.openmmlab.com")
    (tmp_path / "w.pth").write_bytes(b"x")
    assert resolve(str(tmp_path / "w.pth"), "x").path == str(tmp_path / "w.pth")


def test_modules_stay_light():
    """The Snakefile imports mtpd.preflight (its config key): no torch at import time."""
    code = ("import sys, mtpd.pretrained, mtpd.preflight; "
            "assert 'torch' not in sys.modules and 'mmengine' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.fixture()
def mirror(tmp_path, monkeypatch):
    """A local HTTP server standing in for a mirror of download.pytorch.org (the URL paths of
    the real host), with MTPD_TORCHVISION_MIRROR pointing at it and torch.hub's cache in
    tmp_path. Yields the served directory and the list of paths requested."""
    root = tmp_path / "www"
    root.mkdir()
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    yield root, requested
    server.shutdown()


def _serve(root: Path, url: str, state: dict[str, torch.Tensor]) -> str:
    """Serves `state` under the URL path of `url`; returns that path."""
    path = urlsplit(url).path
    (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, root / path.lstrip("/"))
    return path


def _generated(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """`module`'s state with new random values: weights nobody could get by chance."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in module.state_dict().items()}


def test_torchvision_weights_load_through_mmengine_from_a_mirror(mirror, tmp_path):
    """A backbone whose init_cfg says torchvision://resnet18: init_weights() goes through
    MMEngine's PretrainedInit and load_from_http to torch.hub, which downloads the file once
    (from the mirror, same path as the real URL) into $TORCH_HOME and loads it into the model."""
    from mmdet.registry import MODELS
    from mmengine.runner.checkpoint import CheckpointLoader

    from mtpd import register_all_modules

    root, requested = mirror
    register_all_modules()
    cfg = load_config("mtpd::shapes/retinanet_r18w16_shapes.py")
    cfg.model.backbone.init_cfg = dict(type="Pretrained", checkpoint="torchvision://resnet18")
    model = MODELS.build(cfg.model)
    state = _generated(model.backbone, seed=7)
    path = _serve(root, R18_URL, state)
    assert path == "/models/resnet18-f37072fd.pth"
    model.init_weights()
    got = model.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())
    assert requested == [path]
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth").is_file()
    again = CheckpointLoader.load_checkpoint("torchvision://resnet18", map_location="cpu")
    assert torch.equal(again["conv1.weight"], state["conv1.weight"])
    assert requested == [path]  # from torch.hub's cache this time
    with pytest.raises(ModelConfigError, match="did you mean 'torchvision://resnet18'"):
        CheckpointLoader.load_checkpoint("torchvision://resnet1")


def test_distillation_teacher_is_never_initialised_from_its_config(mirror, tmp_path):
    """A teacher config naming weights for its backbone (torchvision://) and its neck (a URL):
    initialising that model fetches both, but a distillation stage builds the teacher from its
    checkpoint and never initialises it, so nothing is requested."""
    from mmdet.registry import MODELS

    from mtpd import register_all_modules
    from mtpd.checkpoint import save_model_checkpoint
    from mtpd.distill import build_distiller_cfg

    root, requested = mirror
    register_all_modules()
    neck_url = f"{os.environ[MIRROR_ENV]}/neck-weights.pth"
    config = tmp_path / "teacher.py"
    config.write_text(
        f"_base_ = '{PACKAGE_CONFIGS / 'shapes' / 'retinanet_r18w16_shapes.py'}'\n"
        "model = dict(backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', "
        "checkpoint='torchvision://resnet18')),\n"
        f"             neck=dict(init_cfg=dict(type='Pretrained', checkpoint='{neck_url}')))\n")
    teacher_cfg = load_config(config)
    # the control: initialised as a model trained here would be, it fetches both files
    control = MODELS.build(teacher_cfg.model)
    served = [_serve(root, R18_URL, _generated(control.backbone, seed=1)),
              _serve(root, neck_url, _generated(control.neck, seed=2))]
    control.init_weights()
    assert sorted(requested) == sorted(served)
    requested.clear()

    trained = MODELS.build(teacher_cfg.model)  # stands in for the teacher's trained weights
    for p in trained.parameters():
        p.data.normal_()
    ckpt = tmp_path / "teacher.pth"
    save_model_checkpoint(ckpt, trained.state_dict(), {})
    student = load_config("mtpd::shapes/retinanet_r18w16_shapes.py")
    stage = build_distiller_cfg(student, {"teacher_config": str(config),
                                          "teacher_checkpoint": str(ckpt)}, 12)
    assert stage["teacher"]["neck"]["init_cfg"]["checkpoint"] == neck_url  # still named
    model = MODELS.build(stage)
    model.init_weights()
    assert requested == []
    got = model.teacher.state_dict()
    assert all(torch.equal(got[k], v) for k, v in trained.state_dict().items())
