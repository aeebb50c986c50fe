"""Pipeline config validation: every problem is reported with the key that holds it."""
from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO
from mtpd.settings import SettingsError, load_and_validate, validate


@pytest.fixture()
def config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("name", ["config.yaml", "tiny.yaml"])
def test_shipped_configs_are_valid(name):
    load_and_validate(REPO / "config" / name)


def _error(cfg: dict) -> str:
    with pytest.raises(SettingsError) as e:
        validate(cfg, "test.yaml")
    return str(e.value)


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


def test_unknown_teacher_in_order_and_bad_name(config):
    config["distill"]["orders"] = [["retina_r34w24", "nope"]]
    msg = _error(copy.deepcopy(config))
    assert "distill.orders[0]: unknown teacher 'nope'" in msg
    config["teachers"]["bad/name"] = config["teachers"]["retina_r34w24"]
    assert "not a valid name" in _error(config)


def test_backbone_must_be_pretrained_and_teacher_needs_source(config):
    config["student"]["backbone"] = "r101"
    del config["teachers"]["retina_r34w24"]["epochs"]
    msg = _error(config)
    assert "student.backbone: 'r101' is not in pretrain.backbones" in msg
    assert "teachers.retina_r34w24: give either 'epochs'" in msg


def test_checkpoint_sha256_format(config):
    config["teachers"]["retina_r50w16"]["checkpoint"] = {"source": "x.pth", "sha256": "abc"}
    assert "teachers.retina_r50w16.checkpoint.sha256" in _error(config)


def test_loss_type_enum(config):
    config["distill"]["loss"] = {"type": "KLLoss"}
    assert "distill.loss.type: 'KLLoss' is not one of" in _error(config)
