"""The rules for caption files beside images (``NAME.txt``), shared by ``export --format kohya`` and ``run --sidecar``.

A sidecar that exists and that batchcap did not write this time is somebody's work: it is kept unless the mode
says otherwise (``overwrite``, or ``append``/``prepend`` the caption). Two images that map to one sidecar name
(``photo.jpg`` and ``photo.webp`` -> ``photo.txt``) clash: one sidecar per name, the other image is named in the
summary, and its caption stays in the JSONL. An image extension as the sidecar's is refused
(``source.scan.sidecar_ext_problem``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["MODES", "SEPARATOR", "Mode", "sidecar_name", "sidecar_text"]

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
