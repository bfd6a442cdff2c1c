"""Nothing a trainer cannot open: images that ``datasets`` and Pillow do not decode without a plugin are converted.

Any Pillow decodes JPEG, PNG, GIF, WebP, BMP and TIFF (and ``datasets``' Image feature is Pillow). Not so:

* HEIC/HEIF (iPhone photos): only with the ``pillow-heif`` plugin registered. ``datasets`` does not register it,
  so a row holding one raises ``UnidentifiedImageError`` when a trainer reads it;
* AVIF: only Pillow >= 11.2 decodes it (older wheels have no AVIF decoder), and a published dataset is read on
  machines whose Pillow nobody chose.

``--convert auto`` (the default) converts exactly those; ``jpeg`` or ``png`` re-encodes every image that is not
already in that format (one format for the whole set); ``keep`` ships every file as it is. A conversion keeps
the full size, applies the EXIF orientation to the pixels (the tag is not carried over), keeps the colour
profile, and picks JPEG (quality 95) for photos and PNG where there is transparency (``auto``) or when asked.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageOps

from batchcap.errors import InputError
from batchcap.prepare.engine import deep_to_l, open_image, pillow_errors

__all__ = [
    "CONVERT_CHOICES", "EXTENSIONS", "OUTPUTS", "READABLE", "Convert", "Converted", "convert", "needs_plugin",
    "would_convert",
]

Convert = Literal["auto", "jpeg", "png", "keep"]
CONVERT_CHOICES: tuple[Convert, ...] = ("auto", "jpeg", "png", "keep")
#: The types a conversion can write in each mode (auto: PNG for an image with alpha, else JPEG).
OUTPUTS: dict[Convert, tuple[str, ...]] = {"auto": ("image/jpeg", "image/png"), "jpeg": ("image/jpeg",),
                                           "png": ("image/png",), "keep": ()}
#: What every Pillow (and so ``datasets``) decodes with no plugin.
READABLE = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/bmp", "image/tiff"})
#: The extension a file of each type gets in an export.
EXTENSIONS = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp", "image/bmp": ".bmp",
    "image/tiff": ".tif", "image/heic": ".heic", "image/heif": ".heif", "image/avif": ".avif",
}
JPEG_QUALITY = 95


def needs_plugin(mime: str) -> bool:
    """Whether a reader's Pillow may fail on this type (see the module doc)."""
    return mime not in READABLE


def would_convert(mime: str, mode: Convert) -> bool:
    """Whether ``convert`` re-encodes an image of this type in this mode (decided without decoding it)."""
    if mode == "keep":
        return False
    if mode == "auto":
        return needs_plugin(mime)
    return mime != ("image/jpeg" if mode == "jpeg" else "image/png")


@dataclass(frozen=True, slots=True)
class Converted:
    """An image re-encoded for the export: its new bytes and type, and the type it was."""

    data: bytes
    mime: str
    was: str


def convert(data: bytes, mime: str, mode: Convert) -> Converted | None:
    """The image as the export should hold it, or None when it goes as it is. Raises ``InputError`` for an image
    that cannot be decoded (the export leaves it out and counts it)."""
    if not would_convert(mime, mode):
        return None
    choices = OUTPUTS[mode]
    want = choices[0] if len(choices) == 1 else None
    im = open_image(data)
    fmt = im.format or mime
    with pillow_errors(fmt):
        im.seek(0)
        im.load()
        icc = im.info.get("icc_profile")
        pixels = ImageOps.exif_transpose(im)
        alpha = pixels.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in pixels.info
        if want is None:  # auto
            want = "image/png" if alpha else "image/jpeg"
        out = _for_png(pixels) if want == "image/png" else _for_jpeg(pixels, alpha)
        buf = io.BytesIO()
        extra: dict[str, object] = {"icc_profile": icc} if icc and out.mode in ("RGB", "RGBA", "L", "LA") else {}
        if want == "image/png":
            out.save(buf, "PNG", compress_level=6, **extra)
        else:
            out.save(buf, "JPEG", quality=JPEG_QUALITY, **extra)
    return Converted(buf.getvalue(), want, mime)


def _for_jpeg(im: Image.Image, alpha: bool) -> Image.Image:
    """RGB or L, alpha flattened on white (JPEG has none)."""
    if im.mode.startswith("I") or im.mode == "F":
        return deep_to_l(im)
    if alpha:
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(rgba.convert("RGB"), mask=rgba.getchannel("A"))
        return flat
    if im.mode in ("RGB", "L"):
        return im
    try:
        return im.convert("RGB")
    except ValueError:
        raise InputError(f"cannot convert pixel mode {im.mode} to RGB") from None


def _for_png(im: Image.Image) -> Image.Image:
    """A mode PNG stores as it is (16-bit grey included); anything else to RGB(A)."""
    if im.mode in ("1", "L", "LA", "I;16", "P", "RGB", "RGBA"):
        return im
    if im.mode.startswith("I") or im.mode == "F":
        return deep_to_l(im)
    if im.mode in ("PA", "RGBa", "La") or "transparency" in im.info:
        return im.convert("RGBA")
    return im.convert("RGB")
