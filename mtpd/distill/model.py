"""One stage of progressive distillation: a student detector learning from one frozen teacher.

`StageDistiller.loss()` reads like the method: the teacher's FPN features under no_grad,
the student's detection losses while a hook records its FPN outputs, then one distillation loss
per matched level. The teacher is deliberately *not* a registered submodule, so it is absent from
the state dict, the optimizer and the DDP wrapper; it is moved with the model, kept in eval mode
for the whole run (drop-path off as well as BatchNorm), and never re-initialised.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseModel
from torch import nn

from mtpd.checkpoint import load_weights
from mtpd.distill.align import Adapter, TeacherInput, match_levels, pipeline_scale, resize_to
from mtpd.distill.recorder import OutputRecorder
from mtpd.model_config import build_model
from mtpd.pipeline_config import DISTILL_STAGE_SETTINGS

log = logging.getLogger("mtpd.distill")

# The paper's lambda for its simple loss: 0.5 for RetinaNet students, 0.8 for Mask R-CNN.
PAPER_LAMBDA = {"single_stage": 0.5, "two_stage": 0.8}
HEAD_KEYS = ("neck.", "bbox_head.", "rpn_head.", "roi_head.")


def _fpn_channels(model_cfg: dict, role: str) -> int:
    neck = model_cfg.get("neck")
    if isinstance(neck, list):
        neck = neck[-1]
    if not neck or "out_channels" not in neck:
        raise ValueError(f"the {role} model has no neck with 'out_channels'; feature "
                         "distillation needs an FPN-like neck")
    return int(neck["out_channels"])


@MODELS.register_module()
class StageDistiller(BaseModel):
    """Student + frozen teacher + per-level adapters and losses (see module docstring)."""

    def __init__(self, student: dict, teacher: dict, teacher_checkpoint: str, loss: dict,
                 teacher_scale: float, levels: list[int] | None, min_positions: int,
                 adapter_norm: bool, inherit_neck_head: bool, student_init: str | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None):
        super().__init__(data_preprocessor=data_preprocessor or copy.deepcopy(
            student.get("data_preprocessor")), init_cfg=init_cfg)
        self.student = MODELS.build(student)
        self.__dict__["teacher"] = self._build_teacher(teacher, teacher_checkpoint)
        self.teacher_checkpoint = teacher_checkpoint
        self.student_init = student_init
        self.inherit_neck_head = inherit_neck_head
        self.levels, self.min_positions = levels, min_positions
        self.teacher_input = TeacherInput.from_preprocessors(
            student.get("data_preprocessor") or {}, teacher.get("data_preprocessor") or {},
            teacher_scale)
        c_s, c_t = _fpn_channels(student, "student"), _fpn_channels(teacher, "teacher")
        num_levels = int((student.get("neck") or {}).get("num_outs", 5))
        self.adapters = nn.ModuleList(Adapter(c_s, c_t, adapter_norm) for _ in range(num_levels))
        self.losses = nn.ModuleList(MODELS.build({**loss, "channels": c_t})
                                    for _ in range(num_levels))
        self.recorder = OutputRecorder(self.student.neck)

    # --- the teacher, kept out of the student's state -------------------------------------
    @staticmethod
    def _build_teacher(cfg: dict, checkpoint: str) -> nn.Module:
        teacher = build_model(cfg, "of the teacher")
        load_weights(teacher, checkpoint, "of the teacher", allow_unexpected=True)
        teacher.eval()
        teacher.requires_grad_(False)
        return teacher

    def _apply(self, fn, *args, **kwargs):  # moves/casts the unregistered teacher too
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True) -> "StageDistiller":
        super().train(mode)
        self.teacher.eval()  # always: BatchNorm statistics *and* dropout/drop-path
        return self

    def init_weights(self) -> None:
        """Initialises student, adapters and losses; never touches the teacher."""
        self.student.init_weights()
        if self.student_init:
            load_weights(self.student, self.student_init, "of the student")
            log.info("student starts from %s", self.student_init)
        elif self.inherit_neck_head:
            self._inherit_from_teacher()

    def _inherit_from_teacher(self) -> None:
        """First stage only: copy the teacher's neck and heads when they have the same shapes."""
        t_sd, s_sd = self.teacher.state_dict(), self.student.state_dict()
        keys = [k for k in s_sd if k.startswith(HEAD_KEYS)]
        bad = [k for k in keys if k not in t_sd or t_sd[k].shape != s_sd[k].shape]
        if bad:
            raise ValueError("inherit_neck_head needs the same neck and head in student and "
                             f"teacher; they differ at {bad[:3]}. Switch it off for this pair")
        self.student.load_state_dict({k: t_sd[k] for k in keys}, strict=False)
        log.info("student inherited %d neck/head tensors from the teacher", len(keys))

    # --- forward ----------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = "tensor"):
        if mode == "loss":
            return self.loss(inputs, data_samples)
        return self.student(inputs, data_samples, mode=mode)

    @torch.no_grad()
    def teacher_features(self, inputs: torch.Tensor) -> list[torch.Tensor]:
        """Teacher FPN outputs for the student's batch, at the teacher's own scale."""
        return list(self.teacher.extract_feat(self.teacher_input(inputs)))

    def distilled_levels(self, feats: list[torch.Tensor]) -> list[int]:
        if self.levels is not None:
            return [i for i in self.levels if i < len(feats)]
        return [i for i, f in enumerate(feats)
                if f.shape[-2] * f.shape[-1] >= self.min_positions]

    def loss(self, inputs: torch.Tensor, data_samples: list) -> dict[str, torch.Tensor]:
        t_feats = self.teacher_features(inputs)
        with self.recorder:
            student_losses = self.student.loss(inputs, data_samples)
        distill = self.distill_loss(inputs, list(self.recorder.output), t_feats, data_samples)
        losses = {f"student.{k}": v for k, v in student_losses.items()}
        losses[f"distill.loss_{self.losses[0].__class__.__name__}"] = distill
        losses["distill.ratio"] = (distill / _total(student_losses).clamp(min=1e-8)).detach()
        return losses

    def distill_loss(self, inputs: torch.Tensor, s_feats: list[torch.Tensor],
                     t_feats: list[torch.Tensor], data_samples: list) -> torch.Tensor:
        """Sum over the distilled student levels of loss(adapter(student), aligned teacher).

        Always in fp32, autocast off: under mixed precision (`mtpd.precision`) the features come
        in fp16/bf16, and the adapters' and losses' fp32 parameters must not meet them raw.
        """
        with torch.autocast(inputs.device.type, enabled=False):
            return self._distill_loss(inputs, [f.float() for f in s_feats],
                                      [f.float() for f in t_feats], data_samples)

    def _distill_loss(self, inputs: torch.Tensor, s_feats: list[torch.Tensor],
                      t_feats: list[torch.Tensor], data_samples: list) -> torch.Tensor:
        # Both cover the same image, so strides in student pixels are input height / map height.
        h_in = inputs.shape[-2]
        match = match_levels([h_in / f.shape[-2] for f in s_feats],
                             [h_in / f.shape[-2] for f in t_feats])
        boxes = [ds.gt_instances.bboxes for ds in data_samples]
        shapes = [tuple(ds.metainfo["batch_input_shape"]) for ds in data_samples]
        distill = inputs.new_zeros(())
        levels = self.distilled_levels(s_feats)
        for i in levels:
            s = self.adapters[i](s_feats[i])
            t = resize_to(t_feats[match[i]], s.shape[-2:])
            distill = distill + self.losses[i](s, t, boxes=boxes, img_shapes=shapes)
        # Levels this stage skips (too few cells) still take part in the graph with weight 0,
        # so multi-GPU DDP finds every parameter used (find_unused_parameters stays off).
        skipped = [p for i in range(len(self.adapters)) if i not in levels
                   for m in (self.adapters[i], self.losses[i]) for p in m.parameters()]
        return distill + sum(p.view(-1)[0] * 0.0 for p in skipped)

    @torch.no_grad()
    def mean_distill_loss(self, batches: Any) -> float:
        """The distillation loss averaged over batches, all in eval mode: BGS's feature proxy
        (how well the student, through its adapters, matches this stage's teacher)."""
        was_training = self.training
        self.eval()
        total, n = 0.0, 0
        try:
            for batch in batches:
                data = self.data_preprocessor(batch, False)
                inputs = data["inputs"]
                s_feats = list(self.student.extract_feat(inputs))
                loss = self.distill_loss(inputs, s_feats, self.teacher_features(inputs),
                                         data["data_samples"])
                total += float(loss) * len(inputs)
                n += len(inputs)
        finally:
            self.train(was_training)
        return total / max(n, 1)


