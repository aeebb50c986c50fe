"""The embedded default dataset: textured shapes on cluttered backgrounds, in COCO format.

Why synthetic: nothing can be downloaded here, yet tests and the demo must train real detectors.
The data is made hard enough that model capacity matters:

* classes are shape x texture, so several classes differ *only* by texture (a striped disk vs a
  checkered disk), which needs more than a silhouette detector;
* object sizes are log-uniform from a few pixels to most of the image;
* objects occlude each other (masks and boxes are of the visible part) and sit on a background
  of gradients, noise and unannotated distractor strokes.

Every image is drawn from its own RNG seeded by (seed, split, index), so the output does not
depend on the order of generation and two runs with the same arguments are byte-identical.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from mtpd.errors import DatasetError
from mtpd.io import atomic_dir, atomic_write_json

SHAPES = ("disk", "square", "triangle", "cross")
TEXTURES = ("solid", "stripes", "checker")
SPLIT_STREAM = {"train": 1, "val": 2}


@dataclass(frozen=True)
class ShapesSpec:
    """Parameters of a generated dataset; written next to the data as `spec.json`.

    The fields a pipeline config can set (`SETTINGS`) take their defaults from the config
    schema's `dataset.shapes` through `from_settings`; the others are fixed here."""

    num_train: int
    num_proxy: int
    num_val: int
    image_size: int
    max_objects: int
    min_size: float
    shapes: tuple[str, ...]
    textures: tuple[str, ...]
    seed: int
    min_objects: int = 1
    max_size_frac: float = 0.8
    min_visible: float = 0.35

    SETTINGS: ClassVar[tuple[str, ...]] = ("num_train", "num_proxy", "num_val", "image_size",
                                           "max_objects", "min_size", "shapes", "textures",
                                           "seed")

    @classmethod
    def from_settings(cls, **settings: Any) -> "ShapesSpec":
        """A spec from `dataset.shapes` settings (shapes/textures as comma-separated strings
        or sequences); missing ones take the schema's defaults."""
        from mtpd.pipeline_config import default

        values = default("dataset.shapes") | settings
        unknown = set(values) - set(cls.SETTINGS)
        if unknown:
            raise DatasetError(f"unknown shapes settings {sorted(unknown)}; known: {cls.SETTINGS}")
        for key in ("shapes", "textures"):
            if isinstance(values[key], str):
                values[key] = tuple(values[key].split(","))
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def __post_init__(self) -> None:
        checks = {
            "num_train": self.num_train >= 1,
            "num_proxy": self.num_proxy >= 0,
            "num_val": self.num_val >= 1,
            "image_size": self.image_size >= 32,
            "min_objects": 1 <= self.min_objects <= self.max_objects,
            "min_size": 2 <= self.min_size < self.image_size * self.max_size_frac,
            "max_size_frac": 0 < self.max_size_frac <= 1,
            "min_visible": 0 < self.min_visible <= 1,
            "shapes": len(self.shapes) >= 1 and set(self.shapes) <= set(SHAPES),
            "textures": len(self.textures) >= 1 and set(self.textures) <= set(TEXTURES),
        }
        refuse_failed_checks("shapes", self, checks)

    def class_names(self) -> list[str]:
        return class_names(self.shapes, self.textures)


def refuse_failed_checks(kind: str, spec: Any, checks: dict[str, bool]) -> None:
    """One DatasetError naming every parameter of a generated dataset's `spec` whose check
    failed (none failed: nothing), with the shapes and textures there are to pick from."""
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise DatasetError(f"invalid {kind} dataset parameters {bad} in {asdict(spec)} "
                           f"(shapes from {SHAPES}, textures from {TEXTURES})")


def class_names(shapes: tuple[str, ...] = SHAPES, textures: tuple[str, ...] = TEXTURES
                ) -> list[str]:
    """Shape x texture classes: each shape exists in every texture."""
    return [f"{s}_{t}" for s in shapes for t in textures]


def _shape_mask(rng: np.random.Generator, shape: str, size: float, cx: float, cy: float,
                n: int) -> np.ndarray:
    """Binary silhouette of one shape of diameter `size` centred at (cx, cy) in an n x n image."""
    m = np.zeros((n, n), np.uint8)
    r = size / 2
    angle = rng.uniform(0, 2 * math.pi)
    if shape == "disk":
        axes = (max(1, int(round(r))), max(1, int(round(r * rng.uniform(0.6, 1.0)))))
        cv2.ellipse(m, (int(round(cx)), int(round(cy))), axes, math.degrees(angle), 0, 360, 1, -1)
        return m.astype(bool)
    if shape == "square":
        base = [(-1, -1), (1, -1), (1, 1), (-1, 1)]
        scale = r / math.sqrt(2) * 1.2
    elif shape == "triangle":
        base = [(math.cos(a), math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        scale = r
    else:  # cross: a plus sign made of two bars of width 0.4
        w = 0.4
        base = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w),
                (-1, w), (-1, -w), (-w, -w)]
        scale = r / 1.05
    c, s = math.cos(angle), math.sin(angle)
    pts = np.array([(cx + scale * (x * c - y * s), cy + scale * (x * s + y * c)) for x, y in base])
    cv2.fillPoly(m, [np.round(pts * 16).astype(np.int32)], 1, shift=4)
    return m.astype(bool)


