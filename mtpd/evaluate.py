"""The evaluation entry point: inference with a model checkpoint, then COCO evaluation.

Predictions are converted to COCO result format (boxes in xywh, masks as RLE) and scored by the
COCO evaluator (`evaluation.backend`: faster-coco-eval by default, pycocotools the reference),
so the same code scores offline AP and, later, pooled streaming AP.
Writes a metrics JSON: AP, AP50, AP75, APs, APm, APl (box) and the same with a `mask_` prefix
when the model predicts masks, plus what the checkpoint says about how it was trained and the
ground-truth file scored against (the checked copy's: `mtpd.data.checked`). What the
model *is* (teacher, baseline, which chain...) is said by its path (`mtpd.layout.describe`).
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mtpd import distributed
from mtpd.checkpoint import load_checkpoint_file, load_weights
from mtpd.data.checked import load_checked
from mtpd.data.manifest import DatasetManifest
from mtpd.devices import device_name
from mtpd.errors import TeacherCheckError
from mtpd.io import atomic_write_json
from mtpd.model_config import build_job_config, build_model
from mtpd.registry import register_all_modules

log = logging.getLogger("mtpd.evaluate")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# COCOeval's 12 summary statistics, in its `stats` order.
ALL_STAT_NAMES = (*STAT_NAMES, "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
COCO_BACKENDS = ("faster_coco_eval", "pycocotools")  # default: the schema's evaluation.backend


def coco_api(backend: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(COCO, COCOeval) factories of `backend`, imported lazily so only the chosen library must
    be installed; faster-coco-eval is pinned to plain COCO (no LVIS, no extra metrics) and silent.
    """
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, functools.partial(COCOeval_faster, print_function=lambda *a, **k: None,
                                       extra_calc=False, lvis_style=False, separate_eval=False)
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, COCOeval
    raise ValueError(f"unknown COCO backend {backend!r}; allowed: {', '.join(COCO_BACKENDS)}")


def coco_eval(gt_file: str | Path, results: list[dict], iou_type: str = "bbox", *,
              backend: str | None = None, all_stats: bool = False
              ) -> dict[str, float | None]:
    """Standard COCO evaluation (default parameters); AP values in percent.

    `all_stats` adds the six AR statistics (`ALL_STAT_NAMES`); `results` are left unchanged
    (both libraries add keys to the dicts they are given, so they get copies).
    """
    names = ALL_STAT_NAMES if all_stats else STAT_NAMES
    if backend is None:
        from mtpd.pipeline_config import default

        backend = default("evaluation.backend")
    COCO, COCOeval = coco_api(backend)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_file))
    if not results:
        return {name: 0.0 for name in names}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes([dict(r) for r in results])
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # COCO reports -1 where a size range has no ground truth: keep that as None.
    return {name: (round(float(v) * 100, 3) if v >= 0 else None)
            for name, v in zip(names, ev.stats[:len(names)], strict=True)}


def to_coco_results(sample: Any, cat_ids: list[int], class_map: dict[int, int] | None = None
                    ) -> tuple[list[dict], list[dict]]:
    """One DetDataSample's predictions as COCO bbox and segm results; with `class_map` (model
    label -> dataset label, `mtpd.data.argoverse.class_mapping`) unmapped labels are dropped."""
    from pycocotools import mask as mask_utils

    inst = sample.pred_instances
    img_id = int(sample.img_id)
    boxes = inst.bboxes.detach().cpu().numpy()
    scores = inst.scores.detach().cpu().numpy()
    labels = inst.labels.detach().cpu().numpy()
    masks = inst.masks.detach().cpu().numpy() if "masks" in inst else None
    bbox_res, segm_res = [], []
    for i in range(len(scores)):
        label = int(labels[i]) if class_map is None else class_map.get(int(labels[i]))
        if label is None:
            continue
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        common = {"image_id": img_id, "category_id": cat_ids[label],
                  "score": float(scores[i])}
        bbox_res.append({**common, "bbox": [x0, y0, x1 - x0, y1 - y0]})
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[i].astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            segm_res.append({**common, "segmentation": rle})
    return bbox_res, segm_res


def build_test_model(model_config: str, checkpoint: str | Path, manifest: DatasetManifest,
                     split: str, device: str, *, num_workers: int | None = None,
                     input_size: tuple[int, int] | None = None, keep_num_classes: bool = False,
                     ckpt: dict | None = None) -> tuple[Any, Any]:
    """The detector of `checkpoint` in eval mode on `device` and its job config for `split`
    (evaluation and streaming both run it). `keep_num_classes`: the model keeps its config's own
    classes (e.g. COCO's 80) instead of the dataset's, for a mapped evaluation."""
    register_all_modules()
    cfg = build_job_config(model_config, manifest, train_split=None, test_split=split,
                           num_workers=num_workers, input_size=input_size,
                           keep_num_classes=keep_num_classes)
    model = build_model(cfg.model, model_config)
    load_weights(model, checkpoint, model_config, ckpt)
    model.to(device).eval()
    return model, cfg


