"""The pipeline config (config/*.yaml): validated, completed with its defaults, checked.

`complete()` is what `workflow/rules/common.smk` calls before the DAG is built:

1. fills in every `default:` of `mtpd/schemas/config.schema.yaml` (the one home of every
   default, as `snakemake.utils.validate(..., set_default=True)` would),
2. validates against the schema (types, ranges, unknown keys, which catch typos),
3. checks what a schema cannot express (a named teacher exists, a backbone is pretrained...),
4. resolves the defaults that depend on other keys (the `null` defaults of the schema),

and returns the completed config; every problem is reported at once with the key that holds it.
No torch or mmdet import here: the Snakefile loads this module.
"""
from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from mtpd.bgs import proxy_split_problem
from mtpd.errors import PipelineConfigError
from mtpd.layout import Layout, snapshot_name

# In the package, so an installed (non-editable) mtpd has its defaults; workflow/schemas/
# links here (the Snakemake template's place).
SCHEMA = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"

# The keys of the `distill` block that set up one distillation stage (`mtpd train --distill`);
# the others (orders, direct, direct_epochs) say which stages the DAG runs.
# bgs.target values that are rules rather than a teacher's name (`mtpd.bgs_steps.write_target`).
TARGET_RULES = ("best", "proxy")
DISTILL_STAGE_SETTINGS = ("loss", "teacher_scale", "levels", "min_positions", "adapter_norm",
                          "inherit_neck_head")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA.read_text())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if not ref:
        return node
    target: Any = schema()
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def fill_defaults(instance: Any, node: dict[str, Any] | None = None) -> Any:
    """Fills in the schema's defaults, recursively, in place; returns `instance`."""
    node = _resolve(node if node is not None else schema())
    if not isinstance(instance, dict):
        return instance
    for key, sub in (node.get("properties") or {}).items():
        sub = _resolve(sub)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            fill_defaults(instance[key], sub)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        for key, value in instance.items():
            if key not in (node.get("properties") or {}):
                fill_defaults(value, extra)
    return instance


def default(key: str) -> Any:
    """The schema's default of a dotted key, e.g. `default("pretrain.epochs")` (for entry points
    run by hand: a pipeline run passes every value explicitly)."""
    node = schema()
    for part in key.split("."):
        node = _resolve(_resolve(node)["properties"][part])
    if "default" not in node:
        raise KeyError(f"{key} has no default in {SCHEMA}")
    return fill_defaults(copy.deepcopy(node["default"]), node)


def _key(path: Any) -> str:
    parts = [str(p) if not isinstance(p, int) else f"[{p}]" for p in path]
    return ".".join(parts).replace(".[", "[") or "<top level>"


def _describe(err: jsonschema.ValidationError) -> str:
    key = _key(err.absolute_path)
    if err.validator == "additionalProperties":
        allowed = sorted((err.schema.get("properties") or {}).keys())
        extra = ", ".join(repr(k) for k in sorted(set(err.instance) - set(allowed)))
        return f"{key}: unknown key {extra}; allowed keys: {', '.join(allowed)}"
    if err.validator == "enum":
        return f"{key}: {err.instance!r} is not one of {err.validator_value}"
    if err.validator == "pattern":
        if "A-Za-z0-9_" in err.validator_value:
            return (f"{key}: {err.instance!r} is not a valid name (letters, digits, '_', '.', "
                    "'-'; no '/' or spaces)")
        return (f"{key}: {err.instance!r} contains a character that is not allowed here "
                "(spaces, quotes or shell characters such as ; & | $ `)")
    if err.validator in ("anyOf", "allOf", "not") and err.context:
        best = jsonschema.exceptions.best_match(err.context)
        return _describe(best) if best.validator != "type" else f"{key}: {err.message}"
    if err.validator == "not":
        return f"{key}: {err.instance!r} is reserved; choose another name"
    return f"{key}: {err.message}"


