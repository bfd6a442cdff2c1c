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
