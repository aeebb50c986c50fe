"""Argoverse-HD's annotation layout, converted to plain COCO, and its classes.

Argoverse-HD ships COCO-like JSONs (`train.json`, `val.json`, `test-meta.json`) whose images
carry `id, sid, fid, name, width, height` but no `file_name`: an image lives at
`<data_root>/<seq_dirs[sid]>/<name>` (data_root: `Argoverse-1.1/tracking`). MMDetection's
CocoDataset and pycocotools need `file_name`, so `to_coco` writes a standard COCO file beside it.

Its 8 classes have 0-based ids and underscore names (`traffic_light`, `stop_sign`), unlike
MMDetection's COCO names (`traffic light`): a lookup by MMDetection's names silently drops them.
A COCO-trained (80-class) detector needs `COCO_TO_ARGOVERSE`; an 8-class detector must not get
it (its labels already are Argoverse's). `class_mapping` decides which applies.

No heavy imports: the CLI and the Snakefile may load this module.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from mtpd.data.fixes import id_offset
from mtpd.errors import DatasetError
from mtpd.io import atomic_write_json, read_json_file

ARGOVERSE_CLASSES = ("person", "bicycle", "car", "motorcycle", "bus", "truck",
                     "traffic_light", "stop_sign")
NATIVE_SIZE = (1920, 1200)  # (width, height) of every Argoverse-HD frame
FPS = 30.0

# The 80 COCO classes in the order of MMDetection's contiguous labels (what a COCO model predicts).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")

# Contiguous COCO label -> Argoverse-HD category id (0..7).
COCO_TO_ARGOVERSE: dict[int, int] = {0: 0, 1: 1, 2: 2, 3: 3, 5: 4, 7: 5, 9: 6, 11: 7}

IMAGE_KEYS = ("id", "sid", "fid", "name", "width", "height")
ANNOTATION_KEYS = ("id", "image_id", "category_id", "bbox")


def _read_json(path: Path) -> dict:
    """The JSON object in `path`, or a DatasetError naming the file."""
    raw = read_json_file(path, "Argoverse-HD annotation file", DatasetError,
                         "give the path of train.json, val.json or test-meta.json")
    if not isinstance(raw, dict):
        raise DatasetError(f"{path} holds a JSON {type(raw).__name__}, not an object with "
                           "'images', 'categories', 'sequences' and 'seq_dirs'")
    return raw


def _require(raw: dict, path: Path, keys: tuple[str, ...]) -> None:
    """Top-level keys that an Argoverse-HD file must have."""
    for key in keys:
        if key not in raw:
            raise DatasetError(f"{path} lacks the top-level key '{key}'; an Argoverse-HD file "
                               "has 'images', 'categories', 'sequences' and 'seq_dirs' (plain "
                               "COCO files need no conversion: use `mtpd data manifest`)")


def _check_items(items: list[dict], keys: tuple[str, ...], path: Path, where: str) -> None:
    """Every item of `where` has `keys`; the first that lacks one is named."""
    for i, item in enumerate(items):
        missing = [k for k in keys if k not in item]
        if missing:
            raise DatasetError(f"{path}: {where}[{i}] lacks {missing} (it has "
                               f"{sorted(item)}); every entry needs {list(keys)}")


def _coco_images(images: list[dict], seq_dirs: list[str], path: Path) -> list[dict]:
    """Images with `file_name = seq_dirs[sid]/name`; everything else kept."""
    out = []
    for i, img in enumerate(images):
        sid = img["sid"]
        if not isinstance(sid, int) or not 0 <= sid < len(seq_dirs):
            raise DatasetError(f"{path}: images[{i}] (id {img['id']}) has sid {sid!r}, but "
                               f"'seq_dirs' has {len(seq_dirs)} entries (valid sid: 0.."
                               f"{len(seq_dirs) - 1}); fix the image's sid or the seq_dirs list")
        out.append({**img, "file_name": f"{seq_dirs[sid].rstrip('/')}/{img['name']}"})
    return out


def _coco_annotations(anns: list[dict], image_ids: set[int], path: Path
                      ) -> tuple[list[dict], int]:
    """Annotations with `iscrowd` and `area` filled in, and ids shifted to start at 1 if needed.

    pycocotools and faster-coco-eval treat a matched ground truth of id 0 as unmatched (they
    store the matched id and test it for non-zero), so a 0-based id would turn a perfect
    detection into a false positive; the shift is `mtpd.data.fixes.id_offset`, the rule the
    dataset check applies to any COCO file. Returns the annotations and the offset added to
    every id (0 if none)."""
    _check_items(anns, ANNOTATION_KEYS, path, "annotations")
    ids = [a["id"] for a in anns]
    if len(set(ids)) != len(ids):
        raise DatasetError(f"{path}: annotation ids are not unique; every annotation needs its "
                           "own 'id'")
    offset = id_offset(ids)
    out = []
    for i, a in enumerate(anns):
        if a["image_id"] not in image_ids:
            raise DatasetError(f"{path}: annotations[{i}] refers to image_id {a['image_id']}, "
                               "which no entry of 'images' has")
        w, h = a["bbox"][2], a["bbox"][3]
        out.append({**a, "id": a["id"] + offset, "iscrowd": a.get("iscrowd", 0),
                    "area": a.get("area", w * h)})
    return out, offset


def to_coco(ann_file: str | Path, out_file: str | Path,
            data_root_hint: str | Path | None = None) -> dict[str, Any]:
    """Writes `ann_file` (Argoverse-HD layout) as a standard COCO file at `out_file`.

    Images gain `file_name = seq_dirs[sid]/name`; ids, category ids and the extra keys stay.
    With `data_root_hint` (the directory image paths are relative to), the first frame of every
    sequence must exist there, so a wrong data root fails here rather than mid-evaluation.
    Returns counts: images, annotations, sequences, categories, annotation_id_offset."""
    path = Path(ann_file)
    raw = _read_json(path)
    _require(raw, path, ("images", "categories", "sequences", "seq_dirs"))
    seq_dirs, sequences = raw["seq_dirs"], raw["sequences"]
    if len(seq_dirs) != len(sequences):
        raise DatasetError(f"{path}: 'seq_dirs' has {len(seq_dirs)} entries but 'sequences' "
                           f"{len(sequences)}; they must list the same sequences in one order")
    _check_items(raw["images"], IMAGE_KEYS, path, "images")
    _check_items(raw["categories"], ("id", "name"), path, "categories")
    images = _coco_images(raw["images"], seq_dirs, path)
    anns, offset = _coco_annotations(raw.get("annotations", []), {i["id"] for i in images}, path)
    if data_root_hint is not None:
        _check_frames(images, Path(data_root_hint), path)
    coco = {k: v for k, v in raw.items() if k not in ("images", "annotations")}
    coco.update(images=images, annotations=anns)
    atomic_write_json(out_file, coco)
    return {"ann_file": str(path), "out_file": str(out_file), "images": len(images),
            "annotations": len(anns), "sequences": len(sequences),
            "categories": len(raw["categories"]), "has_annotations": "annotations" in raw,
            "annotation_id_offset": offset}


def _check_frames(images: list[dict], data_root: Path, path: Path) -> None:
    """The first frame of each sequence exists under `data_root`."""
    seen: set[int] = set()
    for img in images:
        if img["sid"] in seen:
            continue
        seen.add(img["sid"])
        frame = data_root / img["file_name"]
        if not frame.is_file():
            raise DatasetError(f"{path}: image {img['file_name']} is not under the data root "
                               f"{data_root} ({frame} does not exist); give the directory that "
                               "holds the sequence directories (Argoverse-1.1/tracking)")


def _norm(name: str) -> str:
    """Class names compared loosely: `traffic light` == `traffic_light` == `Traffic-Light`."""
    return name.lower().replace("_", " ").replace("-", " ").strip()


def class_mapping(model_classes: list[str] | tuple[str, ...],
                  dataset_classes: list[str] | tuple[str, ...]) -> dict[int, int] | None:
    """How a detector's labels become the dataset's: None when they already are.

    None when both class lists match by name (an 8-class Argoverse model: no mapping), the
    COCO -> Argoverse mapping for an 80-class COCO model on Argoverse's 8 classes; any other
    pair is refused, since a silent partial mapping would only lower AP."""
    model = [_norm(c) for c in model_classes]
    data = [_norm(c) for c in dataset_classes]
    if model == data:
        return None
    if model == [_norm(c) for c in COCO_CLASSES] and data == [_norm(c) for c in ARGOVERSE_CLASSES]:
        return dict(COCO_TO_ARGOVERSE)
    raise DatasetError(f"the model's classes {list(model_classes)} do not fit the dataset's "
                       f"classes {list(dataset_classes)}; mtpd maps only COCO's 80 classes to "
                       "Argoverse-HD's 8, otherwise the model must be trained on the dataset's "
                       "classes")
