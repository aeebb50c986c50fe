"""The preflight: every model of an experiment checked on the login node before any training job.

Why: a model config that does not build, pretrained weights that cannot be resolved, a teacher
whose FPN levels do not fit the student's or a fetched teacher without a sha256 otherwise
surface as a failed GPU job, often hours into the queue. Here, with the dataset's classes:

* each model is built as its jobs build it (a student or trained teacher from its job config,
  a teacher of a distillation stage as `build_distiller_cfg` describes it, a backbone to
  pretrain as `mtpd pretrain` builds it), without `init_weights()`, so nothing is downloaded;
* every pretrained checkpoint a training job initialises from is resolved
  (`mtpd.pretrained.resolve`), except the backbone the pipeline pretrains itself;
* each distilled teacher's FPN levels are matched to the student's as the distiller matches
  them (`match_levels`, on a probe image converted by `TeacherInput`), and the stage's loss is
  built; a distilled student level whose nearest teacher level is twice as fine or coarse, or
  a `distill.levels` entry the student lacks, is a problem;
* every fetched teacher has a sha256 to verify its download against.

Every problem is reported at once, in one line, each naming the model, the key and the fix.
Building and matching, the slow part, is cached by content (the models' configs as loaded,
`_base_` files included, the settings and the library versions): a re-run with the same
configs costs the config loading. No torch import at module level (the Snakefile imports
`config_key`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtpd.errors import MtpdError, PreflightError, one_line
from mtpd.io import atomic_write_json

VERSION = 1  # bump when a check changes: cached results of older checks are then ignored
PROBE = (256, 128)  # probe image (height, width): strides are measured on the height, a
# multiple of the coarsest one (128, P7) also at a teacher's 1.5x scale; narrow, to run fast
OFF_BY = 2.0  # a teacher level this many times finer or coarser than the student's: no match


def config_key(config: dict[str, Any]) -> str:
    """Names the preflight of one completed pipeline config (its report's file name), so a
    changed config is checked again before its new training jobs."""
    text = json.dumps({"version": VERSION, "config": config}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Model:
    """One model the experiment trains or distils from, as the pipeline config names it."""

    key: str  # where the config names it: student, teachers.<name>, pretrain.backbones.<name>
    spec: str  # its model config
    role: str  # student | teacher (trained here) | fetched | pretrain
    backbone: str | None = None  # the pretrain.backbones entry its backbone starts from
    coco_classes: bool = False  # a fetched COCO-80 teacher keeps its head's classes

    @property
    def label(self) -> str:
        return f"{self.key} ({self.spec})"


def experiment_models(c: dict[str, Any]) -> list[Model]:
    """The student, every teacher and every backbone they start from, from a completed config."""
    s = c["student"]
    models = [Model("student", s["config"], "student", s["backbone"])]
    for name, t in c["teachers"].items():
        role = "fetched" if "checkpoint" in t else "teacher"
        models.append(Model(f"teachers.{name}", t["config"], role, t["backbone"],
                            t["classes"] == "coco"))
    used = {m.backbone for m in models if m.backbone}
    models += [Model(f"pretrain.backbones.{b}", spec, "pretrain")
               for b, spec in c["pretrain"]["backbones"].items() if b in used]
    return models


def _classes_only(manifest: Any) -> Any:
    """The manifest with only its smallest annotation file: the preflight needs the classes
    alone, and COCO's train file is 448 MB (check_dataset makes sure every split has the same
    categories)."""
    splits = [s for s in manifest.splits.values() if s.ann_file.is_file()]
    if not splits:
        return manifest  # `classes` then says that no annotation file exists
    small = min(splits, key=lambda s: s.ann_file.stat().st_size)
    return dataclasses.replace(manifest, splits={small.name: small})


def _message(e: BaseException) -> str:
    return one_line(e).removesuffix(" (re-run with --debug for the traceback)")


def _error(e: BaseException) -> str:
    """An unexpected exception, short, for a problem line."""
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def _weights(m: Model, cfg: Any, problems: list[str]) -> list[dict[str, Any]]:
    """The pretrained checkpoints a training job of `m` initialises from, each resolved."""
    from mtpd.pretrained import pretrained_checkpoints, resolve

    found = pretrained_checkpoints(cfg.model)
    if cfg.get("load_from"):
        found.append(("load_from", cfg.load_from))
    resolved = []
    if m.backbone:  # the job's --pretrained-backbone replaces the backbone's init_cfg
        resolved.append({"key": "model.backbone.init_cfg.checkpoint", "scheme": "pipeline",
                         "made_by": f"pretrain.backbones.{m.backbone}"})
    for key, checkpoint in found:
        if m.backbone and key.startswith("model.backbone.init_cfg"):
            continue
        try:
            w = resolve(checkpoint, f"{m.label}: {key}")
        except MtpdError as e:
            problems.append(str(e))
            continue
        resolved.append({"key": key, **dataclasses.asdict(w)})
    return resolved


def _locate(node: Any, text: str, key: str = "model") -> str | None:
    """The key of a model config that a build error is about: the `type` the registry lacks,
    or the argument a class does not take."""
    m = re.search(r"'?([\w.]+) is not in the [\w:]+ registry", text)
    wanted = ("type", m.group(1)) if m else None
    m = re.search(r"unexpected keyword argument '(\w+)'", text)
    wanted = wanted or ((m.group(1), None) if m else None)
    if wanted is None:
        return None
    if isinstance(node, dict):
        if wanted[0] in node and wanted[1] in (None, node[wanted[0]]):
            return f"{key}.{wanted[0]}"
        items = node.items()
    elif isinstance(node, (list, tuple)):
        items = ((f"[{i}]", v) for i, v in enumerate(node))
    else:
        return None
    for k, v in items:
        found = _locate(v, text, f"{key}{k}" if str(k).startswith("[") else f"{key}.{k}")
        if found:
            return found
    return None


def _build(label: str, model_cfg: dict[str, Any], spec: str, key: str,
           problems: list[str]) -> Any:
    """The model in eval mode, or None and a problem naming the key that does not build."""
    from mmengine.config import ConfigDict

    from mtpd.model_config import build_model

    try:  # a ConfigDict, as a Runner's config holds it (two-stage detectors read cfg.rpn)
        return build_model(ConfigDict(model_cfg), spec).eval()
    except MtpdError as e:
        at = _locate(model_cfg, str(e), key)
        problems.append(f"{label}: {at + ': ' if at else ''}{_message(e)}")
        return None


def _strides(model: Any, x: Any) -> list[float]:
    """FPN strides in pixels of the student's input (`PROBE`), as the distiller measures
    them: input height over feature height."""
    import torch

    with torch.no_grad():
        return [round(PROBE[0] / f.shape[-2], 2) for f in model.extract_feat(x)]


def _probe() -> Any:
    import torch

    return torch.zeros(1, 3, *PROBE)


def _match(name: str, spec: str, stage: dict[str, Any], s_strides: list[float], teacher: Any,
           problems: list[str]) -> dict[str, Any] | None:
    """Teacher `name`'s FPN levels matched to the student's, as its stage will match them."""
    from mmdet.registry import MODELS

    from mtpd.distill.align import TeacherInput, match_levels
    from mtpd.distill.model import _fpn_channels

    where = f"teachers.{name} ({spec}) distilled into the student"
    try:
        _fpn_channels(stage["student"], "student")
        channels = _fpn_channels(stage["teacher"], "teacher")
    except ValueError as e:
        problems.append(f"{where}: model.neck.out_channels: {e}")
        return None
    try:
        MODELS.build({**stage["loss"], "channels": channels})
    except Exception as e:  # registry KeyError, TypeError of a wrong argument, ...
        problems.append(f"{where}: distill.loss {stage['loss']} does not build "
                        f"({_error(e)}); fix distill.loss")
        return None
    to_teacher = TeacherInput.from_preprocessors(stage["student"].get("data_preprocessor") or {},
                                                 stage["teacher"].get("data_preprocessor") or {},
                                                 stage["teacher_scale"])
    try:
        t_strides = _strides(teacher, to_teacher(_probe()))
    except Exception as e:  # a backbone or neck that cannot run at all
        problems.append(f"{where}: the teacher's FPN features cannot be computed "
                        f"({_error(e)}); check its backbone and neck")
        return None
    match = match_levels(s_strides, t_strides)
    levels = list(range(len(s_strides))) if stage["levels"] is None else stage["levels"]
    ratio = [max(t_strides[match[i]] / s, s / t_strides[match[i]])
             for i, s in enumerate(s_strides)]
    missing = [i for i in levels if i >= len(s_strides)]
    if missing:
        problems.append(f"{where}: distill.levels: the student has no FPN level {missing} (its "
                        f"levels are 0-{len(s_strides) - 1}, strides {s_strides}); drop them")
    off = [i for i in levels if i < len(s_strides) and ratio[i] >= OFF_BY]
    if off:
        shared = [i for i in range(len(s_strides)) if ratio[i] < OFF_BY]
        problems.append(
            f"{where}: distill.levels: student level(s) {off} (strides "
            f"{[s_strides[i] for i in off]}) have no teacher level within a factor of "
            f"{OFF_BY:g} (teacher strides in student pixels: {t_strides}); set distill.levels "
            f"to levels both have ({shared}), or distil from a teacher with those levels")
    return {"teacher_scale": stage["teacher_scale"], "student_strides": s_strides,
            "teacher_strides": t_strides, "match": match, "levels": levels}


def _versions() -> dict[str, str]:
    import mmcv
    import mmdet
    import mmengine
    import torch

    return {m.__name__: m.__version__ for m in (mmcv, mmdet, mmengine, torch)}


def _build_and_match(builds: dict[str, tuple[str, dict, str, str]],
                     stages: dict[str, dict[str, Any]],
                     problems: list[str]) -> dict[str, Any]:
    """Builds every model once and matches each distilled teacher to the student."""
    built, seconds = {}, {}
    for key, (label, model_cfg, spec, prefix) in builds.items():
        start = time.perf_counter()
        built[key] = _build(label, model_cfg, spec, prefix, problems)
        seconds[key] = round(time.perf_counter() - start, 3)
    matched, s_strides = {}, None
    if built.get("student") is not None and stages:
        try:
            s_strides = _strides(built["student"], _probe())
        except Exception as e:  # a backbone or neck that cannot run at all
            problems.append(f"{builds['student'][0]}: the student's FPN features cannot be "
                            f"computed ({_error(e)}); check its backbone and neck")
    for name, stage in stages.items():
        teacher = built.get(f"teachers.{name}")
        if s_strides is not None and teacher is not None:
            start = time.perf_counter()
            result = _match(name, builds[f"teachers.{name}"][2], stage, s_strides, teacher,
                            problems)
            if result is not None:
                matched[name] = {**result, "seconds": round(time.perf_counter() - start, 3)}
    return {"build_seconds": seconds, "distillation": matched}


def _builds(models: list[Model], jobs: dict[str, Any],
            stages: dict[str, dict[str, Any]]) -> dict[str, tuple[str, dict, str, str]]:
    """What to build for each model, as its jobs build it: (label, model config, its file, the
    key the model config starts at). A distilled teacher as its stages build it."""
    from mtpd.model_config import to_plain

    builds = {}
    for m in models:
        if m.key not in jobs:  # its config did not load: already a problem
            continue
        if m.role == "pretrain":  # as `mtpd pretrain` builds it
            cfg = {**to_plain(jobs[m.key].model["backbone"]), "init_cfg": None}
            builds[m.key] = (m.label, cfg, m.spec, "model.backbone")
            continue
        name = m.key.split(".", 1)[1] if m.key.startswith("teachers.") else None
        cfg = stages[name]["teacher"] if name in stages else to_plain(jobs[m.key].model)
        builds[m.key] = (m.label, cfg, m.spec, "model")
    return builds


def _cached_check(builds: dict[str, tuple[str, dict, str, str]],
                  stages: dict[str, dict[str, Any]], cache_dir: Path,
                  problems: list[str]) -> tuple[dict[str, Any], bool]:
    """`_build_and_match`'s result from the cache, or computed (and cached if it passed);
    and whether it came from the cache. The key is everything the result depends on."""
    content = {"version": VERSION, "probe": PROBE, "off_by": OFF_BY, "libraries": _versions(),
               "builds": {k: v[1:] for k, v in builds.items()}, "stages": stages}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode())
    cache_file = cache_dir / f"{digest.hexdigest()}.json"
    try:
        return json.loads(cache_file.read_text()), True
    except (OSError, ValueError):
        pass  # not checked yet, or unreadable: check again
    found: list[str] = []
    checked = _build_and_match(builds, stages, found)
    if not found:
        atomic_write_json(cache_file, checked)
    problems += found
    return checked, False


def check_experiment(config: dict[str, Any], dataset: str | Path, out: str | Path, *,
                     input_size: tuple[int, int] | None = None,
                     cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Checks every model of a completed pipeline config (see module docstring) with the
    classes of the `dataset` manifest; writes the report `out` only if all is well.

    `input_size` is what the training jobs get (`--input-size`, Argoverse-HD). Raises
    PreflightError listing every problem, one per line, and then writes nothing. Passing model
    checks are cached in `cache_dir` (default: `.cache` beside `out`).
    """
    from mtpd.data.manifest import DatasetManifest
    from mtpd.distill.model import build_distiller_cfg
    from mtpd.layout import Layout
    from mtpd.model_config import build_job_config, load_config, to_plain
    from mtpd.pipeline_config import distill_settings, distilled_teachers
    from mtpd.registry import register_all_modules

    start = time.perf_counter()
    register_all_modules()
    manifest = _classes_only(DatasetManifest.load(dataset))
    num_classes = len(manifest.classes)
    layout = Layout(config["experiment"], config["dataset"]["name"])
    problems: list[str] = []
    jobs, report = {}, {}
    for m in experiment_models(config):
        entry = report[m.key] = {"config": m.spec, "role": m.role}
        try:
            jobs[m.key] = load_config(m.spec) if m.role == "pretrain" else build_job_config(
                m.spec, manifest, train_split=None, input_size=input_size,
                keep_num_classes=m.coco_classes)
        except MtpdError as e:
            problems.append(f"{m.key}.config: {_message(e)}")
            continue
        if m.role in ("student", "teacher"):
            entry["weights"] = _weights(m, jobs[m.key], problems)
        if m.role == "fetched":
            teacher = config["teachers"][m.key.split(".", 1)[1]]
            entry["sha256"] = teacher["checkpoint"]["sha256"]
            if not entry["sha256"] and not teacher.get("snapshot_of"):  # snapshots: made here
                problems.append(
                    f"{m.label}: {m.key}.checkpoint.sha256 is not given, so the download "
                    "cannot be verified; add the file's sha256 (`sha256sum FILE`) or the 8+ "
                    "hex digits a zoo file name ends with")
    stages = {}
    for name in distilled_teachers(config):
        if "student" in jobs and f"teachers.{name}" in jobs:
            settings = distill_settings(config, name, layout.teacher_model(name))
            try:
                stages[name] = to_plain(build_distiller_cfg(jobs["student"], settings,
                                                            num_classes))
            except (MtpdError, ValueError) as e:
                problems.append(f"teachers.{name} distilled into the student: distill: "
                                f"{_message(e)}")
    builds = _builds(experiment_models(config), jobs, stages)
    cache_dir = Path(cache_dir) if cache_dir is not None else Path(out).parent / ".cache"
    checked, cached = _cached_check(builds, stages, cache_dir, problems)
    if problems:
        raise PreflightError(f"preflight of experiment '{config['experiment']}': "
                             f"{len(problems)} problem(s); fix them and run again:\n"
                             + "\n".join(problems))
    for key, seconds in checked["build_seconds"].items():
        report[key]["build_seconds"] = seconds
    out_report = {"version": VERSION, "experiment": config["experiment"],
                  "dataset": str(dataset), "classes": num_classes,
                  "input_size": list(input_size) if input_size else None,
                  "models": report, "distillation": checked["distillation"],
                  "cached": cached, "seconds": round(time.perf_counter() - start, 3)}
    atomic_write_json(out, out_report)
    return out_report


def preflight(experiment: list[str | Path], dataset: str | Path, out: str | Path, *,
              input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """`check_experiment` of pipeline config files (an experiment.json a run recorded, or
    config/*.yaml merged as Snakemake merges several --configfile)."""
    from mtpd.pipeline_config import load

    return check_experiment(load(*experiment), dataset, out, input_size=input_size)
