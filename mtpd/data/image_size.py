"""Image dimensions from file headers (PNG, JPEG, BMP), without decoding the pixels.

Why: a COCO box is in the pixels of the image its `width`/`height` describe. When the file has
another size (images resized after annotation), MMDetection loads the file, so every box is
off, training and evaluation alike, and nothing fails. The same happens when a JPEG's EXIF
orientation turns it (OpenCV applies it) and the annotation tool did not. Decoding every image
to see its size would cost minutes on COCO; its header gives it for the price of the few bytes
the validator already reads to recognise the format (a JPEG needs a few more small reads).
"""
from __future__ import annotations

import struct
from typing import BinaryIO

HEAD = 32  # bytes read from every image: the format's magic and, for PNG and BMP, the size
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_SEGMENTS = 256  # markers walked at most before giving up (a corrupt file)
_EXIF_READ = 4096  # bytes of an EXIF block read: IFD0, with the orientation, comes first


def header_size(head: bytes, fh: BinaryIO) -> tuple[tuple[int, int], bool] | None:
    """((width, height), uncertain) as OpenCV (and so MMDetection) loads the image, from its
    header; None when the format is another or the header unreadable. `head` is the file's
    first `HEAD` bytes, `fh` the open file. A JPEG's EXIF orientation 5 to 8 swaps the two, as
    OpenCV turns the image upright; `uncertain`: its EXIF could not be read, so either way round
    may be right."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        w, h = struct.unpack(">II", head[16:24])
        return (w, h), False
    if head[:2] == b"BM" and len(head) >= 26:
        w, h = struct.unpack("<ii", head[18:26])
        return (abs(w), abs(h)), False  # a negative height: rows stored top-down
    if head[:3] == b"\xff\xd8\xff":
        return _jpeg_size(fh)
    return None


def _jpeg_size(fh: BinaryIO) -> tuple[tuple[int, int], bool] | None:
    """The frame size in the first SOF marker, turned by the EXIF orientation before it."""
    fh.seek(2)
    orientation: int | None = 1  # no EXIF: as stored
    for _ in range(_JPEG_SEGMENTS):
        marker = fh.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        code = marker[1]
        while code == 0xFF:  # fill bytes before a marker
            nxt = fh.read(1)
            if not nxt:
                return None
            code = nxt[0]
        if code == 0x01 or 0xD0 <= code <= 0xD8:  # markers without a length
            continue
        length = fh.read(2)
        if len(length) < 2:
            return None
        (n,) = struct.unpack(">H", length)
        if code in _JPEG_SOF:
            frame = fh.read(5)
            if len(frame) < 5:
                return None
            h, w = struct.unpack(">HH", frame[1:5])
            if not (w and h):
                return None
            return ((h, w) if orientation in (5, 6, 7, 8) else (w, h)), orientation is None
        if code == 0xD9 or n < 2:
            return None
        start = fh.tell()
        if code == 0xE1:  # APP1: EXIF
            data = fh.read(min(n - 2, _EXIF_READ))
            if data[:6] == b"Exif\x00\x00":
                orientation = _exif_orientation(data[6:])
        fh.seek(start + n - 2)
    return None


def _exif_orientation(tiff: bytes) -> int | None:
    """Tag 0x0112 of IFD0 in the TIFF structure of an EXIF block (1 when absent), or None when
    the block is cut short or malformed."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return None
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if len(tiff) < ifd + 2:
        return None
    (count,) = struct.unpack(order + "H", tiff[ifd:ifd + 2])
    for k in range(count):
        entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
        if len(entry) < 12:
            return None
        tag, kind = struct.unpack(order + "HH", entry[:4])
        if tag == 0x0112:
            return struct.unpack(order + "H", entry[8:10])[0] if kind == 3 else None
    return 1
