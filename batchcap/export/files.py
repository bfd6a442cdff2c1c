"""Files an export leaves are whole or absent: each is written to a temp name beside it, then renamed.

A reader (a trainer, ``datasets``, a second export) sees the old file or the new one, never half of one,
and an export killed midway leaves at worst a ``.*.tmp`` file that the next run overwrites.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Literal

from batchcap.journal import replacing
from batchcap.source.sidecars import write_sidecar as replace_text  # one "write if changed", for cards too

__all__ = ["Placed", "atomic_bytes", "atomic_text", "head", "place_image", "replace_bytes", "replace_text", "same_placed",
           "sync_all"]

Placed = Literal["linked", "copied", "unchanged"]


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _replacing(path: Path) -> AbstractContextManager[Path]:
    """``journal.replacing`` into a folder made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return replacing(path, tmp=_tmp(path))


@contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """Write ``path`` as UTF-8 text (no newline translation) through a temp file renamed on success."""
    with _replacing(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextmanager
def atomic_bytes(path: Path) -> Iterator[IO[bytes]]:
    """Write ``path`` as bytes through a temp file renamed on success."""
    with _replacing(path) as tmp, open(tmp, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def replace_bytes(path: Path, data: bytes) -> bool:
    """Atomically set ``path`` to ``data``; False (nothing written) when it already holds exactly that. A converted
    image is written this way: a second export of the same images rewrites nothing."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    with _replacing(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return True



def sync_all() -> None:
    """Flush every written file to disk once (after many :func:`replace_text` calls)."""
    os.sync()


def same_placed(src: os.stat_result, dest: os.stat_result) -> bool:
    """``dest`` is ``src`` as :func:`place_image` leaves it: the same file (a hard link) or its copy (same size and
    modification time, which ``copy2`` keeps)."""
    return (src.st_ino, src.st_dev) == (dest.st_ino, dest.st_dev) or (src.st_size, src.st_mtime_ns) == (
        dest.st_size, dest.st_mtime_ns)


def head(path: Path, n: int = 64) -> bytes | None:
    """The first ``n`` bytes of ``path`` (enough to sniff its type), or None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return None


def place_image(src: Path, dest: Path) -> Placed:
    """Put ``src`` at ``dest`` byte for byte: a hard link where the filesystem allows, else a copy.

    Never re-encoded. ``unchanged`` when ``dest`` already is that file (same inode) or a copy of it
    (same size and modification time, which ``copy2`` keeps), so a second export does no work.
    """
    st = src.stat()
    try:
        d = dest.stat()
    except FileNotFoundError:
        pass
    else:
        if same_placed(st, d):
            return "unchanged"
    with _replacing(dest) as tmp:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        try:
            os.link(src, tmp)
            how: Placed = "linked"
        except OSError:
            shutil.copy2(src, tmp)
            how = "copied"
    return how
