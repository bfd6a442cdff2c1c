"""Turn one image file into what the model needs: upright, small, 8-bit RGB or L, stripped, within the body limit.

Models use 336-1024 px of an image (protocol.md section 9); a 12 MP phone photo is 7 MB, so 95-99% of every
upload is waste, the orientation tag is ignored by every server (the model sees the photo sideways), and the
GPS position goes along. ``prepare`` fixes all three in one pass and decides first, from the header alone,
whether there is anything to fix: a web image that is already small, upright, plain and clean is returned
byte for byte without a decode (~20 us), so small-file throughput does not change.

The full path, in the order that keeps it cheap (decoded pixels are the cost; a 12 MP image is 36 MB):

1. ``_open``: Pillow's lazy open (header only) over an allowlist of raster formats (no Ghostscript-backed EPS);
   the pixel count is checked against ``max_pixels`` here, before a single pixel is allocated.
2. JPEG DCT scaling (``Image.draft``): libjpeg decodes at 1/2, 1/4 or 1/8 scale directly. A 4032x3024 photo
   decodes straight to 1008x756 (1/16 of the pixels): the result may end a little under ``max_side`` (at most
   ``DCT_SLACK``) because that skips both the full decode and the resize (4.3x faster, benchmarks/README.md).
3. first frame only; modes to RGB or L (CMYK through its ICC profile, 16-bit and float scaled, alpha flattened
   on white, as the model would otherwise see black where the image is transparent);
4. resize (LANCZOS with ``reducing_gap``: box-reduce first, then a short filter), colours to sRGB when the
   profile says otherwise, then the EXIF orientation applied to the pixels (after the resize: fewer pixels);
5. encode JPEG (or PNG for lossless sources of few colours: line art, charts, UI), then step quality and side
   down until ``wire_size(len)`` fits ``max_upload_bytes``.

Every failure is an ``InputError`` whose message a person can act on; Pillow's own exceptions (a fuzzed file
can raise almost anything from a plugin) are translated here, at the one boundary, and nowhere else.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from typing import Final

from PIL import Image, ImageCms, ImageFile

from batchcap.errors import InputError
from batchcap.prepare.headers import plain_size
from batchcap.prepare.metadata import ORIENTATION, has_private_metadata, is_srgb, orientation
from batchcap.prepare.settings import DEFAULT_MAX_PIXELS, PrepareSettings
from batchcap.source.read import check, sniff

__all__ = [
    "DCT_SLACK",
    "DEFAULT_MAX_PIXELS",
    "Base64WireSize",
    "PrepareSettings",
    "Prepared",
    "WireSize",
    "base64_wire_size",
    "deep_to_l",
    "open_image",
    "pass_through",
    "pillow_errors",
    "plain_fit",
    "prepare",
    "raw_wire_size",
]

#: Maps raw image bytes to the bytes of the request body that carries them.
WireSize = Callable[[int], int]


#: A JPEG may be DCT-scaled to a long side this much under ``max_side`` (4032 -> 1008 for 1024) instead of
#: being decoded at twice the size and resized: 1/4 the pixels to decode, no resize at all.
DCT_SLACK: Final = 0.05


def raw_wire_size(n: int) -> int:
    """The raw ``hf`` protocol: the body is the file."""
    return n


@dataclass(frozen=True, slots=True)
class Base64WireSize:
    """``hf-json`` and ``openai``: base64 (4 bytes per 3) plus the JSON around it. Picklable, for processes."""

    overhead: int

    def __call__(self, n: int) -> int:
        return 4 * ((n + 2) // 3) + self.overhead


def base64_wire_size(overhead: int) -> WireSize:
    """Wire size of an image sent as base64 inside ``overhead`` bytes of JSON (prompt, model, data-URI prefix)."""
    return Base64WireSize(overhead)


@dataclass(frozen=True, slots=True)
class Prepared:
    """The bytes to send and what became of the file. ``prepared=False``: ``data`` is the file, byte for byte."""

    data: bytes
    mime: str
    width: int
    height: int
    original_bytes: int
    original_width: int
    original_height: int
    original_mime: str
    prepared: bool
    #: What was done, in order: first-frame, converted, flattened, srgb, resized, oriented, stripped, png,
    #: quality=N (lowered to fit), shrunk (side lowered to fit).
    steps: tuple[str, ...] = field(default=())

    @property
    def saved_bytes(self) -> int:
        return self.original_bytes - len(self.data)


# Formats tried, cheapest-to-recognise first; the first four need only Pillow's preinit() plugins.
# Deliberately absent: EPS/PS/PDF (Ghostscript), WMF, fonts and game textures nobody captions.
_FORMATS: Final = (
    "JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF", "AVIF", "HEIF", "JPEG2000", "ICO", "PPM", "QOI", "TGA",
)  # fmt: skip
#: What every target decodes (OpenAI: PNG, JPEG, WEBP, non-animated GIF), with the modes that need no work.
_PASS_MODES: Final = {
    "JPEG": frozenset({"L", "RGB"}),
    "PNG": frozenset({"1", "L", "P", "RGB"}),
    "GIF": frozenset({"L", "P"}),
    "WEBP": frozenset({"RGB"}),
}
_MIME: Final = {
    "JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp",
    "TIFF": "image/tiff", "BMP": "image/bmp", "DIB": "image/bmp", "AVIF": "image/avif", "HEIF": "image/heif",
    "JPEG2000": "image/jp2", "ICO": "image/x-icon", "PPM": "image/x-portable-anymap", "QOI": "image/qoi",
    "TGA": "image/x-tga",
}  # fmt: skip
#: Lossless sources; with few colours (line art, charts, screenshots of UI) they go out as PNG.
_LOSSLESS: Final = frozenset({"PNG", "GIF", "BMP", "DIB", "PPM", "QOI", "TGA", "ICO"})
#: Measured at 1024 px (line art / a 1920x1080 UI screenshot / a photo; PNG level 6 vs JPEG q90): line art
#: (359 colours) 69 KB lossless vs 91 KB with ringing (max error 18 levels on text edges); screenshot (401)
#: 256 KB vs 112 KB; photo (>65k) 1075 KB and 283 ms vs 131 KB and 1.8 ms. So: PNG for few colours, where
#: JPEG smears exactly what the model should read, and JPEG for everything with photo content. Counting
#: stops at the limit, so a photo costs ~1 ms to rule out.
_PNG_MAX_COLOURS: Final = 1024
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: Fallback qualities when the first encode is over budget, then sides (x0.75 each) at the last quality.
_QUALITY_STEPS: Final = (80, 70, 60, 50)
_MIN_SIDE: Final = 64


def prepare(data: bytes, settings: PrepareSettings, *, wire_size: WireSize = raw_wire_size) -> Prepared:
    """Prepare one image for sending, or raise ``InputError`` saying why it cannot be sent.

    Blocking and CPU-bound (4 us to pass a plain web image through, ~35 ms for a 12 MP JPEG): call it from a
    worker thread (``batchcap.prepare.PreparePool``), never on the event loop.
    """
    got = _decide(data, settings, wire_size)
    if isinstance(got, Prepared):
        return got
    im, fmt = got
    with _pillow_errors(fmt):
        return _prepare_pixels(im, fmt, data, settings, wire_size)


def pass_through(
    data: bytes, settings: PrepareSettings, *, wire_size: WireSize = raw_wire_size
) -> Prepared | None:
    """The cheap half of ``prepare``, from the header alone: the file as it is, or None when it needs pixel work.

    2-20 us, so a reader can call it inline for every file and send only the rest to ``PreparePool``.
    Raises ``InputError`` as ``prepare`` does for what the header already condemns (bombs, not an image).
    """
    got = _decide(data, settings, wire_size)
    return got if isinstance(got, Prepared) else None


def _decide(
    data: bytes, settings: PrepareSettings, wire_size: WireSize
) -> Prepared | tuple[ImageFile.ImageFile, str]:
    """Passthrough from the header, or the lazily opened image (and its format) that needs work."""
    if settings.max_side == 0:
        return _as_is(data)
    plain = plain_fit(data, settings, wire_size)
    if plain is not None:
        mime, w, h = plain
        check(data)
        return Prepared(data, mime, w, h, len(data), w, h, mime, prepared=False)
    im = _open(data)
    fmt = im.format or "?"
    with _pillow_errors(fmt):
        w, h = im.size
        if w <= 0 or h <= 0:
            raise InputError(f"{fmt} header says the image is {w}x{h} pixels")
        if w * h > settings.max_pixels:
            raise InputError(
                f"image is {w}x{h} = {w * h:,} pixels, over the limit of {settings.max_pixels:,}"
                " (a decompression bomb, or a huge scan: raise --max-pixels to send it)"
            )
        if _can_pass(im, fmt, data, settings, wire_size):
            return Prepared(data, _MIME[fmt], w, h, len(data), w, h, _MIME[fmt], prepared=False)
    return im, fmt


def plain_fit(data: bytes, settings: PrepareSettings, wire_size: WireSize) -> tuple[str, int, int] | None:
    """``(mime, w, h)`` of a plain JPEG/PNG that fits every limit as it is (~1.5 us, ``headers.plain_size``).

    No structural ``check``: callers whose bytes came through ``images.load`` have had it already.
    """
    plain = plain_size(data)
    if plain is None:
        return None
    _, w, h = plain
    budget = settings.max_upload_bytes
    fits = 0 < max(w, h) <= settings.max_side and 0 < w * h <= settings.max_pixels
    return plain if fits and (not budget or wire_size(len(data)) <= budget) else None


def _as_is(data: bytes) -> Prepared:
    """``--max-side 0``: no preparation; the header is read only to report the size."""
    try:
        im = _open(data)
        (w, h), mime = im.size, _MIME.get(im.format or "", "application/octet-stream")
    except Exception:  # noqa: BLE001  size unknown is fine: the file goes as it is either way
        (w, h), mime = (0, 0), "application/octet-stream"
    return Prepared(data, mime, w, h, len(data), w, h, mime, prepared=False)


def _can_pass(im: Image.Image, fmt: str, data: bytes, settings: PrepareSettings, wire_size: WireSize) -> bool:
    """Whether the file can go byte for byte: decided from the header, in microseconds."""
    modes = _PASS_MODES.get(fmt)
    if modes is None or im.mode not in modes or max(im.size) > settings.max_side:
        return False
    check(data)  # structural (0.2-0.6 us): a truncated file is refused here, not by the service
    if "transparency" in im.info or getattr(im, "is_animated", False):
        return False
    budget = settings.max_upload_bytes
    if budget and wire_size(len(data)) > budget:
        return False
    icc = im.info.get("icc_profile")
    if icc and not is_srgb(icc):
        return False
    if "exif" in im.info and orientation(im) != 1:
        return False
    return settings.keep_metadata or not has_private_metadata(im)


def _prepare_pixels(
    im: ImageFile.ImageFile, fmt: str, data: bytes, settings: PrepareSettings, wire_size: WireSize
) -> Prepared:
    ow, oh = im.size
    steps: list[str] = []
    if getattr(im, "is_animated", False) or getattr(im, "n_frames", 1) > 1:
        steps.append("first-frame")
    turn = orientation(im) if "exif" in im.info or fmt in ("TIFF", "HEIF") else 1
    private = has_private_metadata(im)
    kept_exif = im.getexif() if settings.keep_metadata and "exif" in im.info else None
    icc = im.info.get("icc_profile") or None
    tw, th = _fit(ow, oh, settings.max_side)
    if fmt in ("JPEG", "MPO") and (tw, th) != (ow, oh):
        _draft(im, settings.max_side)
    im.load()
    out, icc = _to_8bit(im, icc, steps)
    use_png = fmt in _LOSSLESS or (fmt == "TIFF" and "jpeg" not in str(im.info.get("compression", "")))
    use_png = use_png and out.getcolors(_PNG_MAX_COLOURS) is not None
    if out.size != (tw, th) and max(out.size) > settings.max_side:
        out = out.resize((tw, th), Image.Resampling.LANCZOS, reducing_gap=3.0)
        steps.append("resized")
    elif out.size != (ow, oh):
        steps.append("resized")  # DCT scaling did it all
    if icc is not None and out.mode == "RGB" and not is_srgb(icc):
        converted = _to_srgb(out, icc)
        if converted is not None:
            out, icc = converted, None
            steps.append("srgb")
    if turn in _TRANSPOSE:
        out = out.transpose(_TRANSPOSE[turn])
        steps.append("oriented")
    if private and not settings.keep_metadata:
        steps.append("stripped")
    extra: dict[str, object] = {}
    if settings.keep_metadata:
        if kept_exif is not None:
            kept_exif[ORIENTATION] = 1
            extra["exif"] = kept_exif.tobytes()
        if icc is not None:
            extra["icc_profile"] = icc
        if im.info.get("xmp"):
            extra["xmp"] = im.info["xmp"]
    body, mime, (w, h) = _fit_budget(out, use_png, settings, wire_size, extra, steps)
    original_mime = sniff(data) or _MIME.get(fmt, "image/" + fmt.lower())
    return Prepared(body, mime, w, h, len(data), ow, oh, original_mime, prepared=True, steps=tuple(steps))


def _fit(w: int, h: int, max_side: int) -> tuple[int, int]:
    """The size with the long side at most ``max_side``, aspect kept, never enlarged."""
    long = max(w, h)
    if long <= max_side:
        return w, h
    scale = max_side / long
    return max(1, round(w * scale)), max(1, round(h * scale))


def _draft(im: ImageFile.ImageFile, max_side: int) -> None:
    """Ask libjpeg for the coarsest DCT scale whose long side stays within ``DCT_SLACK`` under ``max_side``."""
    w, h = im.size
    floor = max_side * (1 - DCT_SLACK)
    for s in (8, 4, 2):
        if max(w, h) / s >= floor:
            mode = im.mode if im.mode in ("RGB", "L") else None
            im.draft(mode, (max(1, w // s), max(1, h // s)))
            return


def _to_8bit(im: Image.Image, icc: bytes | None, steps: list[str]) -> tuple[Image.Image, bytes | None]:
    """RGB or L, 8 bits, no alpha (flattened on white). CMYK goes through its own profile when it has one."""
    mode = im.mode
    if mode in ("RGB", "L"):
        return im, icc
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
        if mode == "RGB":
            steps.append("converted")
            return im, icc
    if mode == "1":
        steps.append("converted")
        return im.convert("L"), icc
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        base = "L" if mode in ("LA", "La") else "RGB"
        im = im.convert(base + "A")
        flat = Image.new(base, im.size, 255 if base == "L" else (255, 255, 255))
        flat.paste(im.convert(base), mask=im.getchannel("A"))
        steps.append("flattened")
        return flat, icc
    if mode == "CMYK":
        steps.append("converted")
        if icc is not None:
            converted = _cmyk_to_srgb(im, icc)
            if converted is not None:
                steps.append("srgb")
                return converted, None
        return im.convert("RGB"), None
    if mode.startswith("I") or mode == "F":
        steps.append("converted")
        return _deep_to_l(im), icc
    steps.append("converted")
    try:
        return im.convert("RGB"), None  # YCbCr, LAB, HSV, RGBX, ...
    except ValueError:
        raise InputError(f"cannot convert pixel mode {mode} to RGB") from None


def _deep_to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float greyscale to 8 bits: 16-bit by its range, the others by their extremes."""
    src = im if im.mode in ("I", "F") else im.convert("I")
    extrema = src.getextrema()
    lo, hi = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
    if im.mode.startswith("I;16") or (lo >= 0 and 255 < hi <= 65535 and im.mode == "I"):
        lo, hi = 0.0, 65535.0
    elif lo >= 0 and hi <= 255:
        lo, hi = 0.0, 255.0
    span = (hi - lo) or 1.0
    scale, offset = 255.0 / span, -lo * 255.0 / span
    return src.point(lambda v: v * scale + offset).convert("L")  # type: ignore[no-any-return]


