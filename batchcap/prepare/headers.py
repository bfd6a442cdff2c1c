"""The passthrough decision for plain JPEG and PNG files from their marker/chunk headers, in ~2 us.

Pillow's lazy ``Image.open`` of a 50 KB JPEG costs ~15 us, in Python, holding the GIL the event loop needs:
12% of the per-image budget of the small-file hot path (136 us at 7,400 img/s, benchmarks/README.md).
Most web images are plain: an 8-bit baseline/progressive JPEG with JFIF and quantisation tables, or a PNG
with IHDR, PLTE, gAMA, pHYs and IDAT. Those are recognised here by walking segment lengths; anything else
(EXIF, XMP, ICC, MPF, comments, 16-bit, alpha, animation, an unknown segment) answers ``None`` and
``prepare`` asks Pillow. So this module may only ever say "yes" where the Pillow path would say "yes" too
(tests/unit/prepare/test_headers.py checks that on the corpus and on all of Pillow's test images).
"""

from __future__ import annotations

from typing import Final

__all__ = ["plain_size"]

_PNG_SIG: Final = b"\x89PNG\r\n\x1a\n"
# Segments that describe coding, not content or people: quantisation/Huffman tables, restart interval,
# JFIF (APP0) and Adobe (APP14, colour transform). SOF0/1/2: baseline, extended, progressive Huffman.
_JPEG_HARMLESS: Final = frozenset({0xDB, 0xC4, 0xDD, 0xE0, 0xEE})
_JPEG_SOF: Final = frozenset({0xC0, 0xC1, 0xC2})
# PNG chunks before IDAT that change nothing a model sees or a person wrote.
_PNG_HARMLESS: Final = frozenset(
    {b"PLTE", b"gAMA", b"cHRM", b"sRGB", b"pHYs", b"bKGD", b"sBIT", b"hIST", b"tIME"}
)
# IHDR colour type -> allowed bit depths: grey (0) and palette (3) at 1-8 bits, RGB (2) at 8.
_PNG_DEPTHS: Final = {0: (1, 2, 4, 8), 2: (8,), 3: (1, 2, 4, 8)}


def plain_size(data: bytes) -> tuple[str, int, int] | None:
    """``(mime, width, height)`` when ``data`` is a plain JPEG or PNG (nothing to strip, turn or convert)."""
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg(data)
    if data.startswith(_PNG_SIG):
        return _png(data)
    return None


def _jpeg(data: bytes) -> tuple[str, int, int] | None:
    i, n = 2, len(data)
    size: tuple[int, int] | None = None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the header is over
            return None if size is None else ("image/jpeg", *size)
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _JPEG_SOF:
            if i + 10 > n or data[i + 4] != 8 or data[i + 9] not in (1, 3):  # 8-bit, grey or YCbCr/RGB
                return None
            size = ((data[i + 7] << 8) | data[i + 8], (data[i + 5] << 8) | data[i + 6])
        elif marker not in _JPEG_HARMLESS:
            return None  # EXIF, XMP, ICC, MPF, IPTC, comments, other codings: Pillow decides
        i += 2 + length
    return None


def _png(data: bytes) -> tuple[str, int, int] | None:
    if data[12:16] != b"IHDR" or len(data) < 33:
        return None
    w = int.from_bytes(data[16:20], "big")
    h = int.from_bytes(data[20:24], "big")
    depth, colour, interlace = data[24], data[25], data[28]
    if depth not in _PNG_DEPTHS.get(colour, ()) or interlace > 1:
        return None
    i, n = 33, len(data)
    while i + 8 <= n:
        length = int.from_bytes(data[i : i + 4], "big")
        kind = data[i + 4 : i + 8]
        if kind == b"IDAT":
            return "image/png", w, h
        if kind not in _PNG_HARMLESS:
            return None  # tRNS (alpha), acTL (APNG), iCCP, eXIf, text chunks, unknown: Pillow decides
        i += 12 + length
    return None