def predict(model_config: str, checkpoint: str | Path, ckpt: dict, manifest: DatasetManifest,
            split: str, num_workers: int | None = None,
            input_size: tuple[int, int] | None = None, model_classes: str | None = None
            ) -> tuple[list[dict], list[dict], float]:
    """Runs the detector (`ckpt`, loaded from `checkpoint`) over a split; returns bbox results,
    segm results and seconds per image. In a multi-process run each process predicts its share
    of the images and every process returns all of them. `model_classes` "coco": the model
    keeps COCO's 80 classes and its labels are mapped to the dataset's (Argoverse-HD's 8)."""
    import torch
    from mmengine.runner import Runner

    distributed.init_process_group()
    class_map = None
    if model_classes == "coco":
        from mtpd.data.argoverse import COCO_CLASSES, class_mapping

        class_map = class_mapping(COCO_CLASSES, manifest.classes)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, cfg = build_test_model(model_config, checkpoint, manifest, split, device,
                                  num_workers=num_workers, input_size=input_size,
                                  keep_num_classes=model_classes == "coco", ckpt=ckpt)
    cfg.test_dataloader["sampler"] = dict(type="DefaultSampler", shuffle=False, round_up=False)
    loader = Runner.build_dataloader(cfg.test_dataloader)
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        cat_ids = sorted(COCO(str(manifest.split(split).ann_file)).getCatIds())
    bbox_res: list[dict] = []
    segm_res: list[dict] = []
    n, t0 = 0, time.perf_counter()
    with torch.no_grad():
        for batch in loader:
            for sample in model.test_step(batch):
                b, s = to_coco_results(sample, cat_ids, class_map)
                bbox_res += b
                segm_res += s
                n += 1
    seconds = time.perf_counter() - t0
    shares = distributed.gather((bbox_res, segm_res, n, seconds))
    bbox_res = [r for share in shares for r in share[0]]
    segm_res = [r for share in shares for r in share[1]]
    images = sum(share[2] for share in shares)
    return bbox_res, segm_res, sum(share[3] for share in shares) / max(images, 1)


# What a metrics record copies from the checkpoint's meta (how the model was trained).
PROVENANCE = ("stage_epochs", "total_epochs", "train_seconds", "total_train_seconds", "seed")


def evaluate(model_config: str, checkpoint: str | Path, dataset: str | Path, out: str | Path, *,
             split: str, predictions: str | Path | None = None,
             num_workers: int | None = None, backend: str | None = None,
             input_size: tuple[int, int] | None = None, model_classes: str | None = None,
             expected: dict[str, float] | None = None, tolerance: float = 0.0
             ) -> dict[str, Any] | None:
    """Evaluates `checkpoint` on `split` and writes the metrics JSON at `out` (the first process
    of a multi-process run scores and writes; the others return None).

    `expected` ({"AP": 38.5, "mask_AP": ...}) is what a trained checkpoint is recorded to reach;
    falling more than `tolerance` points below it stops with an error and writes nothing."""
    manifest = load_checked(dataset)
    gt_file = manifest.split(split).ann_file
    ckpt = load_checkpoint_file(checkpoint)
    bbox_res, segm_res, sec_per_img = predict(model_config, checkpoint, ckpt, manifest, split,
                                              num_workers=num_workers, input_size=input_size,
                                              model_classes=model_classes)
    if distributed.rank() != 0:
        return None
    metrics: dict[str, Any] = coco_eval(gt_file, bbox_res, "bbox", backend=backend)
    if segm_res:
        mask = coco_eval(gt_file, segm_res, "segm", backend=backend)
        metrics.update({f"mask_{k}": v for k, v in mask.items()})
    meta = ckpt.get("meta", {}).get("mtpd", {})
    record = {"split": split, "checkpoint": str(checkpoint), "config": str(model_config),
              "ground_truth": str(gt_file), **metrics, "num_detections": len(bbox_res),
              "seconds_per_image": round(sec_per_img, 5), "device": device_name(),
              "processes": distributed.world_size(),
              **{key: meta.get(key) for key in PROVENANCE}}
    if meta.get("feature_loss") is not None and meta.get("feature_loss_split") == split:
        record["feature_loss"] = meta["feature_loss"]
        record["neg_feature_loss"] = -meta["feature_loss"]  # higher is better, like AP
    check_expected(checkpoint, split, record, expected or {}, tolerance)
    if predictions:
        atomic_write_json(predictions, {"bbox": bbox_res, "segm": segm_res})
    atomic_write_json(out, record)
    log.info("%s on %s: %s", checkpoint, split, json.dumps(metrics))
    return record


def check_expected(checkpoint: str | Path, split: str, record: dict[str, Any],
                   expected: dict[str, float], tolerance: float) -> None:
    """Stops a run whose teacher is far below its recorded AP: the usual cause is a config that
    does not match the checkpoint (num_classes, another architecture) or different data."""
    for key, want in expected.items():
        got = record.get(key)
        if got is None or got < want - tolerance:
            raise TeacherCheckError(
                f"TEACHER CHECK FAILED: {checkpoint} reaches {key} {got} on '{split}', but its "
                f"config records {want} (more than {tolerance} points below). Its model config "
                "does not match the checkpoint (num_classes? another architecture?) or the data "
                "differs from what it was evaluated on; fix the teacher's config, or its "
                "recorded box_ap / mask_ap")
