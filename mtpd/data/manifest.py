"""Dataset manifests: one small JSON that tells every entry point where a dataset's splits live.

A manifest looks like::

    {"name": "coco", "data_root": "/data/coco",
     "splits": {"train": {"ann_file": "annotations/instances_train2017.json",
                          "img_dir": "train2017/"},
                "val":   {"ann_file": "annotations/instances_val2017.json",
                          "img_dir": "val2017/"}}}

`data_root` is relative to the manifest's own directory unless absolute. The class list is read
from the annotation file of the training split (categories sorted by id), so that a detector's
`num_classes` always matches the data it is trained on. A manifest that `mtpd data check` wrote
records the version of the checks it passed (`checks`); entry points read manifests through
`mtpd.data.checked.load_checked`, which checks any other first.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from mtpd.errors import DatasetError
from mtpd.io import read_json_file

# Where the datasets the paper's configs use come from, for "file missing" messages.
WHERE_TO_GET = {
    "coco": "MS COCO 2017 comes from https://cocodataset.org/#download (train2017.zip, "
            "val2017.zip and annotations_trainval2017.zip, unpacked under data_root)",
    "argoverse": "Argoverse-HD's annotations come from "
                 "https://www.cs.cmu.edu/~mengtial/proj/streaming/ and the frames they point to "
                 "from Argoverse 1.1's tracking set (https://www.argoverse.org)",
}


@dataclass(frozen=True)
class Split:
    name: str
    ann_file: Path
    img_dir: Path


@dataclass(frozen=True)
class DatasetManifest:
    path: Path
    name: str
    data_root: Path
    splits: dict[str, Split]
    checks: int | None = None  # the version of the checks it passed (`mtpd data check`), if any

    @classmethod
    def load(cls, path: str | Path) -> "DatasetManifest":
        path = Path(path)
        raw = read_manifest_file(path)
        for key in ("name", "splits"):
            if key not in raw:
                raise DatasetError(f"dataset manifest {path} lacks the key '{key}'")
        root = Path(raw.get("data_root", "."))
        if not root.is_absolute():
            root = (path.parent / root).resolve()
        splits = {}
        for name, s in raw["splits"].items():
            for key in ("ann_file", "img_dir"):
                if key not in s:
                    raise DatasetError(f"dataset manifest {path}: splits.{name} lacks '{key}'")
            splits[name] = Split(name, root / s["ann_file"], root / s["img_dir"])
        return cls(path=path, name=raw["name"], data_root=root, splits=splits,
                   checks=_checks(raw))

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise DatasetError(f"dataset manifest {self.path} has no split '{name}' "
                                f"(it has: {', '.join(sorted(self.splits))})")
        s = self.splits[name]
        if not s.ann_file.is_file():
            raise DatasetError(f"split '{name}' of {self.path}: annotation file {s.ann_file} "
                                "does not exist")
        return s

    @cached_property
    def classes(self) -> tuple[str, ...]:
        """Category names, sorted by category id, from the first split that has them."""
        order = ["train"] + [k for k in self.splits if k != "train"]
        for name in order:
            if name in self.splits and self.splits[name].ann_file.is_file():
                return read_classes(self.splits[name].ann_file)
        raise DatasetError(f"no annotation file of {self.path} exists, so its classes are "
                            "unknown")


def _checks(raw: dict) -> int | None:
    """The checks' version a manifest records, if `mtpd data check` wrote it: a `version` and,
    for every split, the file checked and its sha256 (`mtpd.data.validate.validate_dataset`)."""
    version = raw.get("version")
    if type(version) is not int or not all(
            isinstance(s, dict) and "source_ann_file" in s and "sha256" in s
            for s in raw["splits"].values()):
        return None
    return version


def read_manifest_file(path: str | Path) -> Any:
    """A manifest's JSON as written, or a one-line DatasetError naming the file."""
    return read_json_file(path, "dataset manifest", DatasetError,
                          "create it with `mtpd data shapes` or `mtpd data manifest`")


def read_annotation_file(ann_file: str | Path) -> Any:
    """A split's COCO annotation file, or a one-line DatasetError naming the file."""
    return read_json_file(ann_file, "annotation file", DatasetError,
                          "check the dataset's data_root and ann_file")


def read_classes(ann_file: Path) -> tuple[str, ...]:
    try:
        cats = read_annotation_file(ann_file)["categories"]
    except KeyError as e:
        raise DatasetError(f"{ann_file} is not a COCO annotation file with 'categories': {e}"
                            ) from e
    if not cats:
        raise DatasetError(f"{ann_file} has an empty 'categories' list")
    return tuple(c["name"] for c in sorted(cats, key=lambda c: c["id"]))


def write_manifest(path: str | Path, name: str, data_root: str,
                   splits: dict[str, dict[str, str]], **extra: object) -> None:
    """Writes a manifest for an existing dataset (used by the COCO and Argoverse-HD rules);
    `extra` records what it was made from."""
    from mtpd.io import atomic_write_json

    atomic_write_json(path, {"name": name, "data_root": data_root, "splits": splits, **extra})