def _total(losses: dict[str, Any]) -> torch.Tensor:
    """Sum of the entries MMEngine would sum (keys containing 'loss'; values or lists)."""
    total = 0.0
    for key, value in losses.items():
        if "loss" in key:
            total = total + sum(v.sum() for v in (value if isinstance(value, (list, tuple))
                                                  else [value]))
    return torch.as_tensor(total).detach()


def build_distiller_cfg(cfg: Any, distill: dict[str, Any], num_classes: int,
                        student_init: str | None = None) -> dict[str, Any]:
    """The `model` entry of a distillation stage, from a job config and `distill` settings.

    `distill` holds teacher_config and teacher_checkpoint (required), teacher_classes
    ("dataset", or "coco" for a COCO-80 teacher, whose head keeps its classes) and any of
    `DISTILL_STAGE_SETTINGS`, which mean what the pipeline config's `distill` keys mean; those
    left out take the schema's defaults. A FeatureMSELoss without loss_weight gets the paper's
    lambda for the student's type; teacher_scale 'auto' is the ratio of the teacher's and student's
    test-pipeline Resize scales.
    """
    from mtpd.model_config import load_config, set_num_classes
    from mtpd.pipeline_config import default

    teacher_keys = {"teacher_config", "teacher_checkpoint", "teacher_classes"}
    unknown = set(distill) - set(DISTILL_STAGE_SETTINGS) - teacher_keys
    if unknown:
        raise ValueError(f"unknown distillation settings {sorted(unknown)}; known: "
                         f"{', '.join(sorted(teacher_keys) + list(DISTILL_STAGE_SETTINGS))}")
    for key in ("teacher_config", "teacher_checkpoint"):
        if not distill.get(key):
            raise ValueError(f"distillation settings lack '{key}'")
    settings = {key: default(f"distill.{key}") for key in DISTILL_STAGE_SETTINGS} | distill
    student = copy.deepcopy(cfg["model"])
    student = student.to_dict() if hasattr(student, "to_dict") else student
    tcfg = load_config(distill["teacher_config"])
    teacher = tcfg.model.to_dict()
    if distill.get("teacher_classes", "dataset") == "dataset":  # else its own (COCO's 80)
        set_num_classes(teacher, num_classes)
    teacher.setdefault("backbone", {})["init_cfg"] = None  # weights come from the checkpoint
    loss = {k: v for k, v in settings["loss"].items() if v is not None}
    if loss["type"] == "FeatureMSELoss" and "loss_weight" not in loss:
        loss["loss_weight"] = PAPER_LAMBDA["two_stage" if "roi_head" in student else "single_stage"]
    scale = settings["teacher_scale"]
    if scale == "auto":
        s_scale, t_scale = pipeline_scale(cfg), pipeline_scale(tcfg)
        scale = t_scale / s_scale if s_scale and t_scale else 1.0
    return dict(type="StageDistiller", student=student, teacher=teacher,
                teacher_checkpoint=str(distill["teacher_checkpoint"]), loss=loss,
                teacher_scale=float(scale), levels=settings["levels"],
                min_positions=int(settings["min_positions"]),
                adapter_norm=bool(settings["adapter_norm"]),
                inherit_neck_head=bool(settings["inherit_neck_head"]),
                student_init=str(student_init) if student_init else None)