def schema_problems(config: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    return [_describe(e) for e in errors]


def snapshot_problems(c: dict[str, Any]) -> list[str]:
    """Adds a teacher for each snapshot of a trained teacher (`teachers.*.snapshots`), in place,
    and returns what is wrong with them. A snapshot teacher is a checkpoint teacher whose source
    is the file its parent's training job writes (`Layout.teacher_snapshot`)."""
    teachers, problems = c["teachers"], []
    layout = Layout(c["experiment"], c["dataset"]["name"])
    for parent, t in list(teachers.items()):
        for epoch in t["snapshots"]:
            name = snapshot_name(parent, epoch)
            if teachers.get(name, {}).get("snapshot_of") == parent:
                continue  # a completed config, completed again (experiment.json)
            if "epochs" not in t or epoch >= t["epochs"]:
                problems.append(f"teachers.{parent}.snapshots: epoch {epoch} is not before the "
                                f"end of its training (epochs: {t.get('epochs', 'none')}); "
                                "snapshots are epochs of a teacher trained here")
            elif name in teachers:
                problems.append(f"teachers.{name}: the name of the epoch-{epoch} snapshot of "
                                f"teachers.{parent}; rename that teacher")
            else:
                teachers[name] = {
                    "config": t["config"], "backbone": t["backbone"], "seed": t["seed"],
                    "classes": t["classes"], "snapshots": [], "snapshot_of": parent,
                    "checkpoint": {"source": layout.teacher_snapshot(parent, epoch),
                                   "sha256": None, "allow_http": False, "box_ap": None,
                                   "mask_ap": None}}
    return problems


def cross_problems(c: dict[str, Any]) -> list[str]:
    """What the schema cannot express; `c` has passed the schema and holds its defaults."""
    problems = []
    teachers = c["teachers"]
    known = f"(teachers: {', '.join(teachers)})"
    backbones = c["pretrain"]["backbones"]
    dataset = c["dataset"]
    for where, m in [("student", c["student"])] + [(f"teachers.{k}", v)
                                                  for k, v in teachers.items()]:
        bb = m.get("backbone")
        if bb and bb not in backbones:
            problems.append(f"{where}.backbone: '{bb}' is not in pretrain.backbones "
                            f"({', '.join(backbones) or 'none defined'})")
    for name, t in teachers.items():
        if ("checkpoint" in t) == ("epochs" in t):
            problems.append(f"teachers.{name}: give either 'epochs' (train it here) or "
                            "'checkpoint' (use a trained one), not both or neither")
    distill, bgs = c["distill"], c["bgs"]
    for key in ("orders", "continued_orders"):
        for i, order in enumerate(distill[key]):
            problems += [f"distill.{key}[{i}]: unknown teacher '{t}' {known}"
                         for t in order if t not in teachers]
            if len(set(order)) != len(order):
                problems.append(f"distill.{key}[{i}]: a teacher appears twice in {order}")
    problems += [f"distill.direct: unknown teacher '{t}' {known}"
                 for t in distill["direct"] or [] if t not in teachers]
    problems += [f"bgs.pool: unknown teacher '{t}' {known}"
                 for t in bgs["pool"] or [] if t not in teachers]
    if bgs["target"] not in TARGET_RULES and bgs["target"] not in teachers:
        problems.append(f"bgs.target: '{bgs['target']}' is neither one of "
                        f"{', '.join(TARGET_RULES)} nor a teacher ({', '.join(teachers)})")
    eval_split = c["evaluation"]["split"]
    if bgs["enabled"]:
        problem = proxy_split_problem(bgs["proxy_split"], eval_split)
        if problem:
            problems.append(f"bgs.proxy_split: {problem}")
    if bgs["enabled"] and bgs["proxy_schedule"] == "full":
        problems += full_proxy_problems(c)
    stream = c["streaming"]
    if stream["enabled"] and stream["dataset"]["kind"] == "sequences" and \
            dataset["kind"] != "shapes":
        problems.append("streaming.dataset.kind: generated sequences carry the classes of "
                        "generated shapes data; for other data use kind 'argoverse'")
    if stream["enabled"] and stream["dataset"]["kind"] == "argoverse" and \
            "argoverse" not in stream["dataset"]:
        problems.append("streaming.dataset.argoverse: required when streaming.dataset.kind is "
                        "'argoverse' (data_root and ann_file of Argoverse-HD)")
    for name, t in teachers.items():
        if t["classes"] == "coco" and "checkpoint" not in t:
            problems.append(f"teachers.{name}.classes: a COCO-class teacher comes from a "
                            "checkpoint (trained here, a teacher has the dataset's classes)")
    if not bgs["enabled"] and not distill["orders"]:
        problems.append("distill.orders: give at least one order when bgs.enabled is false "
                        "(otherwise nothing is distilled progressively)")
    kind = dataset["kind"]
    if kind in ("coco", "argoverse") and kind not in dataset:
        problems.append(f"dataset.{kind}: required when dataset.kind is '{kind}'")
    if kind in ("coco", "argoverse") and kind in dataset:
        splits = dataset[kind]["splits"]
        needed = {"evaluation.split": eval_split}
        if bgs["enabled"]:
            needed["bgs.proxy_split"] = bgs["proxy_split"]
        if carves_proxy(c) and needed.get("bgs.proxy_split") == "proxy":
            needed.pop("bgs.proxy_split")
        for key, split in needed.items():
            if split not in splits:
                problems.append(f"{key}: '{split}' is not a split of dataset.{kind}.splits "
                                f"({', '.join(splits)}); add it there")
    return problems


def full_proxy_problems(c: dict[str, Any]) -> list[str]:
    """`bgs.proxy_schedule: full` scores the chains trained in full: they record no feature
    loss, and they train on every training image, so the proxy split must not be one of them."""
    bgs, problems = c["bgs"], []
    if bgs["proxy"] != "box_ap":
        problems.append(f"bgs.proxy: '{bgs['proxy']}' is recorded by short proxy stages only; "
                        "use box_ap with bgs.proxy_schedule: full, or proxy_schedule: short")
    if carves_proxy(c) and bgs["proxy_split"] == "proxy":
        problems.append("bgs.proxy_schedule: full trains candidates on the whole training "
                        "split, which holds the carved proxy split; give the dataset a proxy "
                        "split of its own (dataset.<kind>.splits.proxy) or use "
                        "proxy_schedule: short")
    return problems


def carves_proxy(c: dict[str, Any]) -> bool:
    """Whether a rule carves a `proxy` split from the training data (`mtpd.data.carve`).

    A property of the dataset, not of one experiment: every experiment on a COCO-format or
    Argoverse-HD dataset without a `proxy` split of its own gets the same carved (and checked)
    manifest, whether or not it runs BGS, so experiments sharing the dataset agree on it."""
    dataset = c["dataset"]
    return (dataset["kind"] in ("coco", "argoverse")
            and "proxy" not in dataset[dataset["kind"]]["splits"])


def distill_settings(c: dict[str, Any], teacher: str, checkpoint: str) -> dict[str, Any]:
    """What `mtpd train --distill` gets for a stage with `teacher` (whose model is at
    `checkpoint`): the teacher and the config's stage settings. The rules and the preflight
    both ask this, so they check and run the same stage."""
    t = c["teachers"][teacher]
    return {"teacher_config": t["config"], "teacher_checkpoint": checkpoint,
            "teacher_classes": t["classes"],
            **{k: c["distill"][k] for k in DISTILL_STAGE_SETTINGS}}


def distilled_teachers(c: dict[str, Any]) -> list[str]:
    """The teachers some stage distils from: fixed orders, direct distillation, BGS's pool."""
    d, bgs = c["distill"], c["bgs"]
    used = [t for order in d["orders"] + d["continued_orders"] for t in order]
    used += list(d["direct"] or [])
    used += list(bgs["pool"] or []) if bgs["enabled"] else []
    return [t for t in c["teachers"] if t in used]


def resolve_derived(c: dict[str, Any]) -> None:
    """The schema's `null` defaults that depend on other keys, resolved in place."""
    bgs, distill = c["bgs"], c["distill"]
    if bgs["pool"] is None:
        bgs["pool"] = list(c["teachers"])
    if bgs["proxy_epochs"] is None:
        bgs["proxy_epochs"] = max(1, c["student"]["epochs"] // 4)
    if distill["direct"] is None:
        distill["direct"] = list(bgs["pool"]) if bgs["enabled"] else []
    if distill["continued_stages"] is None:  # the longest chain that continues its schedule
        lengths = [len(o) for o in distill["continued_orders"]]
        if distill["stage_schedule"] == "continue":  # MTPD's chain, and BGS's proxy chains
            lengths += [bgs["max_stages"]] if bgs["enabled"] else [len(o) for o in
                                                                    distill["orders"]]
        distill["continued_stages"] = max(lengths, default=1)
    stream = c["streaming"]["dataset"]
    if stream["name"] is None:
        stream["name"] = f"{c['dataset']['name']}-{stream['kind']}"


def complete(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """The completed config (defaults filled in, derived values resolved).

    Raises PipelineConfigError listing every problem, each with its key, and `source`.
    """
    c = fill_defaults(copy.deepcopy(config))
    problems = schema_problems(c) or snapshot_problems(c) or cross_problems(c)
    if problems:
        raise PipelineConfigError(f"invalid pipeline config {source}:\n  - "
                                  + "\n  - ".join(problems))
    resolve_derived(c)
    return c


def load(*paths: str | Path) -> dict[str, Any]:
    """Reads, merges, validates and completes pipeline config files.

    Later files win key by key, as Snakemake merges several `--configfile`s (an experiment's
    config, then the user's own `compute:` file)."""
    if not paths:
        raise PipelineConfigError("give at least one pipeline config file")
    merged: dict[str, Any] = {}
    for path in map(Path, paths):
        try:
            config = yaml.safe_load(path.read_text())
        except OSError as e:
            raise PipelineConfigError(f"cannot read pipeline config {path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise PipelineConfigError(f"{path} is not valid YAML: {e}") from e
        if config is not None and not isinstance(config, dict):
            raise PipelineConfigError(f"{path} must hold a mapping of keys, not a "
                                      f"{type(config).__name__}")
        _merge(merged, config or {})
    return complete(merged, ", ".join(map(str, paths)))


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    """Deep update, as snakemake.utils.update_config does for several config files."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
