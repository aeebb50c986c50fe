"""Validation of the pipeline config (config/*.yaml) with messages that name the key.

Called by `workflow/rules/common.smk` before the DAG is built, and by `mtpd check-config`.
JSON-Schema checks come first (types, ranges, unknown keys, which catch typos), then the
cross-references a schema cannot express (a named teacher exists, a backbone is pretrained...).
No torch or mmdet import here: the Snakefile loads this module.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


class SettingsError(ValueError):
    """The pipeline config is invalid; the message lists every problem with its key."""


def _key(path: Any) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def _describe(err: jsonschema.ValidationError) -> str:
    key = _key(err.absolute_path)
    allowed = sorted((err.schema.get("properties") or {}).keys())
    if err.validator == "additionalProperties" and allowed:
        extra = ", ".join(repr(k) for k in sorted(set(err.instance) - set(allowed)))
        return f"{key}: unknown key {extra}; allowed keys: {', '.join(allowed)}"
    if err.validator == "required":
        return f"{key}: {err.message}"
    if err.validator == "enum":
        return f"{key}: {err.instance!r} is not one of {err.validator_value}"
    if err.validator == "pattern":
        return (f"{key}: {err.instance!r} is not a valid name (letters, digits, '_', '.', '-'; "
                "no '/' or spaces)" if "A-Za-z0-9_" in err.validator_value
                else f"{key}: {err.instance!r} does not match {err.validator_value}")
    return f"{key}: {err.message}"


def validate(config: dict[str, Any], source: str = "config",
             schema_path: Path = SCHEMA) -> dict[str, Any]:
    """Raises SettingsError listing every problem; returns the config unchanged if valid."""
    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = [_describe(e) for e in sorted(validator.iter_errors(config),
                                               key=lambda e: list(map(str, e.absolute_path)))]
    if not problems:
        problems = cross_checks(config)
    if problems:
        raise SettingsError(f"invalid pipeline config {source}:\n  - " + "\n  - ".join(problems))
    return config


def cross_checks(c: dict[str, Any]) -> list[str]:
    problems = []
    teachers = c["teachers"]
    backbones = (c.get("pretrain") or {}).get("backbones") or {}
    kind = c["dataset"]["kind"]
    if kind == "coco" and "coco" not in c["dataset"]:
        problems.append("dataset.coco: required when dataset.kind is 'coco'")
    models = [("student", c["student"])] + [(f"teachers.{k}", v) for k, v in teachers.items()]
    for where, m in models:
        bb = m.get("backbone")
        if bb and bb not in backbones:
            problems.append(f"{where}.backbone: '{bb}' is not in pretrain.backbones "
                            f"({', '.join(backbones) or 'none defined'})")
    for name, t in teachers.items():
        if "checkpoint" not in t and "epochs" not in t:
            problems.append(f"teachers.{name}: give either 'epochs' (train it) or "
                            "'checkpoint' (use a trained one)")
    distill = c.get("distill") or {}
    for i, order in enumerate(distill.get("orders") or []):
        for t in order:
            if t not in teachers:
                problems.append(f"distill.orders[{i}]: unknown teacher '{t}' "
                                f"(teachers: {', '.join(teachers)})")
        if len(set(order)) != len(order):
            problems.append(f"distill.orders[{i}]: a teacher appears twice in {order}")
    for t in distill.get("direct") or []:
        if t not in teachers:
            problems.append(f"distill.direct: unknown teacher '{t}' "
                            f"(teachers: {', '.join(teachers)})")
    bgs = c.get("bgs") or {}
    eval_split = (c.get("evaluation") or {}).get("split", "val")
    for t in bgs.get("pool") or []:
        if t not in teachers:
            problems.append(f"bgs.pool: unknown teacher '{t}' (teachers: {', '.join(teachers)})")
    target = bgs.get("target", "best")
    if target != "best" and target not in teachers:
        problems.append(f"bgs.target: '{target}' is neither 'best' nor a teacher "
                        f"({', '.join(teachers)})")
    if bgs and bgs.get("proxy_split", "proxy") == eval_split:
        problems.append(f"bgs.proxy_split: '{eval_split}' is the evaluation split; BGS must "
                        "choose on a split carved from the training data (e.g. 'proxy')")
    if bgs.get("enabled", True) and bgs and kind == "coco":
        split = bgs.get("proxy_split", "proxy")
        if split not in c["dataset"]["coco"]["splits"]:
            problems.append(f"bgs.proxy_split: '{split}' is not a split of dataset.coco.splits; "
                            "carve one from the training annotations")
    if kind == "coco":
        splits = c["dataset"]["coco"]["splits"]
        split = (c.get("evaluation") or {}).get("split", "val")
        if split not in splits:
            problems.append(f"evaluation.split: '{split}' is not a split of dataset.coco.splits "
                            f"({', '.join(splits)})")
    return problems


def load_and_validate(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SettingsError(f"{path} is not valid YAML: {e}") from e
    return validate(config or {}, str(path))
