"""COCO-format quirks that change AP without a word (mtpd/data/fixes.py): the checked copy fixes
them (AP on it equals AP on a copy fixed by hand, with pycocotools and faster-coco-eval alike)
or the check refuses them; the user's own file is never changed."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mtpd.data.argoverse import to_coco
from mtpd.data.fixes import id_offset
from mtpd.data.validate import validate_dataset, validate_split
from mtpd.evaluate import COCO_BACKENDS, coco_eval
from tests.helpers import QUIRK_BOXES, QUIRK_SIZE, quirk_coco, quirk_dataset, write_json

SQUARE = [[60, 10, 90, 10, 90, 40, 60, 40]]  # a 30 x 30 polygon


def _perfect(coco: dict[str, Any]) -> list[dict[str, Any]]:
    """One detection exactly on every ground-truth box."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
             "score": 0.9} for a in coco["annotations"]]


def _check(root: Path, coco: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """Checks `coco` as a dataset; returns the annotation file to use and its split report."""
    source = json.dumps(coco)
    report = validate_dataset(quirk_dataset(root, coco), root / "out" / "checked.json")
    assert (root / "val.json").read_text() == source  # the user's file stays as it was
    split = report["splits"]["val"]
    return Path(split["ann_file"]), split


def _ap(ann_file: Path, coco: dict[str, Any], backend: str) -> float | None:
    return coco_eval(ann_file, _perfect(coco), backend=backend)["AP"]


@pytest.mark.parametrize("backend", COCO_BACKENDS)
def test_annotation_id_0_is_shifted_and_scores_100(tmp_path, backend):
    raw = quirk_coco(first_id=0)
    fixed, split = _check(tmp_path, raw)
    assert fixed == (tmp_path / "out" / "val.clean.json").resolve()
    by_hand = write_json(tmp_path / "renumbered.json", quirk_coco(first_id=1))
    if backend == "faster_coco_eval":  # it warns (1.8), yet scores the same as pycocotools
        with pytest.warns(UserWarning, match="annotation id 0"):
            assert _ap(tmp_path / "val.json", raw, backend) < 100
    else:  # a perfect detection of annotation id 0 is a false positive
        assert _ap(tmp_path / "val.json", raw, backend) < 100
    assert _ap(fixed, raw, backend) == _ap(by_hand, raw, backend) == 100
    assert [a["id"] for a in json.loads(fixed.read_text())["annotations"]] == [1, 2, 3, 4]
    assert len(split["fixes"]) == 1 and "annotation ids start at 0: added 1" in split["fixes"][0]
    assert str(tmp_path / "val.json") in split["fixes"][0]
    again, cached = _check(tmp_path, raw)  # cached: the same copy and fixes, nothing parsed
    assert cached["cached"] and again == fixed and cached["fixes"] == split["fixes"]


@pytest.mark.parametrize("backend", COCO_BACKENDS)
def test_string_iscrowd_is_made_0_or_1(tmp_path, backend):
    raw = quirk_coco()
    for a in raw["annotations"]:
        a["iscrowd"] = "0"
    fixed, split = _check(tmp_path / "s", raw)
    by_hand = write_json(tmp_path / "ints.json", quirk_coco())
    if backend == "pycocotools":  # "0" is true: every box a crowd, ignored
        assert _ap(tmp_path / "s" / "val.json", raw, backend) is None
    assert _ap(fixed, raw, backend) == _ap(by_hand, raw, backend) == 100
    assert {a["iscrowd"] for a in json.loads(fixed.read_text())["annotations"]} == {0}
    assert "set 'iscrowd' of 4 annotations to 0 or 1" in split["fixes"][0]
    assert "given as '0'" in split["fixes"][0]


@pytest.mark.parametrize("backend", COCO_BACKENDS)
def test_boolean_and_missing_iscrowd_are_made_0_or_1(tmp_path, backend):
    """Booleans score like 0/1 in both evaluators (measured); a missing iscrowd fails in
    pycocotools. The checked copy holds 0/1 either way, as COCO defines it."""
    raw = quirk_coco()
    raw["annotations"][0]["iscrowd"] = False
    raw["annotations"][1]["iscrowd"] = True  # a crowd region: its detection is ignored
    raw["annotations"][2]["iscrowd"] = None
    del raw["annotations"][3]["iscrowd"]
    fixed, split = _check(tmp_path, raw)
    by_hand = quirk_coco()
    by_hand["annotations"][1]["iscrowd"] = 1
    by_hand = write_json(tmp_path / "ints.json", by_hand)
    assert _ap(fixed, raw, backend) == _ap(by_hand, raw, backend) == 100
    assert [a["iscrowd"] for a in json.loads(fixed.read_text())["annotations"]] == [0, 1, 0, 0]
    assert "given as false, true, null" in split["fixes"][0]


@pytest.mark.parametrize("backend", COCO_BACKENDS)
def test_missing_negative_and_oversized_area_are_recomputed(tmp_path, backend):
    """A box whose area lies outside every size range is ignored: missing it costs nothing, so
    AP is too high; a missing area fails in pycocotools."""
    raw = quirk_coco()
    del raw["annotations"][0]["area"]
    raw["annotations"][1]["area"] = -1
    raw["annotations"][2]["area"] = 10**12  # beyond the 'all' range too
    raw["annotations"][3]["area"] = 0  # MMDetection's training drops it
    fixed, split = _check(tmp_path / "all", raw)
    by_hand = write_json(tmp_path / "areas.json", quirk_coco())
    missed = [d for d in _perfect(raw) if d["bbox"] != QUIRK_BOXES[1]]  # boxes 2 and 4 missed
    ap = coco_eval(fixed, missed, backend=backend)["AP"]
    assert ap == coco_eval(by_hand, missed, backend=backend)["AP"] and 40 < ap < 60
    assert [a["area"] for a in json.loads(fixed.read_text())["annotations"]] == \
        [b[2] * b[3] for b in QUIRK_BOXES * 2]
    fix = split["fixes"][0]
    assert "set 'area' of 4 annotations" in fix and "annotation ids 1, 2, 3, 4" in fix
    assert "1 missing, 2 not a positive number, 1 larger than the box" in fix

    negative = quirk_coco()
    negative["annotations"][1]["area"] = negative["annotations"][3]["area"] = -1
    assert coco_eval(write_json(tmp_path / "negative.json", negative), missed,
                     backend=backend)["AP"] == 100  # the missed boxes do not count
    if backend == "pycocotools":
        with pytest.raises(KeyError, match="area"):
            coco_eval(tmp_path / "all" / "val.json", missed, backend=backend)


def test_area_comes_from_the_segmentation_where_there_is_one(tmp_path):
    raw = quirk_coco()
    raw["annotations"][0].update(bbox=[60, 10, 30, 30], segmentation=SQUARE)
    del raw["annotations"][0]["area"]
    # column-major: columns 10 and 11, rows 10-29
    head = [QUIRK_SIZE * 10 + 10, 20, QUIRK_SIZE - 20, 20]
    rle = {"size": [QUIRK_SIZE, QUIRK_SIZE],
           "counts": [*head, QUIRK_SIZE * QUIRK_SIZE - sum(head)]}
    raw["annotations"][1].update(bbox=[10, 10, 2, 20], segmentation=rle, area=-3)
    fixed, _ = _check(tmp_path, raw)
    areas = [a["area"] for a in json.loads(fixed.read_text())["annotations"]]
    assert areas[0] == pytest.approx(30 * 30, abs=61)  # rasterised polygon, as pycocotools
    assert areas[1] == 40  # the RLE's pixels: 2 columns of 20
    assert areas[2:] == [900, 800]  # given and plausible: kept


def test_string_annotation_ids_are_numbered(tmp_path):
    raw = quirk_coco()
    for a in raw["annotations"]:
        a["id"] = f"a{a['id']}"
    fixed, split = _check(tmp_path, raw)
    with pytest.raises(TypeError):  # faster-coco-eval refuses string ids
        _ap(tmp_path / "val.json", raw, "faster_coco_eval")
    assert _ap(fixed, raw, "faster_coco_eval") == 100
    assert [a["id"] for a in json.loads(fixed.read_text())["annotations"]] == [1, 2, 3, 4]
    assert "numbered them 1 to 4 in file order" in split["fixes"][0]


def test_a_clean_file_is_used_as_it_is(tmp_path):
    fixed, split = _check(tmp_path, quirk_coco())
    assert fixed == (tmp_path / "val.json").resolve()
    assert split["fixes"] == [] and split["cleaned_file"] is None


@pytest.mark.parametrize("value", [2, -1, "yes", "true", [0], 0.5])
def test_iscrowd_that_means_nothing_is_refused(tmp_path, value):
    raw = quirk_coco()
    raw["annotations"][2]["iscrowd"] = value
    quirk_dataset(tmp_path, raw)
    report = validate_split(tmp_path / "val.json", tmp_path / "images")
    assert report.problems == [
        f"{tmp_path / 'val.json'}: 1 annotation has an 'iscrowd' that is not 0 or 1 (annotation "
        f"ids 3; 'iscrowd' {json.dumps(value) if not isinstance(value, str) else repr(value)}); "
        "set it to 0 for an object or 1 for a crowd region"]


def test_argoverse_converter_shifts_ids_as_the_check_does(tmp_path):
    """One rule (`id_offset`): a converted Argoverse-HD file needs no id fix, and a 0-based
    plain COCO file gets the ids the converter would give it."""
    frames = [{"id": i, "sid": 0, "fid": i, "name": f"{i}.png", "width": QUIRK_SIZE,
               "height": QUIRK_SIZE}
              for i in (0, 1)]
    anns = [dict(a, id=a["id"] - 1) for a in quirk_coco()["annotations"]]
    for a in anns:
        a["image_id"] -= 1
    src = write_json(tmp_path / "argo.json", {
        "images": frames, "annotations": anns, "categories": [{"id": 1, "name": "a"}],
        "sequences": ["s"], "seq_dirs": ["s"]})
    info = to_coco(src, tmp_path / "converted.json")
    converted = json.loads((tmp_path / "converted.json").read_text())
    assert info["annotation_id_offset"] == id_offset([a["id"] for a in anns]) == 1
    (tmp_path / "s").mkdir()
    for i in (0, 1):
        cv2.imwrite(str(tmp_path / "s" / f"{i}.png"),
                    np.zeros((QUIRK_SIZE, QUIRK_SIZE, 3), np.uint8))
    assert validate_split(tmp_path / "converted.json", tmp_path).fixes == []
    plain = copy.deepcopy(converted)
    plain["annotations"] = [dict(a, id=a["id"] - 1) for a in plain["annotations"]]
    write_json(tmp_path / "plain.json", plain)
    out = tmp_path / "plain.clean.json"
    report = validate_split(tmp_path / "plain.json", tmp_path, cleaned_out=out)
    assert json.loads(out.read_text())["annotations"] == converted["annotations"]
    assert report.use_ann_file == out.resolve()