_SRGB = ImageCms.createProfile("sRGB")
_TRANSFORMS: dict[tuple[bytes, str], ImageCms.ImageCmsTransform | None] = {}
_TRANSFORMS_LOCK = threading.Lock()


def _transform(icc: bytes, in_mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached profile -> sRGB transform (NOCACHE: one transform is shared by every worker thread)."""
    key = (icc, in_mode)
    with _TRANSFORMS_LOCK:
        if key in _TRANSFORMS:
            return _TRANSFORMS[key]
    try:
        src = ImageCms.ImageCmsProfile(BytesIO(icc))
        transform: ImageCms.ImageCmsTransform | None = ImageCms.buildTransform(
            src, _SRGB, in_mode, "RGB", ImageCms.Intent.PERCEPTUAL, ImageCms.Flags.NOCACHE
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        transform = None  # a profile that does not match the pixels (or is broken): plain conversion
    with _TRANSFORMS_LOCK:
        if len(_TRANSFORMS) > 32:
            _TRANSFORMS.clear()
        _TRANSFORMS[key] = transform
    return transform


def _to_srgb(im: Image.Image, icc: bytes) -> Image.Image | None:
    t = _transform(icc, im.mode)
    return None if t is None else t.apply(im)


def _cmyk_to_srgb(im: Image.Image, icc: bytes) -> Image.Image | None:
    return _to_srgb(im, icc)


def _encode(im: Image.Image, png: bool, quality: int, extra: dict[str, object]) -> bytes:
    buf = BytesIO()
    if png:
        im.save(buf, "PNG", compress_level=6, **extra)
    else:
        im.save(buf, "JPEG", quality=quality, **extra)
    return buf.getvalue()


def _fit_budget(
    im: Image.Image,
    png: bool,
    settings: PrepareSettings,
    wire_size: WireSize,
    extra: dict[str, object],
    steps: list[str],
) -> tuple[bytes, str, tuple[int, int]]:
    """Encode, then lower quality and then the side until the body fits; the first fit wins."""
    budget = settings.max_upload_bytes
    body = _encode(im, png, settings.jpeg_quality, extra)
    if png:
        steps.append("png")
    if not budget or wire_size(len(body)) <= budget:
        return body, "image/png" if png else "image/jpeg", im.size
    if png:
        steps.remove("png")
    q = settings.jpeg_quality
    for q in (settings.jpeg_quality, *(s for s in _QUALITY_STEPS if s < settings.jpeg_quality)):
        body = _encode(im, False, q, extra)
        if wire_size(len(body)) <= budget:
            steps.append(f"quality={q}")
            return body, "image/jpeg", im.size
    small = im
    while max(small.size) > _MIN_SIDE:
        small = im.resize(_fit(*small.size, int(max(small.size) * 0.75)), Image.Resampling.BILINEAR)
        body = _encode(small, False, q, extra)
        if wire_size(len(body)) <= budget:
            steps.extend((f"quality={q}", "shrunk"))
            return body, "image/jpeg", small.size
    raise InputError(
        f"cannot fit under {budget / 1e6:g} MB as sent after re-encoding (still {wire_size(len(body)):,} bytes"
        f" at {small.size[0]}x{small.size[1]}, quality {q}); raise --max-upload-mb or lower --max-side"
    )


def _open(data: bytes) -> ImageFile.ImageFile:
    """Pillow's lazy open over ``_FORMATS``, without its pixel check: ``prepare`` checks against its own limit.

    Same loop as ``Image.open`` (which would warn, or raise, at ``Image.MAX_IMAGE_PIXELS`` before the caller
    sees the size), restricted to raster formats, so ``--max-pixels`` means what it says in both directions.
    """
    if not data:
        raise InputError("empty file")
    if data[4:8] == b"ftyp" and data[8:12] not in (b"avif", b"avis"):
        _register_heif()
    prefix = data[:16]
    fp = BytesIO(data)
    Image.preinit()
    for fmt in _FORMATS:
        if fmt not in Image.OPEN:
            Image.init()
            if fmt not in Image.OPEN:
                continue
        factory, accept = Image.OPEN[fmt]
        try:
            if accept is not None:
                ok = accept(prefix)
                if not ok or isinstance(ok, str):
                    continue
            fp.seek(0)
            return factory(fp, "")  # type: ignore[no-any-return]
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue  # not this format after all (Pillow's own rule)
        except Exception as exc:  # noqa: BLE001  a fuzzed header raises anything; this is the boundary
            raise InputError(f"cannot read the {fmt} header: {_reason(exc)}") from None
    raise InputError(f"not an image format batchcap can prepare (starts with {data[:12]!r})")


_HEIF_LOCK = threading.Lock()
_heif_registered = False


def _register_heif() -> None:
    """Teach Pillow HEIC/HEIF (pillow-heif) on the first such file: its import costs start-up time otherwise."""
    global _heif_registered
    with _HEIF_LOCK:
        if _heif_registered:
            return
        try:
            import pillow_heif
        except ImportError:  # an install without the dependency: the file gets "not an image format ..."
            pass
        else:
            pillow_heif.register_heif_opener()
        _heif_registered = True


@contextmanager
def _pillow_errors(what: str) -> Iterator[None]:
    """The one place Pillow's exceptions become ``InputError``: a damaged file raises anything from a plugin."""
    try:
        yield
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(f"refused by Pillow's decompression-bomb check: {_reason(exc)}") from None
    except Exception as exc:  # noqa: BLE001  the one translation of Pillow's errors (module docstring)
        raise InputError(f"cannot decode this {what}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."



#: For exports and thumbnails: the same opener (HEIC too), deep-image scaling and Pillow error translation.
open_image, deep_to_l, pillow_errors = _open, _deep_to_l, _pillow_errors
