"""Argoverse-HD's layout (mtpd/data/argoverse.py): conversion to COCO, its classes, the mapping
from COCO's and its input scales."""
from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from mtpd.data.argoverse import (
    ARGOVERSE_CLASSES,
    COCO_CLASSES,
    COCO_TO_ARGOVERSE,
    class_mapping,
    to_coco,
)
from mtpd.data.manifest import read_classes
from mtpd.data.shapes import class_names
from mtpd.errors import DatasetError, ModelConfigError
from mtpd.model_config import scale_to_size
from tests.helpers import read_coco, write_json

SEQ_DIRS = ["val/aaaa/ring_front_center", "val/bbbb/ring_front_center"]


def _argoverse_json() -> dict:
    """Two sequences (3 + 2 frames), 0-based image, category and annotation ids."""
    frames = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    images = [{"id": i, "sid": sid, "fid": fid, "name": f"ring_front_center_{100 + fid}.jpg",
               "width": 1920, "height": 1200} for i, (sid, fid) in enumerate(frames)]
    anns = [{"id": 0, "image_id": 0, "category_id": 6, "bbox": [10, 20, 30, 40], "track": 5},
            {"id": 1, "image_id": 1, "category_id": 6, "bbox": [12, 20, 30, 40], "track": 5},
            {"id": 2, "image_id": 3, "category_id": 2, "bbox": [100, 100, 200, 100],
             "track": 9, "iscrowd": 0, "area": 19000.0}]
    cats = [{"id": i, "name": n} for i, n in enumerate(ARGOVERSE_CLASSES)]
    return {"images": images, "annotations": anns, "categories": cats,
            "sequences": ["aaaa", "bbbb"], "seq_dirs": SEQ_DIRS}


def test_to_coco_paths_ids_and_defaults(tmp_path):
    src = write_json(tmp_path / "val.json", _argoverse_json())
    summary = to_coco(src, tmp_path / "val.coco.json")
    assert summary["images"] == 5 and summary["annotations"] == 3
    assert summary["sequences"] == 2 and summary["annotation_id_offset"] == 1
    out = json.loads((tmp_path / "val.coco.json").read_text())
    assert [i["file_name"] for i in out["images"]] == [
        "val/aaaa/ring_front_center/ring_front_center_100.jpg",
        "val/aaaa/ring_front_center/ring_front_center_101.jpg",
        "val/aaaa/ring_front_center/ring_front_center_102.jpg",
        "val/bbbb/ring_front_center/ring_front_center_100.jpg",
        "val/bbbb/ring_front_center/ring_front_center_101.jpg"]
    assert [i["id"] for i in out["images"]] == [0, 1, 2, 3, 4]
    assert all({"sid", "fid", "name", "width", "height"} <= set(i) for i in out["images"])
    assert out["categories"] == _argoverse_json()["categories"]
    assert out["seq_dirs"] == SEQ_DIRS
    a0 = out["annotations"][0]
    assert a0["iscrowd"] == 0 and a0["area"] == 30 * 40 and a0["track"] == 5
    assert out["annotations"][2]["area"] == 19000.0  # kept where given
    # ids shifted to start at 1: pycocotools would score a matched id-0 ground truth as a miss
    assert [a["id"] for a in out["annotations"]] == [1, 2, 3]


def test_pycocotools_and_underscore_names(tmp_path):
    to_coco(write_json(tmp_path / "val.json", _argoverse_json()), tmp_path / "val.coco.json")
    coco = read_coco(tmp_path / "val.coco.json")
    assert sorted(coco.getImgIds()) == [0, 1, 2, 3, 4]
    assert coco.getCatIds(catNms=["traffic_light", "stop_sign"]) == [6, 7]
    # MMDetection's COCO names ('traffic light') silently miss Argoverse's classes...
    from mmdet.datasets.api_wrappers import COCO as MMCOCO

    with contextlib.redirect_stdout(io.StringIO()):
        mm = MMCOCO(str(tmp_path / "val.coco.json"))
    assert len(mm.get_cat_ids(cat_names=[COCO_CLASSES[i] for i in COCO_TO_ARGOVERSE])) == 6
    # ...while the file's own names (what the manifest reads) find all 8.
    names = read_classes(tmp_path / "val.coco.json")
    assert names == ARGOVERSE_CLASSES
    assert mm.get_cat_ids(cat_names=names) == list(range(8))


