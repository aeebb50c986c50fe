"""ONNX export of a trained tiny student: parity with PyTorch, dynamic axes, refusals, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtpd.errors import ModelConfigError, MtpdError, one_line
from mtpd.export import (
    AP_ATOL,
    BOX_ATOL,
    RAW_ATOL,
    SCORE_ATOL,
    OnnxDetector,
    export_onnx,
    parity_failures,
    record_path,
)
from mtpd.model_config import resolve_config_path

RETINA = "mtpd::shapes/retinanet_r18w16_shapes.py"
MASK_RCNN = "mtpd::shapes/mask_rcnn_r18w16_shapes.py"
RECORD_FIELDS = ("config", "checkpoint", "opset", "exporter", "input_names", "output_names",
                 "dynamic_axes", "export_seconds", "versions", "parity")


@pytest.fixture(scope="module")
def student(tmp_path_factory, shapes_data) -> Path:
    """The tiny RetinaNet student trained 4 epochs (about 20 s on 2 cores). Its config's
    100-iteration warm-up would leave every score under the 0.05 threshold after so few
    iterations (no detections to compare), so it trains with the same model at a constant LR;
    the checkpoint fits the unchanged config, which is what is exported."""
    from mtpd.train import train

    tmp = tmp_path_factory.mktemp("export")
    cfg = tmp / "retina_constant_lr.py"
    cfg.write_text(f"_base_ = [{str(resolve_config_path(RETINA))!r}]\n"
                   "param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True, "
                   "begin=0, end=100)]\n")
    return train(str(cfg), shapes_data, tmp / "student.pth", epochs=4, batch_size=8,
                 num_workers=0, seed=1)


@pytest.fixture(scope="module")
def exported(student, shapes_data) -> tuple[Path, dict, subprocess.CompletedProcess]:
    """`python -m mtpd export` once, as a user runs it: the ONNX file, its record, the run."""
    out = student.parent / "onnx" / "student.onnx"
    r = subprocess.run([sys.executable, "-m", "mtpd", "export", "--config", RETINA,
                        "--checkpoint", str(student), "--dataset", str(shapes_data),
                        "--split", "val", "--out", str(out), "--parity-images", "4"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return out, json.loads(record_path(out).read_text()), r


def test_cli_export_writes_a_checked_onnx_and_its_record(exported, student, shapes_data):
    out, rec, run = exported
    last = run.stdout.strip().splitlines()[-1]  # after the COCO API's loading messages
    assert out.is_file() and last.startswith(f"wrote {out} and {record_path(out)}: box AP")
    assert sorted(p.name for p in out.parent.iterdir()) == ["student.onnx", "student.onnx.json"]
    for key in RECORD_FIELDS:
        assert key in rec, key
    assert rec["config"] == RETINA and rec["checkpoint"] == str(student)
    assert rec["input_names"] == ["image"]
    assert rec["output_names"] == [f"{g}_{i}" for g in ("cls_score", "bbox_pred")
                                   for i in range(5)]
    assert rec["dynamic_axes"]["image"] == {"0": "batch", "2": "height", "3": "width"}
    assert set(rec["versions"]) == {"torch", "onnx", "onnxruntime"}
    assert rec["export_seconds"] > 0
    p = rec["parity"]
    assert p["images"] == 4 and p["same_detections"]
    assert p["detections"] > 0, "no detections: the parity check would be vacuous"
    assert p["max_abs_diff_raw"] <= RAW_ATOL
    assert p["max_abs_diff_box_px"] <= BOX_ATOL and p["max_abs_diff_score"] <= SCORE_ATOL
    assert p["AP_diff"] <= AP_ATOL and abs(p["AP_onnx"] - p["AP_pytorch"]) <= AP_ATOL
    assert p["split_detections"]["onnx"] == p["split_detections"]["pytorch"] > 0
    # the PyTorch side of the check is what `mtpd evaluate` scores
    from mtpd.evaluate import evaluate

    metrics = evaluate(RETINA, student, shapes_data, out.parent.parent / "m.json", split="val",
                       num_workers=0)
    assert metrics["AP"] == p["AP_pytorch"]


def test_onnx_batch_of_two_and_other_sizes_match_pytorch(exported, student, shapes_data):
    """The file was traced on one image: a batch of 2 gives PyTorch's detections, and an input
    of another size gives PyTorch's raw outputs (batch, height and width are dynamic)."""
    import torch

    from mtpd.data.manifest import DatasetManifest
    from mtpd.evaluate import build_test_model
    from mtpd.export import _graph_module

    out, _, _ = exported
    model, _ = build_test_model(RETINA, student, DatasetManifest.load(shapes_data), "val",
                                "cpu", num_workers=0)
    detector = OnnxDetector(RETINA, out, shapes_data, "val")
    batch = next(iter(detector.dataloader()))
    batch = {k: v[:2] for k, v in batch.items()}
    image, _ = detector.preprocess(batch)
    assert image.shape[0] == 2 and all(o.shape[0] == 2 for o in detector.run(image))
    with torch.no_grad():
        ref = model.test_step(batch)
    got = detector.predict(batch)
    assert len(got) == 2 and sum(len(s.pred_instances) for s in got) > 0
    for r, g in zip(ref, got, strict=True):
        assert r.img_id == g.img_id and len(r.pred_instances) == len(g.pred_instances)
        torch.testing.assert_close(g.pred_instances.labels, r.pred_instances.labels, rtol=0,
                                   atol=0)
        torch.testing.assert_close(g.pred_instances.bboxes, r.pred_instances.bboxes, rtol=0,
                                   atol=BOX_ATOL)
        torch.testing.assert_close(g.pred_instances.scores, r.pred_instances.scores, rtol=0,
                                   atol=SCORE_ATOL)

    other = torch.randn(3, 3, 96, 160)
    with torch.no_grad():
        ref_raw = _graph_module(model, RETINA)(other)
    got_raw = detector.run(other.numpy())
    assert got_raw[0].shape == (3, 24, 12, 20)  # stride 8, 2 anchors x 12 classes
    for r, g in zip(ref_raw, got_raw, strict=True):
        assert r.shape == g.shape and np.abs(r.numpy() - g).max() <= RAW_ATOL


