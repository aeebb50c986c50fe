"""Dataset manifests (mtpd/data/manifest.py): bad specs, manifests and JSON named in one line, and
a missing COCO says where to get it."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtpd.data.manifest import DatasetError, DatasetManifest
from mtpd.data.shapes import ShapesSpec
from tests.helpers import one_line_error, run_mtpd

RETINA = "mtpd::shapes/retinanet_r18w16_shapes.py"


def test_bad_spec_and_manifest_errors(tmp_path):
    with pytest.raises(ValueError, match="image_size"):
        ShapesSpec.from_settings(image_size=8)
    with pytest.raises(DatasetError, match="does not exist"):
        DatasetManifest.load(tmp_path / "missing.json")
    bad = tmp_path / "m.json"
    bad.write_text(json.dumps({"name": "x", "splits": {"train": {"ann_file": "a.json"}}}))
    with pytest.raises(DatasetError, match="splits.train lacks 'img_dir'"):
        DatasetManifest.load(bad)
    bad.write_text(json.dumps({"name": "x", "splits": {
        "train": {"ann_file": "a.json", "img_dir": "i/"}}}))
    with pytest.raises(DatasetError, match="no split 'val'"):
        DatasetManifest.load(bad).split("val")


def test_missing_coco_says_where_to_get_it(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mtpd", "data", "manifest", "--out",
                        str(tmp_path / "m" / "dataset.json"), "--name", "coco", "--data-root",
                        str(tmp_path / "coco"), "--split",
                        "train:annotations/instances_train2017.json:train2017/"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "instances_train2017.json" in r.stderr and "cocodataset.org" in r.stderr
    assert not (tmp_path / "m" / "dataset.json").exists()


def test_corrupt_json_manifest_and_annotations(tmp_path, shapes_data):
    bad = tmp_path / "dataset.json"
    bad.write_text('{"name": "x", "splits": ')
    r = run_mtpd("evaluate", "--config", RETINA, "--checkpoint", "x.pth", "--dataset", str(bad),
             "--out", str(tmp_path / "m.json"))
    one_line_error(r, "dataset.json is not valid JSON")
    manifest = json.loads(Path(shapes_data).read_text())
    root = Path(shapes_data).parent
    ann = tmp_path / "train.json"
    ann.write_text((root / "train.json").read_text()[:-200])
    manifest["data_root"] = str(root)
    manifest["splits"]["train"]["ann_file"] = str(ann)
    m = tmp_path / "m" / "dataset.json"
    m.parent.mkdir()
    m.write_text(json.dumps(manifest))
    r = run_mtpd("data", "check", "--dataset", str(m), "--out", str(tmp_path / "checked.json"))
    one_line_error(r, "train.json")
    assert not (tmp_path / "checked.json").exists()
