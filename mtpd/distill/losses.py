"""Feature-distillation losses, one module each, applied per FPN level.

Every loss takes a student feature already mapped to the teacher's channel count (by the
adapter, `mtpd.distill.align.Adapter`) and a teacher feature of the same shape (N, C, H, W), and
returns a scalar already multiplied by its `loss_weight`. Normalisations are written out as
published so that they can be checked by hand (tests/distill/test_losses.py does).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import nn


@MODELS.register_module()
class FeatureMSELoss(nn.Module):
    """The paper's simple loss (Cao et al. 2023, Sec. 3.1): lambda * mean((A(F_s) - F_t)^2).

    The mean runs over N, C, H, W. Lambda is 0.5 for RetinaNet students and 0.8 for Mask R-CNN
    students in the paper (insensitive between 0.3 and 0.8).
    """

    def __init__(self, channels: int, loss_weight: float = 0.5):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, s: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        return self.loss_weight * F.mse_loss(s, t)


@MODELS.register_module()
class CWDLoss(nn.Module):
    """Channel-wise distillation (Shu et al., ICCV 2021).

    Each channel becomes a distribution over the H*W locations, softmax(x / tau); the loss is
    tau^2 / (N * C) * sum_{n,c} KL(p_t || p_s), times `loss_weight`.
    """

    def __init__(self, channels: int, tau: float = 1.0, loss_weight: float = 1.0):
        super().__init__()
        self.tau, self.loss_weight = tau, loss_weight

    def forward(self, s: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        n, c = s.shape[:2]
        log_ps = F.log_softmax(s.reshape(n * c, -1) / self.tau, dim=1)
        log_pt = F.log_softmax(t.reshape(n * c, -1) / self.tau, dim=1)
        kl = (log_pt.exp() * (log_pt - log_ps)).sum()
        return self.loss_weight * kl * self.tau ** 2 / (n * c)


def _standardise(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Zero mean, unit (unbiased) std per channel over batch and space (PKD's normalisation)."""
    n, c, h, w = x.shape
    flat = x.transpose(0, 1).reshape(c, -1)
    flat = (flat - flat.mean(1, keepdim=True)) / (flat.std(1, keepdim=True) + eps)
    return flat.reshape(c, n, h, w).transpose(0, 1)


@MODELS.register_module()
class PKDLoss(nn.Module):
    """PKD (Cao et al., NeurIPS 2022): MSE of per-channel standardised features, divided by 2.

    Scale-free, so it tolerates teachers whose feature magnitudes differ from the student's.
    """

    def __init__(self, channels: int, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, s: torch.Tensor, t: torch.Tensor, **_) -> torch.Tensor:
        return self.loss_weight * F.mse_loss(_standardise(s), _standardise(t)) / 2


@MODELS.register_module()
class MGDLoss(nn.Module):
    """Masked generative distillation (Yang et al., ECCV 2022).

    A random spatial mask (each location dropped with probability `mask_ratio`) is applied to the
    student feature; a two-layer generator (3x3 conv, ReLU, 3x3 conv) must reproduce the whole
    teacher feature: alpha * sum((G(M * F_s) - F_t)^2) / N. The released MTPD code used
    alpha 2e-5, ratio 0.65 for RetinaNet and 5e-7, 0.45 for Mask R-CNN (COCO-sized maps; the sum
    grows with H * W, so smaller images want a larger alpha).
    """

    def __init__(self, channels: int, loss_weight: float = 2e-5, mask_ratio: float = 0.65):
        super().__init__()
        self.loss_weight, self.mask_ratio = loss_weight, mask_ratio
        self.generator = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1),
                                       nn.ReLU(inplace=False),
                                       nn.Conv2d(channels, channels, 3, padding=1))

    def random_mask(self, s: torch.Tensor) -> torch.Tensor:
        n, _, h, w = s.shape
        keep = torch.rand(n, 1, h, w, device=s.device) >= self.mask_ratio
        return keep.to(s.dtype)

    def forward(self, s: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None,
                **_) -> torch.Tensor:
        if mask is None:
            mask = self.random_mask(s)
        generated = self.generator(s * mask)
        return self.loss_weight * ((generated - t) ** 2).sum() / s.shape[0]


