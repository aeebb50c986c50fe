"""COCO-format quirks that change AP without a word, and how the checked copy fixes them.

Why: each passes a structural check, trains and evaluates without an error, and only the numbers
are wrong (measured with pycocotools 2.0 and faster-coco-eval 1.8 alike):

- annotation id 0: both evaluators record a matched ground truth by its id and test that for
  non-zero, so a perfect detection of annotation 0 counts as a false positive. Integer ids are
  shifted to start at 1 (`id_offset`, the Argoverse-HD converter's rule too); string ids
  (faster-coco-eval refuses them, pycocotools reads "0" as 0) are numbered 1..n in file order.
- `iscrowd` as a string: "0" is true in Python, so pycocotools and MMDetection's training treat
  the box as a crowd (ignored) while faster-coco-eval reads 0. Booleans, "0"/"1", 0.0/1.0 and a
  missing or null value (pycocotools fails on those) become 0 or 1; any other is a problem.
- `area` missing, not a positive number, or larger than its box: pycocotools fails on a missing
  one; a negative one lies outside every size range (the box is ignored, its detection a false
  positive); MMDetection's training drops a box of area <= 0 without a word; a too large one
  moves it to another size bucket. It becomes its segmentation's area (COCO's definition) or,
  without a segmentation, its box's.

Nothing here changes the user's file: the fixes go to the checked copy and into its report.
No heavy imports at load time (the Argoverse-HD converter, which the Snakefile may load, uses
`id_offset`): numpy and pycocotools are imported where areas are checked.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

ISCROWD = {0: 0, 1: 1, "0": 0, "1": 1, None: 0}  # what each spelling of `iscrowd` means
_SPELLINGS = (bool, float, str, type(None))  # the types fixed; an int other than 0/1 is not
AREA_REASONS = {"missing": "missing", "invalid": "not a positive number",
                "too_large": "larger than the box"}
BOX_SLACK = 1.0  # px a rasterised segmentation may exceed its box by, on each side


def id_offset(ids: Sequence[int]) -> int:
    """What to add to integer annotation ids so that the smallest is 1 (0 when none is below 1):
    a matched ground truth of id 0 reads as unmatched in pycocotools and faster-coco-eval."""
    return max(0, 1 - min(ids)) if ids else 0


@dataclass
class Fixes:
    """What the checked copy changes in a split's annotations (positions in that list)."""

    ids: list[int] | None = None  # the new annotation ids, None when they stay
    offset: int = 0  # added to every id; 0 with `ids` set: string ids numbered 1..n
    iscrowd: dict[int, int] = field(default_factory=dict)
    bad_iscrowd: list[int] = field(default_factory=list)  # not 0/1 in any spelling: a problem
    area: dict[int, float] = field(default_factory=dict)
    area_reasons: dict[str, list[int]] = field(default_factory=dict)  # AREA_REASONS key -> pos

    @property
    def changed(self) -> bool:
        return self.ids is not None or bool(self.iscrowd) or bool(self.area)

    def apply(self, anns: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The annotations with the fixes, as new dicts where changed (the input stays)."""
        out = list(anns)
        every = range(len(out)) if self.ids is not None else ()
        for k in {*self.iscrowd, *self.area, *every}:
            a = dict(out[k])
            if self.ids is not None:
                a["id"] = self.ids[k]
            if k in self.iscrowd:
                a["iscrowd"] = self.iscrowd[k]
            if k in self.area:
                a["area"] = self.area[k]
            out[k] = a
        return out


def plan(anns: list[dict[str, Any]], ids: list[Any], xywh: np.ndarray, img_refs: list[Any],
         sizes: dict[Any, tuple[float, float]]) -> Fixes:
    """The fixes `anns` need; `ids` their ids (int or str), `xywh` their valid boxes (n, 4)."""
    fixes = Fixes()
    _plan_ids(fixes, ids)
    _plan_iscrowd(fixes, [a.get("iscrowd") for a in anns])
    _plan_area(fixes, anns, xywh, img_refs, sizes)
    return fixes


def _plan_ids(fixes: Fixes, ids: list[Any]) -> None:
    if all(type(i) is int for i in ids):
        offset = id_offset(ids)
        if offset:
            fixes.ids, fixes.offset = [i + offset for i in ids], offset
    else:
        fixes.ids = list(range(1, len(ids) + 1))


def _plan_iscrowd(fixes: Fixes, values: list[Any]) -> None:
    if set(map(type, values)) <= {int} and set(values) <= {0, 1}:
        return  # the usual case, in one pass
    for k, v in enumerate(values):
        if type(v) is int and v in (0, 1):
            continue
        if type(v) in _SPELLINGS and v in ISCROWD:  # True == 1 and 0.0 == 0 as dict keys
            fixes.iscrowd[k] = ISCROWD[v]
        else:
            fixes.bad_iscrowd.append(k)


def _area_values(anns: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Areas as floats (NaN where not a number) and the mask of those given at all."""
    import numpy as np

    values = [a.get("area") for a in anns]
    given = np.fromiter((v is not None for v in values), bool, len(values))
    if set(map(type, values)) <= {int, float}:
        return np.array(values, dtype=np.float64).reshape(-1), given
    return np.array([float(v) if type(v) in (int, float) else math.nan for v in values],
                    dtype=np.float64).reshape(-1), given


def _plan_area(fixes: Fixes, anns: list[dict[str, Any]], xywh: np.ndarray,
               img_refs: list[Any], sizes: dict[Any, tuple[float, float]]) -> None:
    import numpy as np

    if not anns:
        return
    area, given = _area_values(anns)
    with np.errstate(invalid="ignore", over="ignore"):
        valid = np.isfinite(area) & (area > 0)
        bound = (xywh[:, 2] + 2 * BOX_SLACK) * (xywh[:, 3] + 2 * BOX_SLACK)
        too_large = valid & (area > bound)
    reasons = {"missing": ~given, "invalid": given & ~valid, "too_large": too_large}
    fixes.area_reasons = {k: np.flatnonzero(v).tolist() for k, v in reasons.items() if v.any()}
    for k in sorted(p for pos in fixes.area_reasons.values() for p in pos):
        fixes.area[k] = segment_area(anns[k].get("segmentation"), sizes.get(img_refs[k])) \
            or float(xywh[k, 2] * xywh[k, 3])


def segment_area(segm: Any, size: tuple[float, float] | None) -> float | None:
    """The pixel area of a COCO segmentation (polygons, or RLE with counts as a list or a
    string), as pycocotools computes it; None when there is none or it cannot be read."""
    if not segm or size is None:
        return None
    from pycocotools import mask as mask_utils

    w, h = int(round(size[0])), int(round(size[1]))
    try:
        if isinstance(segm, list):  # polygons, merged into one mask
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, h, w))
        elif isinstance(segm.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(segm, *segm["size"])
        else:
            rle = dict(segm, counts=segm["counts"].encode() if isinstance(segm["counts"], str)
                       else segm["counts"])
        value = float(mask_utils.area(rle))
    except (TypeError, ValueError, KeyError, AttributeError, IndexError):
        return None
    return value if value > 0 else None
