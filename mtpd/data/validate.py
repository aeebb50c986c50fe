"""Dataset validation: every problem of a COCO annotation file, named, before any training.

Why: a bad box, a dangling id or a missing image otherwise surfaces hours into a training job as
a NaN loss or a crash in a data worker, without saying which file or id is at fault. One pass
over each annotation file (plain dicts and sets, numpy for the boxes) finds them all, and each
kind of problem becomes one message naming the file, the first few ids, their count and the fix.
Quirks that would only skew AP (annotation id 0, `iscrowd` as a string, a missing `area`:
`mtpd.data.fixes`) are fixed in a checked copy, each fix said in the report.
A split that passes is cached by its file's sha256, so a re-run costs one hash per file.
"""
from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np

from mtpd.data import fixes as coco_fixes
from mtpd.data.image_size import HEAD, header_size
from mtpd.data.manifest import DatasetManifest, Split
from mtpd.errors import DatasetError
from mtpd.io import atomic_write_json, sha256sum

VERSION = 2  # bump when a check changes: cached results and checked manifests of older checks
# are then ignored (2: COCO quirks fixed in the checked copy, image sizes against their files)
FEW = 5  # ids named in one message
TOLERANCE = 1.0  # pixels a box may stick out of its image (rounding in exporters)
DROP_KEY = "dataset.drop_bad_boxes"
IO_THREADS = 8  # image probes wait on the disk (network file systems), not on the CPU
_CHUNK = 512  # images per probe task, so 100k images do not make 100k futures
_MAGIC = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),  # PNG
    (0, b"BM"),  # BMP
    (0, b"II*\x00"),  # TIFF, little-endian
    (0, b"MM\x00*"),  # TIFF, big-endian
    (8, b"WEBP"),  # WebP (after b"RIFF" + size)
)
_FORMATS = "JPEG, PNG, BMP, WebP or TIFF"
_ID_TYPES = (int, str)  # COCO uses ints; strings work with pycocotools and MMDetection too
_NUM_TYPES = (int, float)


