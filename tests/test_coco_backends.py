"""Both COCO backends give the same 12 statistics, so switching the default changes no number."""
from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from mtpd.evaluate import ALL_STAT_NAMES, COCO_BACKENDS, STAT_NAMES, coco_eval
from tests.helpers import REPO

TOLERANCE = 1e-4 * 100  # 1e-4 absolute on COCOeval's 0..1 scale; coco_eval reports percent


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