def test_to_coco_test_meta_without_annotations(tmp_path):
    raw = _argoverse_json()
    del raw["annotations"]
    summary = to_coco(write_json(tmp_path / "test-meta.json", raw), tmp_path / "t.json")
    assert summary["annotations"] == 0 and summary["has_annotations"] is False
    assert len(read_coco(tmp_path / "t.json").getImgIds()) == 5


def test_to_coco_errors_name_file_and_key(tmp_path):
    bad_sid = _argoverse_json()
    bad_sid["images"][4]["sid"] = 2
    src = write_json(tmp_path / "bad_sid.json", bad_sid)
    with pytest.raises(DatasetError, match=r"bad_sid\.json.*sid 2.*seq_dirs"):
        to_coco(src, tmp_path / "o.json")
    no_dirs = _argoverse_json()
    del no_dirs["seq_dirs"]
    src = write_json(tmp_path / "no_dirs.json", no_dirs)
    with pytest.raises(DatasetError, match=r"no_dirs\.json lacks the top-level key 'seq_dirs'"):
        to_coco(src, tmp_path / "o.json")
    no_name = _argoverse_json()
    del no_name["images"][1]["name"]
    with pytest.raises(DatasetError, match=r"images\[1\] lacks \['name'\]"):
        to_coco(write_json(tmp_path / "no_name.json", no_name), tmp_path / "o.json")
    with pytest.raises(DatasetError, match=r"data root .*Argoverse-1.1/tracking"):
        to_coco(write_json(tmp_path / "ok.json", _argoverse_json()), tmp_path / "o.json",
                data_root_hint=tmp_path)
    assert not (tmp_path / "o.json").exists()


def test_class_mapping_coco_to_argoverse():
    from mmdet.datasets import CocoDataset

    assert tuple(CocoDataset.METAINFO["classes"]) == COCO_CLASSES
    mapping = class_mapping(COCO_CLASSES, ARGOVERSE_CLASSES)
    assert mapping == COCO_TO_ARGOVERSE
    assert sorted(mapping.values()) == list(range(8))
    for coco_label, argo_id in mapping.items():
        assert COCO_CLASSES[coco_label].replace(" ", "_") == ARGOVERSE_CLASSES[argo_id]
    # an 8-class model already predicts Argoverse's ids: no mapping, whatever the spelling
    assert class_mapping(ARGOVERSE_CLASSES, ARGOVERSE_CLASSES) is None
    spaced = [c.replace("_", " ") for c in ARGOVERSE_CLASSES]
    assert class_mapping(spaced, ARGOVERSE_CLASSES) is None
    with pytest.raises(DatasetError, match=r"disk_solid.*traffic_light"):
        class_mapping(class_names(), ARGOVERSE_CLASSES)


def _coco_results(labels, scores, boxes):
    """COCO-80 predictions through the mapping evaluation and streaming both use."""
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    from mtpd.evaluate import to_coco_results

    sample = DetDataSample(metainfo={"img_id": 1})
    sample.pred_instances = InstanceData(bboxes=torch.as_tensor(boxes),
                                         scores=torch.as_tensor(scores),
                                         labels=torch.as_tensor(labels))
    bbox, _ = to_coco_results(sample, list(range(8)), COCO_TO_ARGOVERSE)
    return (np.array([r["category_id"] for r in bbox]), np.array([r["score"] for r in bbox]),
            np.array([r["bbox"] for r in bbox]).reshape(-1, 4))


def test_map_labels_keeps_exactly_the_eight():
    labels = np.arange(80)
    scores = np.linspace(0.1, 0.9, 80)
    boxes = np.stack([labels] * 4, axis=1).astype(np.float32)
    new, kept_scores, kept_boxes = _coco_results(labels, scores, boxes)
    assert new.tolist() == list(range(8))
    assert kept_boxes[:, 0].tolist() == [0, 1, 2, 3, 5, 7, 9, 11]
    assert np.allclose(kept_scores, scores[[0, 1, 2, 3, 5, 7, 9, 11]])
    empty = _coco_results(np.array([4, 6]), np.array([0.5, 0.5]), np.zeros((2, 4)))
    assert [len(a) for a in empty] == [0, 0, 0]


def test_scale_to_size():
    assert scale_to_size(0.5) == (960, 600)
    assert scale_to_size(0.75) == (1440, 900)
    assert scale_to_size(1.0) == (1920, 1200)
    assert scale_to_size(0.5, native=(320, 200)) == (160, 100)
    for bad in (0, -0.5, 2.5):
        with pytest.raises(ModelConfigError, match="outside"):
            scale_to_size(bad)
