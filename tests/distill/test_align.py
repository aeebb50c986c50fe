"""Aligning a student with its teacher (mtpd/distill/align.py): the teacher's input converted."""
from __future__ import annotations

import torch

from mtpd.distill.align import TeacherInput


def test_teacher_input_conversion():
    conv = TeacherInput(student_mean=[10, 20, 30], student_std=[2, 2, 2],
                        teacher_mean=[0, 0, 0], teacher_std=[1, 1, 1], flip_channels=True,
                        scale=1.5, pad_divisor=32)
    raw = torch.rand(1, 3, 32, 32) * 255
    student_in = (raw - torch.tensor([10., 20, 30]).view(1, 3, 1, 1)) / 2
    out = conv(student_in)
    assert out.shape == (1, 3, 64, 64)  # 48 padded to a multiple of 32
    expect = torch.nn.functional.interpolate(raw.flip(1), scale_factor=1.5, mode="bilinear",
                                             align_corners=False)
    assert torch.allclose(out[..., :48, :48], expect, atol=1e-3)
