"""The images an export holds, each with its winning record, from a folder or from a dataset source.

A folder's images are files: they come in path order, each found by its journal path under the input folder
(refused when a folder link leads out, missing when gone), and are linked or copied unless converted. A
dataset's images (parquet, WebDataset, a URL) have no file: the source is read once, front to back, and every
image whose id has an ok record comes out in the source's own order with its bytes, its record read by offset.

Names in the export: a folder image keeps its path; a dataset image is named from its id (``shard.tar/0042.jpg``
as it is, ``train.parquet#12`` -> ``train.parquet/12.png`` by its type). A converted image gets the new type's
extension added (``IMG_0001.HEIC`` -> ``IMG_0001.HEIC.jpg``): never the name of another image.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from batchcap.errors import InputError
from batchcap.export.convert import EXTENSIONS, Convert, Converted, convert, needs_plugin
from batchcap.export.paths import Inside, safe_relpath
from batchcap.export.select import Selection
from batchcap.journal import decode_line
from batchcap.models import DatasetJob
from batchcap.source.datasets import Source
from batchcap.source.read import sniff

__all__ = ["ExportImage", "ImageCounts", "converted_name", "dataset_images", "dataset_name", "prepare_bytes"]


@dataclass(slots=True)
class ImageCounts:
    """What happened to the images on their way into the export."""

    converted: Counter[str] = field(default_factory=Counter)  #: type converted from -> count
    kept_unreadable: Counter[str] = field(default_factory=Counter)  #: needs a plugin, kept (--convert keep)
    undecodable: int = 0  #: a conversion failed: the image is left out
    missing: int = 0  #: ok records whose image the source no longer has
    flagged: int = 0


@dataclass(slots=True)
class ExportImage:
    """One image to export: its answers (task -> record), its name in the export, and its bytes or its file.
    ``record`` is its first task's (what a card counts)."""

    answers: dict[str, dict[str, Any]]
    name: PurePosixPath
    data: bytes | None = None
    src: Path | None = None

    @property
    def record(self) -> dict[str, Any]:
        return next(iter(self.answers.values()))

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.src is not None
        return self.src.read_bytes()


def dataset_name(image_id: str, mime: str) -> PurePosixPath | None:
    """A dataset image's name in the export (see the module doc); None for an id that could leave the folder."""
    if "#" in image_id:
        base, row = image_id.rsplit("#", 1)
        image_id = f"{base}/{row}{EXTENSIONS.get(mime, '.bin')}"
    return safe_relpath(image_id)


def converted_name(name: PurePosixPath, mime: str) -> PurePosixPath:
    """``name`` with the converted type's extension added (kept when it already has it)."""
    ext = EXTENSIONS[mime]
    if name.suffix.lower() in (ext, ".jpeg" if ext == ".jpg" else ext):
        return name
    return name.with_name(name.name + ext)


def prepare_bytes(data: bytes, mode: Convert, counts: ImageCounts) -> tuple[bytes, str] | None:
    """The bytes to export and their type, converted where ``mode`` says; None: undecodable (counted)."""
    mime = sniff(data) or "application/octet-stream"
    try:
        got: Converted | None = convert(data, mime, mode)
    except InputError:
        counts.undecodable += 1
        return None
    if got is None:
        if needs_plugin(mime):
            counts.kept_unreadable[mime.removeprefix("image/")] += 1
        return data, mime
    counts.converted[got.was.removeprefix("image/")] += 1
    return got.data, got.mime


def dataset_images(
    source: Source, journal: Path, sel: Selection, counts: ImageCounts, *, skip_flagged: bool,
    tasks: list[str] | None = None,
) -> Iterator[ExportImage]:
    """Every image of a dataset source with an ok answer (of ``tasks``, default all), in the source's order, with
    its answers; ``counts.missing`` at the end holds the images with answers the source did not produce."""
    wanted: dict[str, list[tuple[str, int]]] = {}
    for path, found in sel.ok_images():
        chosen = [(task, offset) for task, offset in found if tasks is None or task in tasks]
        if chosen:
            wanted[path] = chosen
    seen = 0
    with open(journal, "rb") as f:
        for batch in source.batches(batch_size=64):
            for job in batch:
                items = wanted.get(job.path)
                if items is None or not isinstance(job, DatasetJob) or job.data is None:
                    continue
                seen += 1
                answers: dict[str, dict[str, Any]] = {}
                for task, offset in items:
                    f.seek(offset, os.SEEK_SET)
                    rec = decode_line(f.readline())
                    if skip_flagged and isinstance(rec.get("flags"), list) and rec["flags"]:
                        counts.flagged += 1
                        continue
                    answers[task] = rec
                if not answers:
                    continue
                name = dataset_name(job.path, sniff(job.data) or "")
                if name is None:
                    continue
                yield ExportImage(answers, name, data=job.data)
    counts.missing += len(wanted) - seen


def folder_image(images: Inside, answers: dict[str, dict[str, Any]]) -> ExportImage | Path | None:
    """The file of a folder image (``answers``: task -> its record): an ``ExportImage``, or the path that is gone
    (missing), or None (refused)."""
    rec = next(iter(answers.values()))
    rel = safe_relpath(rec["path"])
    if rel is None:
        return None
    src = images(rel)
    if src is None:
        return None
    if not src.is_file():
        return src
    return ExportImage(answers, rel, src=src)
