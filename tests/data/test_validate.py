"""Dataset validation (mtpd/data/validate.py): every kind of problem is one message naming the
file, the ids and the fix; a failing dataset writes nothing; a passing split is cached by its
annotation file's content; `mtpd data check` names them in one line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mtpd.data.manifest import DatasetManifest
from mtpd.data.validate import DROP_KEY, check_categories, validate_dataset, validate_split
from mtpd.errors import DatasetError
from tests.helpers import (
    SMALL_H,
    SMALL_W,
    one_line_error,
    run_mtpd,
    small_coco,
    small_dataset,
    write_split,
)


def _fails(root: Path, splits: dict[str, dict[str, Any] | str] | None = None, **kw: Any) -> str:
    """Validates a dataset that must fail (`splits`, else the manifest already in `root`);
    checks that nothing was written; returns the error message."""
    manifest = small_dataset(root, splits) if splits is not None else root / "dataset.json"
    with pytest.raises(DatasetError) as e:
        validate_dataset(manifest, root / "out" / "report.json", cache_dir=root / "cache", **kw)
    assert not (root / "out").exists()  # no report, no cleaned file
    assert not (root / "cache").exists()  # failures are never cached
    return str(e.value)


def _one_problem(root: Path, coco: dict[str, Any] | str, **kw: Any) -> str:
    """The single message validate_split gives for a one-problem file (and the dataset error)."""
    ann, img_dir = write_split(root, coco)
    report = validate_split(ann, img_dir, **kw)
    assert len(report.problems) == 1, report.problems
    msg = report.problems[0]
    assert msg.startswith(f"{ann}: ")
    assert msg in _fails(root, {"train": coco})
    return msg


def test_clean_dataset_passes_and_second_run_is_cached(shapes_data, tmp_path):
    out = tmp_path / "report.json"
    first = validate_dataset(shapes_data, out, cache_dir=tmp_path / "cache")
    assert json.loads(out.read_text()) == first
    splits = first["splits"]
    assert {k: v["images"] for k, v in splits.items()} == {"train": 40, "proxy": 12, "val": 12}
    m = DatasetManifest.load(shapes_data)
    for name, s in splits.items():
        assert not s["cached"] and s["categories"] == 12 and s["annotations"] > 0
        assert s["dropped_boxes"] == 0 and s["cleaned_file"] is None
        assert s["use_ann_file"] == str(m.splits[name].ann_file)
        assert len(s["sha256"]) == 64 and s["seconds"] >= 0
    assert len(list((tmp_path / "cache").glob("*.json"))) == 3
    second = validate_dataset(shapes_data, out, cache_dir=tmp_path / "cache")
    assert all(s["cached"] for s in second["splits"].values())
    assert json.loads(out.read_text())["splits"]["train"]["cached"]
    for name, s in second["splits"].items():
        assert {k: v for k, v in s.items() if k not in ("cached", "seconds")} == \
            {k: v for k, v in splits[name].items() if k not in ("cached", "seconds")}


def test_cache_follows_content_and_options(tmp_path):
    manifest = small_dataset(tmp_path, {"train": small_coco(), "val": small_coco()})
    out, cache = tmp_path / "out" / "report.json", tmp_path / "cache"

    def cached(**kw: Any) -> dict[str, bool]:
        rep = validate_dataset(manifest, out, cache_dir=cache, **kw)
        return {k: v["cached"] for k, v in rep["splits"].items()}

    assert cached() == {"train": False, "val": False}
    assert cached() == {"train": True, "val": True}
    coco = small_coco()
    coco["annotations"][0]["bbox"] = [1, 1, 5, 5]
    (tmp_path / "val.json").write_text(json.dumps(coco))
    assert cached() == {"train": True, "val": False}  # only the changed file is parsed again
    assert cached(decode_sample=1) == {"train": False, "val": False}
    assert cached(check_images=False) == {"train": False, "val": False}
    default = validate_dataset(manifest, out)  # default cache: beside the report
    assert (out.parent / ".validate-cache").is_dir() and not default["splits"]["train"]["cached"]


@pytest.mark.parametrize("text, words", [
    ("{\"images\": [", ["not valid JSON", "export it again"]),
    ("[1, 2]", ["top level is a JSON list", "'images', 'annotations' and 'categories'"]),
    (json.dumps({"images": [], "categories": [{"id": 1, "name": "a"}]}),
     ["not a COCO annotation object", "'annotations' is missing", "keys found: categories"]),
    (json.dumps({"images": [], "annotations": {}, "categories": []}),
     ["'annotations' is missing or not a list"]),
    (json.dumps(small_coco(categories=[])), ["'categories' list is empty", "list every class"]),
])
def test_not_json_or_not_coco(tmp_path, text, words):
    msg = _one_problem(tmp_path, text)
    for w in words:
        assert w in msg


@pytest.mark.parametrize("key, one", [("images", "image"), ("annotations", "annotation"),
                                      ("categories", "category")])
def test_duplicate_ids(tmp_path, key, one):
    coco = small_coco()
    coco[key][1]["id"] = coco[key][0]["id"]
    dup = coco[key][0]["id"]
    if key == "images":  # the image whose id was reused is then only known once
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 2]
    if key == "categories":
        coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] == dup]
    msg = _one_problem(tmp_path, coco)
    assert f"duplicate {one} ids" in msg and f"{dup} (2 times)" in msg
    assert f"give every {one} a unique id" in msg


def test_missing_ids(tmp_path):
    coco = small_coco()
    del coco["annotations"][2]["id"]
    msg = _one_problem(tmp_path, coco)
    assert "1 annotation has no integer 'id' (positions 2 in 'annotations')" in msg
    assert "give every annotation a unique integer id" in msg


def test_unknown_image_and_category(tmp_path):
    coco = small_coco()
    coco["annotations"][0]["image_id"] = 99
    coco["annotations"][1]["image_id"] = 98
    coco["annotations"][3]["category_id"] = 7
    ann, img_dir = write_split(tmp_path, coco)
    problems = validate_split(ann, img_dir).problems
    assert len(problems) == 2
    img, cat = problems
    assert "2 annotations refer to image ids that do not exist" in img
    assert "annotation ids 10, 11; 'image_id' 99, 98" in img
    assert "remove those annotations or add the missing images" in img
    assert "1 annotation refers to category ids that do not exist" in cat
    assert "annotation ids 13; 'category_id' 7" in cat and "add the missing categories" in cat
    msg = _fails(tmp_path, {"train": coco})
    assert msg.splitlines()[1:] == problems  # one problem per line after the heading
    assert msg.splitlines()[0].endswith("2 problems; fix them and run again:")


@pytest.mark.parametrize("bbox, words", [
    ([1, 2, float("nan"), 3], ["NaN or infinite"]),
    ([1, 2, 3, float("inf")], ["NaN or infinite"]),
    ([1, 2, 0, 3], ["zero or negative width or height"]),
    ([1, 2, 5, -1], ["zero or negative width or height"]),
    ([20, 2, 14, 3], ["outside its image by more than 1 px", "in image 2 of 32x24 px"]),
    ([-1.5, 2, 5, 3], ["outside its image"]),
    ([1, 2, 3], ["not 4 numbers"]),
    ("1,2,3,4", ["not 4 numbers"]),
    ([1, "2", 3, 4], ["not 4 numbers"]),
    ([1, 2, True, 4], ["not 4 numbers"]),
    (None, ["not 4 numbers"]),
])
def test_bad_boxes(tmp_path, bbox, words):
    coco = small_coco()
    coco["annotations"][1]["bbox"] = bbox
    msg = _one_problem(tmp_path, coco)
    assert "1 annotation has" in msg and "annotation ids 11;" in msg
    assert f"e.g. annotation 11 has bbox {bbox!r}" in msg
    assert f"fix or remove them, or set {DROP_KEY}: true to drop bad boxes" in msg
    for w in words:
        assert w in msg


def test_boxes_within_tolerance_and_many_ids(tmp_path):
    coco = small_coco()
    # 1 px out on every side: allowed
    coco["annotations"][0]["bbox"] = [-1, -1, SMALL_W + 2, SMALL_H + 2]
    ann, img_dir = write_split(tmp_path, coco)
    assert validate_split(ann, img_dir).ok
    coco["annotations"] = [dict(coco["annotations"][1], id=100 + k, bbox=[0, 0, 0, 0])
                           for k in range(8)]
    msg = _one_problem(tmp_path, coco)
    assert "8 annotations have" in msg and "100, 101, 102, 103, 104 and 3 more" in msg


def test_drop_bad_boxes_writes_cleaned_file(tmp_path):
    coco = small_coco()
    coco["annotations"][0]["bbox"] = [1, 2, 0, 3]
    coco["annotations"][2]["bbox"] = [1, 2, float("nan"), 3]
    ann, img_dir = write_split(tmp_path, coco)
    source = ann.read_bytes()
    out = tmp_path / "clean" / "train.clean.json"
    report = validate_split(ann, img_dir, drop_bad_boxes=True, cleaned_out=out)
    assert report.ok and report.dropped_boxes == 2 and report.dropped_ids == [10, 12]
    assert report.cleaned_file == out.resolve() and report.use_ann_file == out.resolve()
    assert [a["id"] for a in json.loads(out.read_text())["annotations"]] == [11, 13]
    assert ann.read_bytes() == source
    assert any("dropped 2 annotations" in n and "10, 12" in n for n in report.notes)
    with pytest.raises(ValueError, match="cleaned_out"):
        validate_split(ann, img_dir, drop_bad_boxes=True)

    manifest = small_dataset(tmp_path, {"train": coco, "val": small_coco()})
    rep = validate_dataset(manifest, tmp_path / "out" / "report.json", drop_bad_boxes=True)
    train, val = rep["splits"]["train"], rep["splits"]["val"]
    cleaned = (tmp_path / "out" / "train.clean.json").resolve()
    assert train["dropped_boxes"] == 2 and train["cleaned_file"] == str(cleaned)
    assert train["use_ann_file"] == str(cleaned) and train["dropped_ids"] == [10, 12]
    assert val["dropped_boxes"] == 0 and val["cleaned_file"] is None
    assert not (tmp_path / "out" / "val.clean.json").exists()
    again = validate_dataset(manifest, tmp_path / "out" / "report.json", drop_bad_boxes=True)
    assert again["splits"]["train"]["cached"] and again["splits"]["train"]["cleaned_file"]
    cleaned.unlink()  # a cached result whose cleaned file is gone is checked again
    third = validate_dataset(manifest, tmp_path / "out" / "report.json", drop_bad_boxes=True)
    assert not third["splits"]["train"]["cached"] and cleaned.is_file()


def test_drop_bad_boxes_does_not_excuse_other_problems(tmp_path):
    coco = small_coco()
    coco["annotations"][0]["bbox"] = [1, 2, 0, 3]
    coco["annotations"][1]["image_id"] = 42
    ann, img_dir = write_split(tmp_path, coco)
    out = tmp_path / "c.json"
    report = validate_split(ann, img_dir, drop_bad_boxes=True, cleaned_out=out)
    assert not report.ok and not out.exists()
    assert len(report.problems) == 1 and "'image_id' 42" in report.problems[0]
    msg = _fails(tmp_path, {"train": coco}, drop_bad_boxes=True)
    assert "annotation ids 11; 'image_id' 42" in msg and "zero or negative" not in msg


@pytest.mark.parametrize("key", ["file_name", "width", "height"])
def test_images_without_fields(tmp_path, key):
    coco = small_coco()
    del coco["images"][1][key]
    if key != "file_name":
        coco["images"][2][key] = 0
    msg = _one_problem(tmp_path, coco)
    n, ids = ("1 image has", "image ids 2)") if key == "file_name" else \
        ("2 images have", "image ids 2, 3)")
    assert f"{n} no usable '{key}'" in msg and ids in msg and "give every image a" in msg


def test_missing_image_files(tmp_path):
    small_dataset(tmp_path, {"train": small_coco()})
    ann, img_dir = (tmp_path / "train.json").resolve(), (tmp_path / "images").resolve()
    (img_dir / "2.png").unlink()
    report = validate_split(ann, img_dir)
    assert report.problems == [
        f"{ann}: 1 image file does not exist under {img_dir} (image ids 2: 2.png); put the "
        "files there, or correct the split's img_dir or the images' file_name"]
    assert report.problems[0] in _fails(tmp_path)
    gone = validate_split(ann, tmp_path / "nowhere").problems
    assert len(gone) == 1 and "image directory" in gone[0] and "does not exist" in gone[0]
    assert validate_split(ann, tmp_path / "nowhere", check_images=False).ok


def test_zero_byte_and_text_images_are_unreadable(tmp_path):
    small_dataset(tmp_path, {"train": small_coco()})
    ann, img_dir = (tmp_path / "train.json").resolve(), (tmp_path / "images").resolve()
    (img_dir / "1.png").write_bytes(b"")
    (img_dir / "3.png").write_text("hello, I am not a picture\n")
    for decode_sample in (0, 200):  # found from the first bytes alone
        problems = validate_split(ann, img_dir, decode_sample=decode_sample).problems
        assert len(problems) == 1
        msg = problems[0]
        assert msg.startswith(f"{ann}: 2 image files are unreadable under {img_dir}")
        assert "1: 1.png is empty (0 bytes)" in msg
        assert "3: 3.png is not a JPEG, PNG, BMP, WebP or TIFF image" in msg
        assert "replace them with valid" in msg and "or remove those images" in msg
    assert msg in _fails(tmp_path)


def test_truncated_png_is_caught_by_decode_sample(tmp_path):
    small_dataset(tmp_path, {"train": small_coco()})
    ann, img_dir = (tmp_path / "train.json").resolve(), (tmp_path / "images").resolve()
    data = (img_dir / "2.png").read_bytes()
    (img_dir / "2.png").write_bytes(data[:len(data) // 2])  # valid magic bytes, cut short
    assert validate_split(ann, img_dir, decode_sample=0).ok  # magic bytes alone pass it
    problems = validate_split(ann, img_dir).problems
    assert len(problems) == 1
    assert "1 image file is unreadable" in problems[0]
    assert "2: 2.png cannot be decoded by OpenCV (truncated or corrupt)" in problems[0]
    assert "replace them with valid" in problems[0]
    assert problems[0] in _fails(tmp_path)


def test_other_image_formats_pass_the_magic_check(tmp_path):
    coco = small_coco()
    for im, ext in zip(coco["images"], ("jpg", "bmp", "tiff"), strict=True):
        im["file_name"] = f"{im['id']}.{ext}"
    ann, img_dir = write_split(tmp_path, coco)
    assert validate_split(ann, img_dir).ok


def test_category_mismatch_names_both_files(tmp_path):
    val = small_coco(categories=[{"id": 1, "name": "cat"}, {"id": 2, "name": "horse"},
                            {"id": 3, "name": "cow"}])
    for name, coco in (("train", small_coco()), ("val", val)):
        write_split(tmp_path, coco, name)
    reports = {name: validate_split(*write_split(tmp_path, c, name))
               for name, c in (("train", small_coco()), ("val", val))}
    assert all(r.ok for r in reports.values())
    problems = check_categories(reports)
    assert len(problems) == 1
    train_file, val_file = (str(r.ann_file) for r in reports.values())
    assert train_file in problems[0] and val_file in problems[0]
    assert "ids only in val: 3" in problems[0]
    assert "different names for ids 2: 'dog' vs 'horse'" in problems[0]
    assert "give every split the same categories" in problems[0]
    assert check_categories({"train": reports["train"], "proxy": reports["train"]}) == []
    msg = _fails(tmp_path, {"train": small_coco(), "val": val})
    assert problems[0] in msg


def test_every_problem_is_listed(tmp_path):
    coco = small_coco()
    coco["annotations"][1]["id"] = 10
    coco["annotations"][3]["bbox"] = [1, 2, 3]
    del coco["images"][2]["width"]
    lines = _fails(tmp_path, {"train": coco, "val": "oops"}).splitlines()
    assert lines[0].endswith("4 problems; fix them and run again:")
    assert len(lines) == 5  # the heading, then one line per problem
    assert "no usable 'width'" in lines[1] and "duplicate annotation ids" in lines[2]
    assert "not 4 numbers" in lines[3] and "val.json: not valid JSON" in lines[4]


def test_odd_entries(tmp_path):
    ann, img_dir = write_split(tmp_path, small_coco(annotations=[]))
    assert validate_split(ann, img_dir).ok  # an image list without boxes is valid COCO
    coco = small_coco()
    coco["annotations"][1]["bbox"] = [1, 2, 10**400, 4]  # beyond float range
    coco["annotations"].append("not an object")
    ann, img_dir = write_split(tmp_path, coco)
    entries, box = validate_split(ann, img_dir).problems
    assert "1 entry of 'annotations' is not a JSON object (positions 4)" in entries
    assert "make every entry of 'annotations' an object" in entries
    assert "not 4 numbers" in box and "annotation ids 11;" in box and box.endswith(
        f"set {DROP_KEY}: true to drop bad boxes")


def test_missing_image_and_bad_boxes_are_named(tmp_path, shapes_data):
    root = Path(shapes_data).parent
    coco = json.loads((root / "val.json").read_text())
    coco["annotations"][0]["bbox"] = [float("nan"), 1, 2, 3]
    coco["annotations"].append({**coco["annotations"][1], "id": 99999, "image_id": 424242})
    ann = tmp_path / "val.json"
    ann.write_text(json.dumps(coco))
    manifest = {"name": "x", "data_root": str(root),
                "splits": {"val": {"ann_file": str(ann), "img_dir": str(root / "images/val")}}}
    m = tmp_path / "dataset.json"
    m.write_text(json.dumps(manifest))
    r = run_mtpd("data", "check", "--dataset", str(m), "--out", str(tmp_path / "checked.json"))
    line = one_line_error(r, "val.json", "424242", "dataset.drop_bad_boxes")
    assert "non-finite" in line or "nan" in line.lower()
    assert not (tmp_path / "checked.json").exists()