class _ContextBlock(nn.Module):
    """GcBlock used by FGD's global loss: attention pooling to a context vector, then a
    bottleneck transform added back to every location."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_mask = nn.Conv2d(channels, 1, 1)
        mid = max(1, channels // 2)
        self.transform = nn.Sequential(nn.Conv2d(channels, mid, 1), nn.LayerNorm([mid, 1, 1]),
                                       nn.ReLU(inplace=False), nn.Conv2d(mid, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        weights = F.softmax(self.conv_mask(x).reshape(n, 1, h * w), dim=2)  # N,1,HW
        context = torch.bmm(x.reshape(n, c, h * w), weights.transpose(1, 2))  # N,C,1
        return x + self.transform(context.reshape(n, c, 1, 1))


def fgd_attention(x: torch.Tensor, temp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FGD's spatial (N, H, W) and channel (N, C) attention, scaled to mean 1."""
    n, c, h, w = x.shape
    a = x.abs()
    spatial = h * w * F.softmax((a.mean(1) / temp).reshape(n, -1), dim=1).reshape(n, h, w)
    channel = c * F.softmax(a.mean((2, 3)) / temp, dim=1)
    return spatial, channel


def fgd_masks(boxes: list[torch.Tensor], img_shapes: list[tuple[int, int]], h: int, w: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground mask holding 1 / (box area in cells) (the largest over boxes covering a cell),
    and a background mask holding 1 / (number of background cells) elsewhere."""
    n = len(boxes)
    device = boxes[0].device if n else "cpu"
    fg = torch.zeros(n, h, w, device=device)
    for i, (b, (ih, iw)) in enumerate(zip(boxes, img_shapes, strict=True)):
        for x0, y0, x1, y1 in b.tolist():
            c0, c1 = math.floor(x0 / iw * w), min(w - 1, math.ceil(x1 / iw * w))
            r0, r1 = math.floor(y0 / ih * h), min(h - 1, math.ceil(y1 / ih * h))
            area = 1.0 / ((r1 + 1 - r0) * (c1 + 1 - c0))
            fg[i, r0:r1 + 1, c0:c1 + 1] = fg[i, r0:r1 + 1, c0:c1 + 1].clamp(min=area)
    bg = (fg == 0).float()
    bg = bg / bg.sum((1, 2), keepdim=True).clamp(min=1)
    return fg, bg


@MODELS.register_module()
class FGDLoss(nn.Module):
    """Focal and global distillation (Yang et al., CVPR 2022).

    With teacher attentions A_S (spatial) and A_C (channel) at temperature `temp`, masks from the
    ground-truth boxes (see `fgd_masks`):
      fg  = sum(M_fg * A_S * A_C * (F_s - F_t)^2) / N,   bg likewise with M_bg,
      att = (sum|A_C^s - A_C^t| + sum|A_S^s - A_S^t|) / N,
      glo = sum((GC_s(F_s) - GC_t(F_t))^2) / N,
      loss = alpha * fg + beta * bg + gamma * att + lam * glo.
    Defaults are FGD's RetinaNet settings.
    """

    def __init__(self, channels: int, alpha: float = 1e-3, beta: float = 5e-4,
                 gamma: float = 5e-4, lam: float = 5e-6, temp: float = 0.5,
                 loss_weight: float = 1.0):
        super().__init__()
        self.alpha, self.beta, self.gamma, self.lam = alpha, beta, gamma, lam
        self.temp, self.loss_weight = temp, loss_weight
        self.context_s = _ContextBlock(channels)
        self.context_t = _ContextBlock(channels)

    def forward(self, s: torch.Tensor, t: torch.Tensor, boxes: list[torch.Tensor] | None = None,
                img_shapes: list[tuple[int, int]] | None = None, **_) -> torch.Tensor:
        if boxes is None or img_shapes is None:
            raise ValueError("FGDLoss needs the ground-truth boxes and image shapes")
        n, _, h, w = s.shape
        sp_t, ch_t = fgd_attention(t, self.temp)
        sp_s, ch_s = fgd_attention(s, self.temp)
        fg, bg = fgd_masks(boxes, img_shapes, h, w)
        weight = sp_t.unsqueeze(1) * ch_t.reshape(n, -1, 1, 1)
        sq = (s - t) ** 2 * weight
        fg_loss = (sq * fg.unsqueeze(1)).sum() / n
        bg_loss = (sq * bg.unsqueeze(1)).sum() / n
        att_loss = ((ch_s - ch_t).abs().sum() + (sp_s - sp_t).abs().sum()) / n
        glo_loss = ((self.context_s(s) - self.context_t(t)) ** 2).sum() / n
        total = (self.alpha * fg_loss + self.beta * bg_loss + self.gamma * att_loss
                 + self.lam * glo_loss)
        return self.loss_weight * total
