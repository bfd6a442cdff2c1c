"""The run manifest beside the journal, for its readers: where it is, what it says, which folder was captioned.

``run`` writes it (``batchcap.run.manifest``), ``merge`` writes one for a merged journal; ``export``, ``report``
and ``merge`` read it through here, so a change of shape is handled in one place. Paths in it are absolute
(since manifest version 2), so a reader works from any folder; for older manifests a relative ``input_dir``
is tried as given (relative to where the reader runs) and then beside the journal.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from batchcap.journal.fsio import manifest_path

__all__ = ["MANIFEST_VERSION", "input_dir_from_manifest", "input_from_manifest", "manifest_path", "read_manifest"]

#: ``scheme://`` (fsspec's form, as ``source.location.is_url``): an input that is a URL, not a path.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
#: 2: absolute paths, ``invocations`` (the settings of every run into this journal, in order), journal-wide counts.
MANIFEST_VERSION = 2


def read_manifest(journal: Path) -> dict[str, Any] | None:
    """The manifest beside ``journal`` as a dict; None when absent, unreadable or not an object."""
    try:
        doc = orjson.loads(manifest_path(journal).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def input_from_manifest(journal: Path) -> Path | str | None:
    """The input the run read, as the manifest beside ``journal`` names it: a folder or dataset path (relative
    ones of version-1 manifests tried beside the journal too), or a URL (``hf://``...); None when unknown."""
    doc = read_manifest(journal)
    if doc is None:
        return None
    config = doc.get("config")
    value = doc.get("input_dir") or (config.get("input_dir") if isinstance(config, dict) else None)
    if not isinstance(value, str) or not value or "\x00" in value:
        return None
    if _URL.match(value):
        return value
    folder = Path(value)
    if not folder.is_absolute() and not folder.exists() and (journal.parent / folder).exists():
        folder = journal.parent / folder  # a version-1 manifest, read from another folder
    return folder


def input_dir_from_manifest(journal: Path) -> Path | None:
    """The captioned folder the manifest beside ``journal`` names, when it is a local folder that exists."""
    value = input_from_manifest(journal)
    return value if isinstance(value, Path) and value.is_dir() else None
