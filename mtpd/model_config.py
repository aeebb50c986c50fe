"""Model configs: a user's plain MMDetection 3 config, adapted into a runnable config for one job.

(The *pipeline* config, config/*.yaml, is `mtpd.pipeline_config`.) A user's detector config
stays unchanged; mtpd only overrides what a job must control: the dataset paths and classes
(from a dataset manifest), `num_classes`, the number of epochs (epoch-based LR milestones are
rescaled), the work directory, the seed and the initial weights.

No MMEngine import at module level: the Snakefile imports `scale_to_size`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtpd.data.argoverse import NATIVE_SIZE
from mtpd.data.manifest import DatasetManifest
from mtpd.errors import ModelConfigError

if TYPE_CHECKING:
    from mmengine.config import Config, ConfigDict

PACKAGE_CONFIGS = Path(__file__).parent / "configs"
# Pipeline steps that resize the input; a registry scope (`mmdet.Resize`) is ignored.
RESIZE_STEPS = ("Resize", "RandomResize", "RandomChoiceResize", "FixShapeResize")


def mmdet_config_root() -> Path:
    """Where the installed MMDetection keeps its model-zoo configs (`mmdet/.mim/configs`)."""
    import mmdet

    root = Path(mmdet.__file__).parent / ".mim" / "configs"
    if not root.is_dir():
        raise ModelConfigError(f"the installed mmdet ({mmdet.__file__}) ships no configs at "
                               f"{root}; reinstall mmdet from a wheel or give a config path")
    return root


def resolve_config_path(spec: str | Path) -> Path:
    """Resolves `mmdet::retinanet/x.py`, `mtpd::shapes/x.py` or a file path to a file.

    `Config.fromfile('mmdet::...')` does not resolve the scope itself (only `_base_` entries
    do), hence this function.
    """
    spec = str(spec)
    if spec.startswith("mmdet::"):
        path = mmdet_config_root() / spec[len("mmdet::"):]
    elif spec.startswith("mtpd::"):
        path = PACKAGE_CONFIGS / spec[len("mtpd::"):]
    else:
        path = Path(spec)
    if not path.is_file():
        raise ModelConfigError(f"model config '{spec}' not found (looked at {path}); give a file "
                               "path, 'mmdet::<dir>/<name>.py' or 'mtpd::<dir>/<name>.py'")
    return path


def load_config(spec: str | Path) -> Config:
    from mmengine.config import Config

    return Config.fromfile(str(resolve_config_path(spec)))


def build_model(model_cfg: Any, config: str | Path) -> Any:
    """MODELS.build with an error that names the config when it does not build."""
    from mmdet.registry import MODELS

    try:
        return MODELS.build(model_cfg)
    except Exception as e:  # registry KeyError, TypeError of a wrong argument, ...
        reason = " ".join(str(e).split())[:300]
        raise ModelConfigError(f"model config {config} does not build ({type(e).__name__}: "
                               f"{reason}); fix its model section") from e


def _inner_dataset(loader: ConfigDict, where: str) -> ConfigDict:
    """The CocoDataset inside optional Repeat/ClassBalanced wrappers."""
    ds = loader["dataset"]
    while ds.get("type") in ("RepeatDataset", "ClassBalancedDataset"):
        ds = ds["dataset"]
    if ds.get("type") == "ConcatDataset":
        raise ModelConfigError(f"{where}.dataset is a ConcatDataset; mtpd feeds one COCO-format "
                               "split per job, so use a single dataset (optionally Repeat-wrapped)")
    return ds


def set_split(cfg: Config, loader_key: str, manifest: DatasetManifest, split: str) -> None:
    """Points `cfg[loader_key]` at a split of the manifest, with the manifest's classes."""
    if cfg.get(loader_key) is None:
        raise ModelConfigError(f"the config has no '{loader_key}'; mtpd needs a complete "
                               "MMDetection config with train/test dataloaders")
    s = manifest.split(split)
    ds = _inner_dataset(cfg[loader_key], loader_key)
    ds["data_root"] = ""
    ds["ann_file"] = str(s.ann_file)
    ds["data_prefix"] = dict(img=str(s.img_dir) + "/")
    ds["metainfo"] = dict(classes=tuple(manifest.classes))


