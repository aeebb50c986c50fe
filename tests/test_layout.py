"""The results layout: every path from one module, and every path says what it is."""
from __future__ import annotations

import json

import pytest

from mtpd.layout import (
    Layout,
    ModelPath,
    definition_conflicts,
    describe,
    log_path,
    metrics_path,
    stage_prefixes,
)

L = Layout("coco-retina", "coco")


def test_paths_of_one_experiment_and_shared_ones():
    assert L.dataset_manifest() == "results/data/coco/dataset.json"
    assert L.teacher_model("r101") == "results/teachers/coco/r101/model.pth"
    assert L.pretrained_backbone("r18") == "results/pretrained/coco/r18/backbone.pth"
    assert L.baseline_model(1, 24) == "results/coco-retina/seed1/baseline/e24/model.pth"
    assert L.stage_model(0, "progressive", ("a", "b")) == \
        "results/coco-retina/seed0/progressive/a/b/model.pth"
    assert L.stage_model("{seed}", "{schedule}", "{chain}") == \
        "results/coco-retina/seed{seed}/{schedule}/{chain}/model.pth"  # Snakemake patterns
    assert metrics_path(L.direct_model(0, "x", 24), "val") == \
        "results/coco-retina/seed0/direct/x/e24/metrics_val.json"
    assert log_path(L.teacher_model("r101"), "train") == "results/teachers/coco/r101/train.log"
    assert stage_prefixes(("a", "b", "c")) == [("a",), ("a", "b"), ("a", "b", "c")]
    # two experiments on one dataset share its teachers, never their own files
    other = Layout("coco-mask", "coco")
    assert other.teacher_model("r101") == L.teacher_model("r101")
    assert other.baseline_model(0, 12) != L.baseline_model(0, 12)


@pytest.mark.parametrize("path, expected", [
    (L.teacher_model("r101"), ModelPath("teacher", dataset="coco", teacher="r101")),
    (L.baseline_model(2, 24), ModelPath("baseline", experiment="coco-retina", seed=2,
                                        epochs=24)),
    (L.direct_model(0, "x101", 24), ModelPath("direct", experiment="coco-retina", seed=0,
                                              teacher="x101", epochs=24)),
    (L.stage_model(1, "progressive", ("r101", "x101")),
     ModelPath("progressive", experiment="coco-retina", seed=1, chain=("r101", "x101"))),
    (L.stage_model(0, "proxy", ("t",)), ModelPath("proxy", experiment="coco-retina", seed=0,
                                                  chain=("t",))),
])
def test_describe_inverts_the_layout(path, expected):
    assert describe(path) == expected
    assert describe(metrics_path(path, "val")) == expected
    assert describe("/elsewhere/" + path) == expected  # any results root


def test_describe_refuses_other_paths():
    with pytest.raises(ValueError, match="not a model path"):
        describe("results/coco-retina/tables/main.csv")


def test_definition_conflicts(tmp_path):
    spec = tmp_path / "teachers/coco/r101/spec.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({"config": "a.py", "epochs": 12}))
    assert definition_conflicts([(str(spec), {"config": "a.py", "epochs": 12}, "teacher")]) == []
    assert definition_conflicts([(str(tmp_path / "none.json"), {"x": 1}, "teacher")]) == []
    (msg,) = definition_conflicts([(str(spec), {"config": "a.py", "epochs": 24},
                                    "teacher 'r101'")])
    assert "teacher 'r101' was already made under" in msg and "epochs: 12 there, 24 here" in msg
