"""Captions derived from the pixels, so a test can compute the caption the emulator will give and compare.

A caption depends only on the image bytes, never on the route, the request or the clock, which keeps every answer
checkable. It reports what a model would see: the size after the EXIF orientation is applied (the size
``ImageOps.exif_transpose`` gives, read from the tag so a 12 MP photo is not rotated just to be measured) and the
decoded mode, so tests can assert that the client rotated, resized and converted before sending. The other facts of
the decode (format, EXIF and GPS present) go to the request log as a :class:`Decoded`, so a test can assert that no
GPS position reached the server. Decoding is the one costly step of an emulated request, so results are cached by
digest and large bodies are decoded off the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import struct
import threading
from collections import OrderedDict
from typing import NamedTuple

from PIL import ExifTags, Image, UnidentifiedImageError

__all__ = ["COLOURS", "Decoded", "caption_for", "decode"]

#: Named colours a caption can report; the nearest one (RGB distance) wins per pixel.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "gray": (128, 128, 128),
    "red": (255, 0, 0),
    "green": (0, 128, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 165, 0),
    "purple": (128, 0, 128),
    "pink": (255, 192, 203),
    "brown": (139, 69, 19),
    "cyan": (0, 255, 255),
}
_NAMES = tuple(COLOURS)
_PALETTE = Image.new("P", (1, 1))
_PALETTE.putpalette([channel for i in range(256) for channel in list(COLOURS.values())[i % len(COLOURS)]])
_THUMB = (32, 32)
_CACHE_SIZE = 4096
# Measured here: a 50 KB 440x330 JPEG captions in ~0.6 ms uncached (draft mode decodes it at a reduced scale), a
# 640x480 PNG in ~3.5 ms, and a cache hit costs ~30 us (mostly SHA-256). Bodies this small are cheaper inline than a
# thread hop; bigger ones are hashed and decoded in a thread so the loop keeps serving.
_INLINE_DECODE_MAX_BYTES = 256 * 1024
#: EXIF orientations that turn the picture a quarter (5-8): width and height swap once it is upright.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


class Decoded(NamedTuple):
    """What the emulator's "model" saw in one image: upright size, decoded mode and the metadata that came along."""

    caption: str
    format: str
    width: int
    height: int
    mode: str
    orientation: int  #: EXIF orientation tag, 1 when absent
    exif: bool  #: any EXIF block at all
    gps: bool  #: an EXIF GPS IFD with at least one tag
    digest: str = ""  #: SHA-256 of the image bytes as received (hex): tells two clients' bodies apart


class _CaptionCache:
    """A small thread-safe LRU keyed by SHA-256, so benchmarks that resend the same files skip Pillow.

    SHA-256 rather than a cheaper checksum: a collision would hand out a wrong caption, and with SHA-NI it is
    still twice as fast as BLAKE2b here.
    """

    __slots__ = ("_entries", "_lock", "hits", "misses")

    def __init__(self) -> None:
        self._entries: OrderedDict[bytes, Decoded] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> Decoded | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
                self._entries.move_to_end(key)
            return found

    def put(self, key: bytes, decoded: Decoded) -> None:
        with self._lock:
            self._entries[key] = decoded
            if len(self._entries) > _CACHE_SIZE:
                self._entries.popitem(last=False)


_CACHE = _CaptionCache()


def _digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _metadata(image: Image.Image) -> tuple[int, bool, bool]:
    """(orientation, EXIF present, GPS present); broken EXIF counts as present but says nothing."""
    try:
        exif = image.getexif()
        orientation = exif.get(ExifTags.Base.Orientation, 1)
        gps = bool(exif.get_ifd(ExifTags.IFD.GPSInfo))
    except (OSError, ValueError, TypeError, KeyError, IndexError, SyntaxError, struct.error):
        # Pillow raises many kinds on a corrupt EXIF block; the pixels may still decode
        return 1, "exif" in image.info, False
    present = len(exif) > 0 or "exif" in image.info
    return (orientation if isinstance(orientation, int) else 1), present, gps


def _describe(data: bytes) -> Decoded:
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "unknown").lower()
            mode = image.mode
            orientation, exif, gps = _metadata(image)
            width, height = image.size
            if orientation in _QUARTER_TURNS:
                width, height = height, width
            image.draft("RGB", (_THUMB[0] * 2, _THUMB[1] * 2))  # JPEG only: decode at a reduced scale
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            thumb = image.convert("RGBA" if has_alpha else "RGB").resize(_THUMB, Image.Resampling.BOX)
    except UnidentifiedImageError as exc:
        raise ValueError("cannot identify image file") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode image file: {exc}") from exc
    if has_alpha:  # judge transparent pixels by what a viewer shows: white paper
        thumb = Image.alpha_composite(Image.new("RGBA", _THUMB, (255, 255, 255, 255)), thumb).convert("RGB")
    histogram = thumb.quantize(palette=_PALETTE, dither=Image.Dither.NONE).histogram()
    totals = [sum(histogram[i :: len(_NAMES)]) for i in range(len(_NAMES))]  # the palette repeats the colours
    best = max(range(len(_NAMES)), key=lambda i: (totals[i], -i))
    caption = f"a {width}x{height} {mode} {fmt} image, mostly {_NAMES[best]}"
    return Decoded(caption, fmt, width, height, mode, orientation, exif, gps)


def decode(data: bytes) -> Decoded:
    """The caption and the facts behind it (cached by digest). Raises ``ValueError`` for non-images."""
    key = _digest(data)
    decoded = _CACHE.get(key)
    if decoded is None:
        decoded = _describe(data)._replace(digest=key.hex())
        _CACHE.put(key, decoded)
    return decoded


def caption_for(data: bytes) -> str:
    """The emulator's caption for these image bytes, e.g. ``"a 64x48 RGB png image, mostly red"``.

    Depends only on the bytes: the size as displayed (EXIF orientation applied: a portrait phone photo stored
    4032x3024 with orientation 6 reads ``3024x4032``), the decoded mode (``RGB``, ``RGBA``, ``L``, ``CMYK``,
    ``P``, ``I;16``...), the format, and the colour that is most common of :data:`COLOURS` in a 32x32 thumbnail
    (ties go to the colour listed first). Raises ``ValueError`` for bytes that are not a decodable image.
    """
    return decode(data).caption


async def _decode_async(data: bytes) -> Decoded:
    """Decode inline when cheap (cache hit or small body), else in a thread so the loop keeps serving."""
    if len(data) <= _INLINE_DECODE_MAX_BYTES:
        return decode(data)
    return await asyncio.to_thread(decode, data)
