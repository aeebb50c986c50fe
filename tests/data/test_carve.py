"""BGS's proxy split carved from the training split (mtpd/data/carve.py): disjoint and
deterministic, and one carving per dataset for every experiment that shares it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import snakemake, workdir


def test_carved_proxy_split_is_disjoint_and_deterministic(tmp_path, shapes_data):
    from mtpd.data.carve import carve
    from mtpd.data.manifest import DatasetManifest

    out = tmp_path / "a" / "carved.json"
    info = carve(shapes_data, out, proxy_images=10, train_images=20, seed=1)
    assert info == {"from": "train", "seed": 1, "proxy_images": 10, "proxy_train_images": 20}
    m = DatasetManifest.load(out)
    ids = {s: {i["id"] for i in json.loads(m.split(s).ann_file.read_text())["images"]}
           for s in ("train", "proxy", "proxy_train")}
    assert not ids["proxy"] & ids["proxy_train"]
    assert ids["proxy"] | ids["proxy_train"] <= ids["train"]
    again = tmp_path / "b" / "carved.json"
    carve(shapes_data, again, proxy_images=10, train_images=20, seed=1)
    for s in ("proxy", "proxy_train"):
        assert Path(m.split(s).ann_file).read_text() == \
            (again.parent / f"{s}.json").read_text()
    with pytest.raises(Exception, match="dataset.proxy.images is 99"):
        carve(shapes_data, tmp_path / "c" / "carved.json", proxy_images=99, train_images=None,
              seed=1)


def test_experiments_sharing_a_dataset_must_carve_it_alike(tmp_path):
    """The carved and checked manifests are shared by every experiment on a dataset: one that
    asks for another proxy split stops before any job, naming the keys, and leaves it alone."""
    from mtpd.data.carve import carve_settings

    wd = workdir(tmp_path)
    carved = wd / "results/data/coco/carved.json"
    carved.parent.mkdir(parents=True)
    # what the RetinaNet config (proxy 5000 images, candidates on 30000) has made before
    carved.write_text(json.dumps({"carve_settings": carve_settings(5000, 30000, 0)}))
    before = carved.read_bytes()
    r = snakemake(wd, "-n", "--configfile", "config/coco_retinanet.yaml", timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    # the Mask R-CNN config carves alike; one with other candidates' images does not
    cfg = (wd / "config/coco_mask_rcnn.yaml").read_text()
    assert "proxy_train_images: 30000" in cfg
    (wd / "config/other.yaml").write_text(cfg.replace("proxy_train_images: 30000",
                                                      "proxy_train_images: 10000"))
    r = snakemake(wd, "-n", "--configfile", "config/other.yaml", timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "the proxy split of dataset 'coco' (dataset.proxy, bgs.proxy_train_images)" in out
    assert "'proxy_train_images': 30000" in out and "'proxy_train_images': 10000" in out
    assert carved.read_bytes() == before
