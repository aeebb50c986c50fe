"""The preflight: every shipped experiment passes it; a broken model config, unknown weights, a
fetched teacher without sha256 or FPN levels that do not match fail it with one line naming
the model, the key and the fix; a re-run is cached. Snakemake running it before any training:
tests/e2e/test_preflight.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mtpd.data.argoverse import ARGOVERSE_CLASSES, COCO_CLASSES
from mtpd.model_config import scale_to_size
from mtpd.pipeline_config import distilled_teachers, load
from mtpd.preflight import OFF_BY, check_experiment, config_key
from tests.helpers import BROKEN, REPO, one_teacher

SHIPPED = sorted(p.name for p in (REPO / "config").glob("*.yaml"))
PAPER = ["coco_retinanet.yaml", "coco_retinanet_mgd.yaml", "coco_mask_rcnn.yaml",
         "coco_mask_rcnn_mgd.yaml", "argoverse_retinanet.yaml"]


def fake_manifest(root: Path, classes: tuple[str, ...]) -> Path:
    """A manifest whose one annotation file holds only the categories: all a preflight reads."""
    root.mkdir(parents=True, exist_ok=True)
    ann = {"images": [], "annotations": [],
           "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)]}
    (root / "train.json").write_text(json.dumps(ann))
    manifest = {"name": root.name, "data_root": ".",
                "splits": {"train": {"ann_file": "train.json", "img_dir": "."}}}
    (root / "dataset.json").write_text(json.dumps(manifest))
    return root / "dataset.json"


def manifest_for(config: dict, tmp_path: Path, shapes_data: Path) -> Path:
    kind = config["dataset"]["kind"]
    if kind == "shapes":
        return shapes_data
    return fake_manifest(tmp_path / kind, COCO_CLASSES if kind == "coco" else ARGOVERSE_CLASSES)


def input_size(config: dict) -> tuple[int, int] | None:
    """What the training jobs get (mtpd.plan.Plan.input_size_flag)."""
    if config["dataset"]["kind"] != "argoverse":
        return None
    return scale_to_size(config["dataset"]["argoverse"]["input_scale"])


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.slow) if n in PAPER else n for n in SHIPPED])
def test_every_shipped_config_passes(name, tmp_path, shapes_data):
    c = load(REPO / "config" / name)
    out = tmp_path / "preflight.json"
    r = check_experiment(c, manifest_for(c, tmp_path, shapes_data), out, input_size=input_size(c))
    assert json.loads(out.read_text()) == r
    assert {"student", *(f"teachers.{t}" for t in c["teachers"])} <= set(r["models"])
    assert set(r["distillation"]) == set(distilled_teachers(c)) and r["distillation"]
    for t, m in r["distillation"].items():
        for i in m["levels"]:  # every distilled level has a teacher level at its scale
            ratio = m["teacher_strides"][m["match"][i]] / m["student_strides"][i]
            assert 1 / OFF_BY < ratio < OFF_BY, (t, i, m)
    for key, model in r["models"].items():
        snapshot = c["teachers"].get(key.split(".", 1)[-1], {}).get("snapshot_of")
        if model["role"] == "fetched" and not snapshot:  # a snapshot is made here: no hash
            assert len(model["sha256"]) >= 8, key
        for w in model.get("weights", []):
            assert w["scheme"] in ("torchvision", "http", "pipeline"), (key, w)
    if c["dataset"]["kind"] != "shapes":
        assert r["classes"] == (80 if c["dataset"]["kind"] == "coco" else 8)
        assert r["models"]["student"]["weights"][0]["checkpoint"] == "torchvision://resnet50"


def test_a_second_run_is_cached(tmp_path, shapes_data):
    c = load(REPO / "config" / "tiny.yaml")
    first = check_experiment(c, shapes_data, tmp_path / "a.json")
    second = check_experiment(c, shapes_data, tmp_path / "b.json")
    assert (first["cached"], second["cached"]) == (False, True)
    assert second["seconds"] < first["seconds"]
    drop = ("cached", "seconds")
    assert {k: v for k, v in first.items() if k not in drop} == \
        {k: v for k, v in second.items() if k not in drop}
    c["distill"]["loss"]["loss_weight"] = 0.3  # another stage: checked again
    assert not check_experiment(c, shapes_data, tmp_path / "c.json")["cached"]


def test_config_key_names_one_version_of_a_config():
    c = load(REPO / "config" / "tiny.yaml")
    assert config_key(c) == config_key(dict(reversed(list(c.items()))))
    c["compute"]["train"]["runtime"] += 1
    assert config_key(c) != config_key(load(REPO / "config" / "tiny.yaml"))


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_experiment_fails_in_one_line(case, tmp_path, shapes_data):
    teacher, expected = BROKEN[case]
    config = one_teacher(tmp_path, teacher(tmp_path))
    out = tmp_path / "preflight.json"
    r = subprocess.run([sys.executable, "-m", "mtpd", "preflight", "--experiment", str(config),
                        "--dataset", str(shapes_data), "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if line.startswith("mtpd preflight")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines[0].startswith("mtpd preflight: error: preflight of experiment 'tiny': 1 ")
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert not out.exists()
