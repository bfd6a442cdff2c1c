"""Image names in an export's ``--out`` folder that another file already has.

An export into a folder of its own (imagefolder or kohya with ``--out``) links, copies or converts every image
into it. A file already there under an image's name is batchcap's when the folder's ledger (``journal.owned``)
lists it unchanged, or when it is that image itself (a hard link) or its copy (same size and modification time,
which a copy keeps). Any other file is somebody else's: the export names it and stops before it writes anything
(exit 2), unless ``--overwrite``. The folder is listed once; a new or empty folder costs nothing more.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from batchcap.export.convert import EXTENSIONS, OUTPUTS, Convert, would_convert
from batchcap.export.files import head, same_placed
from batchcap.export.items import converted_name, dataset_name
from batchcap.export.paths import safe_relpath
from batchcap.journal.owned import LEDGER, Ledger
from batchcap.source.read import sniff

__all__ = ["foreign_files", "taken_images"]


def foreign_files(root: Path, ledger: Ledger | None = None) -> set[str]:
    """The files under ``root`` (relative POSIX names) that its ledger does not list as batchcap's, unchanged."""
    if not root.is_dir():
        return set()
    ledger = ledger or Ledger(root)
    found: set[str] = set()
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name == LEDGER:
                continue
            path = Path(folder, name)
            if ledger.foreign(path):
                found.add(path.relative_to(root).as_posix())
    return found


def taken_images(root: Path, paths: list[str], *, images: Path | None, convert: Convert,
                 ledger: Ledger | None = None) -> list[Path]:
    """The files in ``root`` that exporting the images at journal ``paths`` would replace and that are not
    batchcap's; ``images`` is the input folder (None for a dataset source, whose image names depend on bytes
    not read here: any file under one of its possible names counts)."""
    foreign = foreign_files(root, ledger)
    if not foreign:
        return []
    taken: list[Path] = []
    for path in paths:
        rel = safe_relpath(path)
        if rel is None:
            continue  # refused and counted by the export itself
        for name in sorted(_names(path, rel, dataset=images is None, convert=convert)):
            if name.as_posix() in foreign and _would_replace(root / name, rel, name, images, convert):
                taken.append(root / name)
    return taken


def _names(path: str, rel: PurePosixPath, *, dataset: bool, convert: Convert) -> set[PurePosixPath]:
    """Every name the image at journal ``path`` can get in the export: its own (``export.items``: a dataset
    row's depends on its type) and, converted, the new type's."""
    bases = {rel}
    if dataset:
        bases = {n for mime in (*EXTENSIONS, "") if (n := dataset_name(path, mime)) is not None}
    return bases | {converted_name(base, out) for base in bases for out in OUTPUTS[convert]}


def _would_replace(dest: Path, rel: PurePosixPath, name: PurePosixPath, images: Path | None,
                   convert: Convert) -> bool:
    """Whether writing the image at ``rel`` puts a different file at ``dest`` (its name ``name``), deciding
    link or convert as ``export.dataset.place`` does."""
    if images is None:
        return True
    src = images.joinpath(*rel.parts)
    try:
        s, d = src.stat(), dest.stat()
    except OSError:
        return False  # the image is gone (counted as missing) or the file vanished
    mime = sniff(head(src) or b"")
    if mime is not None and would_convert(mime, convert):
        return name in {converted_name(rel, out) for out in OUTPUTS[convert]}  # over a file the ledger does not know
    return name == rel and not same_placed(s, d)
