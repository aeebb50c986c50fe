"""The training entry point: one MMEngine Runner job whose only declared output is a checkpoint.

`mtpd train` trains any MMDetection 3 detector config on a dataset manifest's split, optionally
distilling from one frozen teacher (one progressive stage). MMEngine's work directory lives
beside the output (`<out>.work/`, not a DAG target), so a killed job resumes from its last
checkpoint when the rule runs again; the declared checkpoint is written atomically at the very
end and holds the student only.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mtpd import distributed
from mtpd.checkpoint import allow_mmengine_checkpoints, load_checkpoint_file, save_model_checkpoint
from mtpd.data.checked import load_checked
from mtpd.model_config import build_job_config, to_plain
from mtpd.precision import configure_precision
from mtpd.registry import register_all_modules

log = logging.getLogger("mtpd.train")


def work_dir_for(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".work")


def train(model_config: str, dataset: str | Path, out: str | Path, *, epochs: int | None,
          seed: int, split: str = "train", pretrained_backbone: str | None = None,
          init_checkpoint: str | None = None, distill: dict[str, Any] | None = None,
          batch_size: int | None = None, num_workers: int | None = None,
          feature_loss_split: str | None = None,
          checkpoint_minutes: float | None = None,
          input_size: tuple[int, int] | None = None, precision: str | None = None,
          continue_schedule: tuple[int, int] | None = None,
          snapshots: dict[int, str] | None = None) -> Path:
    """Trains and writes a model checkpoint at `out`; returns `out`.

    `epochs` None keeps the model config's own. `distill` (optional) makes this a distillation
    stage: see `mtpd.distill.build_distiller_cfg`. `init_checkpoint` starts the student from a
    previous stage's weights with a fresh optimizer and schedule. With `feature_loss_split`
    (distillation only), the trained stage's mean distillation loss on that split is stored in
    the checkpoint's meta (BGS's feature proxy). A resumable checkpoint is also saved every
    `checkpoint_minutes` (`mtpd.resume`; None: the pipeline schema's default). `precision`
    fp16 or bf16 trains with autocast (`mtpd.precision`; None: the schema's train.precision);
    the exported checkpoint is fp32 either way. Run as N
    processes (`mtpd.distributed`), the LR is scaled linearly from the config's base batch to
    the total batch, and the first process writes the same student-only checkpoint as a single
    process would. `continue_schedule` (i, n) trains this stage as the i-th `epochs`-long part of
    one schedule over n such parts (`mtpd.model_config.set_continued_schedule`). `snapshots` maps an
    epoch to a path where the model's weights after that epoch are written (a teacher's
    intermediate weights, `teachers.*.snapshots`).
    """
    from mmengine.runner import Runner

    register_all_modules()
    allow_mmengine_checkpoints()
    distributed.init_process_group()
    out = Path(out)
    manifest = load_checked(dataset)
    work_dir = work_dir_for(out)
    cfg = build_job_config(model_config, manifest, work_dir=work_dir, train_split=split,
                           epochs=epochs, seed=seed, pretrained_backbone=pretrained_backbone,
                           batch_size=batch_size, num_workers=num_workers,
                           input_size=input_size, continue_schedule=continue_schedule)
    # Fail early, naming the file, if the previous stage's checkpoint is bad.
    init_meta = (load_checkpoint_file(init_checkpoint).get("meta", {}).get("mtpd", {})
                 if init_checkpoint else {})
    if distill is not None:
        from mtpd.distill.model import build_distiller_cfg

        cfg.model = build_distiller_cfg(cfg, distill, len(manifest.classes),
                                        student_init=init_checkpoint)
    elif init_checkpoint:
        cfg.load_from = str(init_checkpoint)
    resumable = (work_dir / "last_checkpoint").is_file()
    if resumable:
        cfg.resume, cfg.load_from = True, None
        log.info("resuming from %s", (work_dir / "last_checkpoint").read_text().strip())
    config_text = student_config_text(cfg)  # plain MMDetection, before mtpd's hooks and loop
    if checkpoint_minutes is None:
        from mtpd.pipeline_config import default

        checkpoint_minutes = default("compute.checkpoint_minutes")
    configure_training(cfg, checkpoint_minutes)
    if snapshots:
        cfg.custom_hooks.append(dict(type="SnapshotHook", paths=dict(snapshots), info=dict(
            mtpd={"config": str(model_config), "dataset": str(dataset), "split": split,
                  "seed": seed},
            dataset_meta={"classes": list(manifest.classes)}, config_text=config_text)))
    precision = configure_precision(cfg, precision)
    distributed.configure_runner(cfg)

    runner = Runner.from_cfg(cfg)
    runner.train()
    if distributed.rank() != 0:
        return out
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    student = getattr(model, "student", model)
    feature_loss = None
    if distill is not None and feature_loss_split:
        from mtpd.model_config import set_split

        set_split(cfg, "test_dataloader", manifest, feature_loss_split)
        feature_loss = model.mean_distill_loss(Runner.build_dataloader(cfg.test_dataloader))
    stage_epochs = cfg.train_cfg["max_epochs"]
    seconds = runner.message_hub.get_info("mtpd_train_seconds", 0.0)
    info = {
        "mtpd": {
            "config": str(model_config), "dataset": str(dataset), "split": split,
            "stage_epochs": stage_epochs,
            "total_epochs": stage_epochs + init_meta.get("total_epochs", 0),
            "seed": seed, "processes": distributed.world_size(), "precision": precision,
            "total_batch": distributed.world_size() * cfg.train_dataloader["batch_size"],
            "lr": runner.optim_wrapper.param_groups[0].get(
                "initial_lr", runner.optim_wrapper.param_groups[0]["lr"]),
            "init_checkpoint": str(init_checkpoint) if init_checkpoint else None,
            "continue_schedule": list(continue_schedule) if continue_schedule else None,
            "distill": to_plain(distill) if distill else None,
            "train_seconds": seconds,
            "total_train_seconds": seconds + init_meta.get("total_train_seconds", 0.0),
            "resumed": resumable, "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "feature_loss": feature_loss, "feature_loss_split": feature_loss_split,
        },
        "dataset_meta": {"classes": list(manifest.classes)},
        "config_text": config_text,
    }
    save_model_checkpoint(out, student.state_dict(), info)
    return out


def configure_training(cfg: Any, checkpoint_minutes: float) -> None:
    """The parts of every training job that mtpd controls: resumable checkpoints (replacing
    MMEngine's CheckpointHook), a stop at the first non-finite loss, wall time, and the LR
    scaled linearly when the total batch differs from the config's base batch."""
    cfg.default_hooks["checkpoint"] = None
    cfg.custom_hooks = list(cfg.get("custom_hooks") or []) + [
        dict(type="WallTimeHook"), dict(type="FiniteLossHook"),
        dict(type="ResumableCheckpointHook", interval_minutes=checkpoint_minutes)]
    if cfg.train_cfg.get("type") in ("EpochBasedTrainLoop", None):
        cfg.train_cfg["type"] = "ResumableEpochBasedTrainLoop"
    cfg.auto_scale_lr["enable"] = True


def student_config_text(cfg: Any) -> str:
    """The student's runnable config, so plain MMDetection can rebuild and run the exported
    model: `Config.fromstring(text, '.py')` gives back the same values and types (tuples stay
    tuples, which MMCV's transforms require)."""
    from mmengine.config import Config

    d = cfg._cfg_dict.to_dict()
    if d["model"].get("type") == "StageDistiller":
        d["model"] = d["model"]["student"]
    d["resume"], d["load_from"] = False, None
    return Config(d).pretty_text
