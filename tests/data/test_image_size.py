"""Image sizes from file headers (mtpd/data/image_size.py): an image of another size than its
annotation declares is refused, and EXIF orientation is read as OpenCV applies it."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mtpd.data.image_size import HEAD, header_size
from mtpd.data.validate import validate_split
from tests.helpers import QUIRK_SIZE, quirk_coco, quirk_dataset


def _image(path: Path, w: int, h: int, orientation: int | None = None) -> None:
    img = Image.fromarray(np.zeros((h, w, 3), np.uint8))
    if orientation is None:
        img.save(path)
    else:
        exif = img.getexif()
        exif[0x0112] = orientation  # EXIF orientation: 6 turns it by 90 degrees
        img.save(path, exif=exif)


@pytest.mark.parametrize("ext", ["png", "jpg", "bmp"])
@pytest.mark.parametrize("decode_sample", [0, 200])
def test_image_of_another_size_than_declared_is_refused(tmp_path, ext, decode_sample):
    raw = quirk_coco()
    for im in raw["images"]:
        im["file_name"] = f"{im['id']}.{ext}"
    quirk_dataset(tmp_path, raw)
    # resized after annotation
    _image(tmp_path / "images" / f"2.{ext}", 2 * QUIRK_SIZE, QUIRK_SIZE // 2)
    ann, img_dir = tmp_path / "val.json", tmp_path / "images"
    problems = validate_split(ann, img_dir, decode_sample=decode_sample).problems
    assert problems == [
        f"{ann}: 1 image file has another size than the image's 'width' and 'height' (image ids "
        f"2: 2.{ext} is 200x50 px, not 100x100); boxes are in the pixels of the size given, so "
        "correct width and height to the files' (and scale the boxes too if the files were "
        "resized after annotation), or replace the files"]


def test_exif_rotated_jpeg_is_measured_as_opencv_loads_it(tmp_path):
    """A 50x100 JPEG turned by its EXIF orientation loads (OpenCV, MMDetection) as 100x50."""
    raw = quirk_coco()
    raw["images"][1].update(file_name="2.jpg", width=100, height=50)
    raw["annotations"] = raw["annotations"][:2]
    quirk_dataset(tmp_path, raw)
    _image(tmp_path / "images" / "2.jpg", 50, 100, orientation=6)
    ann, img_dir = tmp_path / "val.json", tmp_path / "images"
    assert cv2.imread(str(img_dir / "2.jpg")).shape[:2] == (50, 100)
    for decode_sample in (0, 200):  # from the header (EXIF read), and decoded
        assert validate_split(ann, img_dir, decode_sample=decode_sample).ok
    raw["images"][1].update(width=50, height=100)  # the stored size, not what is loaded
    (tmp_path / "val.json").write_text(json.dumps(raw))
    for decode_sample in (0, 200):
        problems = validate_split(ann, img_dir, decode_sample=decode_sample).problems
        assert len(problems) == 1 and "2.jpg is 100x50 px, not 50x100" in problems[0]


@pytest.mark.parametrize("order", [b"II", b"MM"])
@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 8])
def test_jpeg_header_size_is_the_size_opencv_loads(tmp_path, order, orientation):
    """EXIF in either byte order; orientations 5-8 turn the image by 90 degrees."""
    fmt = "<" if order == b"II" else ">"
    entry = struct.pack(fmt + "HHIH2x", 0x0112, 3, 1, orientation)  # SHORT, one value
    tiff = order + struct.pack(fmt + "HI", 42, 8) + struct.pack(fmt + "H", 1) + entry + b"\0" * 4
    path = tmp_path / "x.jpg"
    Image.fromarray(np.zeros((30, 70, 3), np.uint8)).save(path, exif=b"Exif\0\0" + tiff)
    with open(path, "rb") as fh:
        size = header_size(fh.read(HEAD), fh)
    h, w = cv2.imread(str(path)).shape[:2]
    assert size == ((w, h), False) and (w == 30) == (orientation >= 5)
