"""The generated sequence dataset in Argoverse-HD's layout (mtpd/data/sequences.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtpd.data.manifest import DatasetManifest
from mtpd.data.sequences import SequencesSpec, generate_sequences
from mtpd.data.shapes import class_names
from mtpd.errors import DatasetError
from tests.helpers import read_coco, tree_digest

SMALL = dict(num_train=1, num_proxy=0, num_val=2, frames=5, max_objects=3, still_prob=0.0,
             max_speed=6.0)


def test_sequences_deterministic(tmp_path):
    a = tree_digest(generate_sequences(tmp_path / "a",
                                        SequencesSpec.from_settings(**SMALL, seed=4)))
    b = tree_digest(generate_sequences(tmp_path / "b",
                                        SequencesSpec.from_settings(**SMALL, seed=4)))
    c = tree_digest(generate_sequences(tmp_path / "c",
                                        SequencesSpec.from_settings(**SMALL, seed=5)))
    assert a == b != c


def test_sequences_layout_and_motion(tmp_path):
    spec = SequencesSpec.from_settings(**SMALL, seed=1, shapes="disk,square")
    out = generate_sequences(tmp_path / "seq", spec)
    raw = json.loads((out / "val.json").read_text())
    assert not any("file_name" in img for img in raw["images"])
    assert [i["id"] for i in raw["images"]] == list(range(10))
    assert [(i["sid"], i["fid"]) for i in raw["images"]] == [(s, f) for s in (0, 1)
                                                              for f in range(5)]
    assert raw["seq_dirs"] == [f"val/{u}/ring_front_center" for u in raw["sequences"]]
    assert [c["id"] for c in raw["categories"]] == list(range(6))
    assert {a["iscrowd"] for a in raw["annotations"]} == {0}
    assert all(a["area"] == a["bbox"][2] * a["bbox"][3] for a in raw["annotations"])
    for img in raw["images"]:
        frame = out / raw["seq_dirs"][img["sid"]] / img["name"]
        assert frame.is_file() and img["name"] == f"ring_front_center_{img['fid']:06d}.png"
    # objects move: some track's box changes from frame to frame
    boxes: dict[int, list] = {}
    for a in raw["annotations"]:
        boxes.setdefault(a["track"], []).append(a["bbox"])
    assert any(len({tuple(b) for b in bs}) > 1 for bs in boxes.values())
    m = DatasetManifest.load(out / "dataset.json")
    assert m.classes == tuple(class_names(("disk", "square")))
    assert set(m.splits) == {"train", "val"}
    coco = read_coco(m.split("val").ann_file)
    img0 = coco.loadImgs(0)[0]
    assert (m.split("val").img_dir / img0["file_name"]).is_file()


def test_sequences_read_by_mmdet_cocodataset(tmp_path):
    from mmdet.datasets import CocoDataset

    out = generate_sequences(tmp_path / "seq", SequencesSpec.from_settings(**SMALL, seed=2))
    m = DatasetManifest.load(out / "dataset.json")
    s = m.split("val")
    ds = CocoDataset(ann_file=str(s.ann_file), data_prefix=dict(img=str(s.img_dir) + "/"),
                     metainfo=dict(classes=m.classes), test_mode=True, pipeline=[],
                     lazy_init=False)
    assert len(ds) == 10
    first = ds.get_data_info(0)
    assert Path(first["img_path"]).is_file()
    n_anns = sum(len(ds.get_data_info(i)["instances"]) for i in range(len(ds)))
    assert n_anns == len(json.loads(s.ann_file.read_text())["annotations"])


def test_sequences_spec_errors():
    with pytest.raises(DatasetError, match="unknown sequences settings"):
        SequencesSpec.from_settings(num_frames=3)
    with pytest.raises(DatasetError, match="max_speed"):
        SequencesSpec.from_settings(max_speed=-1)
