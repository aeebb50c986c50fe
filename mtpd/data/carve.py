"""BGS's proxy split, carved from the training annotations (COCO-format and Argoverse-HD data).

BGS must never score on the evaluation split, and a candidate must not be scored on images it
trained on. So a fixed, seeded sample of the training images becomes the `proxy` split, and the
proxy chains train on `proxy_train`: the remaining training images, optionally a smaller
seeded subset of them (BGS's candidate trainings are the search's cost). The final models
still train on the whole training split.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mtpd.data.manifest import DatasetManifest, read_annotation_file, read_manifest_file
from mtpd.errors import DatasetError
from mtpd.io import atomic_write_json

PROXY, PROXY_TRAIN = "proxy", "proxy_train"


def _subset(coco: dict[str, Any], image_ids: set[Any]) -> dict[str, Any]:
    """The COCO dict restricted to `image_ids`, every other key kept (categories, info...)."""
    out = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
    out["images"] = [img for img in coco["images"] if img["id"] in image_ids]
    out["annotations"] = [a for a in coco.get("annotations", []) if a["image_id"] in image_ids]
    return out


def carve_settings(proxy_images: int, train_images: int | None, seed: int) -> dict[str, Any]:
    """The request a carved manifest records, compared by the DAG with the current config's."""
    return {"proxy_images": proxy_images, "proxy_train_images": train_images, "seed": seed}


def carve(manifest_path: str | Path, out: str | Path, *, proxy_images: int,
          train_images: int | None, seed: int, split: str = "train") -> dict[str, Any]:
    """Writes `proxy.json` and `proxy_train.json` beside `out` and, at `out`, the manifest
    with the two new splits; returns counts. Deterministic for a given file and seed."""
    manifest = DatasetManifest.load(manifest_path)
    source = manifest.split(split)
    coco = read_annotation_file(source.ann_file)
    ids = sorted(img["id"] for img in coco.get("images", []))
    if proxy_images >= len(ids):
        raise DatasetError(f"dataset.proxy.images is {proxy_images}, but {source.ann_file} has "
                           f"only {len(ids)} images; lower it so some are left to train on")
    order = np.random.default_rng(seed).permutation(len(ids))
    proxy = {ids[i] for i in order[:proxy_images]}
    rest = [ids[i] for i in order[proxy_images:]]
    if train_images is not None:
        rest = rest[:train_images]
    out = Path(out)
    files = {PROXY: out.parent / f"{PROXY}.json", PROXY_TRAIN: out.parent / f"{PROXY_TRAIN}.json"}
    atomic_write_json(files[PROXY], _subset(coco, proxy))
    atomic_write_json(files[PROXY_TRAIN], _subset(coco, set(rest)))
    raw = read_manifest_file(manifest_path)
    raw["data_root"] = str(manifest.data_root)
    for name, path in files.items():
        raw["splits"][name] = {"ann_file": str(path.resolve()), "img_dir": str(source.img_dir)}
    raw["carved"] = {"from": split, "seed": seed, "proxy_images": len(proxy),
                     "proxy_train_images": len(rest)}
    # what was asked for: experiments sharing the dataset must ask for the same (mtpd/plan.py)
    raw["carve_settings"] = carve_settings(proxy_images, train_images, seed)
    atomic_write_json(out, raw)
    return raw["carved"]
