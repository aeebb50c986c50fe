"""COCOeval speed and parity: pycocotools against faster-coco-eval, bbox and segm, in one run.

Generates a synthetic COCO problem from a seed (several categories, small/medium/large objects,
crowd regions as uncompressed RLE, every GT and detection mask as compressed RLE; one category
has no detections, one has no GT, some images have no GT) and scores the same results with both
backends through `mtpd.evaluate.coco_api`, i.e. exactly as `coco_eval` runs them. Prints wall
seconds (median of --repeats), speed-ups and the max absolute difference of the 12 `stats`.

    .venv/bin/python benchmarks/coco_eval_speed.py [--images 5000 --dets-per-image 100]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

NUM_CATEGORIES = 7  # 1..5 shared; 6 has GT but no detections; 7 has detections but no GT
GT_ONLY_CAT, DET_ONLY_CAT = 6, 7
BACKENDS = ("pycocotools", "faster_coco_eval")
IOU_TYPES = ("bbox", "segm")


def _boxes(rng: np.random.Generator, n: int, w: int, h: int) -> np.ndarray:
    """n random xywh boxes inside a w x h image; log-uniform sides span COCO's three sizes."""
    side = np.exp(rng.uniform(np.log(6), np.log(min(w, h) * 0.9), n))
    aspect = np.exp(rng.uniform(-0.7, 0.7, n))
    bw = np.minimum(side * aspect, w - 1.0)
    bh = np.minimum(side / aspect, h - 1.0)
    x = rng.uniform(0, w - bw)
    y = rng.uniform(0, h - bh)
    return np.stack([x, y, bw, bh], axis=1)


def _jitter(rng: np.random.Generator, boxes: np.ndarray, scale: float, w: int, h: int
            ) -> np.ndarray:
    """Boxes moved and resized by about `scale` of their size, clipped to the image."""
    bw = boxes[:, 2] * np.exp(rng.normal(0, scale, len(boxes)))
    bh = boxes[:, 3] * np.exp(rng.normal(0, scale, len(boxes)))
    x = boxes[:, 0] + rng.normal(0, scale, len(boxes)) * boxes[:, 2]
    y = boxes[:, 1] + rng.normal(0, scale, len(boxes)) * boxes[:, 3]
    x0, y0 = np.clip(x, 0, w - 2), np.clip(y, 0, h - 2)
    x1, y1 = np.clip(x + bw, x0 + 1, w), np.clip(y + bh, y0 + 1, h)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def _polygons(rng: np.random.Generator, boxes: np.ndarray, vertices: int = 12) -> np.ndarray:
    """One irregular ellipse-like polygon inscribed in each box, as [x0, y0, x1, y1, ...]."""
    angle = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    radius = rng.uniform(0.75, 1.0, (len(boxes), vertices))
    cx = boxes[:, :1] + boxes[:, 2:3] / 2
    cy = boxes[:, 1:2] + boxes[:, 3:4] / 2
    px = cx + radius * np.cos(angle) * boxes[:, 2:3] / 2
    py = cy + radius * np.sin(angle) * boxes[:, 3:4] / 2
    return np.stack([px, py], axis=2).reshape(len(boxes), 2 * vertices)


def _rles(polygons: np.ndarray, w: int, h: int) -> list[dict]:
    """Compressed RLE masks (JSON-ready, `counts` as str) of `polygons`."""
    from pycocotools import mask as mask_utils

    if len(polygons) == 0:
        return []
    rles = mask_utils.frPyObjects([list(p) for p in polygons], h, w)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def _crowd_rle(rng: np.random.Generator, w: int, h: int) -> dict:
    """A crowd region, a union of a few blobs, as uncompressed RLE like COCO's own crowds."""
    from pycocotools import mask as mask_utils

    blobs = _boxes(rng, int(rng.integers(2, 5)), w, h)
    rles = mask_utils.frPyObjects([list(p) for p in _polygons(rng, blobs)], h, w)
    flat = mask_utils.decode(mask_utils.merge(rles)).flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [len(flat)]])
    counts = np.diff(edges).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": [h, w], "counts": counts}