class DatasetProblems(DatasetError):
    """Every problem of a dataset, one per line after a heading; `problems` lists them."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        super().__init__(f"dataset {path}: {_plural(len(problems), 'problem', 'problems')}; fix "
                         "them and run again:\n" + "\n".join(problems))


@dataclass
class SplitReport:
    """What one annotation file holds and what is wrong with it (empty `problems`: usable)."""

    ann_file: Path
    img_dir: Path
    sha256: str = ""
    num_images: int = 0
    num_annotations: int = 0  # in the source file, dropped boxes included
    num_categories: int = 0
    categories: dict[Any, str] = field(default_factory=dict)  # id -> name
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # not fatal, e.g. the boxes dropped
    fixes: list[str] = field(default_factory=list)  # what the checked copy changes, and why
    dropped_boxes: int = 0
    dropped_ids: list[Any] = field(default_factory=list)  # the first few
    cleaned_file: Path | None = None
    cleaned_sha256: str | None = None
    seconds: float = 0.0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def use_ann_file(self) -> Path:
        """The annotation file training should read: the cleaned one when boxes were dropped or
        quirks fixed."""
        return self.cleaned_file or self.ann_file

    def to_json(self) -> dict[str, Any]:
        """A JSON object; categories as [id, name] pairs so integer ids stay integers."""
        return {
            "ann_file": str(self.ann_file), "img_dir": str(self.img_dir), "sha256": self.sha256,
            "images": self.num_images, "annotations": self.num_annotations,
            "categories": self.num_categories, "dropped_boxes": self.dropped_boxes,
            "dropped_ids": self.dropped_ids,
            "cleaned_file": None if self.cleaned_file is None else str(self.cleaned_file),
            "cleaned_sha256": self.cleaned_sha256, "use_ann_file": str(self.use_ann_file),
            "seconds": round(self.seconds, 3), "cached": self.cached, "notes": self.notes,
            "fixes": self.fixes,
            "problems": self.problems, "category_names": [[k, v] for k, v in
                                                          self.categories.items()],
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SplitReport:
        cleaned = d.get("cleaned_file")
        return cls(
            ann_file=Path(d["ann_file"]), img_dir=Path(d["img_dir"]), sha256=d["sha256"],
            num_images=d["images"], num_annotations=d["annotations"],
            num_categories=d["categories"], categories={k: v for k, v in d["category_names"]},
            problems=list(d["problems"]), notes=list(d["notes"]), fixes=list(d["fixes"]),
            dropped_boxes=d["dropped_boxes"], dropped_ids=list(d["dropped_ids"]),
            cleaned_file=None if cleaned is None else Path(cleaned),
            cleaned_sha256=d.get("cleaned_sha256"), seconds=d["seconds"], cached=d["cached"])


# --- message helpers ---------------------------------------------------------------------------

def _show(value: Any) -> str:
    """An id as a user would type it: 7, 'a', null."""
    return json.dumps(value) if isinstance(value, (int, float, type(None))) else repr(value)


def _few(items: Sequence[Any], n: int = FEW, total: int | None = None) -> str:
    """The first `n` items and how many more (of `total`), so a message stays one line."""
    total = len(items) if total is None else total
    shown = ", ".join(x if isinstance(x, str) else _show(x) for x in items[:n])
    return shown + (f" and {total - n} more" if total > n else "")


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _ann_label(ids: Sequence[Any], k: int) -> str:
    """An annotation by id, or by position where it has no usable id."""
    return _show(ids[k]) if ids[k] is not None else f"#{k} (no id)"


def _few_anns(ids: Sequence[Any], positions: Sequence[int]) -> str:
    """The first few annotations at `positions`, labelled only those (800k bad boxes happen)."""
    return _few([_ann_label(ids, k) for k in positions[:FEW]], total=len(positions))


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Pauses the cyclic garbage collector: parsing builds millions of acyclic containers, and
    its full collections over them cost about a third of the parse time of a large file."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# --- loading -----------------------------------------------------------------------------------

def _load(report: SplitReport) -> dict[str, Any] | None:
    """Parses the file and checks the COCO top level; problems go into `report`."""
    f = report.ann_file
    try:
        raw = f.read_bytes()
    except OSError as e:
        report.problems.append(f"{f}: cannot read the annotation file ({e.strerror}); check the "
                               "path and its permissions")
        return None
    report.sha256 = hashlib.sha256(raw).hexdigest()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as e:
        report.problems.append(f"{f}: not valid JSON ({e}); fix the file or export it again")
        return None
    del raw
    if not isinstance(data, dict):
        report.problems.append(
            f"{f}: the top level is a JSON {type(data).__name__}, not a COCO object; a COCO file "
            "is an object with 'images', 'annotations' and 'categories' lists")
        return None
    lacking = [k for k in ("images", "annotations", "categories")
               if not isinstance(data.get(k), list)]
    if lacking:
        report.problems.append(
            f"{f}: not a COCO annotation object: {', '.join(repr(k) for k in lacking)} "
            f"{'is' if len(lacking) == 1 else 'are'} missing or not a list (keys found: "
            f"{', '.join(sorted(map(str, data))) or 'none'}); a COCO file is an object with "
            "'images', 'annotations' and 'categories' lists")
        return None
    if not data["categories"]:
        report.problems.append(
            f"{f}: the 'categories' list is empty; list every class, e.g. "
            '{"id": 1, "name": "person"}')
        return None
    return data


def _objects(report: SplitReport, data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The entries of one top-level list that are JSON objects; the others are a problem."""
    items = data[key]
    if all(type(x) is dict for x in items):
        return items
    bad = [k for k, x in enumerate(items) if type(x) is not dict]
    report.problems.append(
        f"{report.ann_file}: {_plural(len(bad), 'entry', 'entries')} of '{key}' "
        f"{'is' if len(bad) == 1 else 'are'} not a JSON object (positions {_few(bad)}); make "
        f"every entry of '{key}' an object")
    return [x for x in items if type(x) is dict]


def _norm_ids(values: list[Any]) -> list[Any]:
    """Ids with anything but an int or a str (missing, null, list, bool) replaced by None."""
    if set(map(type, values)) <= set(_ID_TYPES):
        return values
    return [v if type(v) in _ID_TYPES else None for v in values]


def _ids(report: SplitReport, items: list[dict[str, Any]], one: str, many: str) -> list[Any]:
    """The `id` of every entry; missing and duplicate ids are problems."""
    f = report.ann_file
    ids = _norm_ids([x.get("id") for x in items])
    missing = [k for k, v in enumerate(ids) if v is None]
    if missing:
        report.problems.append(
            f"{f}: {_plural(len(missing), one, many)} {'has' if len(missing) == 1 else 'have'} "
            f"no integer 'id' (positions {_few(missing)} in '{many}'); give every {one} a "
            "unique integer id")
    valid = [v for v in ids if v is not None]
    if len(set(valid)) < len(valid):
        dups = [(v, c) for v, c in Counter(valid).items() if c > 1]
        shown = [f"{_show(v)} ({c} times)" for v, c in dups]
        report.problems.append(
            f"{f}: duplicate {one} ids, {_plural(len(dups), 'id', 'ids')} used more than once: "
            f"{_few(shown)}; give every {one} a unique id")
    return ids


