"""What a prompt template may mention of one image: its folder, path, stem, sidecar text and EXIF fields.

    context_for(job, data, sidecar=True, exif=True)
    # {"folder": "cat", "path": "cat/001.jpg", "stem": "001", "sidecar": "tabby, indoor",
    #  "exif": {"datetime": "2024:05:01 12:00:00", "model": "Pixel 8", "make": "Google"}}

``folder`` is the name of the image's parent folder (for an image at the top of the input folder, the input
folder's own name). ``sidecar`` is the text of ``STEM.txt`` beside the image (at most :data:`SIDECAR_MAX`
bytes, decoded as UTF-8 with bad bytes replaced, surrounding whitespace removed), empty when there is none.
EXIF fields are read from the file's own bytes (before preparation strips them); a field the file does not
carry is empty. A job may bring extra variables (``ImageJob.context``: a dataset row's columns); the names
above win over them. Every value is untrusted text: it is a value in the prompt, never template source.
"""

from __future__ import annotations

import io
import os
import posixpath
import struct
from typing import Any

from PIL import ExifTags, Image, UnidentifiedImageError

from batchcap.models import ImageJob

__all__ = ["BUILTINS", "EXIF_FIELDS", "SIDECAR_EXT", "SIDECAR_MAX", "context_for", "exif_fields", "read_sidecar"]

#: The variables every image has (``exif`` is a mapping of :data:`EXIF_FIELDS`).
BUILTINS = ("folder", "path", "stem", "sidecar", "exif")
#: The EXIF fields a prompt may use: ``exif.datetime`` (DateTimeOriginal, else DateTime), camera ``model``, ``make``.
EXIF_FIELDS = ("datetime", "model", "make")
#: The sidecar a prompt's ``{{ sidecar }}`` reads: ``STEM.txt`` beside the image.
SIDECAR_EXT = ".txt"
SIDECAR_MAX = 64 * 1024
_NO_EXIF = dict.fromkeys(EXIF_FIELDS, "")
_DATETIME_ORIGINAL = 0x9003


def folder_of(job: ImageJob) -> str:
    """The parent folder's name; the input folder's own name for an image at its top."""
    parent = posixpath.basename(posixpath.dirname(job.path))
    if parent:
        return parent
    return os.path.basename(os.path.dirname(job.abspath))


def context_for(job: ImageJob, data: bytes | None = None, *, sidecar: bool = False, exif: bool = False
                ) -> dict[str, Any]:
    """The variables of one image. ``sidecar``/``exif``: read them (only when a template uses them)."""
    ctx: dict[str, Any] = dict(job.context) if job.context else {}
    ctx["folder"] = folder_of(job)
    ctx["path"] = job.path
    ctx["stem"] = posixpath.splitext(posixpath.basename(job.path))[0]
    ctx["sidecar"] = read_sidecar(job.abspath) if sidecar else ""
    ctx["exif"] = exif_fields(data) if exif and data is not None else dict(_NO_EXIF)
    return ctx


def read_sidecar(abspath: str) -> str:
    """The text of ``STEM.txt`` beside ``abspath``, or "" when there is none or it cannot be read."""
    path = os.path.splitext(abspath)[0] + SIDECAR_EXT
    try:
        with open(path, "rb") as f:
            raw = f.read(SIDECAR_MAX)
    except OSError:
        return ""
    return raw.decode("utf-8", "replace").strip()


def exif_fields(data: bytes) -> dict[str, str]:
    """:data:`EXIF_FIELDS` from the image's header (no pixel decode); "" for each one it lacks."""
    out = dict(_NO_EXIF)
    try:
        with Image.open(io.BytesIO(data)) as im:
            exif = im.getexif()
            taken = exif.get_ifd(ExifTags.IFD.Exif).get(_DATETIME_ORIGINAL)
            values = {
                "datetime": taken or exif.get(ExifTags.Base.DateTime),
                "model": exif.get(ExifTags.Base.Model),
                "make": exif.get(ExifTags.Base.Make),
            }
    except (UnidentifiedImageError, OSError, ValueError, TypeError, KeyError, IndexError, SyntaxError,
            struct.error, Image.DecompressionBombError):
        return out  # a damaged or absent EXIF block: the fields are simply empty
    for name, value in values.items():
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            out[name] = value.replace("\x00", "").strip()[:200]
    return out