def class_heads(node: Any, key: str | None = None) -> Iterator[dict]:
    """Every head of a model config that has `num_classes`, in config order, except the
    class-agnostic RPN (`key`: the name `node` has in its parent)."""
    if key == "rpn_head":
        return
    if isinstance(node, dict):
        if key is not None and "num_classes" in node:
            yield node
        for k, v in node.items():
            yield from class_heads(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from class_heads(v, key)


def set_num_classes(model_cfg: Any, num_classes: int) -> int:
    """Sets `num_classes` in every head of the detector except the class-agnostic RPN.

    Returns how many places were set, so callers can refuse a model with none.
    """
    heads = list(class_heads(model_cfg))
    for head in heads:
        head["num_classes"] = num_classes
    return len(heads)


def config_num_classes(model_cfg: Any) -> int | None:
    """The model config's own `num_classes` (its first head's but the RPN's), before mtpd
    changes it; None when no head has one."""
    return next((int(head["num_classes"]) for head in class_heads(model_cfg)), None)


def pipeline(cfg: Any, loader_key: str) -> list[dict]:
    """The steps of a dataloader's pipeline (its dataset's, inside Repeat/ClassBalanced
    wrappers), as the config's own dicts; none when the config lacks that dataloader."""
    loader = cfg.get(loader_key)
    if not loader or not loader.get("dataset"):
        return []
    return _inner_dataset(loader, loader_key).get("pipeline") or []


def is_resize(step: dict) -> bool:
    """Whether a pipeline step resizes the input (one of `RESIZE_STEPS`)."""
    return str(step.get("type", "")).split(".")[-1] in RESIZE_STEPS


def resize_steps(cfg: Any, *loader_keys: str) -> list[dict]:
    """The steps that resize the input in these dataloaders' pipelines, in order; the config's
    own dicts, so a caller may change them in place."""
    return [step for key in loader_keys for step in pipeline(cfg, key) if is_resize(step)]


def fixed_scale(step: dict) -> Any:
    """The one scale a resize step resizes to: its `scale`, or a FixShapeResize's (width,
    height); None for a random resize, which has no one scale."""
    kind = str(step.get("type", "")).split(".")[-1]
    if kind == "FixShapeResize":
        return (step["width"], step["height"]) if "width" in step and "height" in step else None
    return None if kind.startswith("Random") else step.get("scale")


def make_fixed_resize(step: dict, size: tuple[int, int]) -> None:
    """Turns a resize step, in place, into a Resize to `size` (width, height) that keeps the
    aspect ratio; what made it random or fixed-shape goes."""
    step["type"], step["scale"], step["keep_ratio"] = "Resize", tuple(size), True
    for key in ("scales", "ratio_range", "width", "height", "pad_val"):
        step.pop(key, None)


def set_input_size(cfg: Config, size: tuple[int, int]) -> int:
    """Sets every resize step of the train and test pipelines to `size` (width, height), keeping
    the aspect ratio, as Argoverse-HD's input scales (fractions of 1920x1200) need. Returns how
    many were set, so callers can refuse a config with none."""
    steps = resize_steps(cfg, "train_dataloader", "test_dataloader")
    for step in steps:
        make_fixed_resize(step, size)
    return len(steps)


def scale_to_size(scale: float, native: tuple[int, int] = NATIVE_SIZE) -> tuple[int, int]:
    """The input size (width, height) at `scale` x the native frame size: 0.5 -> (960, 600).

    Streaming results are reported per input scale, a fraction of the frame size (not
    MMDetection's 1333 x 800 default)."""
    if not isinstance(scale, (int, float)) or not 0 < scale <= 2:
        raise ModelConfigError(f"input scale {scale!r} is outside (0, 2]; give a fraction of the "
                               f"native frame size {native[0]}x{native[1]}, e.g. 0.5")
    return int(round(native[0] * scale)), int(round(native[1] * scale))


def set_epochs(cfg: Config, epochs: int) -> None:
    """Sets max_epochs and rescales epoch-based schedulers (milestones, begin/end, T_max)."""
    loop = cfg.get("train_cfg") or {}
    old = loop.get("max_epochs")
    if old is None:
        raise ModelConfigError("the config's train_cfg has no max_epochs; mtpd needs an "
                               "epoch-based train loop (type='EpochBasedTrainLoop')")
    cfg.train_cfg["max_epochs"] = epochs
    scale = epochs / old
    schedulers = cfg.get("param_scheduler") or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    for sch in schedulers:
        if not sch.get("by_epoch", True):
            continue
        for key in ("begin", "end", "T_max"):
            if key in sch and isinstance(sch[key], (int, float)):
                sch[key] = max(0, int(round(sch[key] * scale))) if sch[key] < 1e6 else sch[key]
        if "milestones" in sch:
            sch["milestones"] = sorted({max(1, int(round(m * scale))) for m in sch["milestones"]})


# Iteration-based schedulers that only warm up: a continued stage after the first drops them.
WARMUPS = ("LinearLR", "ConstantLR")


def set_continued_schedule(cfg: Config, epochs: int, stage: int, stages: int) -> None:
    """Makes the job stage `stage` (1-based) of one LR schedule over `stages` stages of `epochs`
    each: the config's schedule is stretched to `stages * epochs`, and this job trains its epochs
    from `(stage - 1) * epochs` on. So a chain warms up once and its LR decays once, where the
    paper restarts both in every stage. Supports epoch-based MultiStepLR (the 1x and 2x
    schedules) after any iteration-based warm-up; milestones already passed lower the LR."""
    if not 1 <= stage <= stages:
        raise ModelConfigError(f"continued schedule: stage {stage} of {stages} does not exist")
    set_epochs(cfg, epochs * stages)
    cfg.train_cfg["max_epochs"] = epochs
    offset = (stage - 1) * epochs
    schedulers = cfg.get("param_scheduler") or []
    schedulers = [schedulers] if isinstance(schedulers, dict) else list(schedulers)
    kept, factor = [], 1.0
    for sch in schedulers:
        kind = str(sch.get("type", "")).split(".")[-1]
        if not sch.get("by_epoch", True):
            if kind not in WARMUPS:
                raise ModelConfigError(f"continued schedule: the iteration-based {kind} cannot "
                                       "be continued across stages; use distill.stage_schedule "
                                       "restart, or an epoch-based MultiStepLR")
            if stage == 1:
                kept.append(sch)
            continue
        if kind != "MultiStepLR":
            raise ModelConfigError(f"continued schedule: the epoch-based {kind} is not supported "
                                   "(MultiStepLR is); use distill.stage_schedule restart")
        milestones = list(sch.get("milestones", []))
        factor *= sch.get("gamma", 0.1) ** sum(m <= offset for m in milestones)
        sch["milestones"] = [m - offset for m in milestones if offset < m < offset + epochs]
        sch["begin"], sch["end"] = 0, epochs
        kept.append(sch)
    cfg.param_scheduler = kept
    cfg.optim_wrapper.optimizer["lr"] = cfg.optim_wrapper.optimizer["lr"] * factor


def build_job_config(model_config: str | Path, manifest: DatasetManifest, *,
                     work_dir: str | Path | None = None, train_split: str | None = "train",
                     test_split: str | None = None, epochs: int | None = None,
                     seed: int | None = None, pretrained_backbone: str | None = None,
                     batch_size: int | None = None, num_workers: int | None = None,
                     input_size: tuple[int, int] | None = None,
                     keep_num_classes: bool = False,
                     continue_schedule: tuple[int, int] | None = None) -> Config:
    """The user's config, adapted to one mtpd job (see module docstring).

    None leaves the model config's own value (epochs, batch size, workers, input size); `seed`
    matters for training jobs only. `keep_num_classes` keeps the heads' own classes (a COCO
    model evaluated on another dataset through a class mapping)."""
    cfg = load_config(model_config)
    if "model" not in cfg:
        raise ModelConfigError(f"{model_config} defines no 'model'")
    if train_split is not None:  # evaluation-only jobs leave the training data alone
        set_split(cfg, "train_dataloader", manifest, train_split)
    if test_split is not None:
        set_split(cfg, "test_dataloader", manifest, test_split)
    if not keep_num_classes and set_num_classes(cfg.model, len(manifest.classes)) == 0:
        raise ModelConfigError(f"{model_config}: found no head with 'num_classes' in model")
    if input_size is not None and set_input_size(cfg, input_size) == 0:
        raise ModelConfigError(f"{model_config}: found no Resize in its pipelines to set the "
                               f"input size {input_size[0]}x{input_size[1]}")
    if continue_schedule is not None:
        if epochs is None:
            raise ModelConfigError("a continued schedule needs the stage's epochs")
        set_continued_schedule(cfg, epochs, *continue_schedule)
    elif epochs is not None:
        set_epochs(cfg, epochs)
    if cfg.get("train_dataloader") and not (cfg.get("auto_scale_lr") or {}).get(
            "base_batch_size"):
        # The batch the config's LR was set for: its own (one process). MMDetection's zoo
        # configs state theirs (16 = 8 GPUs x 2 images); the LR scales from it (mtpd.train).
        cfg.auto_scale_lr = dict(enable=False,
                                 base_batch_size=cfg.train_dataloader["batch_size"])
    if pretrained_backbone:
        cfg.model.backbone["init_cfg"] = dict(type="Pretrained",
                                              checkpoint=str(pretrained_backbone))
    for key in ("batch_size", "num_workers"):
        value = {"batch_size": batch_size, "num_workers": num_workers}[key]
        if value is not None:
            cfg.train_dataloader[key] = value
            if key == "num_workers" and value == 0:
                cfg.train_dataloader["persistent_workers"] = False
    if num_workers == 0 and cfg.get("test_dataloader"):
        cfg.test_dataloader["num_workers"] = 0
        cfg.test_dataloader["persistent_workers"] = False
    # Validation runs as its own evaluation job, never inside training.
    cfg.val_dataloader = None
    cfg.val_cfg = None
    cfg.val_evaluator = None
    if work_dir is not None:
        cfg.work_dir = str(work_dir)
    if seed is not None:
        cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.default_hooks = cfg.get("default_hooks") or {}
    cfg.default_hooks.pop("visualization", None)
    cfg.custom_hooks = [h for h in (cfg.get("custom_hooks") or [])
                        if h.get("type") != "DetVisualizationHook"]
    cfg.launcher = "none"
    return cfg


def to_plain(obj: Any) -> Any:
    """ConfigDicts to dicts, tuples to lists: for JSON metadata."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj
