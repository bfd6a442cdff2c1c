"""``--sidecar``: each caption also beside its image as ``NAME.txt``, the layout many trainers read."""

from __future__ import annotations

from pathlib import Path

from batchcap.config import RunConfig
from batchcap.models import Record

__all__ = ["write_sidecar"]


def write_sidecar(cfg: RunConfig, rec: Record) -> bool:
    """Write ``photo.txt`` beside ``photo.jpg``; False when the file cannot be written (counted, not fatal)."""
    target = (Path(cfg.input_dir) / rec.path).with_suffix(cfg.sidecar_ext)
    try:
        target.write_text((rec.caption or "") + "\n", encoding="utf-8")
    except OSError:
        return False
    return True
