"""Prediction PNGs read exactly as VISA's evaluator reads them, quickly, and what that reading would hide.

VISA's ``tools/eval_revos.py`` reads every prediction with ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``
(docs/robustness.md). :func:`read_prediction_png` returns the same ``uint8 [H, W]`` values and also a
note when the file is one that reading silently changes:

* a **16-bit** PNG: OpenCV keeps the high byte of each value, so a 0/255 mask saved as 16-bit reads
  as all 0 (and scores 0);
* **JPEG bytes** in a ``.png`` file: OpenCV decodes them by content, but JPEG blurs mask edges;
* values other than 0 and 255 (e.g. a 0/1 mask): J and F binarise, but A and R use raw values.

Such files are scored as VISA would score them (the table stays VISA's) and listed, file and reason.

Speed: masks written by OpenCV (``visa predict``, ``visa infer``, :func:`visa_lib.evaluate.write_mask_png`)
are 8-bit grayscale PNGs whose rows use PNG's "None" or "Sub" filter. For those, the rows are inflated
with ``zlib`` and only the non-zero filtered bytes are looked at: a mask is flat except at its edges, so
it is rebuilt from a few hundred runs instead of being unfiltered pixel by pixel. Every other PNG
(other filters, bit depths, colour types, interlacing, extra critical chunks) goes through
``cv2.imdecode``, which is ``cv2.imread`` on bytes already read.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
#: Ancillary chunks that cannot change what ``cv2.IMREAD_GRAYSCALE`` returns for an 8-bit grey PNG.
_HARMLESS_CHUNKS = {b"tEXt", b"zTXt", b"iTXt", b"tIME", b"pHYs", b"bKGD"}


def read_prediction_png(path: str | Path) -> tuple[np.ndarray | None, str | None]:
    """Read a prediction as ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)`` does.

    Returns:
        ``(uint8 [H, W] or None if unreadable, note or None)``; the note says what VISA's reading hides.
    """
    data = Path(path).read_bytes()
    note, decoded = None, None
    if data.startswith(JPEG_SIGNATURE):
        note = "JPEG data in a .png file (lossy: mask edges blur); save the masks as PNG"
    elif data.startswith(PNG_SIGNATURE) and len(data) > 26 and data[12:16] == b"IHDR":
        if data[24] == 16:
            note = (
                "16-bit PNG: VISA's reader (OpenCV grayscale) keeps only the high byte, so values up to 255 "
                "read as 0; save 8-bit 0/255 masks"
            )
        decoded = _decode_flat_png(data)
    if decoded is None:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        odd = image is not None and _has_other_values(image)
    else:
        image, odd = decoded
    if odd and note is None:
        note = "values other than 0 and 255 (A and R use the raw values, as VISA's evaluator does)"
    return image, note


def _has_other_values(image: np.ndarray) -> bool:
    return bool(np.count_nonzero(image) != np.count_nonzero(image == 255))


def _decode_flat_png(data: bytes):
    """``(uint8 [H, W], has values other than 0/255)`` for an 8-bit grey None/Sub-filtered PNG, else None."""
    pos, idat, size = 8, [], None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, colour, interlace) != (8, 0, 0):
                return None
            size = (height, width)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        elif kind not in _HARMLESS_CHUNKS:
            return None
        pos += 12 + length
    if size is None:
        return None
    height, width = size
    stride = width + 1
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error:
        return None  # OpenCV gives its own verdict
    if len(raw) != height * stride:
        return None
    rows = np.frombuffer(raw, np.uint8).reshape(height, stride)
    filters = rows[:, 0]
    if filters.max(initial=0) > 1:
        return None
    # The non-zero bytes, found a machine word at a time: a mask's filtered rows are nearly all zero.
    padded = np.frombuffer(raw + bytes(-len(raw) % 8), np.uint8)
    words = np.flatnonzero(padded.view(np.uint64))
    octets = padded.reshape(-1, 8)[words]
    which, byte = np.nonzero(octets)
    where = words[which] * 8 + byte
    values = octets[which, byte].astype(np.int64)
    row, col = where // stride, where % stride - 1
    keep = col >= 0  # the filter-type bytes
    row, col, values = row[keep], col[keep], values[keep]
    # Sub rows hold differences to the left neighbour (mod 256): the level after each non-zero byte is
    # the running sum within its row. None rows hold the values themselves (each a run of length 1).
    sub = filters[row] == 1
    new_row = np.r_[True, row[1:] != row[:-1]]
    running = np.cumsum(values)
    row_base = (running - values)[np.maximum.accumulate(np.where(new_row, np.arange(len(row)), 0))]
    level = np.where(sub, (running - row_base) % 256, values)
    same_row = np.r_[row[1:] == row[:-1], False]
    end = np.where(sub, np.where(same_row, np.r_[col[1:], 0], width), col + 1)
    out = np.zeros((height, width), np.uint8)
    flat = out.reshape(-1)
    filled = level != 0
    starts = (row * width + col)[filled]
    stops = (row * width + end)[filled]
    for value, start, stop in zip(level[filled].tolist(), starts.tolist(), stops.tolist(), strict=True):
        flat[start:stop] = value
    odd = bool(np.any((level != 0) & (level != 255)))
    return out, odd
