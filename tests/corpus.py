"""A realistic corpus of the files users actually have, generated in a few seconds (issue 8).

Phone photos are the case that matters: 4032x3024 JPEGs stored landscape with EXIF orientation 6, GPS tags,
a camera serial and a maker note. The *upright* picture has a red band along its top edge and a blue one
along its left edge, so a test can tell whether rotation happened and in which direction. The rest covers
modes and containers one each: RGBA, CMYK, 16-bit, palette, animated GIF/WebP, AVIF, multi-page TIFF,
HEIC, a decompression bomb (20000x20000 PNG of ~50 KB, written chunk by chunk: never allocated), a tiny
JPEG that must go byte for byte, line art, odd file names.

    python tests/corpus.py DIR     # write it somewhere to look at
"""

from __future__ import annotations

import functools
import struct
import sys
import zlib
from collections.abc import Callable, Collection
from io import BytesIO
from pathlib import Path

from PIL import Image, ImageCms, ImageDraw

__all__ = ["PHOTO_SIZE", "build", "phone_jpeg", "png_bomb"]

#: A 12 MP phone sensor, as stored (landscape); upright it is 3024x4032.
PHOTO_SIZE = (4032, 3024)
RED, BLUE = (220, 20, 20), (20, 20, 220)


def _photo_pixels(size: tuple[int, int], seed: int, noise: float = 0.2) -> Image.Image:
    """Smooth colour fields plus sensor-like noise: compresses like a photo (~0.35 bytes/px at q95, 4.5 MB for 12 MP)."""
    w, h = size
    small = Image.frombytes("RGB", (w // 64, h // 64), _bytes(seed, (w // 64) * (h // 64) * 3))
    im = small.resize(size, Image.Resampling.BICUBIC)
    grain = Image.effect_noise(size, 18).convert("RGB")
    return Image.blend(im, grain, noise)


def _bytes(seed: int, n: int) -> bytes:
    out = bytearray()
    x = seed * 2654435761 + 1
    while len(out) < n:
        x = (x * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
        out += x.to_bytes(8, "little")
    return bytes(out[:n])


def _mark_upright(im: Image.Image) -> Image.Image:
    """Red band on top, blue band on the left, of the picture as the user sees it."""
    draw = ImageDraw.Draw(im)
    w, h = im.size
    draw.rectangle((0, 0, w, h // 12), fill=RED)
    draw.rectangle((0, h // 6, w // 12, h), fill=BLUE)
    return im


def phone_exif(orientation: int = 6) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Phonecorp"  # Make
    exif[0x0110] = "P12 Pro"  # Model
    exif[0x0112] = orientation
    exif[0x0132] = "2026:11:30 12:00:00"
    ifd = exif.get_ifd(0x8769)
    ifd[0x9003] = "2026:11:30 12:00:00"  # DateTimeOriginal
    ifd[0xA431] = "SN-0042-7731"  # BodySerialNumber
    ifd[0x927C] = b"PHONECORP\x00" + bytes(range(200))  # MakerNote
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (52.0, 31.0, 12.5)
    gps[3] = "E"
    gps[4] = (13.0, 24.0, 3.25)
    return exif


@functools.lru_cache(maxsize=8)
def phone_jpeg(
    seed: int = 0, *, quality: int = 95, size: tuple[int, int] = PHOTO_SIZE, noise: float = 0.2
) -> bytes:
    """A 12 MP phone JPEG, stored landscape with orientation 6 (upright it is portrait), GPS and serial.

    The defaults give ~3.8 MB (a grainy low-light shot); ``quality=92, noise=0.12`` ~2.3 MB (daylight).
    """
    w, h = size
    upright = _mark_upright(_photo_pixels((h, w), seed, noise))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back (ROTATE_270)
    buf = BytesIO()
    stored.save(buf, "JPEG", quality=quality, exif=phone_exif(6).tobytes())
    return buf.getvalue()


def png_bomb(side: int = 20000) -> bytes:
    """A ``side`` x ``side`` 1-bit PNG of zeros: ~50 KB for 20000^2 (deflate's 1032:1), 400 MP once decoded."""
    raw_row = b"\x00" + b"\x00" * ((side + 7) // 8)  # filter byte + one row of 1-bit pixels
    comp = zlib.compressobj(9)
    parts = [comp.compress(raw_row) for _ in range(side)]
    parts.append(comp.flush())
    idat = b"".join(parts)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _save(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _line_art(size: tuple[int, int] = (1600, 1000)) -> Image.Image:
    """A chart: white ground, a few flat colours, thin lines, text. The case for PNG output."""
    im = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(im)
    for i in range(0, size[0], 80):
        d.line((i, 0, i, size[1]), fill=(200, 200, 200), width=1)
    for k, colour in enumerate(((200, 30, 30), (30, 120, 200), (30, 160, 60))):
        pts = [
            (x, size[1] // 2 + int((k + 1) * 120 * ((x * (k + 2)) % 400 - 200) / 400))
            for x in range(0, size[0], 40)
        ]
        d.line(pts, fill=colour, width=4)
    for y in range(40, size[1], 60):
        d.text((20, y), f"label {y}: 12.5% of total, n=1024", fill="black")
    return im


def _heic() -> bytes | None:
    try:
        import pillow_heif
    except ImportError:  # pragma: no cover - pillow-heif is a dependency
        return None
    pillow_heif.register_heif_opener()
    return _save(_mark_upright(_photo_pixels((1512, 2016), 5)), "HEIF", quality=70)


@functools.cache
def _base() -> Image.Image:
    return _photo_pixels((800, 600), 7)


def _rgba() -> bytes:
    rgba = _base().convert("RGBA")
    alpha = Image.new("L", rgba.size, 0)
    ImageDraw.Draw(alpha).ellipse((100, 50, 700, 550), fill=255)
    rgba.putalpha(alpha)
    return _save(rgba, "PNG")


def _gray16() -> bytes:
    deep = Image.frombytes(
        "I;16", (640, 480), b"".join(((x * 100) % 65536).to_bytes(2, "little") for x in range(640 * 480))
    )
    return _save(deep, "PNG")


def _frames() -> list[Image.Image]:
    return [Image.new("RGB", (320, 240), c) for c in (RED, (20, 200, 20), BLUE)]


def _animated(fmt: str) -> bytes:
    first, *rest = _frames()
    if fmt == "GIF":
        return _save(first, "GIF", save_all=True, append_images=rest, duration=100, loop=0)
    return _save(first, fmt, save_all=True, append_images=rest, **({"duration": 100} if fmt == "WEBP" else {}))


def _icc_jpeg(icc: bytes) -> bytes:
    return _save(Image.new("RGB", (800, 600), P3_SAMPLE), "JPEG", quality=95, icc_profile=icc)


def _web_50k() -> bytes:
    return _save(_photo_pixels((640, 480), 9), "JPEG", quality=85)


#: name -> how to make it; each is made once per process (``_made``) however many tests build the corpus.
MAKERS: dict[str, Callable[[], bytes | None]] = {
    "phone_portrait.jpg": lambda: phone_jpeg(0),
    "phone 2 (copy) é.JPG": lambda: phone_jpeg(1),
    "rgba.png": _rgba,
    "cmyk.jpg": lambda: _save(_base().convert("CMYK"), "JPEG", quality=90),
    "gray16.png": _gray16,
    "palette.png": lambda: _save(_base().convert("P", palette=Image.Palette.ADAPTIVE, colors=64), "PNG"),
    "animated.gif": lambda: _animated("GIF"),
    "animated.webp": lambda: _animated("WEBP"),
    "still.webp": lambda: _save(_base(), "WEBP", quality=80),
    "photo.avif": lambda: _save(_photo_pixels((1600, 1200), 3), "AVIF", quality=60),
    "pages.tiff": lambda: _animated("TIFF"),
    "big.bmp": lambda: _save(_photo_pixels((2000, 1500), 4), "BMP"),
    "iphone.heic": _heic,
    "display_p3.jpg": lambda: _icc_jpeg(p3_icc()),
    "srgb_icc.jpg": lambda: _icc_jpeg(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()),
    "bomb.png": lambda: png_bomb(),
    "tiny.jpg": lambda: _save(Image.new("RGB", (64, 48), (30, 140, 40)), "JPEG", quality=85),
    "web_50k.jpg": _web_50k,
    "line_art.png": lambda: _save(_line_art(), "PNG"),
    "not_an_image.jpg": lambda: b"this is a text file with a .jpg name\n",
    "truncated.jpg": lambda: _made("web_50k.jpg")[: len(_made("web_50k.jpg")) // 2],
}


@functools.cache
def _made(name: str) -> bytes:
    data = MAKERS[name]()
    return b"" if data is None else data


def build(dest: Path, only: Collection[str] | None = None) -> dict[str, Path]:
    """Write the corpus (or the ``only`` names of it) into ``dest``; returns name -> path.

    ~6 s for all of it the first time in a process (the two 12 MP JPEGs, the BMP, the AVIF and the HEIC are most
    of that); later calls write the bytes made then.
    """
    dest.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in MAKERS:
        if only is not None and name not in only:
            continue
        data = _made(name)
        if not data:  # no HEIC encoder
            continue
        path = dest / name
        path.write_bytes(data)
        out[name] = path
    return out


#: A saturated orange: in Display P3 it lies outside sRGB, so converting it must change the numbers.
P3_SAMPLE = (240, 120, 30)


def p3_icc() -> bytes:
    """A Display P3 matrix/TRC ICC v2 profile, built byte by byte (Pillow can only make sRGB and LAB ones)."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    name = b"Display P3 (batchcap test)"
    desc = (
        b"desc"
        + b"\0" * 4
        + struct.pack(">I", len(name) + 1)
        + name
        + b"\0"
        + b"\0" * 8
        + b"\0" * 3
        + b"\0" * 67
    )
    curv = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, 0x0233) + b"\0\0"  # gamma 2.2 (u8Fixed8)
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.5151, 0.2412, -0.0011)),
        (b"gXYZ", xyz(0.2920, 0.6922, 0.0419)),
        (b"bXYZ", xyz(0.1571, 0.0666, 0.7841)),
        (b"rTRC", curv),
        (b"gTRC", curv),
        (b"bTRC", curv),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 24 + s15(0.9642) + s15(1.0) + s15(0.8249)
    )  # fmt: skip
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body


if __name__ == "__main__":  # pragma: no cover
    for name, path in build(Path(sys.argv[1])).items():
        print(f"{path.stat().st_size:>10,}  {name}")
