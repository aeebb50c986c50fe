"""A generated, video-like dataset in Argoverse-HD's layout: the embedded stand-in for it.

Why: streaming AP needs sequences (frames at a fixed rate, objects that move between frames),
and nothing can be downloaded here. Each sequence has a fixed cluttered background and a few
textured shapes (the classes of `mtpd.data.shapes`: `disk_solid`, ...) moving with constant
velocity, some fast, some slow, some still; boxes are of the visible part (occlusion and the
frame border cut them). Frames are 320 x 200 by default, the 1.6 aspect of 1920 x 1200.

The output mirrors Argoverse-HD so the same code reads both::

    <out>/<split>/<uuid>/ring_front_center/ring_front_center_<fid:06d>.png
    <out>/<split>.json        Argoverse-HD layout (images without file_name, sequences, seq_dirs)
    <out>/<split>.coco.json   the same as plain COCO (`mtpd.data.argoverse.to_coco`)
    <out>/dataset.json        the manifest (mtpd.data.manifest) pointing at the COCO files
    <out>/spec.json           the parameters

Every sequence is drawn from its own RNG seeded by (seed, split stream, sequence index), so two
runs with the same spec are byte-identical. The proxy split holds the training stream's
sequences after the training ones, as in `mtpd.data.shapes`.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mtpd.data.argoverse import FPS, to_coco
from mtpd.data.shapes import (
    SHAPES,
    SPLIT_STREAM,
    TEXTURES,
    _background,
    _contrasting_colors,
    _shape_mask,
    _texture,
    class_names,
    refuse_failed_checks,
)
from mtpd.errors import DatasetError
from mtpd.io import atomic_dir, atomic_write_json

CAMERA = "ring_front_center"


@dataclass(frozen=True)
class SequencesSpec:
    """Parameters of a generated sequence dataset; written beside the data as `spec.json`.

    Counts are sequences per split; speeds are in pixels per frame. The fields a pipeline
    config sets (`streaming.dataset.sequences` of the schema, with the main dataset's shapes and
    textures) take the schema's defaults through `from_settings`; the rest are fixed here."""

    num_val: int
    frames: int
    width: int
    height: int
    max_objects: int
    max_speed: float
    still_prob: float               # share of objects that do not move
    seed: int
    shapes: tuple[str, ...] = SHAPES
    textures: tuple[str, ...] = TEXTURES
    num_train: int = 0              # streaming evaluation needs val sequences only
    num_proxy: int = 0
    min_objects: int = 1
    min_size: float = 10.0
    max_size_frac: float = 0.5      # of the frame height
    min_visible: float = 0.35       # annotated only while this share of the object shows
    fps: float = FPS                # Argoverse-HD's frame rate

    @classmethod
    def from_settings(cls, **settings: Any) -> "SequencesSpec":
        """A spec from CLI/config settings (shapes/textures may be comma-separated strings);
        missing ones take the schema's defaults (`streaming.dataset.sequences`)."""
        from mtpd.pipeline_config import default

        known = {f.name for f in fields(cls)}
        unknown = set(settings) - known
        if unknown:
            raise DatasetError(f"unknown sequences settings {sorted(unknown)}; known: "
                               f"{sorted(known)}")
        values = default("streaming.dataset.sequences") | settings
        for key in ("shapes", "textures"):
            if isinstance(values.get(key), str):
                values[key] = tuple(values[key].split(","))
            elif isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def __post_init__(self) -> None:
        checks = {
            "num_train": self.num_train >= 0, "num_proxy": self.num_proxy >= 0,
            "num_val": self.num_val >= 1, "frames": self.frames >= 1,
            "width": self.width >= 32, "height": self.height >= 32,
            "min_objects": 1 <= self.min_objects <= self.max_objects,
            "min_size": 2 <= self.min_size < self.height * self.max_size_frac,
            "max_size_frac": 0 < self.max_size_frac <= 1,
            "max_speed": self.max_speed >= 0, "still_prob": 0 <= self.still_prob <= 1,
            "min_visible": 0 < self.min_visible <= 1, "fps": self.fps > 0,
            "shapes": len(self.shapes) >= 1 and set(self.shapes) <= set(SHAPES),
            "textures": len(self.textures) >= 1 and set(self.textures) <= set(TEXTURES),
        }
        refuse_failed_checks("sequences", self, checks)

    def class_names(self) -> list[str]:
        return class_names(self.shapes, self.textures)


