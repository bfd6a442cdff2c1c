"""``SourceSettings``: which files are the images of a run, and which of them are read at all."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from batchcap.errors import ConfigError
from batchcap.settings import (
    check_choice,
    check_number,
    check_whole,
    parse_bool,
    parse_float,
    parse_int,
    setting,
)

from .location import is_url
from .shard import Shard, parse_shard

__all__ = ["DEDUPE_CHOICES", "Dedupe", "SourceSettings", "parse_input", "parse_path"]

DEDUPE_CHOICES = ("exact", "near", "off")
Dedupe = Literal["exact", "near", "off"]


def parse_path(value: Any, name: str = "") -> Path:
    """A path from a profile or a flag, ``~`` expanded."""
    return Path(os.path.expanduser(str(value)))


def parse_input(value: Any, name: str = "") -> Path | str:
    """INPUT from a profile or the command line: an fsspec URL (``hf://datasets/...``) as it is, else a path."""
    text = str(value)
    return text if is_url(text) else parse_path(text)


def _column(value: Any, name: str = "image_column") -> str | None:
    if value is None:
        return None
    text = str(value)
    if not text.strip():
        raise ConfigError("--image-column must name a column (got an empty name)")
    return text


def _shard(value: Any, name: str = "shard") -> Shard | None:
    if value is None or isinstance(value, Shard):
        return value
    return parse_shard(str(value))


def _dedupe(value: Any, name: str = "dedupe") -> str:
    return str(value).strip().lower()


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """The input (a folder, a dataset, a URL: ``source.datasets``), what is read of it, which copies are sent once."""

    input_dir: Path | str = setting(Path("."), parse=parse_input)
    follow_symlinks: bool = setting(False, parse=parse_bool)
    max_image_mb: float = setting(20.0, parse=parse_float)
    #: send identical images once (near: also resized / re-saved copies; off: every file)
    dedupe: Dedupe = setting("exact", parse=_dedupe)
    #: caption only this shard of the folder (``--shard I/N``); None = all of it
    shard: Shard | None = setting(None, parse=_shard)
    #: a parquet input's column of images (None: the first column of the Image type)
    image_column: str | None = setting(None, parse=_column)
    readers: int = setting(2, parse=parse_int, internal=True)  #: reader threads
    read_batch: int = setting(64, parse=parse_int, internal=True)  #: files per reader hop

    def __post_init__(self) -> None:
        if not isinstance(self.input_dir, Path) and not (isinstance(self.input_dir, str) and is_url(self.input_dir)):
            object.__setattr__(self, "input_dir", parse_input(self.input_dir))
        _column(self.image_column)
        if isinstance(self.shard, str):
            object.__setattr__(self, "shard", parse_shard(self.shard))
        check_number(self.max_image_mb, "max_image_mb", above=0)
        check_choice(self.dedupe, "dedupe", DEDUPE_CHOICES)
        check_whole(self.readers, "readers", minimum=1)
        check_whole(self.read_batch, "read_batch", minimum=1)

    @property
    def max_bytes(self) -> int:
        """``--max-image-mb`` in bytes (binary MB, as the file sizes a user sees)."""
        return int(self.max_image_mb * 1024 * 1024)
