"""The JSONL journal: one line per finished image, and the checkpoint a rerun resumes from.

Four jobs, a module each: ``codec`` (the line format), ``index`` (what is done, read once at start, a
torn last line repaired), ``writer`` (the single locked appender), ``fsio`` (lock, whole writes, fsync,
atomic files, the disk-error messages). Other packages import from here.
"""

from __future__ import annotations

from batchcap.journal.codec import decode_line, encode_record
from batchcap.journal.fsio import manifest_path, replacing, write_json_atomic
from batchcap.journal.index import JournalIndex, load_index, path_key
from batchcap.journal.writer import JournalWriter

__all__ = [
    "JournalIndex",
    "JournalWriter",
    "decode_line",
    "encode_record",
    "load_index",
    "manifest_path",
    "path_key",
    "replacing",
    "write_json_atomic",
]
