"""Every entry point that reads annotations refuses unchecked bad data in one line (it checks a
manifest `mtpd data check` did not write, cached by content); a checked manifest is used as it
is, and evaluation scores against the checked copy's annotation file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mtpd.cli import main
from mtpd.data.checked import checked_dir, load_checked
from mtpd.data.manifest import DatasetManifest
from mtpd.data.sequences import SequencesSpec, generate_sequences
from mtpd.errors import DatasetError
from mtpd.evaluate import coco_eval
from tests.helpers import small_coco, small_dataset

RETINA = "mtpd::shapes/retinanet_r18w16_shapes.py"
ENTRY_POINTS = ["train", "evaluate", "pretrain", "stream", "export"]


def _nan_box(coco: dict[str, Any]) -> None:
    coco["annotations"][1]["bbox"] = [1, 2, float("nan"), 3]


def _duplicate_image_ids(coco: dict[str, Any]) -> None:
    coco["images"][1]["id"] = 1
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 2]


def _missing_image_id(coco: dict[str, Any]) -> None:
    coco["annotations"][0]["image_id"] = 99


BAD = {  # what breaks the data, and what the one line must say
    "nan box": (_nan_box, ["annotation ids 11", "NaN or infinite"]),
    "duplicate image ids": (_duplicate_image_ids, ["duplicate image ids", "1 (2 times)"]),
    "missing image id": (_missing_image_id, ["annotation ids 10", "'image_id' 99",
                                             "add the missing images"]),
}


def _argv(entry: str, manifest: Path, tmp: Path) -> list[str]:
    """The command line of `entry` on split train of `manifest` (a checkpoint that is never
    read: the data is refused first)."""
    common = ["--config", RETINA, "--dataset", str(manifest), "--out", str(tmp / "out")]
    model = ["--checkpoint", str(tmp / "never.pth"), "--split", "train"]
    return {"train": ["train", *common, "--epochs", "1", "--num-workers", "0"],
            "evaluate": ["evaluate", *common, *model, "--num-workers", "0"],
            "pretrain": ["pretrain", *common, "--epochs", "1"],
            "stream": ["stream", *common, *model, "--scale", "0.5", "--seed", "0",
                       "--latency", "0.01"],
            "export": ["export", *common, *model]}[entry]


def _bad_manifest(root: Path, bad: str) -> Path:
    coco = small_coco()
    BAD[bad][0](coco)
    return small_dataset(root, {"train": coco})


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_unchecked_bad_data_is_refused_in_one_line(tmp_path, capsys, entry, bad):
    manifest = _bad_manifest(tmp_path, bad)
    assert main(_argv(entry, manifest, tmp_path)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mtpd ")]
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith(f"mtpd {entry}: error: dataset manifest {manifest} was not checked")
    assert f"found 1 problem; {tmp_path / 'train.json'}: " in line
    for words in BAD[bad][1]:
        assert words in line, (words, line)
    assert f"run `mtpd data check --dataset {manifest} --out CHECKED.json`" in line
    assert not (tmp_path / "out").exists()
    assert not (checked_dir(manifest) / "checked.json").exists()  # failures write no check


def test_python_dash_m_mtpd_train_refuses_a_nan_box(tmp_path):
    manifest = _bad_manifest(tmp_path, "nan box")
    r = subprocess.run([sys.executable, "-m", "mtpd", *_argv("train", manifest, tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("mtpd ")]
    assert len(lines) == 1 and "NaN or infinite" in lines[0] and "train.json" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.work").exists()


def test_unchecked_manifest_is_checked_once_then_cached(tmp_path):
    manifest = small_dataset(tmp_path, {"train": small_coco(), "val": small_coco()})
    first = load_checked(manifest)
    out = checked_dir(manifest) / "checked.json"
    assert first.path == out and first.checks is not None
    assert first.splits["train"].ann_file == (tmp_path / "train.json").resolve()
    report = json.loads(out.read_text())
    assert not any(s["cached"] for s in report["splits"].values())
    load_checked(manifest)
    assert all(s["cached"] for s in json.loads(out.read_text())["splits"].values())
    again = load_checked(out)  # a checked manifest is used as it is: nothing checked, written
    assert again.path == out and not checked_dir(out).exists()


def test_data_check_prints_its_fixes(tmp_path, capsys):
    coco = small_coco()
    coco["annotations"][0]["id"] = 0
    manifest = small_dataset(tmp_path, {"train": coco})
    assert main(["data", "check", "--dataset", str(manifest), "--out",
                 str(tmp_path / "c" / "checked.json")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("train: 3 images, 4 annotations, 0 boxes dropped")
    assert out[1] == (f"  fixed in {(tmp_path / 'c' / 'train.clean.json').resolve()}: "
                      f"{tmp_path / 'train.json'}: annotation ids start at 0: added 1 to every "
                      "annotation id, since pycocotools and faster-coco-eval count a perfect "
                      "detection of annotation id 0 as a false positive")


def test_check_that_cannot_be_written_is_refused_in_one_line(tmp_path):
    manifest = small_dataset(tmp_path, {"train": small_coco()})
    checked_dir(manifest).write_text("a file where the check's directory would go")
    with pytest.raises(DatasetError) as e:
        load_checked(manifest)
    assert "was not checked" in str(e.value) and "cannot be written to" in str(e.value)
    assert "mtpd data check --dataset" in str(e.value)


def test_checked_manifest_trains_and_unchecked_quirks_evaluate_on_the_fixed_copy(
        tmp_path, shapes_data):
    """`mtpd data check` -> train -> evaluate -> pretrain, as the DAG runs them (nothing checked
    again); the same validation split with 0-based annotation ids, given raw to `mtpd evaluate`,
    is scored against the checked copy: as on the correctly numbered file; clean sequences given
    raw to `mtpd stream` are checked and streamed."""
    checked = tmp_path / "data" / "checked.json"
    assert main(["data", "check", "--dataset", str(shapes_data), "--out", str(checked)]) == 0
    model = tmp_path / "model.pth"
    assert main(["train", "--config", RETINA, "--dataset", str(checked), "--out", str(model),
                 "--epochs", "1", "--batch-size", "8", "--num-workers", "0", "--seed", "0"]) == 0
    m = tmp_path / "m_checked.json"
    assert main(["evaluate", "--config", RETINA, "--checkpoint", str(model), "--dataset",
                 str(checked), "--split", "val", "--out", str(m), "--num-workers", "0"]) == 0
    val = DatasetManifest.load(shapes_data).split("val")
    assert json.loads(m.read_text())["ground_truth"] == str(val.ann_file)
    assert not checked_dir(checked).exists()

    zero_based = json.loads(val.ann_file.read_text())
    for a in zero_based["annotations"]:
        a["id"] -= 1
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "val.json").write_text(json.dumps(zero_based))
    (raw / "dataset.json").write_text(json.dumps({"name": "z", "data_root": str(raw), "splits": {
        "val": {"ann_file": "val.json", "img_dir": str(val.img_dir)}}}))
    rec, preds = tmp_path / "m_raw.json", tmp_path / "preds.json"
    assert main(["evaluate", "--config", RETINA, "--checkpoint", str(model), "--dataset",
                 str(raw / "dataset.json"), "--split", "val", "--out", str(rec),
                 "--predictions", str(preds), "--num-workers", "0"]) == 0
    rec_json, bbox = json.loads(rec.read_text()), json.loads(preds.read_text())["bbox"]
    fixed = checked_dir(raw / "dataset.json") / "val.clean.json"
    assert rec_json["ground_truth"] == str(fixed)
    original = json.loads(val.ann_file.read_text())  # 1-based: the correctly numbered copy
    assert json.loads(fixed.read_text())["annotations"] == original["annotations"]
    assert rec_json["AP"] == coco_eval(val.ann_file, bbox)["AP"] == json.loads(m.read_text())["AP"]

    backbone = tmp_path / "backbone.pth"
    assert main(["pretrain", "--config", RETINA, "--dataset", str(checked), "--out",
                 str(backbone), "--epochs", "1", "--crop-size", "32", "--seed", "0"]) == 0
    assert backbone.is_file() and not checked_dir(checked).exists()
    seq = tmp_path / "seq"  # clean sequences given raw: checked on the way, then streamed
    generate_sequences(seq, SequencesSpec.from_settings(num_val=1, frames=4, seed=1))
    s = tmp_path / "stream.json"
    assert main(["stream", "--config", RETINA, "--checkpoint", str(model), "--dataset",
                 str(seq / "dataset.json"), "--split", "val", "--out", str(s), "--scale", "0.5",
                 "--seed", "0", "--latency", "0.01"]) == 0
    assert json.loads(s.read_text())["frames"] == 4
    assert (checked_dir(seq / "dataset.json") / "checked.json").is_file()