def _to_rle(seg: Any, w: int, h: int) -> dict:
    """Any COCO segmentation (polygons, uncompressed or compressed RLE) as compressed RLE."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    return mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg


def _gt_annotations(rng: np.random.Generator, img_id: int, w: int, h: int, next_id: int,
                    polygons: bool) -> list[dict]:
    """Instances (ellipse masks as RLE, or as polygons if `polygons`; tight boxes) and, in about
    a third of the images, a crowd."""
    from pycocotools import mask as mask_utils

    n = int(rng.integers(0, 13))
    cats = rng.integers(1, GT_ONLY_CAT + 1, n)
    polys = _polygons(rng, _boxes(rng, n, w, h))
    segs: list[Any] = [[p.tolist()] for p in polys] if polygons else _rles(polys, w, h)
    if rng.random() < 0.35:
        segs.append(_crowd_rle(rng, w, h))
        cats = np.append(cats, rng.integers(1, GT_ONLY_CAT))
    anns = []
    for i, seg in enumerate(segs):
        crowd = isinstance(seg, dict) and isinstance(seg["counts"], list)
        rle = _to_rle(seg, w, h)
        anns.append({"id": next_id + i, "image_id": img_id, "category_id": int(cats[i]),
                     "segmentation": seg, "area": float(mask_utils.area(rle)),
                     "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": int(crowd)})
    return anns


def _detections(rng: np.random.Generator, img_id: int, w: int, h: int, gts: list[dict],
                n: int) -> tuple[list[dict], list[dict]]:
    """n detections: noisy copies of the GT (crowds included; sometimes the wrong class) with
    higher scores, then random boxes; as bbox results and as segm results (mask only)."""
    gt_boxes = np.array([g["bbox"] for g in gts]).reshape(-1, 4)
    gt_cats = np.array([g["category_id"] for g in gts], dtype=int)
    near = min(n, 2 * len(gts))
    src = rng.integers(0, len(gts), near) if near else np.zeros(0, dtype=int)
    boxes = np.concatenate([_jitter(rng, gt_boxes[src], 0.12, w, h),
                            _boxes(rng, n - near, w, h)])
    cats = np.concatenate([gt_cats[src], rng.integers(1, GT_ONLY_CAT, n - near)])
    cats[cats == GT_ONLY_CAT] = DET_ONLY_CAT  # category 6 is never predicted
    wrong = rng.random(n) < 0.1
    cats[wrong] = rng.choice([1, 2, 3, 4, 5, DET_ONLY_CAT], int(wrong.sum()))
    scores = np.concatenate([rng.uniform(0.3, 1.0, near), rng.uniform(0.0, 0.7, n - near)])
    bbox_res, segm_res = [], []
    rles = _rles(_polygons(rng, boxes), w, h)
    for box, cat, score, rle in zip(boxes, cats, scores, rles, strict=True):
        common = {"image_id": img_id, "category_id": int(cat), "score": float(score)}
        bbox_res.append({**common, "bbox": [float(v) for v in box]})
        segm_res.append({**common, "segmentation": rle})
    return bbox_res, segm_res


def make_problem(images: int, dets_per_image: int, seed: int, polygons: bool = False
                 ) -> tuple[dict, list[dict], list[dict]]:
    """A deterministic synthetic COCO problem: (GT dataset, bbox results, segm results);
    `polygons` stores the GT instances (not the crowds) as polygons instead of RLE."""
    rng = np.random.default_rng(seed)
    gt: dict[str, Any] = {"images": [], "annotations": [], "categories": [
        {"id": c, "name": f"c{c}"} for c in range(1, NUM_CATEGORIES + 1)]}
    bbox_res: list[dict] = []
    segm_res: list[dict] = []
    for img_id in range(1, images + 1):
        w, h = int(rng.integers(320, 801)), int(rng.integers(240, 641))
        gt["images"].append({"id": img_id, "width": w, "height": h, "file_name": f"{img_id}.jpg"})
        anns = _gt_annotations(rng, img_id, w, h, len(gt["annotations"]) + 1, polygons)
        gt["annotations"] += anns
        b, s = _detections(rng, img_id, w, h, anns, dets_per_image)
        bbox_res += b
        segm_res += s
    return gt, bbox_res, segm_res


def run_once(backend: str, gt_file: Path, results: list[dict], iou_type: str
             ) -> tuple[float, float, np.ndarray, Any]:
    """One evaluation as `coco_eval` runs it: (load seconds, COCOeval seconds, stats, params)."""
    from mtpd.evaluate import coco_api

    COCO, COCOeval = coco_api(backend)
    results = [dict(r) for r in results]  # the libraries add keys to the dicts they get
    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        dt = (gt := COCO(str(gt_file))).loadRes(results)
        t1 = time.perf_counter()
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, np.asarray(ev.stats[:12], dtype=float), ev.params


def same_params(a: Any, b: Any) -> bool:
    """Whether two COCOeval runs used the same thresholds, ranges, maxDets, ids and useCats."""
    keys = ("iouThrs", "recThrs", "maxDets", "areaRng", "areaRngLbl", "useCats", "imgIds",
            "catIds")
    return all(np.array_equal(np.asarray(getattr(a, k)), np.asarray(getattr(b, k)))
               for k in keys)


def measure(gt_file: Path, results: list[dict], iou_type: str, repeats: int
            ) -> dict[str, tuple[float, float, np.ndarray, Any]]:
    """Per backend: median load and eval seconds over `repeats`, last stats and params."""
    out = {}
    for backend in BACKENDS:
        runs = [run_once(backend, gt_file, results, iou_type) for _ in range(repeats)]
        out[backend] = (statistics.median(r[0] for r in runs),
                        statistics.median(r[1] for r in runs), runs[-1][2], runs[-1][3])
    return out


def report(iou_type: str, m: dict[str, tuple[float, float, np.ndarray, Any]]) -> None:
    """Prints one iou type's timings, speed-ups and parity."""
    for backend in BACKENDS:
        load, ev, stats, _ = m[backend]
        print(f"{iou_type:4s}  {backend:16s}  load {load:8.2f} s  COCOeval {ev:8.2f} s  "
              f"total {load + ev:8.2f} s  AP {stats[0]:.4f}")
    (lp, ep, sp, pp), (lf, ef, sf, pf) = m["pycocotools"], m["faster_coco_eval"]
    diff = np.abs(sp - sf)
    print(f"{iou_type:4s}  speed-up (pycocotools / faster_coco_eval): COCOeval {ep / ef:.1f}x, "
          f"total {(lp + ep) / (lf + ef):.1f}x")
    print(f"{iou_type:4s}  same params: {same_params(pp, pf)}; max |stats diff| {diff.max():.3g}"
          f" (at index {int(diff.argmax())}); per stat: {np.array2string(diff, precision=2)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--dets-per-image", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, help="timings are the median of these")
    a = p.parse_args()

    from importlib.metadata import version

    t0 = time.perf_counter()
    gt, bbox_res, segm_res = make_problem(a.images, a.dets_per_image, a.seed)
    n_crowd = sum(g["iscrowd"] for g in gt["annotations"])
    print(f"pycocotools {version('pycocotools')}, faster-coco-eval {version('faster-coco-eval')}"
          f"; {a.images} images, {len(gt['annotations'])} GT ({n_crowd} crowd), "
          f"{len(bbox_res)} detections, seed {a.seed}, median of {a.repeats}; "
          f"generated in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        gt_file = Path(tmp) / "gt.json"
        gt_file.write_text(json.dumps(gt))
        for iou_type, results in zip(IOU_TYPES, (bbox_res, segm_res), strict=True):
            report(iou_type, measure(gt_file, results, iou_type, a.repeats))


if __name__ == "__main__":
    main()