@dataclass
class _Mover:
    """One object: a sprite (mask + colours) and its straight-line track."""

    label: int
    track: int
    mask: np.ndarray       # c x c bool
    pixels: np.ndarray     # c x c x 3 uint8
    mid: np.ndarray        # centre at the middle frame (x, y)
    velocity: np.ndarray   # pixels per frame (x, y)


def _sprite(rng: np.random.Generator, shape: str, texture: str, size: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """An object drawn once on its own canvas, so it keeps its look while it moves."""
    c = int(math.ceil(size * 1.5)) + 4
    mask = _shape_mask(rng, shape, size, c / 2, c / 2, c)
    col_a, col_b = _contrasting_colors(rng)
    pattern = _texture(rng, texture, size, c)
    pixels = np.where(pattern[..., None], col_b, col_a).astype(np.uint8)
    return mask, pixels


def _movers(rng: np.random.Generator, spec: SequencesSpec, first_track: int) -> list[_Mover]:
    """The objects of one sequence with their sprites and constant velocities."""
    names = spec.class_names()
    max_size = spec.max_size_frac * spec.height
    movers = []
    for k in range(int(rng.integers(spec.min_objects, spec.max_objects + 1))):
        size = float(math.exp(rng.uniform(math.log(spec.min_size), math.log(max_size))))
        label = int(rng.integers(len(names)))
        shape, texture = names[label].split("_")
        mask, pixels = _sprite(rng, shape, texture, size)
        mid = rng.uniform([0.1 * spec.width, 0.1 * spec.height],
                          [0.9 * spec.width, 0.9 * spec.height])
        speed = 0.0 if rng.uniform() < spec.still_prob else rng.uniform(0, spec.max_speed)
        angle = rng.uniform(0, 2 * math.pi)
        velocity = speed * np.array([math.cos(angle), math.sin(angle)])
        movers.append(_Mover(label, first_track + k, mask, pixels, mid, velocity))
    return movers


def _paste(frame: np.ndarray, mover: _Mover, centre: np.ndarray) -> np.ndarray:
    """Draws the sprite centred at `centre`, clipped to the frame; returns its frame mask."""
    h, w = frame.shape[:2]
    c = mover.mask.shape[0]
    x0, y0 = (int(round(v - c / 2)) for v in centre)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + c, w), min(y0 + c, h)
    full = np.zeros((h, w), bool)
    if fx0 >= fx1 or fy0 >= fy1:
        return full
    sub = mover.mask[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    full[fy0:fy1, fx0:fx1] = sub
    frame[full] = mover.pixels[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0][sub]
    return full


def render_frame(background: np.ndarray, movers: list[_Mover], fid: int, spec: SequencesSpec,
                 rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """Frame `fid` (H x W x 3 BGR) and its visible objects (label, track, visible mask)."""
    frame = background.copy()
    t = fid - (spec.frames - 1) / 2
    visible: list[dict] = []
    for m in movers:
        mask = _paste(frame, m, m.mid + m.velocity * t)
        for v in visible:  # later objects occlude earlier ones
            v["visible"] &= ~mask
        visible.append({"label": m.label, "track": m.track, "visible": mask,
                        "area_full": int(m.mask.sum())})
    noise = rng.normal(0, 3, frame.shape).astype(np.int16)
    frame = np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    kept = [v for v in visible
            if v["visible"].sum() >= max(4, spec.min_visible * v["area_full"])]
    return frame, kept


def _box(visible: np.ndarray) -> list[int]:
    """The visible part's box, [x, y, w, h] in whole pixels."""
    ys, xs = np.nonzero(visible)
    return [int(xs.min()), int(ys.min()), int(xs.max() + 1 - xs.min()),
            int(ys.max() + 1 - ys.min())]


def _write_sequence(root: Path, split: str, stream: int, index: int, spec: SequencesSpec,
                    first_track: int) -> tuple[str, list[tuple[str, list[dict]]], int]:
    """Renders one sequence to PNGs; returns its uuid, (name, objects) per frame, next track."""
    rng = np.random.default_rng([spec.seed, stream, index])
    seq = str(uuid.UUID(bytes=rng.bytes(16), version=4))
    n = max(spec.width, spec.height)
    background = _background(rng, n)[:spec.height, :spec.width].copy()
    movers = _movers(rng, spec, first_track)
    frame_dir = root / split / seq / CAMERA
    frame_dir.mkdir(parents=True)
    frames = []
    for fid in range(spec.frames):
        img, objs = render_frame(background, movers, fid, spec, rng)
        name = f"{CAMERA}_{fid:06d}.png"
        cv2.imwrite(str(frame_dir / name), img)
        frames.append((name, objs))
    return seq, frames, first_track + len(movers)


def _split_json(split: str, sequences: list[tuple[str, list[tuple[str, list[dict]]]]],
                spec: SequencesSpec) -> dict:
    """One split in Argoverse-HD's layout: 0-based image and category ids, no file_name.

    Annotation ids start at 1: pycocotools scores a matched ground truth of id 0 as a miss."""
    images, anns = [], []
    for sid, (_, frames) in enumerate(sequences):
        for fid, (name, objs) in enumerate(frames):
            image_id = len(images)
            images.append({"id": image_id, "sid": sid, "fid": fid, "name": name,
                           "width": spec.width, "height": spec.height})
            for obj in objs:
                box = _box(obj["visible"])
                anns.append({"id": len(anns) + 1, "image_id": image_id,
                             "category_id": obj["label"], "bbox": box,
                             "area": box[2] * box[3], "iscrowd": 0, "track": obj["track"]})
    cats = [{"id": i, "name": name} for i, name in enumerate(spec.class_names())]
    return {"info": {"description": "mtpd sequences"}, "images": images, "annotations": anns,
            "categories": cats, "sequences": [seq for seq, _ in sequences],
            "seq_dirs": [f"{split}/{seq}/{CAMERA}" for seq, _ in sequences]}


def _split_ranges(spec: SequencesSpec) -> dict[str, tuple[int, range]]:
    """(RNG stream, sequence indices) per split; proxy continues the training stream."""
    train = SPLIT_STREAM["train"]
    return {"train": (train, range(spec.num_train)),
            "proxy": (train, range(spec.num_train, spec.num_train + spec.num_proxy)),
            "val": (SPLIT_STREAM["val"], range(spec.num_val))}


def generate_sequences(out_dir: str | Path, spec: SequencesSpec) -> Path:
    """Writes every split's frames, Argoverse-HD and COCO JSONs and `dataset.json`, atomically."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        manifest_splits = {}
        for split, (stream, indices) in _split_ranges(spec).items():
            if len(indices) == 0:
                continue
            sequences, track = [], 0
            for index in indices:
                seq, frames, track = _write_sequence(tmp, split, stream, index, spec, track)
                sequences.append((seq, frames))
            atomic_write_json(tmp / f"{split}.json", _split_json(split, sequences, spec))
            to_coco(tmp / f"{split}.json", tmp / f"{split}.coco.json", data_root_hint=tmp)
            manifest_splits[split] = {"ann_file": f"{split}.coco.json", "img_dir": "."}
        atomic_write_json(tmp / "spec.json", asdict(spec))
        atomic_write_json(tmp / "dataset.json", {
            "name": "sequences", "data_root": ".", "classes": spec.class_names(),
            "image_size": [spec.width, spec.height], "fps": spec.fps,
            "splits": manifest_splits})
    return out_dir