# --- the three lists ---------------------------------------------------------------------------

def _check_categories(report: SplitReport, cats: list[dict[str, Any]]) -> set[Any]:
    """Records id -> name; returns the valid category ids."""
    ids = _ids(report, cats, "category", "categories")
    unnamed = [_ann_label(ids, k) for k, c in enumerate(cats)
               if not isinstance(c.get("name"), str) or not c["name"]]
    if unnamed:
        report.problems.append(
            f"{report.ann_file}: {_plural(len(unnamed), 'category has', 'categories have')} no "
            f"'name' (category ids {_few(unnamed)}); give every category a non-empty name")
    report.categories = {v: str(c.get("name")) for v, c in zip(ids, cats, strict=True)
                         if v is not None}
    report.num_categories = len(cats)
    return {v for v in ids if v is not None}


def _positive(v: Any) -> bool:
    return type(v) in _NUM_TYPES and 0 < v < float("inf")


_Size = tuple[float, float]  # (width, height) in pixels
_File = tuple[str, str, _Size | None]  # (image label, file_name, declared size)


def _check_images(report: SplitReport, images: list[dict[str, Any]]
                  ) -> tuple[set[Any], dict[Any, _Size], list[_File]]:
    """Image ids, sizes by id and (label, file_name, size) per file; images lacking a field are
    problems."""
    ids = _ids(report, images, "image", "images")
    sizes: dict[Any, _Size] = {}
    files: list[_File] = []
    lacking: dict[str, list[Any]] = {"file_name": [], "width": [], "height": []}
    for k, (i, im) in enumerate(zip(ids, images, strict=True)):
        label = _show(i) if i is not None else f"#{k}"
        name, w, h = im.get("file_name"), im.get("width"), im.get("height")
        w_ok, h_ok = _positive(w), _positive(h)
        if isinstance(name, str) and name:
            files.append((label, name, (float(w), float(h)) if w_ok and h_ok else None))
        else:
            lacking["file_name"].append(label)
        if not w_ok:
            lacking["width"].append(label)
        if not h_ok:
            lacking["height"].append(label)
        if i is not None and w_ok and h_ok:
            sizes[i] = (float(w), float(h))
    what = {"file_name": "a 'file_name' (the image's path under img_dir)",
            "width": "a positive number 'width' (pixels)",
            "height": "a positive number 'height' (pixels)"}
    for key, bad in lacking.items():
        if bad:
            report.problems.append(
                f"{report.ann_file}: {_plural(len(bad), 'image has', 'images have')} no "
                f"usable '{key}' (image ids {_few(bad)}); give every image {what[key]}")
    report.num_images = len(images)
    return {i for i in ids if i is not None}, sizes, files


def _few_distinct(values: list[Any]) -> str:
    """The first few distinct values and their count; lists and objects (unhashable) as JSON."""
    keys = list(dict.fromkeys(v if isinstance(v, (int, float, str, type(None)))
                              else ("json", json.dumps(v)) for v in values))
    shown = [k[1] if isinstance(k, tuple) else _show(k) for k in keys[:FEW]]
    return _few(shown, total=len(keys))


def _check_refs(report: SplitReport, ann_ids: list[Any], refs: list[Any], known: set[Any],
                kind: tuple[str, str], key: str) -> None:
    """Annotations whose `image_id` / `category_id` names no existing image / category."""
    bad = [k for k, v in enumerate(refs) if type(v) not in _ID_TYPES or v not in known]
    if not bad:
        return
    targets = _few_distinct([refs[k] for k in bad])
    labels = _few_anns(ann_ids, bad)
    report.problems.append(
        f"{report.ann_file}: {_plural(len(bad), 'annotation refers', 'annotations refer')} to "
        f"{kind[0]} ids that do not exist (annotation ids {labels}; '{key}' "
        f"{targets}); remove those annotations or add the missing {kind[1]}")


# --- boxes -------------------------------------------------------------------------------------

_BOX_WHAT = {
    "shape": "a 'bbox' that is not 4 numbers [x, y, width, height]",
    "nonfinite": "a box with NaN or infinite values",
    "nonpositive": "a box with zero or negative width or height",
    "outside": f"a box that lies outside its image by more than {TOLERANCE:g} px",
}


