"""The pipeline config: defaults from the schema, every problem reported with its key."""
from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from mtpd.errors import PipelineConfigError
from mtpd.pipeline_config import SCHEMA, complete, default, load
from tests.helpers import REPO


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "tiny.yaml"])
def test_shipped_configs_are_valid(name):
    load(REPO / "config" / name)


def _error(cfg: dict) -> str:
    with pytest.raises(PipelineConfigError) as e:
        complete(cfg, "test.yaml")
    return str(e.value)


def test_defaults_come_from_the_schema_and_are_filled_in():
    minimal = {"experiment": "x", "dataset": {"kind": "shapes", "name": "s"},
               "student": {"config": "mtpd::shapes/retinanet_r18w16_shapes.py", "epochs": 8},
               "teachers": {"t1": {"config": "a.py", "epochs": 3},
                            "t2": {"config": "b.py", "checkpoint": {"source": "t2.pth"}}}}
    c = complete(minimal)
    assert minimal["teachers"]["t1"] == {"config": "a.py", "epochs": 3}  # input untouched
    schema = yaml.safe_load(SCHEMA.read_text())
    assert c["pretrain"]["epochs"] == schema["properties"]["pretrain"]["properties"]["epochs"][
        "default"] == default("pretrain.epochs")
    assert c["dataset"]["shapes"] == default("dataset.shapes")
    assert c["distill"]["teacher_scale"] == "auto" and c["distill"]["min_positions"] == 16
    assert c["distill"]["loss"] == {"type": "FeatureMSELoss", "loss_weight": None}
    assert c["teachers"]["t1"]["seed"] == 0 and c["teachers"]["t2"]["checkpoint"]["sha256"] is None
    assert c["train"] == {"seeds": [0], "batch_size": None, "num_workers": None,
                          "precision": "fp32"}
    # the null defaults that depend on other keys
    assert c["bgs"]["pool"] == ["t1", "t2"] and c["distill"]["direct"] == ["t1", "t2"]
    assert c["bgs"]["proxy_epochs"] == 2  # a quarter of student.epochs
    minimal["bgs"] = {"enabled": False}
    minimal["distill"] = {"orders": [["t1", "t2"]], "teacher_scale": 1.5}
    c = complete(minimal)
    assert c["distill"]["direct"] == [] and c["distill"]["teacher_scale"] == 1.5


def test_each_default_is_written_once():
    """The schema is the only place that states a pipeline default: no rule file or entry
    point restates one (`.get(key, value)` in the rules, numbers in argparse)."""
    out = subprocess.run(["git", "grep", "-nE", r"\.get\([\"'][a-z_]+[\"'], *[^)]",
                          "--", "workflow/*.smk", "workflow/rules/*.smk", "workflow/Snakefile"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.stdout == ""
    cli = (REPO / "mtpd" / "cli.py").read_text()
    for key in ("epochs", "crop-size", "seed", "margin", "proxy"):
        assert f'"--{key}", type=int, default=' not in cli
        assert f'"--{key}", default=' not in cli


def test_unknown_key_is_named_with_allowed_keys(config):
    config["student"]["epoch"] = 3
    msg = _error(config)
    assert "student: unknown key 'epoch'" in msg and "epochs" in msg and "test.yaml" in msg


def test_wrong_type_and_range(config):
    config["student"]["epochs"] = 0
    config["dataset"]["shapes"]["image_size"] = "big"
    msg = _error(config)
    assert "student.epochs: 0 is less than the minimum of 1" in msg
    assert "dataset.shapes.image_size: 'big' is not of type 'integer'" in msg


def test_teacher_scale_is_auto_or_positive(config):
    config["distill"]["teacher_scale"] = -1
    assert "distill.teacher_scale" in _error(copy.deepcopy(config))
    config["distill"]["teacher_scale"] = "big"
    assert "distill.teacher_scale" in _error(config)


def test_unknown_teacher_in_order_and_bad_name(config):
    config["distill"]["orders"] = [["retina_r34w24", "nope"]]
    msg = _error(copy.deepcopy(config))
    assert "distill.orders[0]: unknown teacher 'nope'" in msg
    config["teachers"]["bad/name"] = config["teachers"]["retina_r34w24"]
    assert "not a valid name" in _error(config)


def test_experiment_name_is_required_and_not_reserved(config):
    del config["experiment"]
    assert "'experiment' is a required property" in _error(copy.deepcopy(config))
    config["experiment"] = "teachers"
    assert "experiment: 'teachers' is reserved" in _error(config)


def test_backbone_must_be_pretrained_and_teacher_needs_one_source(config):
    config["student"]["backbone"] = "r101"
    del config["teachers"]["retina_r34w24"]["epochs"]
    config["teachers"]["retina_r50w16"]["checkpoint"] = {"source": "x.pth"}
    msg = _error(config)
    assert "student.backbone: 'r101' is not in pretrain.backbones" in msg
    assert "teachers.retina_r34w24: give either 'epochs'" in msg
    assert "teachers.retina_r50w16: give either 'epochs'" in msg  # both is ambiguous too


def test_checkpoint_sha256_format(config):
    del config["teachers"]["retina_r50w16"]["epochs"]
    config["teachers"]["retina_r50w16"]["checkpoint"] = {"source": "x.pth", "sha256": "abc"}
    assert "teachers.retina_r50w16.checkpoint.sha256" in _error(config)


def test_loss_type_enum(config):
    config["distill"]["loss"] = {"type": "KLLoss"}
    assert "distill.loss.type: 'KLLoss' is not one of" in _error(config)


@pytest.mark.parametrize("split", ["val", "test", "holdout"])
def test_bgs_never_scores_on_the_evaluation_split(config, split):
    config["evaluation"] = {"split": "holdout"}
    config["bgs"]["proxy_split"] = split
    assert f"bgs.proxy_split: '{split}' is an evaluation split" in _error(config)


def test_a_full_proxy_schedule_needs_box_ap_and_a_held_out_proxy_split(config):
    config["bgs"].update(proxy_schedule="full", proxy="feature_loss")
    assert "bgs.proxy: 'feature_loss' is recorded by short proxy stages only" in _error(config)
    config["bgs"]["proxy"] = "box_ap"
    complete(copy.deepcopy(config), "test.yaml")  # generated data: a proxy split of its own
    config["dataset"] = {"kind": "coco", "name": "c", "coco": {
        "data_root": "data/coco", "splits": {
            split: {"ann_file": f"{split}.json", "img_dir": f"{split}/"}
            for split in ("train", "val")}}}
    assert "bgs.proxy_schedule: full trains candidates on the whole training split" in \
        _error(config)


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: [unclosed\n")
    with pytest.raises(PipelineConfigError, match="bad.yaml is not valid YAML"):
        load(bad)
    with pytest.raises(PipelineConfigError, match="cannot read pipeline config"):
        load(tmp_path / "missing.yaml")
