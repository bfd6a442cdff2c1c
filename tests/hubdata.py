"""Datasets as real writers make them, for the source and export tests: parquet through ``datasets``, tars through
``webdataset.TarWriter``. Every image is distinct (its own colour and index), so each has its own caption."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image


def png(i: int, size: int = 24) -> bytes:
    """A small PNG that no other index shares (two pixels spell the index)."""
    im = Image.new("RGB", (size, size), ((i * 37) % 256, (i * 91) % 256, (i * 13) % 256))
    im.putpixel((0, 0), (i % 256, (i // 256) % 256, 7))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def noise_jpeg(i: int, side: int = 512) -> bytes:
    """A photo-sized JPEG of noise (incompressible: a parquet shard of these is as big as its images)."""
    im = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    im.putpixel((0, 0), (i % 256, (i // 256) % 256, 7))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_parquet(folder: Path, images: Sequence[bytes], shards: int, *, prefix: str = "train") -> list[Path]:
    """``images`` split over ``shards`` parquet files by ``datasets`` (Image feature), with a text and a label."""
    import datasets

    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(images) // shards)
    paths = []
    for s in range(shards):
        part = images[s * per : (s + 1) * per]
        ds = datasets.Dataset.from_dict({
            "image": list(part),
            "label": [s * per + i for i in range(len(part))],
            "text": [f"row {s * per + i} of shard {s}" for i in range(len(part))],
        }).cast_column("image", datasets.Image())
        path = folder / f"{prefix}-{s:05d}-of-{shards:05d}.parquet"
        ds.to_parquet(str(path))
        paths.append(path)
    return paths


def write_tars(folder: Path, images: Sequence[bytes], shards: int, *, ext: str = "png") -> list[Path]:
    """``images`` split over ``shards`` WebDataset tars by ``webdataset.TarWriter``, each with a .txt and a .json."""
    import webdataset

    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(images) // shards)
    paths = []
    for s in range(shards):
        path = folder / f"shard-{s:05d}.tar"
        with webdataset.TarWriter(str(path)) as sink:
            for i, data in enumerate(images[s * per : (s + 1) * per], s * per):
                sink.write({"__key__": f"{i:09d}", ext: data, "txt": f"sidecar text of sample {i}",
                            "json": {"key": i, "caption": f"alt text {i}"}})
        paths.append(path)
    return paths


#: The formats a folder of phone and web images brings, small: the ones a reader cannot open without a plugin
#: (HEIC, AVIF), a 16-bit PNG (clipped to white by a careless conversion), RGBA, CMYK, a JPEG stored sideways.
HARD = ("iphone.heic", "photo.avif", "gray16.png", "rgba.png", "cmyk.jpg", "phone_portrait.jpg")


def hard_images(dest: Path) -> dict[str, Path]:
    """``HARD`` as files in ``dest`` (~0.5 s: small images; tests/corpus.py has the full-size ones)."""
    import pillow_heif
    from corpus import _mark_upright, _photo_pixels, phone_exif

    pillow_heif.register_heif_opener()
    dest.mkdir(parents=True, exist_ok=True)
    photo = _photo_pixels((320, 256), 3)
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    deep = Image.frombytes("I;16", (200, 150), b"".join(((x * 211) % 65536).to_bytes(2, "little")
                                                       for x in range(200 * 150)))
    upright = _mark_upright(_photo_pixels((240, 320), 5))

    def save(im: Image.Image, fmt: str, **kw: object) -> bytes:
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    files = {
        "iphone.heic": save(upright, "HEIF", quality=70),
        "photo.avif": save(photo, "AVIF", quality=60),
        "gray16.png": save(deep, "PNG"),
        "rgba.png": save(rgba, "PNG"),
        "cmyk.jpg": save(photo.convert("CMYK"), "JPEG", quality=90),
        "phone_portrait.jpg": save(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90,
                                   exif=phone_exif(6).tobytes()),
    }
    out = {}
    for name, data in files.items():
        (dest / name).write_bytes(data)
        out[name] = dest / name
    return out
