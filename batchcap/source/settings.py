"""``SourceSettings``: which files are the images of a run, and which of them are read at all."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from batchcap.settings import (
    check_choice,
    check_number,
    check_whole,
    parse_bool,
    parse_float,
    parse_int,
    setting,
)

from .shard import Shard, parse_shard

__all__ = ["DEDUPE_CHOICES", "Dedupe", "SourceSettings", "parse_path"]

DEDUPE_CHOICES = ("exact", "near", "off")
Dedupe = Literal["exact", "near", "off"]


def parse_path(value: Any, name: str = "") -> Path:
    """A path from a profile or a flag, ``~`` expanded."""
    return Path(os.path.expanduser(str(value)))


def _shard(value: Any, name: str = "shard") -> Shard | None:
    if value is None or isinstance(value, Shard):
        return value
    return parse_shard(str(value))


def _dedupe(value: Any, name: str = "dedupe") -> str:
    return str(value).strip().lower()


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """The input folder, what is read of it, and which copies are sent once."""

    input_dir: Path = setting(Path("."), parse=parse_path)
    follow_symlinks: bool = setting(False, parse=parse_bool)
    max_image_mb: float = setting(20.0, parse=parse_float)
    #: send identical images once (near: also resized / re-saved copies; off: every file)
    dedupe: Dedupe = setting("exact", parse=_dedupe)
    #: caption only this shard of the folder (``--shard I/N``); None = all of it
    shard: Shard | None = setting(None, parse=_shard)
    readers: int = setting(2, parse=parse_int, internal=True)  #: reader threads
    read_batch: int = setting(64, parse=parse_int, internal=True)  #: files per reader hop

    def __post_init__(self) -> None:
        if not isinstance(self.input_dir, Path):
            object.__setattr__(self, "input_dir", parse_path(self.input_dir))
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