def _box_array(boxes: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) float boxes (NaN rows where unusable) and the mask of boxes that are 4 numbers."""
    shaped = np.fromiter((type(b) is list and len(b) == 4 for b in boxes), bool, len(boxes))
    types = {type(v) for b in compress(boxes, shaped) for v in b}
    if not types <= set(_NUM_TYPES):
        shaped &= np.fromiter((type(b) is list and len(b) == 4
                               and all(type(v) in _NUM_TYPES for v in b) for b in boxes),
                              bool, len(boxes))
    out = np.full((len(boxes), 4), np.nan)
    try:
        out[shaped] = np.array(list(compress(boxes, shaped)), dtype=np.float64).reshape(-1, 4)
    except OverflowError:  # integers beyond float range: convert one by one
        for k in np.flatnonzero(shaped):
            try:
                out[k] = [float(v) for v in boxes[k]]
            except OverflowError:
                shaped[k] = False
    return out, shaped


def _box_reasons(anns: list[dict[str, Any]], img_refs: list[Any],
                 sizes: dict[Any, tuple[float, float]]
                 ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per reason, the positions of the annotations whose box is unusable (one reason each),
    and the (n, 4) boxes (NaN rows where not 4 numbers)."""
    xywh, shaped = _box_array([a.get("bbox") for a in anns])
    nan2 = (np.nan, np.nan)
    wh = np.array([sizes.get(v, nan2) for v in img_refs], dtype=np.float64).reshape(-1, 2)
    finite = shaped & np.isfinite(xywh).all(axis=1)
    nonpositive = finite & ((xywh[:, 2] <= 0) | (xywh[:, 3] <= 0))
    sized = finite & ~nonpositive
    x, y, w, h = xywh.T
    outside = sized & ((x < -TOLERANCE) | (y < -TOLERANCE) | (x + w > wh[:, 0] + TOLERANCE)
                       | (y + h > wh[:, 1] + TOLERANCE))  # unknown sizes are NaN: never outside
    reasons = {"shape": ~shaped, "nonfinite": shaped & ~finite, "nonpositive": nonpositive,
               "outside": outside}
    return {k: np.flatnonzero(v) for k, v in reasons.items()}, xywh


def _box_example(anns: list[dict[str, Any]], img_refs: list[Any], ann_ids: list[Any], k: int,
                 reason: str, sizes: dict[Any, tuple[float, float]]) -> str:
    text = f"e.g. annotation {_ann_label(ann_ids, k)} has bbox {anns[k].get('bbox')!r}"
    if reason == "outside":
        w, h = sizes[img_refs[k]]
        text += f" in image {_show(img_refs[k])} of {w:g}x{h:g} px"
    return text if len(text) < 200 else text[:197] + "..."