def _texture(rng: np.random.Generator, texture: str, size: float, n: int) -> np.ndarray:
    """Boolean pattern over the whole image: True where the object's second colour shows."""
    if texture == "solid":
        return np.zeros((n, n), bool)
    period = max(3.0, size / rng.uniform(3, 5))
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    a = rng.uniform(0, math.pi)
    u = xx * math.cos(a) + yy * math.sin(a)
    if texture == "stripes":
        return (u / period) % 1.0 < 0.5
    v = -xx * math.sin(a) + yy * math.cos(a)
    return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(bool)


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Gradient + noise + unannotated strokes and blobs (clutter)."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
    t = (t - t.min()) / (np.ptp(t) + 1e-6)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    img += rng.normal(0, 12, img.shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.integers(2, 8)):
        p0 = tuple(int(v) for v in rng.integers(0, n, 2))
        p1 = tuple(int(v) for v in rng.integers(0, n, 2))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.line(img, p0, p1, color, int(rng.integers(1, 3)))
    for _ in range(rng.integers(0, 5)):
        p = tuple(int(v) for v in rng.integers(0, n, 2))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.circle(img, p, int(rng.integers(1, 4)), color, -1)
    return img


def _contrasting_colors(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    a = rng.uniform(0, 255, 3)
    b = 255 - a + rng.normal(0, 30, 3)
    return a, np.clip(b, 0, 255)


def render_image(spec: ShapesSpec, split_stream: int, index: int
                 ) -> tuple[np.ndarray, list[dict]]:
    """Draws one image; returns it (H, W, 3 uint8 BGR) and its visible objects."""
    rng = np.random.default_rng([spec.seed, split_stream, index])
    n = spec.image_size
    img = _background(rng, n)
    names = spec.class_names()
    objects: list[dict] = []
    full_masks: list[np.ndarray] = []
    max_size = spec.max_size_frac * n
    for _ in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        size = float(math.exp(rng.uniform(math.log(spec.min_size), math.log(max_size))))
        cx, cy = rng.uniform(size * 0.3, n - size * 0.3, 2) if size < n else (n / 2, n / 2)
        label = int(rng.integers(len(names)))
        shape, texture = names[label].split("_")
        m = _shape_mask(rng, shape, size, cx, cy, n)
        if m.sum() < 4:
            continue
        col_a, col_b = _contrasting_colors(rng)
        pattern = _texture(rng, texture, size, n)
        img[m & ~pattern] = col_a.astype(np.uint8)
        img[m & pattern] = col_b.astype(np.uint8)
        # Later objects occlude earlier ones.
        for o in objects:
            o["visible"] &= ~m
        objects.append({"label": label, "visible": m.copy(), "area_full": int(m.sum())})
        full_masks.append(m)
    img = np.clip(img.astype(np.int16) + rng.normal(0, 4, img.shape).astype(np.int16), 0, 255)
    kept = [o for o in objects if o["visible"].sum() >= max(4, spec.min_visible * o["area_full"])]
    return img.astype(np.uint8), kept


def _annotation(obj: dict, ann_id: int, image_id: int) -> dict:
    vis = obj["visible"]
    ys, xs = np.nonzero(vis)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    rle = mask_utils.encode(np.asfortranarray(vis.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"id": ann_id, "image_id": image_id, "category_id": obj["label"] + 1,
            "bbox": [int(x0), int(y0), int(x1 - x0), int(y1 - y0)], "area": int(vis.sum()),
            "segmentation": rle, "iscrowd": 0}


def _coco_dict(records: list[tuple[str, list[dict]]], n: int, names: list[str]) -> dict:
    images, anns = [], []
    for image_id, (file_name, objs) in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": file_name, "width": n, "height": n})
        for obj in objs:
            anns.append(_annotation(obj, len(anns) + 1, image_id))
    cats = [{"id": i + 1, "name": name, "supercategory": name.split("_")[0]}
            for i, name in enumerate(names)]
    return {"info": {"description": "mtpd shapes"}, "images": images, "annotations": anns,
            "categories": cats}


def generate(out_dir: str | Path, spec: ShapesSpec) -> Path:
    """Writes train/proxy/val images and COCO JSONs plus `dataset.json`, atomically.

    The proxy split holds the last `num_proxy` images of the training stream: it is carved from
    the training distribution (for BGS) and never overlaps the images trained on.
    """
    out_dir = Path(out_dir)
    n = spec.image_size
    with atomic_dir(out_dir) as tmp:
        splits = {"train": (SPLIT_STREAM["train"], range(spec.num_train)),
                  "proxy": (SPLIT_STREAM["train"],
                            range(spec.num_train, spec.num_train + spec.num_proxy)),
                  "val": (SPLIT_STREAM["val"], range(spec.num_val))}
        manifest_splits = {}
        for split, (stream, indices) in splits.items():
            if len(indices) == 0:
                continue
            (tmp / "images" / split).mkdir(parents=True)
            records = []
            for i in indices:
                img, objs = render_image(spec, stream, i)
                name = f"{i:06d}.png"
                cv2.imwrite(str(tmp / "images" / split / name), img)
                records.append((name, objs))
            atomic_write_json(tmp / f"{split}.json", _coco_dict(records, n, spec.class_names()))
            manifest_splits[split] = {"ann_file": f"{split}.json", "img_dir": f"images/{split}/"}
        atomic_write_json(tmp / "spec.json", asdict(spec))
        atomic_write_json(tmp / "dataset.json", {
            "name": "shapes", "data_root": ".", "classes": spec.class_names(),
            "image_size": [n, n], "splits": manifest_splits})
    return out_dir
