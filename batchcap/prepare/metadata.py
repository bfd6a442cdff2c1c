"""What an image carries besides its pixels, and which of it a service must not see.

Only the decision lives here, read from the lazy ``Image.open`` header (no decode): the passthrough path asks
"is there anything worth stripping?" and the encoder asks "what may be kept with ``--keep-metadata``?".
An allowlist, not a denylist: a tag this module does not know (a new maker field, a vendor XMP block) counts
as private, so the cost of a mistake is one re-encode, never a leaked position or serial number.
"""

from __future__ import annotations

import threading
from io import BytesIO

from PIL import Image, ImageCms

__all__ = ["ORIENTATION", "has_private_metadata", "is_srgb", "orientation"]

#: EXIF tag 0x0112; 1 = upright, 2-8 = mirror and/or rotate.
ORIENTATION = 0x0112
_EXIF_IFD = 0x8769

#: Top-level EXIF tags that say nothing about who, where or with what: resolution, software, layout.
_HARMLESS_IFD0 = frozenset(
    {
        ORIENTATION,  # not private; judged apart (anything but 1 means the pixels must be turned)
        0x011A,  # XResolution
        0x011B,  # YResolution
        0x0128,  # ResolutionUnit
        0x0131,  # Software
        0x0132,  # DateTime (last edit, not capture)
        0x0213,  # YCbCrPositioning
        _EXIF_IFD,  # pointer; its content is judged by _HARMLESS_EXIF_IFD
    }
)
#: Tags of the Exif sub-IFD that image editors write on export.
_HARMLESS_EXIF_IFD = frozenset(
    {
        0x9000,  # ExifVersion
        0x9101,  # ComponentsConfiguration
        0xA000,  # FlashpixVersion
        0xA001,  # ColorSpace
        0xA002,  # PixelXDimension
        0xA003,  # PixelYDimension
    }
)
#: ``Image.info`` keys Pillow fills from structure, not from what the author wrote (everything else is private:
#: ``exif``, ``xmp``, ``photoshop`` (IPTC), ``comment``, PNG text chunks, MPF, ...). ``exif`` and
#: ``icc_profile`` are judged on their content.
_STRUCTURAL_INFO = frozenset(
    {
        "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "adobe", "adobe_transform",
        "progressive", "progression", "gamma", "srgb", "chromaticity", "aspect", "transparency",
        "background", "version", "duration", "loop", "interlace", "compression", "lossless",
        "icc_profile", "exif", "timestamp", "disposal", "extension", "bbox", "blend",
    }
)  # fmt: skip


def orientation(im: Image.Image) -> int:
    """The EXIF orientation (1-8; 1 when absent or nonsense), read from the header."""
    try:
        value = im.getexif().get(ORIENTATION, 1)
    except Exception:  # noqa: BLE001  a corrupt EXIF block is not a reason to refuse the pixels
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def has_private_metadata(im: Image.Image) -> bool:
    """Whether stripping would remove anything: GPS, serials, maker notes, XMP, IPTC, comments, text chunks."""
    info = im.info
    if any(key not in _STRUCTURAL_INFO for key in info):
        return True
    if "exif" not in info:
        return False
    try:
        exif = im.getexif()
        if any(tag not in _HARMLESS_IFD0 for tag in exif):
            return True
        return _EXIF_IFD in exif and any(tag not in _HARMLESS_EXIF_IFD for tag in exif.get_ifd(_EXIF_IFD))
    except Exception:  # noqa: BLE001  unreadable EXIF: strip it rather than send it
        return True


_SRGB_CACHE: dict[bytes, bool] = {}
_SRGB_LOCK = threading.Lock()


def is_srgb(icc: bytes) -> bool:
    """Whether an ICC profile describes sRGB, so the file can go as it is (cached: phones repeat one profile)."""
    with _SRGB_LOCK:
        hit = _SRGB_CACHE.get(icc)
    if hit is not None:
        return hit
    try:
        profile = ImageCms.ImageCmsProfile(BytesIO(icc))
        description = ImageCms.getProfileDescription(profile)
        answer = "srgb" in description.lower().replace(" ", "")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        answer = False
    with _SRGB_LOCK:
        if len(_SRGB_CACHE) > 64:
            _SRGB_CACHE.clear()
        _SRGB_CACHE[icc] = answer
    return answer