def _check_boxes(report: SplitReport, anns: list[dict[str, Any]], ann_ids: list[Any],
                 img_refs: list[Any], sizes: dict[Any, tuple[float, float]], drop: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Bad boxes are problems, or (drop) notes; returns the mask of annotations to keep and
    every annotation's box."""
    keep = np.ones(len(anns), bool)
    reasons, xywh = _box_reasons(anns, img_refs, sizes)
    counts = []
    for reason, bad in reasons.items():
        if not len(bad):
            continue
        keep[bad] = False
        ids = _few_anns(ann_ids, bad)
        example = _box_example(anns, img_refs, ann_ids, int(bad[0]), reason, sizes)
        counts.append(f"{len(bad)} with {_BOX_WHAT[reason]}")
        if not drop:
            report.problems.append(
                f"{report.ann_file}: {_plural(len(bad), 'annotation has', 'annotations have')} "
                f"{_BOX_WHAT[reason]} (annotation ids {ids}; {example}); fix or remove them, or "
                f"set {DROP_KEY}: true to drop bad boxes")
    if drop and counts:
        dropped = np.flatnonzero(~keep)
        report.dropped_boxes = len(dropped)
        report.dropped_ids = [ann_ids[k] if ann_ids[k] is not None else f"#{k}"
                              for k in dropped[:FEW]]
        report.notes.append(
            f"{report.ann_file}: dropped {_plural(len(dropped), 'annotation', 'annotations')} "
            f"with bad boxes ({'; '.join(counts)}; annotation ids "
            f"{_few_anns(ann_ids, dropped)}) because {DROP_KEY} is true")
    return keep, xywh


def _check_annotations(report: SplitReport, anns: list[dict[str, Any]], image_ids: set[Any],
                       sizes: dict[Any, tuple[float, float]], cat_ids: set[Any], drop: bool
                       ) -> tuple[list[dict[str, Any]], coco_fixes.Fixes]:
    """Ids, references, boxes and quirks of every annotation; returns those to keep (all but
    the dropped boxes) and the fixes they need (`mtpd.data.fixes`)."""
    ann_ids = _ids(report, anns, "annotation", "annotations")
    img_refs = [a.get("image_id") for a in anns]
    _check_refs(report, ann_ids, img_refs, image_ids, ("image", "images"), "image_id")
    _check_refs(report, ann_ids, [a.get("category_id") for a in anns], cat_ids,
                ("category", "categories"), "category_id")
    report.num_annotations = len(anns)
    img_refs = _norm_ids(img_refs)
    keep, xywh = _check_boxes(report, anns, ann_ids, img_refs, sizes, drop)
    if not keep.all():
        anns, ann_ids, img_refs = (list(compress(x, keep)) for x in (anns, ann_ids, img_refs))
        xywh = xywh[keep]
    fixes = coco_fixes.plan(anns, ann_ids, xywh, img_refs, sizes)
    if fixes.bad_iscrowd:
        report.problems.append(_iscrowd_problem(report, anns, ann_ids, fixes.bad_iscrowd))
    return anns, fixes


def _iscrowd_problem(report: SplitReport, anns: list[dict[str, Any]], ann_ids: list[Any],
                     bad: list[int]) -> str:
    """Crowd flags no spelling of 0 or 1 (`mtpd.data.fixes.ISCROWD`): what was meant is unknown."""
    values = _few_distinct([anns[k].get("iscrowd") for k in bad])
    return (f"{report.ann_file}: {_plural(len(bad), 'annotation has', 'annotations have')} an "
            f"'iscrowd' that is not 0 or 1 (annotation ids {_few_anns(ann_ids, bad)}; 'iscrowd' "
            f"{values}); set it to 0 for an object or 1 for a crowd region")


def _fix_notes(report: SplitReport, anns: list[dict[str, Any]], ann_ids: list[Any],
               fixes: coco_fixes.Fixes) -> list[str]:
    """One line per kind of fix the checked copy carries: what changed, where and why."""
    f, notes = report.ann_file, []
    if fixes.ids is not None and fixes.offset:
        notes.append(
            f"{f}: annotation ids start at {min(ann_ids)}: added {fixes.offset} to every "
            "annotation id, since pycocotools and faster-coco-eval count a perfect detection "
            "of annotation id 0 as a false positive")
    elif fixes.ids is not None:
        notes.append(
            f"{f}: annotation ids are not all integers (e.g. {_show(ann_ids[0])}): numbered "
            f"them 1 to {len(ann_ids)} in file order, since faster-coco-eval refuses string ids "
            "and pycocotools reads '0' as 0")
    if fixes.iscrowd:
        pos = sorted(fixes.iscrowd)
        values = _few_distinct([anns[k].get("iscrowd") for k in pos])
        notes.append(
            f"{f}: set 'iscrowd' of {_plural(len(pos), 'annotation', 'annotations')} to 0 or 1 "
            f"(annotation ids {_few_anns(ann_ids, pos)}; given as {values}), since pycocotools "
            "and MMDetection's training read \"0\" as a crowd and fail on a missing one")
    if fixes.area:
        pos = sorted(fixes.area)
        why = ", ".join(f"{len(v)} {coco_fixes.AREA_REASONS[k]}"
                        for k, v in fixes.area_reasons.items())
        notes.append(
            f"{f}: set 'area' of {_plural(len(pos), 'annotation', 'annotations')} to their "
            f"segmentation's area, or their box's without one ({why}; annotation ids "
            f"{_few_anns(ann_ids, pos)}), since COCO's small/medium/large ranges use it and "
            "MMDetection's training drops boxes of area 0 or less")
    return notes


# --- image files -------------------------------------------------------------------------------

_Found = tuple[tuple[int, int], bool]  # (width, height) as loaded; True: EXIF unread, may swap
_Probe = tuple[str | None, _Found | None]  # why the file is unusable, and its size if known


def _probe(path: Path) -> _Probe:
    """Why the file is missing or unreadable, from its first bytes (None if it looks fine), and
    its size from the header where the format says it (`mtpd.data.image_size`)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD)
            if not head:
                return "is empty (0 bytes)", None
            if not any(head[at:at + len(magic)] == magic for at, magic in _MAGIC):
                return f"is not a {_FORMATS} image (it starts with {head[:8]!r})", None
            return None, header_size(head, fh)
    except FileNotFoundError:
        return "missing", None
    except IsADirectoryError:
        return "is a directory", None
    except OSError as e:
        return f"cannot be opened ({e.strerror})", None


def _probe_chunk(paths: list[Path]) -> list[_Probe]:
    return [_probe(p) for p in paths]


def _decode(path: Path) -> _Probe:
    """Why OpenCV cannot decode the file, or None and the size it decodes to (what MMDetection
    loads: EXIF orientation applied)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return "cannot be decoded by OpenCV (truncated or corrupt)", None
    return None, ((img.shape[1], img.shape[0]), False)


def _sample(n: int, k: int) -> list[int]:
    """`k` positions spread evenly over `n` (all if fewer): deterministic, covers every part."""
    if k <= 0 or n == 0:
        return []
    if k >= n:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


def _size_differs(declared: _Size | None, found: _Found | None) -> bool:
    """The file's size as loaded (either way round where its EXIF could not be read) is not the
    declared one."""
    if declared is None or found is None:
        return False
    (w, h), uncertain = found
    sizes = [(w, h), (h, w)] if uncertain else [(w, h)]
    return all(abs(declared[0] - a) > 0.5 or abs(declared[1] - b) > 0.5 for a, b in sizes)


def _check_files(report: SplitReport, files: list[_File], decode_sample: int) -> None:
    """Every image exists, is non-empty, has an image format's magic bytes and the declared
    size (from its header, where the format has one); a sample decodes, at the declared size."""
    f, img_dir = report.ann_file, report.img_dir
    if files and not img_dir.is_dir():
        report.problems.append(
            f"{f}: the image directory {img_dir} does not exist ({len(files)} images expected "
            f"there, e.g. image id {files[0][0]}: {files[0][1]}); fix the split's "
            "img_dir in the dataset config or manifest")
        return
    paths = [img_dir / name for _, name, _ in files]
    chunks = [paths[k:k + _CHUNK] for k in range(0, len(paths), _CHUNK)]
    with ThreadPoolExecutor(IO_THREADS) as pool:
        probed = [r for part in pool.map(_probe_chunk, chunks) for r in part]
        readable = [k for k, (r, _) in enumerate(probed) if r is None]
        picked = [readable[k] for k in _sample(len(readable), decode_sample)]
        decoded = pool.map(_decode, [paths[k] for k in picked])
        for k, r in zip(picked, decoded, strict=True):
            probed[k] = r  # decoded: the exact size MMDetection will see
    found = [r for r, _ in probed]
    missing = [k for k, r in enumerate(found) if r == "missing"]
    broken = [k for k, r in enumerate(found) if r is not None and r != "missing"]
    resized = [k for k, (r, size) in enumerate(probed)
               if r is None and _size_differs(files[k][2], size)]
    _bad_files(report, [f"{files[k][0]}: {files[k][1]}" for k in missing],
               ("image file does not exist", "image files do not exist"), FEW,
               "put the files there, or correct the split's img_dir or the images' file_name")
    _bad_files(report, [f"{files[k][0]}: {files[k][1]} {found[k]}" for k in broken],
               ("image file is unreadable", "image files are unreadable"), 3,
               f"replace them with valid {_FORMATS} files, or remove those images and their "
               "annotations")
    if resized:
        report.problems.append(_resized_message(report, files, probed, resized))
    if picked:
        report.notes.append(f"{f}: decoded {len(picked)} of {len(files)} images")


def _bad_files(report: SplitReport, shown: list[str], counted: tuple[str, str], few: int,
               fix: str) -> None:
    """One problem line for image files in one kind of trouble (none: no line): how many,
    the first `few` of them (`shown`: id and file name), and the fix."""
    if shown:
        report.problems.append(
            f"{report.ann_file}: {_plural(len(shown), *counted)} under {report.img_dir} "
            f"(image ids {_few(shown, few)}); {fix}")


def _resized_message(report: SplitReport, files: list[_File], probed: list[_Probe],
                     resized: list[int]) -> str:
    """Images whose file has another size than their width and height say."""
    shown = []
    for k in resized[:3]:
        label, name, declared = files[k]
        found = probed[k][1]
        assert declared is not None and found is not None  # so `_size_differs` said
        shown.append(f"{label}: {name} is {found[0][0]}x{found[0][1]} px, not "
                     f"{declared[0]:g}x{declared[1]:g}")
    return (f"{report.ann_file}: {_plural(len(resized), 'image file has', 'image files have')} "
            f"another size than the image's 'width' and 'height' (image ids "
            f"{_few(shown, 3, total=len(resized))}); boxes are in the pixels of the size given, "
            "so correct width and height to the files' (and scale the boxes too if the files "
            "were resized after annotation), or replace the files")


# --- one split ---------------------------------------------------------------------------------

def _inspect(ann_file: Path, img_dir: Path, *, drop_bad_boxes: bool, decode_sample: int,
             check_images: bool) -> tuple[SplitReport, dict[str, Any] | None]:
    """The report and, when boxes are to be dropped, the cleaned COCO object (not yet written)."""
    start = time.perf_counter()
    report = SplitReport(Path(ann_file), Path(img_dir))
    with _no_gc():
        cleaned = _inspect_data(report, drop_bad_boxes=drop_bad_boxes,
                                decode_sample=decode_sample, check_images=check_images)
    report.seconds = time.perf_counter() - start
    return report, cleaned


def _inspect_data(report: SplitReport, *, drop_bad_boxes: bool, decode_sample: int,
                  check_images: bool) -> dict[str, Any] | None:
    """Loads and checks the file of `report`, filling it in; returns the cleaned COCO object."""
    data = _load(report)
    cleaned = None
    if data is not None:
        cat_ids = _check_categories(report, _objects(report, data, "categories"))
        image_ids, sizes, files = _check_images(report, _objects(report, data, "images"))
        anns = _objects(report, data, "annotations")
        kept, fixes = _check_annotations(report, anns, image_ids, sizes, cat_ids, drop_bad_boxes)
        if check_images:
            _check_files(report, files, decode_sample)
        if fixes.changed and report.ok:
            report.fixes = _fix_notes(report, kept, [a.get("id") for a in kept], fixes)
            kept = fixes.apply(kept)
        if len(kept) < len(anns) or fixes.changed:
            cleaned = {**data, "annotations": kept}
    return cleaned


def validate_split(ann_file: Path, img_dir: Path, *, drop_bad_boxes: bool = False,
                   cleaned_out: Path | None = None, decode_sample: int = 200,
                   check_images: bool = True) -> SplitReport:
    """Checks one COCO annotation file and its images in one pass; never raises on bad data.

    With `drop_bad_boxes`, unusable boxes are dropped instead of failing. The cleaned file (boxes
    dropped, quirks fixed: `report.fixes`) is written to `cleaned_out` when given and the split
    has no problem. `check_images=False` skips the image files (existence, magic bytes, size,
    decoding) for a fast check of the JSON alone.
    """
    if drop_bad_boxes and cleaned_out is None:
        raise ValueError("drop_bad_boxes=True needs cleaned_out: where to write the cleaned file")
    report, cleaned = _inspect(Path(ann_file), Path(img_dir), drop_bad_boxes=drop_bad_boxes,
                               decode_sample=decode_sample, check_images=check_images)
    if cleaned is not None and report.ok and cleaned_out is not None:
        _write_cleaned(report, cleaned, Path(cleaned_out))
    return report


def _write_cleaned(report: SplitReport, cleaned: dict[str, Any], out: Path) -> None:
    start = time.perf_counter()
    atomic_write_json(out, cleaned)
    report.cleaned_file = out.resolve()
    report.cleaned_sha256 = sha256sum(out)
    report.seconds += time.perf_counter() - start


# --- several splits ----------------------------------------------------------------------------

def check_categories(reports: dict[str, SplitReport]) -> list[str]:
    """Splits whose categories (id -> name) differ from the first split's (train if present)."""
    named = {k: r for k, r in reports.items() if r.categories}
    if len(named) < 2:
        return []
    ref_name = "train" if "train" in named else next(iter(named))
    ref = named[ref_name]
    problems = []
    for name, r in named.items():
        if name == ref_name or r.categories == ref.categories:
            continue
        parts = []
        only_ref = [k for k in ref.categories if k not in r.categories]
        only_this = [k for k in r.categories if k not in ref.categories]
        renamed = [f"{_show(k)}: {ref.categories[k]!r} vs {r.categories[k]!r}"
                   for k in ref.categories if k in r.categories
                   and ref.categories[k] != r.categories[k]]
        if only_ref:
            parts.append(f"ids only in {ref_name}: {_few(only_ref)}")
        if only_this:
            parts.append(f"ids only in {name}: {_few(only_this)}")
        if renamed:
            parts.append(f"different names for ids {_few(renamed, 3)}")
        problems.append(
            f"{r.ann_file} (split {name}) and {ref.ann_file} (split {ref_name}) have different "
            f"categories ({'; '.join(parts)}); give every split the same categories, with the "
            "same ids and names")
    return problems


def _options(drop_bad_boxes: bool, decode_sample: int, check_images: bool) -> dict[str, Any]:
    return {"drop_bad_boxes": drop_bad_boxes, "decode_sample": decode_sample,
            "check_images": check_images}


def _cache_key(sha: str, img_dir: Path, cleaned_out: Path, options: dict[str, Any]) -> str:
    """Names a result by everything it depends on: file content, image dir, options, checks."""
    key = {"version": VERSION, "sha256": sha, "img_dir": str(img_dir.resolve()),
           "cleaned_out": str(cleaned_out.resolve()), **options}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _cache_load(path: Path, ann_file: Path) -> SplitReport | None:
    """A cached passing result, unless it is unreadable or its cleaned file has changed."""
    try:
        report = SplitReport.from_json(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if report.cleaned_file is not None and (not report.cleaned_file.is_file()
                                            or sha256sum(report.cleaned_file)
                                            != report.cleaned_sha256):
        return None
    report.ann_file, report.cached = ann_file, True
    return report


def _split_report(name: str, split: Split, cache_dir: Path, cleaned_dir: Path,
                  options: dict[str, Any]) -> tuple[SplitReport, dict[str, Any] | None, Path]:
    """One split from the cache, or checked now (cleaned data returned, not yet written)."""
    cleaned_out = cleaned_dir / f"{name}.clean.json"
    if not split.ann_file.is_file():
        report = SplitReport(split.ann_file, split.img_dir, problems=[
            f"{split.ann_file}: the annotation file of split '{name}' does not exist; fix its "
            "ann_file in the dataset config or manifest"])
        return report, None, Path()
    start = time.perf_counter()
    sha = sha256sum(split.ann_file)
    entry = cache_dir / f"{_cache_key(sha, split.img_dir, cleaned_out, options)}.json"
    cached = _cache_load(entry, split.ann_file)
    if cached is not None:
        cached.seconds = time.perf_counter() - start  # the hash and the lookup
        return cached, None, entry
    report, cleaned = _inspect(split.ann_file, split.img_dir,
                               drop_bad_boxes=options["drop_bad_boxes"],
                               decode_sample=options["decode_sample"],
                               check_images=options["check_images"])
    report.seconds = time.perf_counter() - start  # the hash included
    return report, cleaned, entry


def validate_dataset(manifest_path: str | Path, out_report: Path, *, drop_bad_boxes: bool = False,
                     cache_dir: Path | None = None, decode_sample: int = 200,
                     check_images: bool = True) -> dict[str, Any]:
    """Checks every split of a manifest; writes `out_report` only if all of them pass.

    Raises DatasetError listing every problem, one per line, and then writes nothing (no report,
    no cleaned file, no cache entry), so the Snakemake rule fails before any training. Passing
    splits are cached in `cache_dir` (default: `.validate-cache` beside the report); cleaned
    files go beside the report as `<split>.clean.json`. The report is a dataset manifest itself
    (`DatasetManifest.load` reads it): each split's `ann_file` is the file to train or evaluate
    on (the cleaned one when boxes were dropped or quirks fixed), `source_ann_file` the one
    checked; its `version` says which checks passed (`DatasetManifest.checks`).
    """
    manifest = DatasetManifest.load(manifest_path)
    out_report = Path(out_report)
    cache_dir = Path(cache_dir) if cache_dir is not None else out_report.parent / ".validate-cache"
    options = _options(drop_bad_boxes, decode_sample, check_images)
    results = {name: _split_report(name, split, cache_dir, out_report.parent, options)
               for name, split in manifest.splits.items()}
    reports = {name: r for name, (r, _, _) in results.items()}
    problems = [p for r in reports.values() for p in r.problems] + check_categories(reports)
    if problems:
        raise DatasetProblems(manifest.path, problems)
    for name, (report, cleaned, entry) in results.items():
        if cleaned is not None:
            _write_cleaned(report, cleaned, out_report.parent / f"{name}.clean.json")
        if not report.cached:
            atomic_write_json(entry, report.to_json())
    # The report is also the manifest every later step reads: `ann_file` is the file to use.
    splits = {name: {**_public(r), "source_ann_file": str(r.ann_file),
                     "ann_file": str(r.use_ann_file)} for name, r in reports.items()}
    out = {"name": manifest.name, "data_root": str(manifest.data_root),
           "manifest": str(manifest.path), "version": VERSION, **options, "splits": splits}
    atomic_write_json(out_report, out)
    return out


def _public(report: SplitReport) -> dict[str, Any]:
    """A split's entry in the dataset report (its problems list is always empty there)."""
    d = report.to_json()
    del d["problems"], d["category_names"]
    return d
