"""Exports of a run's captions: ``imagefolder``, ``kohya``, ``csv``, ``parquet``, ``openai-batch``.

    batchcap export results.jsonl --format imagefolder --out trainset/
"""

from __future__ import annotations

from batchcap.export.core import (
    FORMATS,
    MODES,
    ExportOptions,
    ExportReport,
    export,
    input_dir_from_manifest,
    manifest_path,
)
from batchcap.export.paths import Inside, inside, safe_relpath
from batchcap.export.select import Selection, read_records, select

__all__ = [
    "FORMATS",
    "MODES",
    "ExportOptions",
    "ExportReport",
    "Inside",
    "Selection",
    "export",
    "input_dir_from_manifest",
    "inside",
    "manifest_path",
    "read_records",
    "safe_relpath",
    "select",
]
