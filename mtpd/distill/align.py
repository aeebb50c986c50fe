"""Aligning a student with a heterogeneous teacher: input conversion, level matching, adapters.

* The teacher may want other normalisation, channel order and input resolution than the student:
  `TeacherInput` converts the student's preprocessed batch into the teacher's.
* FPN levels are matched by stride measured in *student input pixels*, so a teacher that runs at
  1.5x the resolution with stride 8 matches a student level of stride 8 / 1.5 ~ 5.3 -> 4.
* Teacher maps are resized (bilinear) to the student level's size; student maps pass through a
  learned 1x1 adapter to the teacher's channel count (optionally followed by a non-affine norm).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtpd.model_config import fixed_scale, resize_steps


class Adapter(nn.Module):
    """1x1 conv from student to teacher channels, optionally followed by a non-affine BatchNorm."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.norm = nn.BatchNorm2d(out_channels, affine=False) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


@dataclass
class TeacherInput:
    """Converts a student-normalised batch (N, 3, H, W) to the teacher's normalisation and scale."""

    student_mean: list[float]
    student_std: list[float]
    teacher_mean: list[float]
    teacher_std: list[float]
    flip_channels: bool = False
    scale: float = 1.0
    pad_divisor: int = 32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        view = (1, -1, 1, 1)
        sm = x.new_tensor(self.student_mean).view(view)
        ss = x.new_tensor(self.student_std).view(view)
        tm = x.new_tensor(self.teacher_mean).view(view)
        ts = x.new_tensor(self.teacher_std).view(view)
        raw = x * ss + sm
        if self.flip_channels:
            raw = raw.flip(1)
        y = (raw - tm) / ts
        if self.scale != 1.0:
            y = F.interpolate(y, scale_factor=self.scale, mode="bilinear", align_corners=False)
        h, w = y.shape[-2:]
        d = self.pad_divisor
        ph, pw = (-h) % d, (-w) % d
        return F.pad(y, (0, pw, 0, ph)) if ph or pw else y

    @classmethod
    def from_preprocessors(cls, student: dict, teacher: dict, scale: float) -> "TeacherInput":
        return cls(student_mean=list(student.get("mean", [0, 0, 0])),
                   student_std=list(student.get("std", [1, 1, 1])),
                   teacher_mean=list(teacher.get("mean", [0, 0, 0])),
                   teacher_std=list(teacher.get("std", [1, 1, 1])),
                   flip_channels=bool(student.get("bgr_to_rgb", False))
                   != bool(teacher.get("bgr_to_rgb", False)),
                   scale=scale, pad_divisor=int(teacher.get("pad_size_divisor", 1) or 1))


def match_levels(student_strides: list[float], teacher_strides: list[float]) -> list[int]:
    """For each student level, the teacher level whose stride is closest in log scale.

    Strides are in student input pixels. Ties go to the finer teacher level.
    """
    return [min(range(len(teacher_strides)),
                key=lambda k: (abs(math.log(teacher_strides[k] / s)), teacher_strides[k]))
            for s in student_strides]


def resize_to(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(t.shape[-2:]) == tuple(size):
        return t
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)


def pipeline_scale(cfg: dict) -> float | None:
    """The longest side of the first resize to one scale in a config's test pipeline (None if
    there is none)."""
    for step in resize_steps(cfg, "test_dataloader"):
        scale = fixed_scale(step)
        if scale:
            return float(max(scale) if isinstance(scale, (list, tuple)) else scale)
    return None
