"""Width and height of an image file from its header, in about a microsecond for the common formats.

``check`` sorts every file into long-side buckets; a Pillow open per file would cost more than the rest of the
pass, so JPEG, PNG, GIF, WebP and BMP are parsed by hand and only the others go to Pillow.
"""

from __future__ import annotations

from batchcap.errors import InputError
from batchcap.prepare.engine import open_image, pillow_errors

__all__ = ["header_size"]


def header_size(data: bytes, mime: str) -> tuple[tuple[int, int] | None, str | None]:
    """``((width, height), None)`` from the header, or ``(None, reason)`` when the header is unreadable.

    Hand-parsed for JPEG, PNG, GIF, WebP and BMP (~1 us; Pillow's lazy ``Image.open`` costs ~20 us, more
    than everything else ``check`` does per file); TIFF, HEIC, AVIF and anything the quick parse does not
    follow go to the opener ``prepare`` uses (``batchcap.prepare.engine.open_image``).
    """
    try:
        dims = _quick_size(data, mime)
    except (IndexError, ValueError):
        dims = None
    if dims is not None and dims[0] > 0 and dims[1] > 0:
        return dims, None
    try:
        im = open_image(data)  # the opener ``prepare`` uses: HEIC and AVIF included
        with pillow_errors(im.format or "?"):
            return (int(im.size[0]), int(im.size[1])), None
    except InputError as exc:
        return None, str(exc)[:200]


def _be16(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _le(data: bytes, at: int, n: int) -> int:
    if at + n > len(data):
        raise IndexError(at)
    return int.from_bytes(data[at : at + n], "little")


def _quick_size(data: bytes, mime: str) -> tuple[int, int] | None:
    if mime == "image/png":
        if data[12:16] != b"IHDR":
            return None
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if mime == "image/jpeg":
        i, n = 2, len(data)
        while i + 9 <= n:
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:
                i += 1
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                return _be16(data, i + 7), _be16(data, i + 5)
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            if marker in (0xD9, 0xDA):  # end, or scan data before any frame header
                return None
            i += 2 + _be16(data, i + 2)
        return None
    if mime == "image/gif":
        return _le(data, 6, 2), _le(data, 8, 2)
    if mime == "image/webp":
        chunk = data[12:16]
        if chunk == b"VP8 ":
            return _le(data, 26, 2) & 0x3FFF, _le(data, 28, 2) & 0x3FFF
        if chunk == b"VP8L":
            bits = _le(data, 21, 4)
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X":
            return _le(data, 24, 3) + 1, _le(data, 27, 3) + 1
        return None
    if mime == "image/bmp":
        if _le(data, 14, 4) == 12:
            return _le(data, 18, 2), _le(data, 20, 2)
        w = int.from_bytes(data[18:22], "little", signed=True)
        h = int.from_bytes(data[22:26], "little", signed=True)
        return abs(w), abs(h)
    return None