def test_two_stage_detector_is_refused_in_one_line(shapes_data, tmp_path, capsys):
    out = tmp_path / "mask.onnx"
    with pytest.raises(ModelConfigError) as e:
        export_onnx(MASK_RCNN, tmp_path / "never-read.pth", shapes_data, "val", out)
    msg = str(e.value)
    assert "\n" not in msg and one_line(e.value) == msg
    assert MASK_RCNN in msg and "MaskRCNN" in msg and "single-stage" in msg
    from mtpd.cli import main

    rc = main(["export", "--config", MASK_RCNN, "--checkpoint", str(tmp_path / "x.pth"),
               "--dataset", str(shapes_data), "--split", "val", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [f"mtpd export: error: {msg}"]
    assert list(tmp_path.iterdir()) == []


def test_failed_parity_writes_nothing(student, shapes_data, tmp_path, monkeypatch):
    """An AP tolerance no export can meet (-1) stands for any parity failure: the error names
    the check, and neither the ONNX file nor its record (nor a temporary file) is left."""
    import mtpd.export

    monkeypatch.setattr(mtpd.export, "AP_ATOL", -1.0)
    with pytest.raises(MtpdError, match=r"fails its parity check on 'val': box AP .* apart"):
        export_onnx(RETINA, student, shapes_data, "val", tmp_path / "m.onnx", parity_images=1)
    assert list(tmp_path.iterdir()) == []


def test_parity_failures_name_each_tolerance():
    ok = {"max_abs_diff_raw": 0.0, "same_detections": True, "mismatches": [],
          "max_abs_diff_box_px": 0.0, "max_abs_diff_score": 0.0, "AP_onnx": 50.0,
          "AP_pytorch": 50.0, "AP_diff": 0.0}
    assert parity_failures(ok) == []
    bad = {**ok, "max_abs_diff_box_px": 2 * BOX_ATOL, "same_detections": False,
           "mismatches": ["image 3: 5 vs 4 detections"], "AP_onnx": 49.0, "AP_diff": 1.0}
    fails = parity_failures(bad)
    assert len(fails) == 3 and "image 3" in fails[0] and "px" in fails[1] and "AP" in fails[2]


def test_import_is_light():
    code = ("import sys, mtpd.export; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'mmdet', 'mmengine', 'onnx', 'onnxruntime'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
