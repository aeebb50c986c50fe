"""Backbone pretraining on object crops: the embedded default's stand-in for ImageNet weights.

Every real detector starts from an ImageNet-pretrained backbone. Nothing can be downloaded for
the embedded default, and a stock config trained from a random backbone barely learns (frozen
random stem, frozen BatchNorm). So each backbone type is pretrained once, as a classifier of the
training split's object crops (shape x texture classes, with context), and every teacher and
student starts from that checkpoint via `init_cfg=dict(type='Pretrained', ...)`.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from mtpd.checkpoint import save_model_checkpoint
from mtpd.data.checked import load_checked
from mtpd.data.manifest import DatasetManifest, read_annotation_file
from mtpd.model_config import load_config

log = logging.getLogger("mtpd.pretrain")


def load_objects(manifest: DatasetManifest, split: str) -> tuple[list[np.ndarray], list[tuple]]:
    """A split's images (BGR) and its objects as (image index, x, y, w, h, class index)."""
    s = manifest.split(split)
    coco = read_annotation_file(s.ann_file)
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    cat_index = {c["id"]: i for i, c in enumerate(categories)}
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0) and a["bbox"][2] >= 1 and a["bbox"][3] >= 1:
            by_image.setdefault(a["image_id"], []).append(a)
    images, objects = [], []
    for img_info in coco["images"]:
        anns = by_image.get(img_info["id"])
        if not anns:
            continue
        img = cv2.imread(str(s.img_dir / img_info["file_name"]))
        if img is None:
            raise FileNotFoundError(f"image {s.img_dir / img_info['file_name']} listed in "
                                    f"{s.ann_file} cannot be read")
        for a in anns:
            objects.append((len(images), *a["bbox"], cat_index[a["category_id"]]))
        images.append(img)
    if not objects:
        raise ValueError(f"split '{split}' of {manifest.path} has no usable object boxes")
    return images, objects


def crop_objects(images: list[np.ndarray], objects: list[tuple], size: int,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Square crops around the objects, resized to `size`: (N, 3, size, size) uint8, labels.

    With `rng`, context, centre and flips are jittered (augmentation); without, each crop has
    20% context on each side.
    """
    crops, labels = [], []
    for idx, x, y, bw, bh, label in objects:
        img = images[idx]
        h, w = img.shape[:2]
        context = rng.uniform(0.1, 0.3) if rng is not None else 0.2
        side = max(bw, bh) * (1 + 2 * context)
        shift = rng.uniform(-0.1, 0.1, 2) * side if rng is not None else (0.0, 0.0)
        cx, cy = x + bw / 2 + shift[0], y + bh / 2 + shift[1]
        x0, y0 = int(max(0, math.floor(cx - side / 2))), int(max(0, math.floor(cy - side / 2)))
        x1, y1 = int(min(w, math.ceil(cx + side / 2))), int(min(h, math.ceil(cy + side / 2)))
        if x1 - x0 < 2 or y1 - y0 < 2:
            continue
        crop = cv2.resize(img[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_LINEAR)
        if rng is not None and rng.random() < 0.5:
            crop = crop[:, ::-1]
        crops.append(crop)
        labels.append(label)
    x = torch.from_numpy(np.ascontiguousarray(np.stack(crops))).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels)


class CropClassifier(torch.nn.Module):
    """Backbone + global average pooling of its last output + a linear classifier."""

    def __init__(self, backbone: torch.nn.Module, num_classes: int, mean: list[float],
                 std: list[float], bgr_to_rgb: bool):
        super().__init__()
        self.backbone = backbone
        self.fc = torch.nn.LazyLinear(num_classes)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.bgr_to_rgb = bgr_to_rgb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.bgr_to_rgb:
            x = x.flip(1)
        x = (x - self.mean) / self.std
        feat = self.backbone(x)[-1]
        return self.fc(feat.mean(dim=(2, 3)))


def pretrain_backbone(model_config: str, dataset: str | Path, out: str | Path, *,
                      epochs: int, crop_size: int, seed: int, batch_size: int = 64,
                      lr: float = 0.05, train_split: str = "train",
                      eval_split: str | None = "proxy") -> dict:
    """Pretrains `model.backbone` of a detector config; writes the backbone checkpoint at `out`."""
    from mmdet.registry import MODELS

    from mtpd.registry import register_all_modules

    register_all_modules()
    torch.manual_seed(seed)
    manifest = load_checked(dataset)
    cfg = load_config(model_config)
    bb_cfg = cfg.model.backbone.copy()
    bb_cfg["init_cfg"] = None
    backbone = MODELS.build(bb_cfg)
    backbone.init_weights()
    pre = cfg.model.get("data_preprocessor", {})
    model = CropClassifier(backbone, len(manifest.classes), pre.get("mean", [0, 0, 0]),
                           pre.get("std", [1, 1, 1]), pre.get("bgr_to_rgb", False))
    images, objects = load_objects(manifest, train_split)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        model(crop_objects(images, objects[:2], crop_size)[0])  # materialise the lazy classifier
    steps = epochs * math.ceil(len(objects) / batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.train()
    for epoch in range(epochs):
        x, y = crop_objects(images, objects, crop_size, rng)  # fresh augmentation every epoch
        perm = torch.randperm(len(x), generator=gen)
        total, correct = 0.0, 0
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = x[idx], y[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        log.info("pretrain epoch %d: loss %.3f, train acc %.3f", epoch + 1, total / len(x),
                 correct / len(x))
    stats = {"config": str(model_config), "epochs": epochs, "num_crops": len(x),
             "crop_size": crop_size, "train_accuracy": correct / len(x),
             "train_seconds": round(time.perf_counter() - t0, 2)}
    if eval_split and eval_split in manifest.splits:
        xe, ye = crop_objects(*load_objects(manifest, eval_split), crop_size)
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xe[i:i + 256]).argmax(1) for i in range(0, len(xe), 256)])
        stats[f"{eval_split}_accuracy"] = float((pred == ye).float().mean())
    save_model_checkpoint(out, backbone.state_dict(), {"mtpd_pretrain": stats})
    log.info("pretrained backbone -> %s: %s", out, stats)
    return stats
