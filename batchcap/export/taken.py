"""Image names in an export's ``--out`` folder that another file already has.

An export into a folder of its own (imagefolder or kohya with ``--out``) links, copies or converts every image
into it. A file already there under an image's name is batchcap's when the folder's ledger (``journal.owned``)
lists it unchanged, or when it is that image itself (a hard link) or its copy (same size and modification time,
which a copy keeps). Any other file is somebody else's: the export names it and stops before it writes anything
(exit 2), unless ``--overwrite``. The folder is listed once; a new or empty folder costs nothing more.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from batchcap.export.convert import EXTENSIONS, Convert, would_convert
from batchcap.export.items import converted_name
from batchcap.export.paths import safe_relpath
from batchcap.journal.owned import LEDGER, Ledger
from batchcap.source.read import sniff

__all__ = ["foreign_files", "taken_images"]


def foreign_files(root: Path) -> set[str]:
    """The files under ``root`` (relative POSIX names) that its ledger does not list as batchcap's, unchanged."""
    if not root.is_dir():
        return set()
    ledger = Ledger(root)
    found: set[str] = set()
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name == LEDGER:
                continue
            path = Path(folder, name)
            if ledger.foreign(path):
                found.add(path.relative_to(root).as_posix())
    return found


def taken_images(root: Path, paths: list[str], *, images: Path | None, convert: Convert) -> list[Path]:
    """The files in ``root`` that exporting the images at journal ``paths`` would replace and that are not
    batchcap's; ``images`` is the input folder (None for a dataset source, whose image names depend on bytes
    not read here: any file under one of its possible names counts)."""
    foreign = foreign_files(root)
    if not foreign:
        return []
    taken: list[Path] = []
    for path in paths:
        rel = safe_relpath(path)
        if rel is None:
            continue  # refused and counted by the export itself
        for name in _names(rel, dataset=images is None):
            if name.as_posix() in foreign and _would_replace(root / name, rel, name, images, convert):
                taken.append(root / name)
    return taken


def _names(rel: PurePosixPath, *, dataset: bool) -> Iterator[PurePosixPath]:
    """Every name an image of journal path ``rel`` can get in the export (``export.items``)."""
    if dataset and "#" in rel.name:
        base, row = rel.name.rsplit("#", 1)
        for ext in set(EXTENSIONS.values()) | {".bin"}:
            yield rel.with_name(base) / f"{row}{ext}"
        return
    yield rel
    for ext in set(EXTENSIONS.values()):
        if rel.suffix.lower() != ext:
            yield rel.with_name(rel.name + ext)


def _would_replace(dest: Path, rel: PurePosixPath, name: PurePosixPath, images: Path | None,
                   convert: Convert) -> bool:
    """Whether writing the image at ``rel`` puts a different file at ``dest`` (its name ``name``), deciding
    link or convert as ``export.dataset.place`` does."""
    if images is None:
        return True
    src = images.joinpath(*rel.parts)
    try:
        s, d = src.stat(), dest.stat()
        with open(src, "rb") as f:
            mime = sniff(f.read(64))
    except OSError:
        return False  # the image is gone (counted as missing) or the file vanished
    if mime is not None and would_convert(mime, convert):  # auto picks PNG or JPEG by the image's alpha
        outputs = {"jpeg": ["image/jpeg"], "png": ["image/png"]}.get(convert, ["image/jpeg", "image/png"])
        return name in {converted_name(rel, out) for out in outputs}  # over a file the ledger does not know
    if name != rel:
        return False
    return (s.st_ino, s.st_dev) != (d.st_ino, d.st_dev) and (s.st_size, s.st_mtime_ns) != (d.st_size, d.st_mtime_ns)
