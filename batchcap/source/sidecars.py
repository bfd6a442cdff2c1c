"""Caption files beside images (``NAME.txt``): their names, whose they are, and what goes in them.

The rules ``export --format kohya`` and ``run --sidecar`` share (a module of ``source``, the folder's own room,
so neither command loads the other). A sidecar that exists and that batchcap did not write this time is
somebody's work: it is kept unless the mode says otherwise (``overwrite``, or ``append``/``prepend`` the caption).
Two images that map to one sidecar name (``photo.jpg`` and ``photo.webp`` -> ``photo.txt``) clash: one sidecar
per name, the other image is named in the summary, and its caption stays in the JSONL. An image extension as the
sidecar's is refused (``sidecar_ext_problem``): the sidecar would overwrite an image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from batchcap.journal import replacing
from batchcap.source.scan import DEFAULT_EXTENSIONS

__all__ = ["MODES", "SEPARATOR", "Mode", "sidecar_ext_problem", "sidecar_name", "sidecar_text", "write_sidecar"]

Mode = Literal["keep", "overwrite", "append", "prepend"]
MODES: tuple[Mode, ...] = ("keep", "overwrite", "append", "prepend")
#: Joins an existing sidecar and the new caption in append/prepend mode (tags are comma-separated).
SEPARATOR = ", "


def sidecar_name(image: Path, ext: str) -> Path | None:
    """``photo.jpg`` -> ``photo.txt``; None when that would be the image itself (``--ext .jpg``)."""
    sidecar = image.with_name(image.stem + ext) if image.suffix else image.with_name(image.name + ext)
    return None if sidecar.name == image.name else sidecar


def sidecar_text(sidecar: Path, caption: str, mode: Mode) -> str | None:
    """The sidecar's new content, or None to leave it as it is. append/prepend never add a caption twice."""
    if mode == "overwrite":
        return caption
    try:
        existing = sidecar.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return caption
    except (OSError, UnicodeDecodeError):
        return None  # not ours to rewrite blind: kept, and counted as kept
    if mode == "keep":
        return None
    if not existing:
        return caption
    if mode == "append":
        return existing if existing.endswith(caption) else existing + SEPARATOR + caption
    return existing if existing.startswith(caption) else caption + SEPARATOR + existing


def sidecar_ext_problem(ext: str, *, flag: str) -> str | None:
    """Why ``ext`` cannot name a caption file beside an image (a message naming ``flag``), or None.

    An image extension is refused: ``photo.txt`` is fine, a ``photo.png`` sidecar would overwrite an image.
    """
    if not ext.startswith(".") or len(ext) < 2 or "/" in ext or "\\" in ext or "\x00" in ext:
        return f"{flag} must look like .txt or .caption (got {ext!r})"
    if ext.lower() in DEFAULT_EXTENSIONS:
        return f"{flag} {ext} is an image extension: sidecars would overwrite images; use .txt or .caption"
    return None


def write_sidecar(path: Path, text: str) -> bool:
    """Atomically set ``path`` to ``text`` (UTF-8); False (nothing written) when it already holds exactly that.

    No fsync per file: a sidecar is small and there may be 100k of them (an fsync each took 11 s for 20k
    here); the caller syncs once at the end (``export.files.sync_all``). The rename still means a reader sees the
    old text or the new, never half.
    """
    data = text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, tmp=path.with_name(f".{path.name}.{os.getpid()}.tmp")) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return True
