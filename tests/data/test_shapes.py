"""The embedded dataset generator (mtpd/data/shapes.py): valid COCO, deterministic, hard, proxy
carved from the training stream."""
from __future__ import annotations

import json

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mtpd.data.manifest import DatasetManifest
from mtpd.data.shapes import TEXTURES, ShapesSpec, class_names, generate, render_image
from tests.helpers import tree_digest


def test_valid_coco_with_masks(shapes_data):
    m = DatasetManifest.load(shapes_data)
    assert set(m.splits) == {"train", "proxy", "val"}
    assert m.classes == tuple(class_names())
    for split in ("train", "proxy", "val"):
        s = m.split(split)
        coco = COCO(str(s.ann_file))
        assert len(coco.getImgIds()) == {"train": 40, "proxy": 12, "val": 12}[split]
        for ann in coco.loadAnns(coco.getAnnIds()):
            img = coco.loadImgs(ann["image_id"])[0]
            assert (s.img_dir / img["file_name"]).is_file()
            x, y, w, h = ann["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0
            assert x + w <= img["width"] and y + h <= img["height"]
            mask = coco.annToMask(ann)
            assert mask.sum() == ann["area"] > 0
            ys, xs = np.nonzero(mask)  # the box is the visible mask's extent
            assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == \
                [x, y, w, h]


def test_deterministic_and_seeded(tmp_path):
    spec = ShapesSpec.from_settings(num_train=6, num_proxy=2, num_val=3, seed=7)
    a = tree_digest(generate(tmp_path / "a", spec))
    b = tree_digest(generate(tmp_path / "b", spec))
    other = ShapesSpec.from_settings(num_train=6, num_proxy=2, num_val=3, seed=8)
    c = tree_digest(generate(tmp_path / "c", other))
    assert a == b
    assert a != c


def test_proxy_is_carved_from_training_stream(tmp_path):
    """Proxy images are the training stream's next images: same distribution, no overlap, and
    the train images do not change when a proxy split is added."""
    with_proxy = generate(tmp_path / "p",
                          ShapesSpec.from_settings(num_train=5, num_proxy=3, num_val=2))
    longer = generate(tmp_path / "t", ShapesSpec.from_settings(num_train=8, num_proxy=0, num_val=2))
    for i in range(5):
        assert (with_proxy / f"images/train/{i:06d}.png").read_bytes() == \
            (longer / f"images/train/{i:06d}.png").read_bytes()
    for i in range(5, 8):
        assert (with_proxy / f"images/proxy/{i:06d}.png").read_bytes() == \
            (longer / f"images/train/{i:06d}.png").read_bytes()


def test_hard_enough(shapes_data):
    """Texture-only classes, tiny and huge objects, occlusion."""
    m = DatasetManifest.load(shapes_data)
    anns = json.loads(m.split("train").ann_file.read_text())["annotations"]
    sides = np.array([max(a["bbox"][2], a["bbox"][3]) for a in anns])
    assert sides.min() <= 10 and sides.max() >= 64
    assert len({a["category_id"] for a in anns}) >= 8
    shapes = {n.split("_")[0] for n in class_names()}
    for s in shapes:  # every shape exists in every texture: classes that differ only by texture
        assert sum(n.startswith(s + "_") for n in class_names()) == len(TEXTURES)
    # occlusion: annotated masks are the visible parts of partly covered objects
    objs = [o for i in range(20) for o in render_image(ShapesSpec.from_settings(), 1, i)[1]]
    occluded = [o for o in objs if o["visible"].sum() < o["area_full"]]
    assert len(occluded) >= 3


def test_atomic_output_replaces_old_data(tmp_path):
    out = tmp_path / "d"
    generate(out, ShapesSpec.from_settings(num_train=2, num_proxy=0, num_val=1, seed=1))
    generate(out, ShapesSpec.from_settings(num_train=3, num_proxy=0, num_val=1, seed=1))
    assert len(list((out / "images/train").iterdir())) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_rle_masks_decode(shapes_data):
    m = DatasetManifest.load(shapes_data)
    ann = json.loads(m.split("val").ann_file.read_text())["annotations"][0]
    assert mask_utils.decode(ann["segmentation"]).sum() == ann["area"]
