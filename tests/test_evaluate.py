"""Evaluation (mtpd/evaluate.py): COCO AP of perfect and empty detections, mask AP, a teacher
far below its recorded AP, and both COCO backends giving the same 12 statistics, so
switching the default changes no number."""
from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtpd.checkpoint import save_model_checkpoint
from mtpd.data.manifest import DatasetManifest
from mtpd.evaluate import ALL_STAT_NAMES, COCO_BACKENDS, STAT_NAMES, coco_eval, evaluate
from mtpd.train import train
from tests.helpers import REPO

MASK_RCNN = "mtpd::shapes/mask_rcnn_r18w16_shapes.py"
TOLERANCE = 1e-4 * 100  # 1e-4 absolute on COCOeval's 0..1 scale; coco_eval reports percent


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


# --- both COCO backends: the same 12 statistics -----------------------------------------------
def _generator():
    """The benchmark's problem generator (one generator for the benchmark and this test)."""
    spec = importlib.util.spec_from_file_location("coco_eval_speed",
                                                  REPO / "benchmarks" / "coco_eval_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=[False, True], ids=["rle_gt", "polygon_gt"])
def problem(request, tmp_path_factory) -> tuple[Path, dict, list[dict], list[dict]]:
    """60 images, crowds, masks, random detections; GT instances as RLE or as polygons."""
    gen = _generator()
    gt, bbox_res, segm_res = gen.make_problem(60, 40, seed=7, polygons=request.param)
    gt_file = tmp_path_factory.mktemp("coco") / "gt.json"
    gt_file.write_text(json.dumps(gt))
    return gt_file, gt, bbox_res, segm_res


def test_problem_is_not_trivial(problem):
    _, gt, bbox_res, _ = problem
    anns = gt["annotations"]
    assert sum(a["iscrowd"] for a in anns) >= 5
    assert len({a["image_id"] for a in anns}) < len(gt["images"])  # some images without GT
    areas = [a["area"] for a in anns]
    assert min(areas) < 32**2 and max(areas) > 96**2 and any(32**2 < s < 96**2 for s in areas)
    gt_cats = {a["category_id"] for a in anns}
    det_cats = {r["category_id"] for r in bbox_res}
    assert gt_cats - det_cats and det_cats - gt_cats  # a category unpredicted, one without GT


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_backends_agree_on_all_12_stats(problem, iou_type):
    gt_file, _, bbox_res, segm_res = problem
    results = bbox_res if iou_type == "bbox" else segm_res
    stats = {b: coco_eval(gt_file, results, iou_type, backend=b, all_stats=True)
             for b in COCO_BACKENDS}
    ref, fast = stats["pycocotools"], stats["faster_coco_eval"]
    assert list(ref) == list(ALL_STAT_NAMES) and list(fast) == list(ALL_STAT_NAMES)
    assert all(v is not None and 0 < v < 100 for v in ref.values())
    for name in ALL_STAT_NAMES:
        assert fast[name] == pytest.approx(ref[name], abs=TOLERANCE), name


@pytest.mark.parametrize("backend", COCO_BACKENDS)
def test_results_are_not_modified(problem, backend):
    gt_file, _, bbox_res, segm_res = problem
    for iou_type, results in (("bbox", bbox_res[:500]), ("segm", segm_res[:500])):
        before = copy.deepcopy(results)
        coco_eval(gt_file, results, iou_type, backend=backend)
        assert results == before


def _as_rle(seg: dict | list, img: dict) -> dict:
    """A GT segmentation as a result's compressed RLE (results cannot carry polygons)."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, dict):
        return seg
    rle = mask_utils.merge(mask_utils.frPyObjects(seg, img["height"], img["width"]))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _perfect(gt: dict, iou_type: str) -> list[dict]:
    """The non-crowd ground truth as detections with score 1."""
    imgs = {img["id"]: img for img in gt["images"]}
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
             **({"bbox": a["bbox"]} if iou_type == "bbox" else
                {"segmentation": _as_rle(a["segmentation"], imgs[a["image_id"]])})}
            for a in gt["annotations"] if not a["iscrowd"]]


@pytest.mark.parametrize("backend", COCO_BACKENDS)
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_perfect_detections_give_100(problem, backend, iou_type):
    gt_file, gt, _, _ = problem
    stats = coco_eval(gt_file, _perfect(gt, iou_type), iou_type, backend=backend)
    assert all(v == pytest.approx(100.0) for v in stats.values())


@pytest.mark.parametrize("backend", COCO_BACKENDS)
def test_empty_results_give_zeros(problem, backend):
    gt_file = problem[0]
    assert coco_eval(gt_file, [], "segm", backend=backend) == dict.fromkeys(STAT_NAMES, 0.0)
    assert coco_eval(gt_file, [], backend=backend, all_stats=True) == dict.fromkeys(
        ALL_STAT_NAMES, 0.0)


def test_unknown_backend_names_the_allowed_ones(problem):
    with pytest.raises(ValueError, match="allowed: faster_coco_eval, pycocotools"):
        coco_eval(problem[0], [], backend="detectron2")
